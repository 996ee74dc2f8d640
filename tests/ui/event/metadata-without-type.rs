use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(es_core::Aggregate, Default)]
struct Task {
    id: i64,
}

#[derive(Event, Serialize, Deserialize, schemars::JsonSchema)]
#[aggregate(Task)]
#[event(metadata)]
struct Created {}

fn main() {}
