use es_core::Aggregate;

#[derive(Aggregate, Default)]
#[aggregate]
struct Task {
    id: i64,
}

fn main() {}
