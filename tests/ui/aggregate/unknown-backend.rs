use es_core::Aggregate;

mod schema {
    diesel::table! {
        tasks (id) {
            id -> BigInt,
        }
    }
}

#[derive(Aggregate, Default)]
#[aggregate(table = schema::tasks, backend = oracle)]
struct Task {
    id: i64,
}

fn main() {}
