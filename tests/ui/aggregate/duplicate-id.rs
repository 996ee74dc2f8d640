use es_core::Aggregate;

#[derive(Aggregate, Default)]
struct Task {
    #[aggregate(id)]
    number: i64,
    #[aggregate(id)]
    code: String,
}

fn main() {}
