use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(es_core::Aggregate, Default)]
struct Task {
    id: i64,
}

struct Project {
    id: i64,
}

#[derive(Event, Serialize, Deserialize, schemars::JsonSchema)]
#[aggregate(Project)]
struct Archived {}

impl es_core::Apply<Project> for Archived {
    fn apply(&self, project: &mut Project, _: &es_core::EventContext<'_>) {
        project.id = 0;
    }
}

fn main() {}
