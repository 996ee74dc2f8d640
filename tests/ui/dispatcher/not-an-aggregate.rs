use es_core::{Apply, EventContext, RecordedEvent};
use es_diesel::{Database, ReactorError, TriggerContext, dispatcher};
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

fn audit<C: Database>(
    _: &mut TriggerContext<'_, C>,
    _: &RecordedEvent<i64>,
) -> Result<(), ReactorError> {
    Ok(())
}

dispatcher! {
    pub struct D;
    Completed::* => trigger: [audit];
}

fn main() {}
