use es_core::{Apply, Event, EventContext};
use serde::{Deserialize, Serialize};

#[derive(es_core::Aggregate, Default)]
struct Task {
    id: i64,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct Webhook {
    notification_id: i64,
}

#[derive(Event, Serialize, Deserialize, schemars::JsonSchema)]
#[aggregate(Task)]
#[event(metadata = Webhook, metadata = Webhook)]
struct Completed {}

impl Apply<Task> for Completed {
    fn apply(&self, _: &mut Task, _: &EventContext<'_>) {}
}

fn main() {}
