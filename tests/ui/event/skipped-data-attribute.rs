use es_core::{Aggregate, Apply, Event, EventContext};
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Default)]
struct Task {
    id: i64,
}

#[derive(Event, Serialize, Deserialize, schemars::JsonSchema)]
#[aggregate(Task)]
struct Completed {
    #[data_attributes]
    #[serde(skip)]
    note: String,
}

impl Apply<Task> for Completed {
    fn apply(&self, _: &mut Task, _: &EventContext<'_>) {}
}

fn main() {}
