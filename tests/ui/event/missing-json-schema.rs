use es_core::{Apply, Event, EventContext};
use serde::{Deserialize, Serialize};

#[derive(es_core::Aggregate, Default)]
struct Task {
    id: i64,
}

#[derive(Event, Serialize, Deserialize)]
#[aggregate(Task)]
struct Completed {}

impl Apply<Task> for Completed {
    fn apply(&self, _: &mut Task, _: &EventContext<'_>) {}
}

fn main() {}
