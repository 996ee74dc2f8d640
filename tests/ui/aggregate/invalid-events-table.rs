use es_core::Aggregate;

#[derive(Aggregate, Default)]
#[aggregate(events_table = "Task Events")]
struct Task {
    id: i64,
}

fn main() {}
