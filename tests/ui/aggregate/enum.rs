use es_core::Aggregate;

#[derive(Aggregate, Default)]
enum Task {
    #[default]
    Open,
    Done,
}

fn main() {}
