//! Our framework's side: es-diesel on a diesel `PgConnection`, with the test domain's `Task`
//! (the same aggregate, events and command as `tests/benches/workloads.rs`).

use std::collections::HashMap;
use std::ops::Range;

use diesel::PgConnection;
use diesel::connection::SimpleConnection;
use es_core::{
    AppendOptions, AsOf, Command, EventFilter, EventStore, Metadata, NewEvent, Rebuild, Rejection,
    Transactional,
};
use es_diesel::DieselStore;
use es_tests::backend::{PgDb, TestDb};
use es_tests::domain::{Created, Task, TitleUpdated};
use validator::Validate;

/// Retitles a task once: one event on an existing aggregate (P1b).
#[derive(Validate)]
struct Retitle {
    task: i64,
    title: String,
}

impl Command for Retitle {
    type Aggregate = Task;

    fn aggregate_id(&self) -> i64 {
        self.task
    }

    fn decide(&self, current: Option<&Task>) -> Result<Vec<NewEvent<Task>>, Rejection> {
        current.ok_or(Rejection::NotFound)?;
        Ok(vec![
            TitleUpdated {
                title: self.title.clone(),
            }
            .into(),
        ])
    }
}

/// The options of every write: the same metadata as `workloads.rs`.
fn options() -> AppendOptions {
    AppendOptions::with_metadata(Metadata::by_actor("bench").with_request_id("req-1"))
}

/// The history of an aggregate with `events` events: created, then retitled `v1`, `v2`, ...
fn history(events: usize) -> Vec<NewEvent<Task>> {
    let mut history: Vec<NewEvent<Task>> = vec![Created { title: "t".into() }.into()];
    history.extend((1..events).map(|n| {
        TitleUpdated {
            title: format!("v{n}"),
        }
        .into()
    }));
    history
}

/// One connection of ours, in the benchmark's schema.
pub(crate) struct Ours {
    conn: PgConnection,
}

impl Ours {
    /// Connects to `url`, in `schema`, with `synchronous_commit` set to `commit`.
    pub(crate) fn connect(url: &str, schema: &str, commit: &str) -> Self {
        let mut conn = PgDb::open(url, schema).connect();
        conn.batch_execute(&format!("SET synchronous_commit TO {commit}"))
            .expect("set synchronous_commit");
        Self { conn }
    }

    /// Runs `sql` on our connection.
    pub(crate) fn execute(&mut self, sql: &str) {
        self.conn.batch_execute(sql).expect(sql);
    }

    /// Creates aggregates `ids`, each with `events` events, through the framework (no reactor).
    pub(crate) fn seed(&mut self, ids: Range<i64>, events: usize) {
        let mut store = DieselStore::new(&mut self.conn);
        let ids: Vec<i64> = ids.collect();
        let per_transaction = (50_000 / events).max(1);
        for chunk in ids.chunks(per_transaction) {
            store
                .transaction(|store| {
                    for &id in chunk {
                        let mut history = history(events);
                        // One append of at most 999 events (bind parameters), then the rest.
                        while !history.is_empty() {
                            let rest = history.split_off(history.len().min(999));
                            store.append(&id, history, &options())?;
                            history = rest;
                        }
                    }
                    Ok::<_, es_core::Error>(())
                })
                .expect("seed our aggregates");
        }
    }

    /// P1b: one command, one event, on aggregate `id`.
    pub(crate) fn retitle(&mut self, id: i64, title: &str) {
        let command = Retitle {
            task: id,
            title: title.to_owned(),
        };
        DieselStore::new(&mut self.conn)
            .execute(&command, &options())
            .expect("our command");
    }

    /// The title of task `id` as stored now.
    pub(crate) fn title(&mut self, id: i64) -> String {
        let task: Option<Task> = DieselStore::new(&mut self.conn)
            .load(&id)
            .expect("load our task");
        task.expect("our task exists").title
    }

    /// P3: the full replay (every aggregate rebuilt and written back); returns the events.
    pub(crate) fn replay_all(&mut self) -> u64 {
        let mut store = DieselStore::new(&mut self.conn);
        EventStore::<Task>::replay_all(&mut store, &mut |_| {})
            .expect("our replay")
            .events
    }

    /// P3: read, decode and apply every event with the public API, nothing written: one
    /// `EventStore::stream_events` (every event, in global order), each applied to its
    /// aggregate's `Rebuild`. Returns the events and the aggregates.
    pub(crate) fn read_decode_apply(&mut self) -> (u64, usize) {
        let mut store = DieselStore::new(&mut self.conn);
        let mut rebuilds: HashMap<i64, Rebuild<Task>> = HashMap::new();
        let mut events = 0;
        let all = EventFilter::default();
        for record in EventStore::<Task>::stream_events(&mut store, &all).expect("read our events")
        {
            let record = record.expect("read our event");
            rebuilds
                .entry(record.aggregate_id)
                .or_insert_with(|| Rebuild::new(record.aggregate_id).expect("registry"))
                .apply(&record)
                .expect("apply our event");
            events += 1;
        }
        let aggregates = rebuilds
            .into_values()
            .filter(|rebuild| rebuild.state().is_some_and(|task| !task.title.is_empty()))
            .count();
        (events, aggregates)
    }

    /// P4: time travel of task `id` to `version`; returns its title then.
    pub(crate) fn state_as_of(&mut self, id: i64, version: i64) -> String {
        let task: Option<Task> = DieselStore::new(&mut self.conn)
            .state_as_of(&id, AsOf::Version(version))
            .expect("our time travel");
        task.expect("our task existed").title
    }
}
