//! esrs 0.18 (`postgres` feature): the same task, as its README writes an aggregate, through its
//! `AggregateManager` (`load`, then `handle_command`) and `PgStore`.

use std::collections::HashMap;
use std::ops::Range;

use esrs::manager::AggregateManager;
use esrs::store::postgres::{PgStore, PgStoreBuilder};
use esrs::{Aggregate, AggregateState};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// The aggregate: its events table is `esrs_task_events` (esrs names it `{NAME}_events`).
pub(crate) struct EsrsTask;

/// A task: its title.
#[derive(Debug, Default)]
pub(crate) struct EsrsTaskState {
    title: String,
}

/// The task's events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum EsrsTaskEvent {
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

/// The task's command.
#[derive(Debug)]
pub(crate) enum EsrsTaskCommand {
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

impl Aggregate for EsrsTask {
    const NAME: &'static str = "esrs_task";
    type State = EsrsTaskState;
    type Command = EsrsTaskCommand;
    type Event = EsrsTaskEvent;
    type Error = TaskError;

    fn handle_command(
        state: &Self::State,
        command: Self::Command,
    ) -> Result<Vec<Self::Event>, Self::Error> {
        let EsrsTaskCommand::Retitle { title } = command;
        if state.title.is_empty() {
            return Err(TaskError("no such task"));
        }
        Ok(vec![EsrsTaskEvent::TitleUpdated { title }])
    }

    fn apply_event(mut state: Self::State, payload: Self::Event) -> Self::State {
        match payload {
            EsrsTaskEvent::Created { title } | EsrsTaskEvent::TitleUpdated { title } => {
                state.title = title;
            }
        }
        state
    }
}

/// esrs's aggregate ids are UUIDs: ours, as the low bits.
fn uuid(id: i64) -> Uuid {
    Uuid::from_u128(id as u128)
}

/// esrs on one pool.
pub(crate) struct Esrs {
    pool: PgPool,
    store: PgStore<EsrsTask>,
    manager: AggregateManager<PgStore<EsrsTask>>,
}

impl Esrs {
    /// The store on `pool` (whose connections are in the benchmark's schema); the first one
    /// built on a schema runs esrs's migrations, which create its table.
    pub(crate) async fn new(pool: &PgPool, migrate: bool) -> Self {
        let mut builder = PgStoreBuilder::<EsrsTask>::new(pool.clone());
        if !migrate {
            builder = builder.without_running_migrations();
        }
        let store = builder.try_build().await.expect("build the esrs store");
        Self {
            pool: pool.clone(),
            manager: AggregateManager::new(store.clone()),
            store,
        }
    }

    /// Creates aggregates `ids`, each with `events` events, in the rows esrs writes (payload
    /// `{"Created":{"title":"t"}}`, then `{"TitleUpdated":{"title":"v1"}}`, ..., sequence numbers
    /// from 1, `occurred_on` increasing), in one statement; [`Esrs::title`] checks that they load.
    pub(crate) async fn seed(&self, ids: Range<i64>, events: usize) {
        sqlx::query(
            "INSERT INTO esrs_task_events (id, aggregate_id, payload, occurred_on, \
             sequence_number, version) \
             SELECT gen_random_uuid(), lpad(to_hex(a), 32, '0')::uuid, CASE WHEN s = 1 THEN \
             jsonb_build_object('Created', jsonb_build_object('title', 't')) ELSE \
             jsonb_build_object('TitleUpdated', jsonb_build_object('title', 'v' || (s - 1))) END, \
             now() + ((a - $1) * $3 + s) * interval '1 microsecond', s, NULL \
             FROM generate_series($1::bigint, $2::bigint) AS a, \
             generate_series(1, $3::int) AS s",
        )
        .bind(ids.start)
        .bind(ids.end - 1)
        .bind(events as i32)
        .execute(&self.pool)
        .await
        .expect("seed the esrs events");
    }

    /// P1b: loads aggregate `id` (`AggregateManager::load`: all its events, applied), then
    /// handles one command on it (one event, persisted in a transaction).
    pub(crate) async fn retitle(&self, id: i64, title: &str) {
        let state: AggregateState<EsrsTaskState> = self
            .manager
            .load(uuid(id))
            .await
            .expect("esrs load")
            .expect("esrs task exists");
        self.manager
            .handle_command(
                state,
                EsrsTaskCommand::Retitle {
                    title: title.to_owned(),
                },
            )
            .await
            .expect("esrs store")
            .expect("esrs command");
    }

    /// P4 and checks: loads aggregate `id` (all its events, applied); returns its title.
    pub(crate) async fn title(&self, id: i64) -> String {
        let state = self
            .manager
            .load(uuid(id))
            .await
            .expect("esrs load")
            .expect("esrs task exists");
        state.into_inner().title
    }

    /// P3: `PgStore::stream_events` (every event, read and decoded), each applied to its
    /// aggregate's state. Returns the events and the aggregates.
    pub(crate) async fn stream_events(&self) -> (u64, usize) {
        let mut stream = self.store.stream_events(&self.pool);
        let mut states: HashMap<Uuid, EsrsTaskState> = HashMap::new();
        let mut events = 0;
        while let Some(event) = stream.next().await {
            let event = event.expect("esrs event");
            let state = states.entry(event.aggregate_id).or_default();
            *state = EsrsTask::apply_event(std::mem::take(state), event.payload);
            events += 1;
        }
        let aggregates = states
            .values()
            .filter(|state| !state.title.is_empty())
            .count();
        (events, aggregates)
    }
}
