//! The framework against the same work written by hand with diesel, in the same run: medians of 5
//! runs after a warm-up, reported as absolute rates and as ratios to the hand-written baseline.
//!
//! - P1: one command creating one event on an existing aggregate (lock, decide, apply, save,
//!   insert, one trigger reactor, one async job) vs the same statements by hand; then again
//!   (`P1+relay`) while a relay publishes the events to NATS, when `NATS_URL` is set;
//! - P2: one command creating 100 events vs a hand-written multi-row insert;
//! - P3: a full replay (aggregates written back) vs a typed diesel scan + serde decode of the same
//!   rows, with the peak resident memory before and after;
//! - P4: time travel of one aggregate with 10,000 events vs a typed load + decode of its rows;
//! - P6: 8 threads appending to 1 hot aggregate and to 1,000 aggregates: throughput and latency.
//!
//! (P5, async jobs drained by 2 workers, is `--bench jobs`.) On SQLite (file, WAL) always, and on
//! PostgreSQL with synchronous commit on and off when `PG_DATABASE_URL` is set.
//!
//! `cargo bench -p es-tests --bench workloads` (`BENCH_REPLAY_EVENTS=200000` for a shorter P3;
//! the default is the 1,000,000 events over 100,000 aggregates; `BENCH_ONLY=P1,P3` runs
//! only those workloads, to profile one).

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use es_core::{
    AppendOptions, AsOf, Command, Event, EventStore, Metadata, NewEvent, Rejection, Transactional,
};
use es_diesel::relay::{Relay, RelayOptions};
use es_diesel::{
    AggregateTable, Database, DieselStore, Dispatch, JobContext, ReactorError, Recorded, Start,
    SubscriberOptions, TriggerContext, dispatcher,
};
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::bench::{median, selected};
use es_tests::domain::schema::tasks;
use es_tests::domain::{Created, Project, Task, TitleUpdated, write_task_histories};
use validator::Validate;

const RUNS: usize = 5;
const P1_COMMANDS: usize = 1_000;
const P1_AGGREGATES: i64 = 100;
const P2_COMMANDS: usize = 50;
const P4_EVENTS: usize = 10_000;
const P6_THREADS: usize = 8;
const P6_COMMANDS_PER_THREAD: usize = 150;

/// Runs in the write transaction of every retitling, doing nothing: the cost of a trigger.
fn bench_trigger<C: Database>(
    _: &mut TriggerContext<'_, C>,
    _: Recorded<'_, TitleUpdated>,
) -> Result<(), ReactorError> {
    Ok(())
}

/// Queued with every retitling (the workers of `--bench jobs` run such jobs).
fn bench_job<C: Database>(
    _: &mut JobContext<'_, C>,
    _: Recorded<'_, TitleUpdated>,
) -> Result<(), ReactorError> {
    Ok(())
}

dispatcher! {
    /// One trigger and one async job per retitling.
    struct BenchDispatcher;
    TitleUpdated => trigger: [bench_trigger], async: [bench_job];
}

/// Retitles a task `events` times in one command.
#[derive(Validate)]
struct Retitle {
    task: i64,
    title: String,
    events: usize,
}

impl Command for Retitle {
    type Aggregate = Task;

    fn aggregate_id(&self) -> i64 {
        self.task
    }

    fn decide(&self, current: Option<&Task>) -> Result<Vec<NewEvent<Task>>, Rejection> {
        let task = current.ok_or(Rejection::NotFound)?;
        Ok((0..self.events)
            .map(|n| {
                let title = format!("{}{n}", self.title);
                debug_assert_ne!(title, task.title);
                TitleUpdated { title }.into()
            })
            .collect())
    }
}

fn options() -> AppendOptions {
    AppendOptions::with_metadata(Metadata::by_actor("bench").with_request_id("req-1"))
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1_000.0
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        });
    kib.unwrap_or(f64::NAN) / 1024.0
}

#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = BigInt)]
    aggregate_id: i64,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Text, column_name = "type")]
    event_type: String,
    #[diesel(sql_type = Text)]
    data: String,
}

/// Decodes a row's data the way a hand-written app would: serde, by type.
fn decode(row: &EventRow) -> usize {
    let decoded = if row.event_type == TitleUpdated::TAG {
        serde_json::from_str::<TitleUpdated>(&row.data).map(|event| event.title.len())
    } else {
        serde_json::from_str::<Created>(&row.data).map(|event| event.title.len())
    };
    decoded.expect("stored data decodes") + (row.version + row.aggregate_id) as usize % 2
}

/// The hand-written baselines, per connection type.
trait Baseline: Database {
    /// P1 by hand: lock the row, insert the event (next version), update the row, insert the job.
    fn retitle_by_hand(&mut self, id: i64, title: &str) -> QueryResult<()> {
        self.retitle_many_by_hand(id, title, 1)
    }
    /// P2 by hand: lock the row, insert `events` events in one statement, update the row (and,
    /// for one event, insert its job).
    fn retitle_many_by_hand(&mut self, id: i64, title: &str, events: usize) -> QueryResult<()>;
    /// P3/P4 by hand: typed scan of events (all, or one aggregate's) with serde decode.
    fn scan_by_hand(&mut self, aggregate: Option<i64>) -> QueryResult<u64>;
}

/// `count` rows of `per_row` placeholders: `(?, ?), (?, ?)`, or numbered from `first` (`$4`).
fn placeholders(count: usize, per_row: usize, first: Option<usize>, casts: &[&str]) -> String {
    let rows: Vec<String> = (0..count)
        .map(|row| {
            let values: Vec<String> = (0..per_row)
                .map(|k| match first {
                    Some(first) => format!("${}{}", first + row * per_row + k, casts[k]),
                    None => "?".to_owned(),
                })
                .collect();
            format!("({})", values.join(", "))
        })
        .collect();
    rows.join(", ")
}

impl Baseline for SqliteConnection {
    fn retitle_many_by_hand(&mut self, id: i64, title: &str, events: usize) -> QueryResult<()> {
        let created_at = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let metadata = Metadata::by_actor("bench")
            .to_json()
            .expect("metadata encodes");
        self.immediate_transaction(|conn| {
            let task: Task = tasks::table.find(id).select(Task::as_select()).first(conn)?;
            let last: Position = diesel::sql_query(
                "SELECT COALESCE(MAX(version), 0) AS value FROM task_events WHERE aggregate_id = ?",
            )
            .bind::<BigInt, _>(id)
            .get_result(conn)?;
            let position: Position = diesel::sql_query(
                "UPDATE es_positions SET position = position + ? WHERE name = 'events' \
                 RETURNING position AS value",
            )
            .bind::<BigInt, _>(events as i64)
            .get_result(conn)?;
            let first = position.value - events as i64 + 1;
            let mut insert = diesel::sql_query(format!(
                "INSERT INTO task_events (id, version, data, aggregate_id, type, metadata, \
                 created_at) SELECT column1, column2, column3, {id}, 'task.title_updated', ?, ? \
                 FROM (VALUES {})",
                placeholders(events, 3, None, &[])
            ))
            .into_boxed::<diesel::sqlite::Sqlite>()
            .bind::<Text, _>(metadata.clone())
            .bind::<Text, _>(created_at.clone());
            for n in 0..events {
                let data = serde_json::to_string(&TitleUpdated {
                    title: format!("{title}{n}"),
                })
                .expect("data encodes");
                insert = insert
                    .bind::<BigInt, _>(first + n as i64)
                    .bind::<BigInt, _>(last.value + 1 + n as i64)
                    .bind::<Text, _>(data);
            }
            insert.execute(conn)?;
            diesel::update(tasks::table.find(task.id))
                .set(tasks::title.eq(format!("{title}{}", events - 1)))
                .execute(conn)?;
            if events == 1 {
                diesel::sql_query(
                    "INSERT INTO es_jobs (events_table, event_id, reactor, state, attempts, \
                     run_at, created_at) VALUES ('task_events', ?, 'bench_job', 'pending', 0, ?, ?)",
                )
                .bind::<BigInt, _>(first)
                .bind::<Text, _>(created_at.clone())
                .bind::<Text, _>(created_at)
                .execute(conn)?;
            }
            Ok(())
        })
    }

    fn scan_by_hand(&mut self, aggregate: Option<i64>) -> QueryResult<u64> {
        scan(self, aggregate, "?")
    }
}

fn scan<C>(conn: &mut C, aggregate: Option<i64>, placeholder: &str) -> QueryResult<u64>
where
    C: diesel::connection::LoadConnection,
    C::Backend: diesel::backend::Backend + diesel::sql_types::HasSqlType<BigInt> + 'static,
    i64: diesel::serialize::ToSql<BigInt, C::Backend>,
    EventRow: QueryableByName<C::Backend>,
    diesel::query_builder::BoxedSqlQuery<'static, C::Backend, diesel::query_builder::SqlQuery>:
        diesel::query_builder::QueryFragment<C::Backend> + diesel::query_builder::QueryId,
{
    let filter = if aggregate.is_some() {
        format!("WHERE aggregate_id = {placeholder} ")
    } else {
        String::new()
    };
    let mut query = diesel::sql_query(format!(
        "SELECT aggregate_id, version, type, CAST(data AS TEXT) AS data FROM task_events {filter}\
         ORDER BY aggregate_id, version"
    ))
    .into_boxed::<C::Backend>();
    if let Some(id) = aggregate {
        query = query.bind::<BigInt, _>(id);
    }
    let mut rows = 0;
    let mut checksum = 0;
    for row in query.load_iter::<EventRow, diesel::connection::DefaultLoadingMode>(conn)? {
        checksum += decode(&row?);
        rows += 1;
    }
    std::hint::black_box(checksum);
    Ok(rows)
}

impl Baseline for diesel::PgConnection {
    fn retitle_many_by_hand(&mut self, id: i64, title: &str, events: usize) -> QueryResult<()> {
        let created_at = Utc::now();
        let metadata = Metadata::by_actor("bench")
            .to_json()
            .expect("metadata encodes");
        self.transaction(|conn| {
            let task: Task = tasks::table
                .find(id)
                .select(Task::as_select())
                .for_update()
                .first(conn)?;
            let mut insert = diesel::sql_query(format!(
                "INSERT INTO task_events (version, data, aggregate_id, type, metadata, created_at) \
                 SELECT v.k + l.version, v.data::jsonb, $1, 'task.title_updated', $2::jsonb, $3 \
                 FROM (VALUES {}) AS v (k, data), (SELECT COALESCE(MAX(version), 0) AS version \
                 FROM task_events WHERE aggregate_id = $1) AS l ORDER BY v.k RETURNING id AS value",
                placeholders(events, 2, Some(4), &["::bigint", "::text"])
            ))
            .into_boxed::<diesel::pg::Pg>()
            .bind::<BigInt, _>(id)
            .bind::<Text, _>(metadata.clone())
            .bind::<Timestamptz, _>(created_at);
            for n in 0..events {
                let data = serde_json::to_string(&TitleUpdated {
                    title: format!("{title}{n}"),
                })
                .expect("data encodes");
                insert = insert.bind::<BigInt, _>(1 + n as i64).bind::<Text, _>(data);
            }
            let positions: Vec<Position> = insert.load(conn)?;
            diesel::update(tasks::table.find(task.id))
                .set(tasks::title.eq(format!("{title}{}", events - 1)))
                .execute(conn)?;
            if events == 1 {
                diesel::sql_query(
                    "INSERT INTO es_jobs (events_table, event_id, reactor, state, attempts, \
                     run_at, created_at) VALUES ('task_events', $1, 'bench_job', 'pending', 0, \
                     $2, $2)",
                )
                .bind::<BigInt, _>(positions[0].value)
                .bind::<Timestamptz, _>(created_at)
                .execute(conn)?;
            }
            Ok(())
        })
    }

    fn scan_by_hand(&mut self, aggregate: Option<i64>) -> QueryResult<u64> {
        scan(self, aggregate, "$1")
    }
}

/// A rate per second of `work`, which does `count` things: the median of [`RUNS`] runs after a
/// warm-up run.
fn rate(count: usize, mut work: impl FnMut(usize)) -> f64 {
    work(0);
    median(
        (1..=RUNS)
            .map(|run| {
                let start = Instant::now();
                work(run);
                count as f64 / start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn line(id: &str, what: &str, ours: f64, baseline: f64, unit: &str) {
    println!(
        "  {id:<3} {what:<44} ours {ours:>9.0} {unit:<9} by hand {baseline:>9.0}   ratio {:.2}",
        ours / baseline
    );
}

fn create_tasks<C: Baseline>(conn: &mut C, ids: std::ops::Range<i64>)
where
    Task: AggregateTable<C>,
{
    let mut store = DieselStore::new(conn);
    store
        .transaction(|store| {
            for id in ids {
                store.append(&id, Created { title: "t".into() }, &options())?;
            }
            Ok::<_, es_core::Error>(())
        })
        .expect("create tasks");
}

fn p1<C: Baseline>(conn: &mut C)
where
    Task: AggregateTable<C>,
    BenchDispatcher: Dispatch<C>,
{
    create_tasks(conn, 1..P1_AGGREGATES + 1);
    let mut ours = Vec::new();
    let mut by_hand = Vec::new();
    for run in 0..=RUNS {
        ours.push(p1_ours(conn, &format!("ours-{run}")));
        let start = Instant::now();
        for n in 0..P1_COMMANDS {
            let id = n as i64 % P1_AGGREGATES + 1;
            conn.retitle_by_hand(id, &format!("hand-{run}-{n}-"))
                .expect("P1 by hand");
        }
        by_hand.push(P1_COMMANDS as f64 / start.elapsed().as_secs_f64());
    }
    let (ours, by_hand) = (median(ours[1..].to_vec()), median(by_hand[1..].to_vec()));
    line(
        "P1",
        "command: 1 event, 1 trigger, 1 job",
        ours,
        by_hand,
        "cmds/s",
    );
}

/// One run of P1's commands, titled `run`: commands/s.
fn p1_ours<C: Baseline>(conn: &mut C, run: &str) -> f64
where
    Task: AggregateTable<C>,
    BenchDispatcher: Dispatch<C>,
{
    let start = Instant::now();
    let mut store = DieselStore::new(&mut *conn).with_dispatcher(&BenchDispatcher);
    for n in 0..P1_COMMANDS {
        let command = Retitle {
            task: n as i64 % P1_AGGREGATES + 1,
            title: format!("{run}-{n}-"),
            events: 1,
        };
        store.execute(&command, &options()).expect("P1 command");
    }
    P1_COMMANDS as f64 / start.elapsed().as_secs_f64()
}

/// P1's commands with and without a relay publishing the tasks' events to NATS (`NATS_URL`),
/// run after run alternately: the relay's cost on the write path (its reads of the feed and its
/// checkpoint's writes beside the commands). Skipped without `NATS_URL`.
fn p1_with_relay<C: Baseline>(conn: &mut C, connect: &(dyn Fn() -> C + Sync))
where
    Task: AggregateTable<C>,
    BenchDispatcher: Dispatch<C>,
{
    let Some(url) = es_tests::nats::nats_url() else {
        println!("  P1+relay SKIPPED (set NATS_URL to a NATS server with JetStream)");
        return;
    };
    let stream = es_tests::nats::TestStream::new(&url, "bench_p1_relay");
    let options = RelayOptions::new(stream.url(), stream.name())
        .tables(&["task_events"])
        .subscriber(SubscriberOptions::default().start(Start::End));
    let relay = Relay::new(options).expect("a relay");
    let mut without = Vec::new();
    let mut with = Vec::new();
    for run in 0..=RUNS {
        without.push(p1_ours(conn, &format!("alone-{run}")));
        let stop = AtomicBool::new(false);
        thread::scope(|scope| {
            let relaying = scope.spawn(|| {
                relay
                    .run(|| Ok::<_, std::convert::Infallible>(connect()), &stop)
                    .expect("the relay runs")
            });
            with.push(p1_ours(conn, &format!("relayed-{run}")));
            stop.store(true, Ordering::Relaxed);
            relaying.join().expect("the relay");
        });
    }
    let (with, without) = (median(with[1..].to_vec()), median(without[1..].to_vec()));
    println!(
        "  P1+relay  P1's commands while a relay publishes  {with:>9.0} cmds/s   without {without:>9.0} \
         cmds/s   ratio {:.2}   ({} events published)",
        with / without,
        relay.stats().published
    );
}

fn p2<C: Baseline>(conn: &mut C)
where
    Task: AggregateTable<C>,
{
    let id = 1_000_000;
    create_tasks(conn, id..id + 1);
    let mut store = DieselStore::new(&mut *conn);
    let ours = rate(P2_COMMANDS * 100, |run| {
        for n in 0..P2_COMMANDS {
            let title = format!("p2-{run}-{n}-");
            let command = Retitle {
                task: id,
                title,
                events: 100,
            };
            store.execute(&command, &options()).expect("P2 command");
        }
    });
    let by_hand = rate(P2_COMMANDS * 100, |run| {
        for n in 0..P2_COMMANDS {
            conn.retitle_many_by_hand(id, &format!("hand-{run}-{n}-"), 100)
                .expect("P2 by hand");
        }
    });
    line("P2", "command: 100 events", ours, by_hand, "events/s");
}

fn p3<C: Baseline>(conn: &mut C, events: usize)
where
    Task: AggregateTable<C>,
{
    conn.batch_execute("DELETE FROM task_events; DELETE FROM tasks")
        .expect("empty the tables");
    let mut store = DieselStore::new(&mut *conn);
    write_task_histories(&mut store, (events / 10) as i64).expect("P3 history");
    let before = peak_rss_mib();
    let ours = rate(events, |_| {
        let done = EventStore::<Task>::replay_all(&mut store, &mut |_| {}).expect("replay");
        assert_eq!(done.events as usize, events);
    });
    let after = peak_rss_mib();
    let by_hand = rate(events, |_| {
        assert_eq!(conn.scan_by_hand(None).expect("scan") as usize, events);
    });
    line(
        "P3",
        &format!("replay {events} events, written back"),
        ours,
        by_hand,
        "events/s",
    );
    println!("      peak RSS {before:.0} MiB before the replays, {after:.0} MiB after");
}

fn p4<C: Baseline>(conn: &mut C)
where
    Task: AggregateTable<C>,
{
    let id = 2_000_000;
    let mut store = DieselStore::new(&mut *conn);
    store
        .append(
            &id,
            Created {
                title: "long".into(),
            },
            &options(),
        )
        .expect("create");
    for chunk in 0..(P4_EVENTS - 1) / 999 + 1 {
        let events: Vec<NewEvent<Task>> = (0..999.min(P4_EVENTS - 1 - chunk * 999))
            .map(|n| {
                TitleUpdated {
                    title: format!("v{chunk}-{n}"),
                }
                .into()
            })
            .collect();
        if !events.is_empty() {
            store.append(&id, events, &options()).expect("P4 history");
        }
    }
    let ours = rate(P4_EVENTS, |_| {
        let task: Option<Task> = store
            .state_as_of(&id, AsOf::Version(P4_EVENTS as i64))
            .expect("time travel");
        assert!(task.is_some());
    });
    let by_hand = rate(P4_EVENTS, |_| {
        assert_eq!(
            conn.scan_by_hand(Some(id)).expect("load") as usize,
            P4_EVENTS
        );
    });
    line(
        "P4",
        "time travel, 10,000 events",
        ours,
        by_hand,
        "events/s",
    );
}

fn p6<C: Baseline>(connect: &(dyn Fn() -> C + Sync))
where
    Task: AggregateTable<C>,
{
    let mut conn = connect();
    create_tasks(&mut conn, 3_000_000..3_001_000);
    for (label, spread) in [("1 hot aggregate", 1), ("1,000 aggregates", 1_000)] {
        let start = Instant::now();
        let mut latencies: Vec<Duration> = thread::scope(|scope| {
            let handles: Vec<_> = (0..P6_THREADS)
                .map(|thread| {
                    scope.spawn(move || {
                        let mut conn = connect();
                        let mut store = DieselStore::new(&mut conn);
                        (0..P6_COMMANDS_PER_THREAD)
                            .map(|n| {
                                let id = 3_000_000 + ((thread * 7919 + n) % spread) as i64;
                                let title = format!("p6-{thread}-{n}-");
                                let command = Retitle {
                                    task: id,
                                    title,
                                    events: 1,
                                };
                                let sent = Instant::now();
                                store.execute(&command, &options()).expect("P6 command");
                                sent.elapsed()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().expect("thread"))
                .collect()
        });
        let throughput = latencies.len() as f64 / start.elapsed().as_secs_f64();
        latencies.sort();
        println!(
            "  P6  8 threads, {label:<33} {throughput:>9.0} cmds/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
}

fn report<C: Baseline>(label: &str, connect: &(dyn Fn() -> C + Sync), replay_events: usize)
where
    Task: AggregateTable<C>,
    Project: AggregateTable<C>,
    BenchDispatcher: Dispatch<C>,
{
    println!("{label}");
    let mut conn = connect();
    if selected("P1") {
        p1(&mut conn);
        p1_with_relay(&mut conn, connect);
    }
    if selected("P2") {
        p2(&mut conn);
    }
    if selected("P4") {
        p4(&mut conn);
    }
    if selected("P6") {
        p6(connect);
    }
    if selected("P3") {
        p3(&mut conn, replay_events);
    }
}

fn main() {
    let replay_events = std::env::var("BENCH_REPLAY_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    let sqlite = SqliteDb::new();
    report(
        "sqlite (file, WAL, synchronous=NORMAL)",
        &|| sqlite.connect(),
        replay_events,
    );
    match es_tests::backend::postgres_url() {
        Some(url) => {
            for (label, commit) in [("on", "on"), ("off", "off")] {
                let db = es_tests::backend::PgDb::new(&url, &format!("bench_commit_{label}"));
                let connect = || {
                    let mut conn = db.connect();
                    conn.batch_execute(&format!("SET synchronous_commit TO {commit}"))
                        .expect("set synchronous_commit");
                    conn
                };
                report(
                    &format!("postgres (TCP, synchronous_commit {label})"),
                    &connect,
                    replay_events,
                );
            }
        }
        None => println!("postgres: SKIPPED (set PG_DATABASE_URL to a PostgreSQL database)"),
    }
}
