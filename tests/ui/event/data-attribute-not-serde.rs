use es_core::Event;
use serde::{Deserialize, Serialize};

#[derive(es_core::Aggregate, Default)]
struct Task {
    id: i64,
}

struct Money {
    cents: i64,
}

#[derive(Event, Serialize, Deserialize, schemars::JsonSchema)]
#[aggregate(Task)]
struct Priced {
    #[data_attributes]
    price: Money,
}

impl es_core::Apply<Task> for Priced {
    fn apply(&self, _: &mut Task, _: &es_core::EventContext<'_>) {
        let _ = self.price.cents;
    }
}

fn main() {}
