//! The framework against its Rust peers on the same PostgreSQL, in the same run: cqrs-es 0.5 with
//! postgres-es 0.5, and esrs 0.18. Medians of 5 runs after a warm-up run; in each run the three
//! systems take turns (the first of them changes from run to run), so that noise from the machine
//! falls on all of them alike.
//!
//! - P1b: one command creating one event on an existing aggregate that has 1, 100 or 10,000 prior
//!   events, synchronous commit on and off. Each command of the 1- and 100-event cases goes to an
//!   aggregate of its own, so that every command sees exactly that many prior events; the
//!   10,000-event case spreads its commands over 2 aggregates (they grow by under 1%).
//! - P3: every event read, decoded and applied to its aggregate: esrs's `stream_events`,
//!   cqrs-es's `stream_all_events`, and ours twice: our full `replay_all` (which also writes every
//!   aggregate back), and a read + decode + apply through our public API (`EventStore::stream_events`
//!   folded into `Rebuild`s, nothing written).
//! - P4: loading one aggregate of 10,000 events: esrs's `AggregateManager::load`, cqrs-es's
//!   `load_aggregate`, and our `EventStore::state_as_of` (time travel to its last version).
//!
//! Everything lives in the schema `bench_peers` of `PG_DATABASE_URL`, dropped and created again
//! (before P1b/P4, and again before P3). Every case is seeded before any is measured, then the
//! tables are vacuumed and analyzed and the server checkpoints. Run it with
//!
//! ```sh
//! PG_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench --manifest-path tests/peers/Cargo.toml
//! ```
//!
//! `BENCH_REPLAY_EVENTS=200000` for a shorter P3 (the default is the issue's 1,000,000 events over
//! 100,000 aggregates); `BENCH_PARTS=p1b,p4` (or `p3`) to run only some parts; `BENCH_VERBOSE=1`
//! prints every run's rate, not only the medians.

mod ours;
mod with_cqrs;
mod with_esrs;

use std::str::FromStr;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use es_tests::backend::{PgDb, TestDb, create_domain_tables};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::runtime::Runtime;

use ours::Ours;
use with_cqrs::Cqrs;
use with_esrs::Esrs;

/// Measured runs, after one warm-up run.
const RUNS: usize = 5;
/// The schema of every table of the benchmark.
const SCHEMA: &str = "bench_peers";
/// P1b: the prior events of the aggregates commanded.
const PRIORS: [usize; 3] = [1, 100, 10_000];
/// P4: the events of the aggregate loaded.
const P4_EVENTS: usize = 10_000;
/// P4: loads per run.
const P4_LOADS: usize = 5;
/// The systems, in the order of the table's columns.
const SYSTEMS: [&str; 3] = ["ours", "cqrs-es", "esrs"];

/// P1b: the commands per run for aggregates with `prior` events.
fn commands(prior: usize) -> usize {
    match prior {
        1 => 300,
        100 => 200,
        _ => 20,
    }
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// The three systems, on connections with one `synchronous_commit` setting.
struct Systems {
    ours: Ours,
    cqrs: Cqrs,
    esrs: Esrs,
}

/// A pool of the peers (single client: one connection is busy at a time; esrs's `load` and its
/// transaction each take one from the pool) in [`SCHEMA`], with `synchronous_commit` = `commit`.
fn pool(runtime: &Runtime, url: &str, commit: &str) -> PgPool {
    let options = PgConnectOptions::from_str(url)
        .expect("PG_DATABASE_URL")
        .options([("search_path", SCHEMA), ("synchronous_commit", commit)]);
    let options = if log_statements() {
        options.options([("log_statement", "all")])
    } else {
        options
    };
    runtime
        .block_on(
            PgPoolOptions::new()
                .max_connections(2)
                .min_connections(2)
                .connect_with(options),
        )
        .expect("connect the peers' pool")
}

/// Whether the benchmark's sessions log their statements (`BENCH_PARTS=trace`).
fn log_statements() -> bool {
    std::env::var("BENCH_PARTS").is_ok_and(|parts| parts.contains("trace"))
}

/// Drops and creates [`SCHEMA`] with our tables (the test domain's) and the peers' tables.
fn fresh_schema(runtime: &Runtime, url: &str) {
    let mut conn = PgConnection::establish(url).expect("connect to PostgreSQL");
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};"
    ))
    .expect("create the schema");
    create_domain_tables(
        &PgDb::open(url, SCHEMA),
        &[
            "CREATE TABLE tasks (id BIGINT PRIMARY KEY, title TEXT NOT NULL \
             CHECK (title <> ''), due_on TEXT, completed_at TIMESTAMP, completed_by TEXT)",
            "CREATE TABLE projects (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",
            "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
        ],
    );
    let pool = pool(runtime, url, "on");
    runtime.block_on(async {
        Cqrs::create_tables(&pool).await;
        // The first esrs store on the schema runs esrs's migrations (its table and indexes).
        Esrs::new(&pool, true).await;
    });
}

/// Connects the three systems, with `synchronous_commit` = `commit`.
fn connect(runtime: &Runtime, url: &str, commit: &str) -> Systems {
    let pool = pool(runtime, url, commit);
    let mut ours = Ours::connect(url, SCHEMA, commit);
    if log_statements() {
        ours.execute("SET log_statement = 'all'");
    }
    Systems {
        ours,
        cqrs: Cqrs::new(&pool),
        esrs: runtime.block_on(Esrs::new(&pool, false)),
    }
}

/// Seeds aggregates `ids` with `events` events in every system and checks that each loads them.
fn seed(runtime: &Runtime, systems: &mut Systems, ids: std::ops::Range<i64>, events: usize) {
    systems.ours.seed(ids.clone(), events);
    runtime.block_on(async {
        systems.cqrs.seed(ids.clone(), events).await;
        systems.esrs.seed(ids.clone(), events).await;
    });
    let expected = if events == 1 {
        "t".to_owned()
    } else {
        format!("v{}", events - 1)
    };
    for id in [ids.start, ids.end - 1] {
        check(runtime, systems, id, &expected);
    }
}

/// Asserts that every system sees task `id` titled `expected`.
fn check(runtime: &Runtime, systems: &mut Systems, id: i64, expected: &str) {
    assert_eq!(systems.ours.title(id), expected, "ours, task {id}");
    runtime.block_on(async {
        assert_eq!(systems.cqrs.title(id).await, expected, "cqrs-es, task {id}");
        assert_eq!(systems.esrs.title(id).await, expected, "esrs, task {id}");
    });
}

/// Runs `work(system, run)` for each system in each of the warm-up and [`RUNS`] runs, taking
/// turns, and returns each system's median rate of `count` things per run.
fn interleaved(count: usize, mut work: impl FnMut(usize, usize)) -> [f64; 3] {
    let mut rates: [Vec<f64>; 3] = Default::default();
    for run in 0..=RUNS {
        for turn in 0..SYSTEMS.len() {
            let system = (run + turn) % SYSTEMS.len();
            let start = Instant::now();
            work(system, run);
            if run > 0 {
                rates[system].push(count as f64 / start.elapsed().as_secs_f64());
            }
        }
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        for (system, runs) in SYSTEMS.iter().zip(&rates) {
            let runs: Vec<String> = runs.iter().map(|rate| format!("{rate:.0}")).collect();
            println!("      {system:<8} runs: {}", runs.join(" "));
        }
    }
    rates.map(median)
}

/// One line of results: the three rates and ours over the best peer.
fn line(what: &str, rates: [f64; 3], unit: &str) {
    let best = rates[1].max(rates[2]);
    println!(
        "  {what:<38} ours {:>9.0}  cqrs-es {:>9.0}  esrs {:>9.0}  {unit:<8}  ours/best peer {:.2}  ours/esrs {:.2}",
        rates[0],
        rates[1],
        rates[2],
        rates[0] / best,
        rates[0] / rates[2],
    );
}

/// P1b: the first of the aggregates with `PRIORS[index]` prior events, for the runs from `base`.
fn p1b_first(base: i64, index: usize) -> i64 {
    base + index as i64 * 1_000_000
}

/// P1b: the aggregates commanded for `prior` prior events.
fn p1b_aggregates(prior: usize) -> usize {
    if prior == 10_000 {
        2
    } else {
        commands(prior) * (RUNS + 1)
    }
}

/// P1b: seeds, in every system, the aggregates that the runs from `base` command.
fn p1b_seed(runtime: &Runtime, systems: &mut Systems, base: i64) {
    for (index, prior) in PRIORS.into_iter().enumerate() {
        let first = p1b_first(base, index);
        seed(
            runtime,
            systems,
            first..first + p1b_aggregates(prior) as i64,
            prior,
        );
    }
}

/// P1b with `synchronous_commit` = `commit`, on the aggregates seeded from `base` up.
fn p1b(runtime: &Runtime, systems: &mut Systems, commit: &str, base: i64) {
    for (index, prior) in PRIORS.into_iter().enumerate() {
        let count = commands(prior);
        let first = p1b_first(base, index);
        let target = |run: usize, n: usize| {
            if prior == 10_000 {
                first + (n % 2) as i64
            } else {
                first + (run * count + n) as i64
            }
        };
        let rates = interleaved(count, |system, run| {
            for n in 0..count {
                let (id, title) = (target(run, n), format!("{}-{run}-{n}", SYSTEMS[system]));
                match system {
                    0 => systems.ours.retitle(id, &title),
                    1 => runtime.block_on(systems.cqrs.retitle(id, &title)),
                    _ => runtime.block_on(systems.esrs.retitle(id, &title)),
                }
            }
        });
        // Every system's last command of the last run is stored.
        let last = target(RUNS, count - 1);
        assert_eq!(
            systems.ours.title(last),
            format!("ours-{RUNS}-{}", count - 1)
        );
        runtime.block_on(async {
            assert_eq!(
                systems.cqrs.title(last).await,
                format!("cqrs-es-{RUNS}-{}", count - 1)
            );
            assert_eq!(
                systems.esrs.title(last).await,
                format!("esrs-{RUNS}-{}", count - 1)
            );
        });
        line(
            &format!("P1b {prior} prior events, sync commit {commit}"),
            rates,
            "cmds/s",
        );
    }
}

/// After seeding, before measuring: `VACUUM ANALYZE` of the benchmark's tables and a
/// `CHECKPOINT`, so that no system is measured while the server vacuums or flushes what the
/// seeding wrote (with synchronous commit on, that slowed every system's commits by 2-4x).
fn settle(url: &str) {
    let mut conn = PgDb::open(url, SCHEMA).connect();
    // One statement each: VACUUM cannot run in the implicit transaction of a multi-statement batch.
    for statement in [
        format!(
            "VACUUM ANALYZE {SCHEMA}.tasks, {SCHEMA}.task_events, {SCHEMA}.cqrs_events, \
             {SCHEMA}.esrs_task_events"
        ),
        "CHECKPOINT".to_owned(),
    ] {
        conn.batch_execute(&statement)
            .expect("settle the benchmark's tables");
    }
}

/// P4: the aggregate loaded.
const P4_ID: i64 = 90_000_000;

/// P4: loads of one aggregate of [`P4_EVENTS`] events (seeded with [`seed`]).
fn p4(runtime: &Runtime, systems: &mut Systems) {
    let id = P4_ID;
    let expected = format!("v{}", P4_EVENTS - 1);
    let rates = interleaved(P4_EVENTS * P4_LOADS, |system, _| {
        for _ in 0..P4_LOADS {
            let title = match system {
                0 => systems.ours.state_as_of(id, P4_EVENTS as i64),
                1 => runtime.block_on(systems.cqrs.title(id)),
                _ => runtime.block_on(systems.esrs.title(id)),
            };
            assert_eq!(title, expected);
        }
    });
    line("P4  load of 1 aggregate, 10,000 events", rates, "events/s");
}

/// P3: every event of `events` (over `events / 10` aggregates) read, decoded and applied.
fn p3(runtime: &Runtime, url: &str, events: usize) {
    fresh_schema(runtime, url);
    let mut systems = connect(runtime, url, "on");
    let aggregates = events / 10;
    let seeded = Instant::now();
    seed(runtime, &mut systems, 1..aggregates as i64 + 1, 10);
    settle(url);
    println!(
        "  (P3 data: {events} events over {aggregates} aggregates in each system, seeded in {:.0} s)",
        seeded.elapsed().as_secs_f64()
    );
    let check = |(read, rebuilt): (u64, usize)| {
        assert_eq!(read as usize, events, "events read");
        assert_eq!(rebuilt, aggregates, "aggregates rebuilt");
    };
    let rates = interleaved(events, |system, _| match system {
        0 => check(systems.ours.read_decode_apply()),
        1 => check(runtime.block_on(systems.cqrs.stream_all())),
        _ => check(runtime.block_on(systems.esrs.stream_events())),
    });
    line("P3  read + decode + apply, every event", rates, "events/s");
    // Our full replay (rebuilt and written back), against the same peers' reads: in its own
    // interleaved runs so that the line above compares like with like.
    let replay = interleaved(events, |system, _| match system {
        0 => assert_eq!(systems.ours.replay_all() as usize, events),
        1 => check(runtime.block_on(systems.cqrs.stream_all())),
        _ => check(runtime.block_on(systems.esrs.stream_events())),
    });
    line("P3  ours: replay_all (written back)", replay, "events/s");
}

/// `BENCH_PARTS=trace`: the server logs (`log_statement = all`, on these sessions only) two
/// commands of each system on aggregates with 1 and 100 prior events, between marker statements
/// `SELECT 'trace <system> <prior>'`, to count the statements (round trips) of one command.
fn trace(runtime: &Runtime, url: &str) {
    fresh_schema(runtime, url);
    let mut systems = connect(runtime, url, "on");
    for (index, prior) in [1, 100].into_iter().enumerate() {
        let first = 1 + index as i64 * 10;
        seed(runtime, &mut systems, first..first + 2, prior);
        for (system, name) in SYSTEMS.iter().enumerate() {
            systems
                .ours
                .execute(&format!("SELECT 'trace {name} {prior} begin'"));
            for id in [first, first + 1] {
                let title = format!("trace-{id}");
                match system {
                    0 => systems.ours.retitle(id, &title),
                    1 => runtime.block_on(systems.cqrs.retitle(id, &title)),
                    _ => runtime.block_on(systems.esrs.retitle(id, &title)),
                }
            }
            systems
                .ours
                .execute(&format!("SELECT 'trace {name} {prior} end'"));
        }
    }
    println!("  trace: see the server's log between the 'trace <system> <prior>' markers");
}

fn main() {
    let Some(url) = es_tests::backend::postgres_url() else {
        println!("peers: SKIPPED (set PG_DATABASE_URL to a PostgreSQL database)");
        return;
    };
    let replay_events = std::env::var("BENCH_REPLAY_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "p1b,p4,p3".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "peers on PostgreSQL (schema {SCHEMA}), {} UTC; medians of {RUNS} runs after a warm-up",
        chrono::Utc::now().format("%Y-%m-%d %H:%M")
    );
    if parts.contains("p1b") || parts.contains("p4") {
        fresh_schema(&runtime, &url);
        let mut on = connect(&runtime, &url, "on");
        let mut off = connect(&runtime, &url, "off");
        if parts.contains("p1b") {
            p1b_seed(&runtime, &mut on, 10_000_000);
            p1b_seed(&runtime, &mut off, 20_000_000);
        }
        if parts.contains("p4") {
            seed(&runtime, &mut on, P4_ID..P4_ID + 1, P4_EVENTS);
        }
        settle(&url);
        if parts.contains("p1b") {
            p1b(&runtime, &mut on, "on", 10_000_000);
        }
        if parts.contains("p4") {
            p4(&runtime, &mut on);
        }
        if parts.contains("p1b") {
            p1b(&runtime, &mut off, "off", 20_000_000);
        }
    }
    if parts.contains("trace") {
        trace(&runtime, &url);
        return;
    }
    if parts.contains("p3") {
        p3(&runtime, &url, replay_events);
    }
}
