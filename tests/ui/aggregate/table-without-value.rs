use es_core::Aggregate;

#[derive(Aggregate, Default)]
#[aggregate(table)]
struct Task {
    id: i64,
}

fn main() {}
