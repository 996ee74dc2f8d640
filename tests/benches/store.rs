//! Throughput of the diesel store: single-event appends per second (one transaction each: lock,
//! apply, insert, save) and replay events per second, on SQLite (file, WAL) and on PostgreSQL when
//! `PG_DATABASE_URL` is set. Medians of 3 runs after a warm-up.
//!
//! `cargo bench -p es-tests --bench store`

use std::time::Instant;

use es_core::{AppendOptions, EventStore, Metadata, NewEvent};
use es_diesel::{AggregateTable, DieselStore};
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::domain::{Created, Project, Task, TitleUpdated};

const AGGREGATES: i64 = 100;
const APPENDS: usize = 2_000;
const REPLAY_AGGREGATES: i64 = 20_000;
const REPLAY_EVENTS_PER_AGGREGATE: usize = 10;

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn options() -> AppendOptions {
    AppendOptions::with_metadata(Metadata::by_actor("bench").with_request_id("req-1"))
}

fn appends_per_second<D: TestDb>(db: &D) -> f64
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    for id in 1..=AGGREGATES {
        store
            .append(
                &id,
                Created {
                    title: "bench".into(),
                },
                &options(),
            )
            .unwrap();
    }
    let run = |store: &mut DieselStore<'_, D::Conn>, count: usize| {
        let start = Instant::now();
        for index in 0..count {
            let id = (index as i64 % AGGREGATES) + 1;
            store
                .append(
                    &id,
                    TitleUpdated {
                        title: format!("t{index}"),
                    },
                    &options(),
                )
                .unwrap();
        }
        count as f64 / start.elapsed().as_secs_f64()
    };
    run(&mut store, APPENDS / 4);
    median((0..3).map(|_| run(&mut store, APPENDS)).collect())
}

fn replay_events_per_second<D: TestDb>(db: &D) -> f64
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    for id in 1_000_000..1_000_000 + REPLAY_AGGREGATES {
        let mut events: Vec<NewEvent<Task>> = vec![Created { title: "r".into() }.into()];
        events.extend((1..REPLAY_EVENTS_PER_AGGREGATE).map(|n| {
            TitleUpdated {
                title: format!("r{n}"),
            }
            .into()
        }));
        store.append(&id, events, &options()).unwrap();
    }
    let mut run = || {
        let start = Instant::now();
        let done = EventStore::<Task>::replay_all(&mut store, &mut |_| {}).unwrap();
        done.events as f64 / start.elapsed().as_secs_f64()
    };
    run();
    median((0..3).map(|_| run()).collect())
}

fn report<D: TestDb>(db: &D, label: &str)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    let appends = appends_per_second(db);
    let replay = replay_events_per_second(db);
    println!("{label:<32} appends/s {appends:>9.0}   replay events/s {replay:>9.0}");
}

fn main() {
    report(&SqliteDb::new(), "sqlite (file, WAL, NORMAL)");
    match es_tests::backend::postgres_url() {
        Some(url) => report(
            &es_tests::backend::PgDb::new(&url, "bench"),
            "postgres (sync commit on)",
        ),
        None => println!("postgres: SKIPPED (set PG_DATABASE_URL)"),
    }
}
