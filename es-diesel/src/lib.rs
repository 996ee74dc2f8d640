//! The diesel backend of [`es_core`]: aggregates stay ordinary diesel models in ordinary tables,
//! each aggregate gets its own events table (`task_events`), and every write is one transaction
//! that locks the aggregate's row, applies the events, saves the row and inserts the events.
//!
//! | feature | backend | needs |
//! |---|---|---|
//! | `sqlite` (default) | SQLite 3.35+, compiled in | nothing |
//! | `postgres` | PostgreSQL 12+ | libpq |
//! | `mysql` | MySQL 8 / MariaDB 10.6+ | libmysqlclient or libmariadb (`libmariadb-dev`) |
//! | `r2d2` | connection pools | — |
//!
//! # An aggregate
//!
//! Derive `Aggregate` next to diesel's derives and name the table; the derive generates the five
//! queries of [`AggregateTable`] for every backend feature enabled here.
//!
//! ```
//! use es_core::{Aggregate, AppendOptions, Apply, AsOf, Event, EventContext, EventStore};
//! use es_diesel::DieselStore;
//! use diesel::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! mod schema {
//!     diesel::table! {
//!         tasks (id) {
//!             id -> BigInt,
//!             title -> Text,
//!             completed -> Bool,
//!         }
//!     }
//! }
//!
//! #[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]
//! #[aggregate(table = schema::tasks)]
//! #[diesel(table_name = schema::tasks)]
//! pub struct Task {
//!     pub id: i64,
//!     pub title: String,
//!     pub completed: bool,
//! }
//!
//! /// A task was created.
//! #[derive(Event, Serialize, Deserialize)]
//! #[aggregate(Task)]
//! #[event(creates)]
//! pub struct Created {
//!     #[data_attributes]
//!     pub title: String,
//! }
//!
//! impl Apply<Task> for Created {
//!     fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
//!         task.title = self.title.clone();
//!     }
//! }
//!
//! let mut conn = es_diesel::sqlite::establish(":memory:")?;
//! diesel::sql_query("CREATE TABLE tasks (id BIGINT PRIMARY KEY NOT NULL, title TEXT NOT NULL, \
//!                    completed BOOLEAN NOT NULL)").execute(&mut conn)?;
//! es_diesel::create_tables::<_, Task>(&mut conn)?;
//!
//! let mut store = DieselStore::new(&mut conn);
//! store.append(&1, Created { title: "Slides".into() }, &AppendOptions::default())?;
//!
//! // Reading is plain diesel: nothing about events leaks into reads.
//! let task: Task = schema::tasks::table.find(1).select(Task::as_select()).first(&mut conn)?;
//! assert_eq!(task.title, "Slides");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Tables
//!
//! Each events table has `id` (the primary key, a global position shared by all events tables so
//! that events of several aggregates replay in the order they were written), `aggregate_id`,
//! `version` (contiguous per aggregate, `UNIQUE (aggregate_id, version)`), `type`, `data`,
//! `metadata` (JSONB on PostgreSQL, JSON on MySQL, TEXT on SQLite) and `created_at` (UTC,
//! microseconds), indexed by `(type, created_at)` and `created_at`. [`create_tables`] creates it;
//! [`migration_sql`] prints it for a diesel migration.
//!
//! # Writes
//!
//! [`DieselStore::append`](es_core::EventStore::append) is one transaction: lock the aggregate's
//! row (`SELECT ... FOR UPDATE`; SQLite's `BEGIN IMMEDIATE`), read its version, apply the events,
//! insert them (one multi-row `INSERT`), save or delete the row. Any error rolls all of it back.
//! An expected version gives optimistic concurrency; the unique `(aggregate_id, version)` is the
//! last guard, reported as [`es_core::Error::Conflict`].
//!
//! # Replay
//!
//! [`replay_all`](es_core::EventStore::replay_all) walks the aggregate ids of the events table in
//! batches (keyset pagination, constant memory); each batch is one transaction that locks the rows
//! it rewrites, reads their events, rebuilds them from `Aggregate::new`, and writes them back with
//! one upsert and one delete. It restores deleted rows, deletes destroyed ones, and never runs
//! reactors.

mod database;
mod dispatch;
mod id;
mod jobs;
mod projection;
mod schema;
mod store;
mod table;
mod text_uuid;

#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use database::Database;
pub use dispatch::{
    AnyEvent, Dispatch, MAX_CASCADE, NoReactors, Pattern, ReactorError, Recorded, Route,
    TriggerContext,
};
/// Routes events to reactors; see the [dispatch module documentation](crate#reactors).
pub use es_derive::dispatcher;
pub use id::IdColumn;
pub use jobs::{
    ClaimedJob, DeadJob, JobContext, JobCounts, Worker, WorkerOptions, WorkerStats, dead_jobs,
    job_counts, retry_dead_jobs,
};
pub use projection::{PROJECTION_BATCH, rebuild_projection};
pub use schema::{create_tables, ddl, migration_sql};
pub use store::{DEFAULT_REPLAY_BATCH, DieselStore};
pub use table::AggregateTable;
pub use text_uuid::TextUuid;

#[doc(hidden)]
pub mod __private {
    pub use crate::dispatch::{Dispatched, run_projection, typed_from_any};
    pub use diesel;
    pub use es_core;

    #[cfg(feature = "sqlite")]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __with_sqlite {
        ($($tokens:tt)*) => { $($tokens)* };
    }
    #[cfg(not(feature = "sqlite"))]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __with_sqlite {
        ($($tokens:tt)*) => {};
    }

    #[cfg(feature = "postgres")]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __with_postgres {
        ($($tokens:tt)*) => { $($tokens)* };
    }
    #[cfg(not(feature = "postgres"))]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __with_postgres {
        ($($tokens:tt)*) => {};
    }

    #[cfg(feature = "mysql")]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __with_mysql {
        ($($tokens:tt)*) => { $($tokens)* };
    }
    #[cfg(not(feature = "mysql"))]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __with_mysql {
        ($($tokens:tt)*) => {};
    }
}
