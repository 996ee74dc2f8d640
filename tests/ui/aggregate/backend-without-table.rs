use es_core::Aggregate;

#[derive(Aggregate, Default)]
#[aggregate(backend = postgres)]
struct Task {
    id: i64,
}

fn main() {}
