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
//! | `cli` | the operator command line, module `cli` (clap, indicatif) | — |
//! | `nats` | the NATS JetStream relay and its consumer, module `relay` (async-nats on a tokio runtime of the relay's own; no async runtime without it) | a NATS server with JetStream |
//!
//! # An aggregate
//!
//! Derive `Aggregate` next to diesel's derives and name the table; the derive generates the six
//! queries of [`Stores`] (the connection's side; [`AggregateTable`] is the aggregate's) for the
//! connection type of every backend feature enabled here. Code generic over the backend bounds its
//! connection with one trait of its own that implies `Stores<A>` for its aggregates and
//! [`Dispatches`] for its dispatcher, and runs typed diesel queries of its own with
//! [`with_connection!`]; [`sql_types::UtcTime`] is a time column on every backend.
//!
//! ```
//! use es_core::{Aggregate, AppendOptions, Apply, AsOf, Event, EventContext, EventStore};
//! use es_diesel::DieselStore;
//! use diesel::prelude::*;
//! use schemars::JsonSchema;
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
//! #[derive(Event, Serialize, Deserialize, JsonSchema)]
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
//! [`create_tables`] creates the tables below (every statement `IF NOT EXISTS`); [`ddl`] returns
//! its statements and [`migration_sql`] prints them for a diesel migration. Read them with SQL
//! freely; write them by hand only as described here (importing history, see the README's
//! "Importing history").
//!
//! ## Events tables
//!
//! One per aggregate, named by it (`task_events`):
//!
//! | column | SQLite | PostgreSQL | MySQL | |
//! |---|---|---|---|---|
//! | `id` | `INTEGER PRIMARY KEY` | `BIGINT PRIMARY KEY DEFAULT nextval('es_event_position')` | `BIGINT PRIMARY KEY` | the global position |
//! | `aggregate_id` | the id's type | the id's type | the id's type | the aggregate's id |
//! | `version` | `BIGINT` | `BIGINT` | `BIGINT` | 1, 2, 3, … per aggregate |
//! | `type` | `TEXT` | `TEXT` | `VARCHAR(255)` | the event's tag |
//! | `data` | `TEXT` | `JSONB` | `JSON` | the event, as a JSON object |
//! | `metadata` | `TEXT` | `JSONB` | `JSON` | its metadata, as a JSON object |
//! | `created_at` | `TEXT` | `TIMESTAMPTZ` | `DATETIME(6)` | when it was written, UTC |
//! | `tx_order` | — | `BIGINT DEFAULT pg_current_xact_id()` | — | the order of its writing transaction in the subscription feed (see [Subscriptions](#subscriptions)) |
//!
//! Every column is `NOT NULL`. `aggregate_id`'s type is [`IdColumn::DDL`] of the aggregate's id:
//! `BIGINT` for `i64`, `INTEGER` for `i32`, `TEXT` for `String` (`VARCHAR(255)` on MySQL),
//! `UUID` for `uuid::Uuid` (PostgreSQL), `TEXT` for [`TextUuid`] (`CHAR(36)` on MySQL). `id` is a global
//! position shared by all events tables, so that events of several aggregates replay in the order
//! they were written: it is taken from `es_positions` (SQLite, MySQL: one row, `name = 'events'`,
//! whose `position` is the last id handed out) or from the sequence `es_event_position`
//! (PostgreSQL); a row written by hand takes its id from there. `version` is contiguous per
//! aggregate, unique with it: constraint `{table}_aggregate_version UNIQUE (aggregate_id,
//! version)`. Indexes: `{table}_type_created_at (type, created_at)` (filters),
//! `{table}_created_at (created_at)` (time travel) and, on PostgreSQL, `{table}_feed (tx_order,
//! id)` (the subscription feed); [`create_tables`] adds `tx_order` (0 for the rows already there,
//! all committed) to a PostgreSQL events table created before it. SQLite stores times as RFC 3339 text in UTC
//! with microseconds (`2026-04-20T09:00:00.000000Z`), which sorts as text; it also reads
//! `2026-04-20 09:00:00`, as SQLite's `CURRENT_TIMESTAMP` writes it.
//!
//! ## `es_jobs`
//!
//! One row per async reactor routed for an event, inserted in the event's write transaction:
//!
//! | column | SQLite | PostgreSQL | MySQL | |
//! |---|---|---|---|---|
//! | `id` | `INTEGER PRIMARY KEY AUTOINCREMENT` | `BIGSERIAL PRIMARY KEY` | `BIGINT AUTO_INCREMENT PRIMARY KEY` | the job, in insertion order |
//! | `events_table` | `TEXT` | `TEXT` | `VARCHAR(64)` | the events table of its event |
//! | `event_id` | `BIGINT` | `BIGINT` | `BIGINT` | its event's `id` |
//! | `reactor` | `TEXT` | `TEXT` | `VARCHAR(128)` | the async reactor, as the dispatcher names it |
//! | `state` | `TEXT` | `TEXT` | `VARCHAR(16)` | `pending`, `running`, `done` or `dead` ([`JobState`]) |
//! | `attempts` | `INTEGER DEFAULT 0` | `INTEGER DEFAULT 0` | `INTEGER DEFAULT 0` | claims so far: the attempt running, or the last one |
//! | `run_at` | `TEXT` | `TIMESTAMPTZ` | `DATETIME(6)` | when it is due (its retry's time after a failure) |
//! | `locked_by` | `TEXT` NULL | `TEXT` NULL | `TEXT` NULL | the claiming worker ([`Worker::owner`]) while running |
//! | `locked_until` | `TEXT` NULL | `TIMESTAMPTZ` NULL | `DATETIME(6)` NULL | the claim's lease, while running |
//! | `last_error` | `TEXT` NULL | `TEXT` NULL | `TEXT` NULL | the error of its last failed attempt |
//! | `created_at` | `TEXT` | `TIMESTAMPTZ` | `DATETIME(6)` | when it was inserted |
//! | `finished_at` | `TEXT` NULL | `TIMESTAMPTZ` NULL | `DATETIME(6)` NULL | when it became done or dead |
//!
//! Columns are `NOT NULL` unless marked NULL. A job is unique per event and reactor
//! (`UNIQUE (event_id, reactor)`; named `es_jobs_event_reactor` on MySQL), and the index
//! `es_jobs_ready (state, run_at)` finds the due jobs. Times are UTC, stored as in events tables;
//! a worker compares them with the database's clock on PostgreSQL and MySQL, and with its own on
//! SQLite.
//!
//! The states and their transitions:
//!
//! - **`pending`**: inserted so, `attempts` 0, `run_at` its creation. Due once `run_at` has
//!   passed; only a worker whose dispatcher routes `reactor` claims it.
//! - **`pending` → `running`**: a worker's claim sets `locked_by`, `locked_until` (now + the
//!   lease, extended by the worker's heartbeat) and increments `attempts`. A `running` job whose
//!   `locked_until` has passed is due again: its worker is presumed dead, and the next claim takes
//!   it over (or makes it `dead` if that was its last allowed attempt).
//! - **`running` → `done`**: the reactor returned `Ok`; `finished_at` set, `last_error`, `locked_by`
//!   and `locked_until` cleared. Done jobs are deleted once older than
//!   [`WorkerOptions::keep_done`] ([`prune_jobs`]).
//! - **`running` → `pending`**: the attempt failed (or panicked) and may be retried: `last_error`
//!   set, `run_at` moved to now + the backoff, the lock cleared. A worker stopping gives back the
//!   jobs it claimed but had not started: `pending`, `attempts` decremented.
//! - **`running` → `dead`**: the last allowed attempt ([`WorkerOptions::max_attempts`]) failed;
//!   `last_error` and `finished_at` set. Dead jobs are kept ([`dead_jobs`]).
//! - **`dead` → `pending`**: [`retry_dead_jobs`] — `attempts` 0, `run_at` now, `finished_at`
//!   cleared.
//!
//! [`jobs`] lists the rows with a [`JobFilter`] (state, reactor, pages by id), [`job_counts`] and
//! [`job_counts_by_reactor`] count them by state.
//!
//! ## `es_subscriptions`
//!
//! One row per subscription, its checkpoint, created by its first [`Subscriber`]:
//!
//! | column | SQLite | PostgreSQL | MySQL | |
//! |---|---|---|---|---|
//! | `name` | `TEXT PRIMARY KEY` | `TEXT PRIMARY KEY` | `VARCHAR(191) PRIMARY KEY` | the subscription, as the dispatcher names it |
//! | `tx_order` | `BIGINT DEFAULT 0` | `BIGINT DEFAULT 0` | `BIGINT DEFAULT 0` | its [`Position`]: every event up to it is handled |
//! | `event_id` | `BIGINT DEFAULT 0` | `BIGINT DEFAULT 0` | `BIGINT DEFAULT 0` | (the position's event id) |
//! | `handled` | `BIGINT DEFAULT 0` | `BIGINT DEFAULT 0` | `BIGINT DEFAULT 0` | events handled since its creation or last reset |
//! | `owner` | `TEXT` NULL | `TEXT` NULL | `TEXT` NULL | the subscriber holding it ([`Subscriber::owner`]) |
//! | `lease_until` | `TEXT` NULL | `TIMESTAMPTZ` NULL | `DATETIME(6)` NULL | until when, unless it renews its lease |
//! | `last_error` | `TEXT` NULL | `TEXT` NULL | `TEXT` NULL | the error of its last failed batch, until a batch commits |
//! | `updated_at` | `TEXT` | `TIMESTAMPTZ` | `DATETIME(6)` | when the row last changed |
//!
//! ## `es_held_events`
//!
//! The events a subscriber with [`SubscriberOptions::hold_back`] set aside, one row each, unique
//! per `(subscription, event_id)`: `subscription`, `events_table`, `event_id`, `aggregate_id`
//! (as text), `tx_order` (with `event_id`, its feed position), `last_error` (its handler's, or
//! the earlier event of its aggregate it waits behind) and `held_at` — `TEXT`/`BIGINT` columns,
//! `VARCHAR` on MySQL, the time as in the other tables. [`Subscriber::retry_held`] deletes the
//! rows of the events it handles.
//!
//! # Writes
//!
//! [`DieselStore::append`](es_core::EventStore::append) is one transaction: lock the aggregate's
//! row (`SELECT ... FOR UPDATE`; SQLite's `BEGIN IMMEDIATE`), read its version, apply the events,
//! insert them (one multi-row `INSERT`), save or delete the row. Any error rolls all of it back.
//! An expected version gives optimistic concurrency; the unique `(aggregate_id, version)` is the
//! last guard, reported as [`es_core::Error::Conflict`]. A collision with a concurrent writer in
//! the database (a deadlock, a lock wait timeout, SQLite's busy database) is
//! [`es_core::Error::Contention`]. An id (position) taken already, by a row the store did not
//! write, is an [`es_core::Error::Storage`] of the events table saying how to move the position
//! past it: retrying cannot help.
//!
//! # Replay
//!
//! [`replay_all`](es_core::EventStore::replay_all) walks the aggregate ids of the events table in
//! batches (keyset pagination, constant memory); each batch is one transaction that locks the rows
//! it rewrites, reads their events, rebuilds them from `Aggregate::new`, and writes them back with
//! one upsert and one delete. It restores deleted rows, deletes destroyed ones, and never runs
//! reactors.
//!
//! # Reactors
//!
//! Side effects hang off events, not controllers. [`dispatcher!`] routes one event type
//! (`Completed`), every event of an aggregate (`Task::*`) or every event (`*`) to reactors:
//!
//! - `trigger: [...]` run inside the write transaction, after the events are applied, in the
//!   order listed, with a [`TriggerContext`]: they may read and write through its connection and
//!   create more events ([`TriggerContext::append`]) — all of it commits or rolls back together;
//! - `async: [...]` become rows of `es_jobs` inserted in the same transaction, and a [`Worker`]
//!   runs them after commit with a [`JobContext`], retrying failures with exponential backoff and
//!   jitter until they are done or dead ([`dead_jobs`], [`retry_dead_jobs`]);
//! - `project: [...]` maintain read models: they run in the write transaction like triggers, and
//!   [`rebuild_projection`] re-runs them over the stored events in global order;
//! - `subscribe: [...]` are the handlers of a subscription of their name: a [`Subscriber`] runs
//!   them after commit, reading every event in one total order from a checkpoint of its own
//!   (see [Subscriptions](#subscriptions)).
//!
//! Reactors never run during replay. A reactor is a function (or an associated function,
//! `Type::call`) with one of these signatures, checked at compile time:
//!
//! | route | `trigger` | `async` | `project`, `subscribe` |
//! |---|---|---|---|
//! | `Event` | `fn(&mut TriggerContext<C>, Recorded<Event>)` | `fn(&mut JobContext<C>, Recorded<Event>)` | `fn(&mut C, Recorded<Event>)` |
//! | `Aggregate::*` | `fn(&mut TriggerContext<C>, &RecordedEvent<Id>)` | `fn(&mut JobContext<C>, &RecordedEvent<Id>)` | `fn(&mut C, &RecordedEvent<Id>)` |
//! | `*` | `fn(&mut TriggerContext<C>, &AnyEvent)` | `fn(&mut JobContext<C>, &AnyEvent)` | `fn(&mut C, &AnyEvent)` |
//!
//! each returning `Result<(), ReactorError>`. `C` is the connection type: write reactors generic
//! over `C: Database` (then the dispatcher serves every backend enabled in `es-diesel`), or for
//! your one connection type and name its backend: `pub struct AppDispatcher for postgres;`.
//!
//! A `trigger` or `async` reactor that creates events says which, after `->`:
//! `Pinned => trigger: [unpin_other_posts -> [Unpinned, PinMoved]];`. Each named type must be an
//! [`Event`](es_core::Event) (checked at compile time, at its name); the declaration is carried in
//! the generated `AppDispatcher::ROUTES` ([`Route`]), which the event catalog of `es-core`
//! (`es_core::catalog`) draws as the flows event → reactor → events it may create.
//!
//! ```
//! # use diesel::prelude::*;
//! # use es_core::{Aggregate, AppendOptions, Apply, Event, EventContext, EventStore};
//! # use schemars::JsonSchema;
//! # use serde::{Deserialize, Serialize};
//! # mod schema { diesel::table! { tasks (id) { id -> BigInt, title -> Text } } }
//! # #[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug)]
//! # #[aggregate(table = schema::tasks)]
//! # #[diesel(table_name = schema::tasks)]
//! # pub struct Task { pub id: i64, pub title: String }
//! # /// A task was created.
//! # #[derive(Event, Serialize, Deserialize, JsonSchema)]
//! # #[aggregate(Task)]
//! # #[event(creates)]
//! # pub struct Created { #[data_attributes] pub title: String }
//! # impl Apply<Task> for Created {
//! #     fn apply(&self, task: &mut Task, _: &EventContext<'_>) { task.title = self.title.clone(); }
//! # }
//! use es_diesel::{
//!     Database, DieselStore, JobContext, ReactorError, Recorded, Worker, WorkerOptions, dispatcher,
//! };
//!
//! /// Sends the welcome email (after commit, retried until it works).
//! fn welcome<C: Database>(
//!     job: &mut JobContext<'_, C>,
//!     created: Recorded<'_, Created>,
//! ) -> Result<(), ReactorError> {
//!     // `job.idempotency_key()` is the same on every retry: send it along to deduplicate.
//!     println!("task {} created: {}", created.aggregate_id(), created.title);
//!     Ok(())
//! }
//!
//! dispatcher! {
//!     /// The app's routes.
//!     pub struct AppDispatcher;
//!     Created => async: [welcome];
//! }
//!
//! let mut conn = es_diesel::sqlite::establish(":memory:")?;
//! diesel::sql_query("CREATE TABLE tasks (id BIGINT PRIMARY KEY NOT NULL, title TEXT NOT NULL)")
//!     .execute(&mut conn)?;
//! es_diesel::create_tables::<_, Task>(&mut conn)?;
//!
//! let mut store = DieselStore::new(&mut conn).with_dispatcher(&AppDispatcher);
//! store.append(&1, Created { title: "Slides".into() }, &AppendOptions::default())?;
//!
//! let worker = Worker::new(&AppDispatcher, WorkerOptions::default());
//! assert_eq!(worker.run_once(&mut conn)?.completed, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A worker is usually its own process: [`Worker::run`] runs jobs until a flag is set (on
//! Ctrl-C, say), on connections it opens with a function you give it — one for the jobs, one for
//! its heartbeat, which keeps extending the lease of every job it holds while it lives, so that no
//! two workers ever run a job at once while they live. On PostgreSQL, `LISTEN`/`NOTIFY` wakes an
//! idle worker as soon as a job is committed. Start several, on several machines: claims use
//! `FOR UPDATE SKIP LOCKED`, each takes only the jobs of the reactors its dispatcher routes, and a
//! job whose worker died is claimed again when its lease expires (delivery is at least once;
//! [`JobContext::idempotency_key`] lets a reactor deduplicate). A reactor that panics fails its
//! attempt like an error; after [`WorkerOptions::max_attempts`] a job is dead. Metadata
//! propagates: events created by a reactor get the triggering event as causation id and its
//! correlation id.
//!
//! ```no_run
//! # use std::sync::atomic::AtomicBool;
//! # use diesel::prelude::*;
//! # use es_diesel::{Worker, WorkerOptions};
//! # es_diesel::dispatcher! { struct AppDispatcher; }
//! let stop = AtomicBool::new(false); // set it from a Ctrl-C handler
//! let worker = Worker::new(&AppDispatcher, WorkerOptions::default());
//! let stats = worker.run(|| es_diesel::sqlite::establish("app.db"), &stop)?;
//! println!("{} jobs done", stats.completed);
//! # Ok::<(), es_core::Error>(())
//! ```
//!
//! # Subscriptions
//!
//! A subscription is a named, durable reader of events: its handlers (`subscribe: [name]`, on
//! any routes) see every event those routes match, after commit, in one total order — the
//! *feed* — each at least once, from a checkpoint of its own (a row of `es_subscriptions`). A
//! [`Subscriber`] runs them in batches: each batch is one write transaction that locks the
//! checkpoint, reads up to [`SubscriberOptions::batch`] events after it, runs the handlers and
//! moves the checkpoint past them, so what a handler writes through the connection it is given
//! commits with the checkpoint — once per event, whatever stops the subscriber. A new
//! subscription starts before every event (or at [`SubscriberOptions::start`]), catches up at scan
//! speed, then polls the feed every [`SubscriberOptions::poll`] (20 ms). One subscriber holds a
//! subscription at a time (a lease in its row, renewed by each batch): start one per machine, and
//! another takes over once the holder has been silent for [`SubscriberOptions::lease`]. A
//! handler's error or panic rolls its batch back; the events before it are handled again and
//! committed, its error is recorded (`last_error`) and the event is retried after a growing
//! wait, never skipped: later events wait behind it until the handler is fixed or the operator
//! moves the checkpoint ([`reset_subscription`], `subscriptions reset`). With
//! [`SubscriberOptions::hold_back`], an ordered async reactor, a failure holds back its aggregate
//! only: the event and the later events of its aggregate are set aside in order
//! ([`held_events`]) while the others go on, until [`Subscriber::retry_held`]. A subscription can
//! be read in shards ([`Subscriber::shard`]): each reads the aggregates [`shard_of`] puts there,
//! in order, from a checkpoint and a lease of its own.
//!
//! The feed never skips an event. On SQLite and MySQL an event's position is allocated by its
//! transaction's writer holding `es_positions` until commit, so the feed is in id order and a
//! commit can never land below a position already read. On PostgreSQL positions come from a
//! sequence and transactions commit in any order: a reader taking `id > checkpoint` would move
//! past an id whose transaction commits later and skip it. There every event also records
//! `tx_order`, the writing transaction's id (`pg_current_xact_id()`), raised to the order of its
//! aggregate's previous event when that is higher (a transaction may take its id, then wait for
//! the aggregate's row lock while a younger one appends to it), so that an aggregate's events are
//! in version order. The feed is in `(tx_order, id)` order and a reader takes only the events
//! below `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still running: every
//! transaction that may still commit an event has an id at or above it. The price: a transaction
//! left open anywhere on the server holds every subscription back until it ends.
//!
//! ```
//! # use diesel::prelude::*;
//! # use es_core::{Aggregate, AppendOptions, Apply, Event, EventContext, EventStore, RecordedEvent};
//! # use diesel::connection::SimpleConnection;
//! # use schemars::JsonSchema;
//! # use serde::{Deserialize, Serialize};
//! # mod schema { diesel::table! { tasks (id) { id -> BigInt, title -> Text } } }
//! # #[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug)]
//! # #[aggregate(table = schema::tasks)]
//! # #[diesel(table_name = schema::tasks)]
//! # pub struct Task { pub id: i64, pub title: String }
//! # /// A task was created.
//! # #[derive(Event, Serialize, Deserialize, JsonSchema)]
//! # #[aggregate(Task)]
//! # #[event(creates)]
//! # pub struct Created { #[data_attributes] pub title: String }
//! # impl Apply<Task> for Created {
//! #     fn apply(&self, task: &mut Task, _: &EventContext<'_>) { task.title = self.title.clone(); }
//! # }
//! use es_diesel::{Database, DieselStore, ReactorError, Subscriber, SubscriberOptions, dispatcher};
//!
//! /// The search index: one row per task event, written with the subscription's checkpoint.
//! fn search_index<C: Database>(
//!     conn: &mut C,
//!     event: &RecordedEvent<i64>,
//! ) -> Result<(), ReactorError> {
//!     conn.batch_execute(&format!("INSERT INTO search VALUES ({}, {})", event.aggregate_id, event.id))?;
//!     Ok(())
//! }
//!
//! dispatcher! {
//!     pub struct AppDispatcher;
//!     Task::* => subscribe: [search_index];
//! }
//!
//! let mut conn = es_diesel::sqlite::establish(":memory:")?;
//! conn.batch_execute(
//!     "CREATE TABLE tasks (id BIGINT PRIMARY KEY NOT NULL, title TEXT NOT NULL);
//!      CREATE TABLE search (task BIGINT NOT NULL, event BIGINT NOT NULL);",
//! )?;
//! es_diesel::create_tables::<_, Task>(&mut conn)?;
//! let mut store = DieselStore::new(&mut conn).with_dispatcher(&AppDispatcher);
//! store.append(&1, Created { title: "Slides".into() }, &AppendOptions::default())?;
//!
//! let subscriber = Subscriber::new(&AppDispatcher, "search_index", SubscriberOptions::default())?;
//! assert_eq!(subscriber.catch_up(&mut conn)?.handled, 1); // `run` follows the feed until stopped
//! let status = es_diesel::subscriptions(&mut conn, &AppDispatcher)?;
//! assert_eq!((status[0].name.as_str(), status[0].behind), ("search_index", 0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A subscriber can also deliver its feed to a destination outside the database, a [`Sink`]
//! ([`Subscriber::to_sink`]): each batch is delivered, then the checkpoint moves past it in a
//! short transaction, so the database's write lock is never held while the destination answers,
//! and a batch that failed or whose subscriber died is delivered again — the destination drops
//! copies by the event's identity. The `relay` module (feature `nats`) is such a subscriber: it
//! publishes every event to a NATS JetStream stream (`Nats-Msg-Id` is the event's identity, so the
//! stream keeps one copy), and its `Consumer` applies a stream to a database of its own.
//!
//! # Auditing and operating
//!
//! [`verify`] replays every aggregate in memory and compares it with its stored row, field by
//! field ([`Drift`]); [`event_counts`] counts events per day and type. The `cli` module (feature
//! `cli`) mounts these, with history, time travel, replay, projections, the catalog and the jobs,
//! as an operator command line in an app's own binary.

mod audit;
mod backend;
#[cfg(feature = "cli")]
pub mod cli;
mod database;
mod dispatch;
mod errors;
mod events;
mod id;
mod jobs;
mod projection;
#[cfg(feature = "nats")]
pub mod relay;
mod schema;
pub mod sql_types;
mod statement;
mod store;
mod subscription;
mod table;
mod text_uuid;
mod write;

#[cfg(feature = "sqlite")]
pub use backend::sqlite;

pub use audit::{Drift, DriftKind, FieldDrift, VerifyReport, event_counts, verify};
pub use database::Database;
pub use dispatch::{
    Dispatch, Dispatches, JobContext, MAX_CASCADE, NoReactors, ReactorError, Recorded,
    TriggerContext,
};
/// The description of a dispatcher's routes, shared with the event catalog of `es-core`.
pub use es_core::{EventRef, Pattern, Reactor, Route};
/// Routes events to reactors; see the [dispatch module documentation](crate#reactors).
pub use es_derive::dispatcher;
pub use events::{AnyEvent, EventCount};
pub use id::IdColumn;
pub use jobs::admin::{
    DeadJob, Job, JobCounts, JobFilter, JobState, dead_jobs, job_counts, job_counts_by_reactor,
    jobs, prune_jobs, retry_dead_jobs,
};
pub use jobs::queue::ClaimedJob;
pub use jobs::{Worker, WorkerOptions, WorkerStats};
pub use projection::{PROJECTION_BATCH, rebuild_projection};
pub use schema::{create_tables, ddl, migration_sql};
pub use sql_types::UtcDateTime;
pub use store::{DEFAULT_REPLAY_BATCH, DieselStore};
pub use subscription::{
    HeldEvent, Position, Sink, Start, Subscriber, SubscriberOptions, SubscriberStats,
    SubscriptionStatus, has_handled, held_events, reset_subscription, retire_subscription,
    shard_of, subscriptions,
};
pub use table::{AggregateTable, Locked, Stores};
pub use text_uuid::TextUuid;

#[doc(hidden)]
pub mod __private {
    pub use crate::backend::concrete::{Concrete, Disabled};
    pub use crate::backend::{Dialect, HeadInLock};
    pub use crate::dispatch::{Dispatched, run_projection};
    pub use crate::projection::typed_from_any;
    pub use crate::statement::{Bound, Statement, save, upsert};
    pub use crate::table::{EventsTableOn, HeadColumns, locked};
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

    #[cfg(feature = "sqlite")]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __on_sqlite {
        ($connection:ident, $name:ident, $body:expr) => {{
            let $name = $connection;
            $body
        }};
    }
    #[cfg(not(feature = "sqlite"))]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __on_sqlite {
        ($connection:ident, $name:ident, $body:expr) => {
            $connection.unreachable()
        };
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

    #[cfg(feature = "postgres")]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __on_postgres {
        ($connection:ident, $name:ident, $body:expr) => {{
            let $name = $connection;
            $body
        }};
    }
    #[cfg(not(feature = "postgres"))]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __on_postgres {
        ($connection:ident, $name:ident, $body:expr) => {
            $connection.unreachable()
        };
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

    #[cfg(feature = "mysql")]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __on_mysql {
        ($connection:ident, $name:ident, $body:expr) => {{
            let $name = $connection;
            $body
        }};
    }
    #[cfg(not(feature = "mysql"))]
    #[doc(hidden)]
    #[macro_export]
    macro_rules! __on_mysql {
        ($connection:ident, $name:ident, $body:expr) => {
            $connection.unreachable()
        };
    }
}
