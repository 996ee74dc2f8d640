//! A worker process for the crash tests: runs the jobs of the test dispatcher until it is killed.
//!
//! `test_worker LEASE_MS sqlite PATH | postgres URL SCHEMA | mysql URL DATABASE`; the environment
//! variable `TEST_WORKER_BACKOFF_MS` sets the delay before the first retry (default: the
//! library's).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use es_diesel::{Worker, WorkerOptions};
use es_tests::backend::{SqliteDb, TestConnection, TestDb};

fn run<D: TestDb>(db: &D, lease: Duration) {
    let mut options = WorkerOptions::default()
        .worker_id(format!("test-worker-{}", std::process::id()))
        .lease(lease)
        .idle_wait(Duration::from_millis(50));
    if let Ok(backoff) = std::env::var("TEST_WORKER_BACKOFF_MS") {
        let base = Duration::from_millis(backoff.parse().expect("TEST_WORKER_BACKOFF_MS"));
        options = options.backoff(base, base * 8);
    }
    Worker::new(D::Conn::dispatcher(), options)
        .run(
            || Ok::<_, std::convert::Infallible>(db.connect()),
            &AtomicBool::new(false),
        )
        .expect("the worker runs until it is killed");
}

fn main() {
    es_tests::exit_with_parent();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lease = Duration::from_millis(args[0].parse().expect("LEASE_MS"));
    match args[1].as_str() {
        "sqlite" => run(&SqliteDb::open(&args[2]), lease),
        #[cfg(feature = "postgres")]
        "postgres" => run(&es_tests::backend::PgDb::open(&args[2], &args[3]), lease),
        #[cfg(feature = "mysql")]
        "mysql" => run(&es_tests::backend::MysqlDb::open(&args[2], &args[3]), lease),
        other => panic!("unknown backend {other}"),
    }
}
