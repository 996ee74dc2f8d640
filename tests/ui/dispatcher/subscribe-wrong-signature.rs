use es_core::{Apply, EventContext};
use es_diesel::{Database, ReactorError, Recorded, TriggerContext, dispatcher};
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

fn feed<C: Database>(
    _: &mut TriggerContext<'_, C>,
    _: Recorded<'_, Completed>,
) -> Result<(), ReactorError> {
    Ok(())
}

dispatcher! {
    pub struct D for sqlite;
    Completed => subscribe: [feed];
}

fn main() {}
