use es_core::Aggregate;

#[derive(Aggregate, Default)]
#[aggregate(events = "task_events")]
struct Task {
    id: i64,
}

fn main() {}
