use es_core::Aggregate;

#[derive(Aggregate, Default)]
#[aggregate(name = "task", name = "todo")]
struct Task {
    id: i64,
}

fn main() {}
