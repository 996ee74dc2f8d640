use es_core::Aggregate;

#[derive(Aggregate, Default)]
struct Task {}

fn main() {}
