//! A replay process for the interruption test: replays every task, `BATCH` aggregates per
//! transaction, printing how many aggregates are done after each batch, until it ends or is
//! killed.
//!
//! `test_replayer BATCH sqlite PATH | postgres URL SCHEMA | mysql URL DATABASE`

use std::io::Write;

use es_core::EventStore;
use es_diesel::{AggregateTable, DieselStore};
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::domain::Task;

fn run<D: TestDb>(db: &D, batch: usize)
where
    Task: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).replay_batch(batch);
    let mut stdout = std::io::stdout();
    EventStore::<Task>::replay_all(&mut store, &mut |progress| {
        writeln!(stdout, "{}", progress.aggregates).expect("print the progress");
        stdout.flush().expect("flush the progress");
    })
    .expect("the replay runs until it is killed");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batch = args[0].parse().expect("BATCH");
    match args[1].as_str() {
        "sqlite" => run(&SqliteDb::open(&args[2]), batch),
        #[cfg(feature = "postgres")]
        "postgres" => run(&es_tests::backend::PgDb::open(&args[2], &args[3]), batch),
        #[cfg(feature = "mysql")]
        "mysql" => run(&es_tests::backend::MysqlDb::open(&args[2], &args[3]), batch),
        other => panic!("unknown backend {other}"),
    }
}
