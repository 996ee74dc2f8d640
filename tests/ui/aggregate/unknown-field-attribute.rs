use es_core::Aggregate;

#[derive(Aggregate, Default)]
struct Task {
    #[aggregate(key)]
    number: i64,
}

fn main() {}
