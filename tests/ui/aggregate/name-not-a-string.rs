use es_core::Aggregate;

#[derive(Aggregate, Default)]
#[aggregate(name = 1)]
struct Task {
    id: i64,
}

fn main() {}
