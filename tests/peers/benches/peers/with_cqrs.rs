//! cqrs-es 0.5 with postgres-es 0.5: the same task, as its documentation writes an aggregate, in
//! the event-store mode of `postgres_es::postgres_cqrs` (every command loads and applies the
//! aggregate's events).

use std::collections::HashMap;
use std::ops::Range;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateContext, CqrsFramework, DomainEvent, EventStore};
use postgres_es::{PostgresCqrs, PostgresEventRepository};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// The events table (postgres-es's `db/init.sql` layout, under another name).
const EVENTS: &str = "cqrs_events";
/// The snapshots table (unused by the event-store mode, created as the crate documents).
const SNAPSHOTS: &str = "cqrs_snapshots";

/// A task: its title.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct CqrsTask {
    title: String,
}

/// The task's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum CqrsTaskEvent {
    /// A task was created.
    Created {
        /// Its title.
        title: String,
    },
    /// A task's title was changed.
    TitleUpdated {
        /// The new title.
        title: String,
    },
}

impl DomainEvent for CqrsTaskEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Created { .. } => "Created".to_owned(),
            Self::TitleUpdated { .. } => "TitleUpdated".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// The task's command.
#[derive(Debug)]
pub(crate) enum CqrsTaskCommand {
    /// Change the title.
    Retitle {
        /// The new title.
        title: String,
    },
}

/// A rejected command.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TaskError(&'static str);

impl Aggregate for CqrsTask {
    const TYPE: &'static str = "task";
    type Command = CqrsTaskCommand;
    type Event = CqrsTaskEvent;
    type Error = TaskError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let CqrsTaskCommand::Retitle { title } = command;
        if self.title.is_empty() {
            return Err(TaskError("no such task"));
        }
        sink.write(CqrsTaskEvent::TitleUpdated { title }, self)
            .await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CqrsTaskEvent::Created { title } | CqrsTaskEvent::TitleUpdated { title } => {
                self.title = title;
            }
        }
    }
}

/// The repository on our tables.
fn repository(pool: &PgPool) -> PostgresEventRepository {
    PostgresEventRepository::new(pool.clone()).with_tables(EVENTS, SNAPSHOTS)
}

/// cqrs-es on one pool.
pub(crate) struct Cqrs {
    pool: PgPool,
    cqrs: PostgresCqrs<CqrsTask>,
    store: PersistedEventStore<PostgresEventRepository, CqrsTask>,
}

impl Cqrs {
    /// The framework on `pool` (whose connections are in the benchmark's schema).
    pub(crate) fn new(pool: &PgPool) -> Self {
        Self {
            pool: pool.clone(),
            cqrs: CqrsFramework::new(
                PersistedEventStore::new_event_store(repository(pool)),
                vec![],
                (),
            ),
            store: PersistedEventStore::new_event_store(repository(pool)),
        }
    }

    /// Creates postgres-es's tables (`db/init.sql`), named [`EVENTS`] and [`SNAPSHOTS`].
    pub(crate) async fn create_tables(pool: &PgPool) {
        for statement in [
            format!(
                "CREATE TABLE {EVENTS} (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
                 sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, \
                 event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL, \
                 PRIMARY KEY (aggregate_type, aggregate_id, sequence))"
            ),
            format!(
                "CREATE TABLE {SNAPSHOTS} (aggregate_type text NOT NULL, aggregate_id text \
                 NOT NULL, last_sequence bigint CHECK (last_sequence >= 0) NOT NULL, \
                 current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, payload json \
                 NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))"
            ),
        ] {
            sqlx::query(&statement)
                .execute(pool)
                .await
                .expect("create the cqrs-es tables");
        }
    }

    /// Creates aggregates `ids`, each with `events` events, in the rows postgres-es writes
    /// (`{"Created":{"title":"t"}}`, then `{"TitleUpdated":{"title":"v1"}}`, ...), in one
    /// statement; [`Cqrs::title`] checks that they load.
    pub(crate) async fn seed(&self, ids: Range<i64>, events: usize) {
        sqlx::query(&format!(
            "INSERT INTO {EVENTS} (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) \
             SELECT 'task', a::text, s, CASE WHEN s = 1 THEN 'Created' ELSE 'TitleUpdated' END, \
             '1.0', CASE WHEN s = 1 THEN json_build_object('Created', json_build_object('title', \
             't')) ELSE json_build_object('TitleUpdated', json_build_object('title', 'v' || \
             (s - 1))) END, '{{}}' \
             FROM generate_series($1::bigint, $2::bigint) AS a, \
             generate_series(1::bigint, $3::bigint) AS s"
        ))
        .bind(ids.start)
        .bind(ids.end - 1)
        .bind(events as i64)
        .execute(&self.pool)
        .await
        .expect("seed the cqrs-es events");
    }

    /// P1b: one command, one event, on aggregate `id`.
    pub(crate) async fn retitle(&self, id: i64, title: &str) {
        self.cqrs
            .execute(
                &id.to_string(),
                CqrsTaskCommand::Retitle {
                    title: title.to_owned(),
                },
            )
            .await
            .expect("cqrs-es command");
    }

    /// P4 and checks: loads aggregate `id` (all its events, applied); returns its title.
    pub(crate) async fn title(&self, id: i64) -> String {
        let mut context = self
            .store
            .load_aggregate(&id.to_string())
            .await
            .expect("cqrs-es load");
        context.aggregate().title.clone()
    }

    /// P3: reads every event of the aggregate type (`stream_all_events`), decodes it and applies
    /// it to its aggregate. Returns the events and the aggregates.
    pub(crate) async fn stream_all(&self) -> (u64, usize) {
        let mut stream = repository(&self.pool)
            .stream_all_events::<CqrsTask>()
            .await
            .expect("cqrs-es stream");
        let mut tasks: HashMap<String, CqrsTask> = HashMap::new();
        let mut events = 0;
        while let Some(envelope) = stream.next::<CqrsTask>(&[]).await {
            let envelope = envelope.expect("cqrs-es event");
            tasks
                .entry(envelope.aggregate_id)
                .or_default()
                .apply(envelope.payload);
            events += 1;
        }
        let aggregates = tasks.values().filter(|task| !task.title.is_empty()).count();
        (events, aggregates)
    }
}
