use es_core::Aggregate;

#[derive(Aggregate, Default)]
struct Task {
    key: i64,
    title: String,
}

fn main() {}
