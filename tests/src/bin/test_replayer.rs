//! A replay process for the interruption and memory tests: replays every task, `BATCH` aggregates
//! per transaction, printing after each batch how many aggregates are done, the most heap the
//! replay has held so far (bytes above what the process held when it began) and the process's peak
//! resident set size (KiB), until it ends or is killed.
//!
//! `test_replayer BATCH sqlite PATH | postgres URL SCHEMA | mysql URL DATABASE`

use std::io::Write;

use es_core::EventStore;
use es_diesel::{AggregateTable, DieselStore};
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::domain::Task;
use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

fn run<D: TestDb>(db: &D, batch: usize)
where
    Task: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).replay_batch(batch);
    let mut stdout = std::io::stdout();
    HEAP.reset_peak_usage();
    let before = HEAP.current_usage();
    EventStore::<Task>::replay_all(&mut store, &mut |progress| {
        let peak = HEAP.peak_usage().saturating_sub(before);
        let rss = rss_high_water_kib();
        writeln!(stdout, "{} {peak} {rss}", progress.aggregates).expect("print the progress");
        stdout.flush().expect("flush the progress");
    })
    .expect("the replay runs until it is killed");
}

fn main() {
    es_tests::exit_with_parent();
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

/// The process's peak resident set size so far (`VmHWM`), in KiB: what the heap count misses, the
/// memory of the C client libraries (libpq's and libmysqlclient's result sets, SQLite's cache).
fn rss_high_water_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kib| kib.trim().trim_end_matches(" kB").parse().ok())
        .expect("VmHWM in /proc/self/status")
}
