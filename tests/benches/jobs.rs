//! Async jobs drained per second by 2 workers, and the latency from enqueue (the event's commit)
//! to the start of its job with 2 idle workers waiting, on SQLite (file, WAL) and on PostgreSQL
//! when `PG_DATABASE_URL` is set. Medians of 3 runs.
//!
//! `cargo bench -p es-tests --bench jobs`

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use es_core::{AppendOptions, EventStore};
use es_diesel::{
    AggregateTable, DieselStore, Dispatch, JobContext, ReactorError, Recorded, Worker,
    WorkerOptions, dispatcher, job_counts,
};
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::bench::median;
use es_tests::domain::{Project, ProjectStarted};

const JOBS: i64 = 3_000;
const LATENCY_SAMPLES: i64 = 200;

static LATENCIES_MS: Mutex<Vec<f64>> = Mutex::new(Vec::new());

/// Does nothing but note how long after its event's commit it started.
fn note_latency<C: es_diesel::Database>(
    _: &mut JobContext<'_, C>,
    started: Recorded<'_, ProjectStarted>,
) -> Result<(), ReactorError> {
    let waited = chrono::Utc::now() - started.created_at();
    LATENCIES_MS
        .lock()
        .map_err(|_| "poisoned")?
        .push(waited.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
    Ok(())
}

dispatcher! {
    /// One async reactor per project started.
    struct BenchDispatcher;
    ProjectStarted => async: [note_latency];
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// Runs 2 workers until `done` holds, then stops them.
fn with_two_workers<D: TestDb>(db: &D, until: impl FnOnce())
where
    BenchDispatcher: Dispatch<D::Conn>,
{
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        for name in ["one", "two"] {
            let stop = &stop;
            scope.spawn(move || {
                let options = WorkerOptions::default()
                    .worker_id(name)
                    .batch(32)
                    .idle_wait(Duration::from_millis(100));
                Worker::new(&BenchDispatcher, options)
                    .run(|| Ok::<_, std::convert::Infallible>(db.connect()), stop)
                    .unwrap();
            });
        }
        until();
        stop.store(true, Ordering::Relaxed);
    });
}

fn drained_per_second<D: TestDb>(db: &D, first_id: i64) -> f64
where
    Project: AggregateTable<D::Conn>,
    BenchDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(&BenchDispatcher);
    for id in first_id..first_id + JOBS {
        store
            .append(
                &id,
                ProjectStarted { name: "p".into() },
                &AppendOptions::default(),
            )
            .unwrap();
    }
    let start = Instant::now();
    with_two_workers(db, || {
        let mut conn = db.connect();
        while job_counts(&mut conn).unwrap().pending + job_counts(&mut conn).unwrap().running > 0 {
            thread::sleep(Duration::from_millis(2));
        }
    });
    JOBS as f64 / start.elapsed().as_secs_f64()
}

fn latency<D: TestDb>(db: &D, first_id: i64) -> (f64, f64)
where
    Project: AggregateTable<D::Conn>,
    BenchDispatcher: Dispatch<D::Conn>,
{
    LATENCIES_MS.lock().unwrap().clear();
    with_two_workers(db, || {
        let mut conn = db.connect();
        let mut store = DieselStore::new(&mut conn).with_dispatcher(&BenchDispatcher);
        for id in first_id..first_id + LATENCY_SAMPLES {
            store
                .append(
                    &id,
                    ProjectStarted { name: "p".into() },
                    &AppendOptions::default(),
                )
                .unwrap();
            thread::sleep(Duration::from_millis(10));
        }
        while LATENCIES_MS.lock().unwrap().len() < LATENCY_SAMPLES as usize {
            thread::sleep(Duration::from_millis(5));
        }
    });
    let mut samples = LATENCIES_MS.lock().unwrap().clone();
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn report<D: TestDb>(db: &D, label: &str)
where
    Project: AggregateTable<D::Conn>,
    BenchDispatcher: Dispatch<D::Conn>,
{
    let rates: Vec<f64> = (0..3)
        .map(|run| drained_per_second(db, 1 + run * JOBS))
        .collect();
    let (p50, p99) = latency(db, 10 * JOBS);
    println!(
        "{label:<28} 2 workers drain {:>7.0} jobs/s   enqueue->start p50 {p50:>6.1} ms  p99 {p99:>6.1} ms",
        median(rates)
    );
}

fn main() {
    report(&SqliteDb::new(), "sqlite (file, WAL)");
    match es_tests::backend::postgres_url() {
        Some(url) => report(
            &es_tests::backend::PgDb::new(&url, "bench_jobs"),
            "postgres",
        ),
        None => println!("postgres: SKIPPED (set PG_DATABASE_URL)"),
    }
}
