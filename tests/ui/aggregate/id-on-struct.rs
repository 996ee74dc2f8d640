use es_core::Aggregate;

#[derive(Aggregate, Default)]
#[aggregate(id)]
struct Task {
    key: i64,
}

fn main() {}
