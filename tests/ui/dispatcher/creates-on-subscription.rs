use es_core::{Apply, EventContext, RecordedEvent};
use es_diesel::{ReactorError, dispatcher};
use serde::{Deserialize, Serialize};

#[derive(es_core::Aggregate, Default)]
struct Task {
    id: i64,
}

#[derive(es_core::Event, Serialize, Deserialize, schemars::JsonSchema)]
#[aggregate(Task)]
struct Completed {}

impl Apply<Task> for Completed {
    fn apply(&self, _: &mut Task, _: &EventContext<'_>) {}
}

fn feed<C>(_: &mut C, _: &RecordedEvent<i64>) -> Result<(), ReactorError> {
    Ok(())
}

dispatcher! {
    pub struct D;
    Task::* => subscribe: [feed -> [Completed]];
}

fn main() {}
