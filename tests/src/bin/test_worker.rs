//! A worker process for the crash tests: runs the jobs of the test dispatcher until it is killed.
//!
//! `test_worker LEASE_MS sqlite PATH | postgres URL SCHEMA | mysql URL DATABASE`; the environment
//! variable `TEST_WORKER_BACKOFF_MS` sets the delay before the first retry (default: the
//! library's).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use es_diesel::{Worker, WorkerOptions};
use es_tests::backend::{OnTestDb, TestConnection, TestDb, on_test_db};

/// Runs the jobs with a lease this long.
struct Work(Duration);

impl OnTestDb for Work {
    fn run<D: TestDb>(self, db: &D) {
        let mut options = WorkerOptions::default()
            .worker_id(format!("test-worker-{}", std::process::id()))
            .lease(self.0)
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
}

fn main() {
    es_tests::exit_with_parent();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lease = Duration::from_millis(args[0].parse().expect("LEASE_MS"));
    on_test_db(&args[1..], Work(lease));
}
