//! The database-specific half of the store: write transactions, the events tables, the DDL.
//!
//! Everything here is written once and instantiated per connection type by `database!`, so that
//! each backend keeps its own SQL types, placeholders and locking while sharing the logic.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::connection::Connection;
use es_core::{AsOf, Error, EventFilter, Metadata, RecordedEvent, Staged};

use crate::dispatch::{AnyEvent, NewJob};
use crate::id::IdColumn;
use crate::jobs::{ClaimedJob, DeadJob, JobClaim, JobOutcome};
use crate::statement::Query;

/// A diesel connection the store can use: `SqliteConnection` (feature `sqlite`), `PgConnection`
/// (feature `postgres`), `MysqlConnection` (feature `mysql`). Sealed.
pub trait Database: Connection + Sized + 'static + sealed::Sealed {
    /// Begins a transaction that holds the write lock: `BEGIN IMMEDIATE` on SQLite, an ordinary
    /// transaction elsewhere (rows are locked with `SELECT ... FOR UPDATE`). Inside an enclosing
    /// transaction, a savepoint.
    #[doc(hidden)]
    fn begin_write(&mut self) -> Result<(), Error>;

    /// Runs `f` in a write transaction ([`begin_write`](Database::begin_write)), committed if it
    /// succeeds and rolled back if it fails, as diesel's `Connection::transaction` does.
    #[doc(hidden)]
    fn write_transaction<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.begin_write()?;
        let result = f(self);
        finish_write(self, result)
    }

    /// Runs `f` in a read-only transaction that sees one consistent snapshot of the database and
    /// takes no row lock, so that it neither blocks writers nor waits for them: a deferred `BEGIN`
    /// on SQLite (in WAL mode a reader keeps the snapshot of its first read), `REPEATABLE READ
    /// READ ONLY` on PostgreSQL, `WITH CONSISTENT SNAPSHOT, READ ONLY` under `REPEATABLE READ` on
    /// MySQL. Inside an enclosing transaction, a savepoint (seeing what the enclosing one sees).
    #[doc(hidden)]
    fn snapshot_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error>;

    /// Runs `f` in a write transaction for the bookkeeping of `es_jobs` (claims, renewals,
    /// outcomes, pruning). On MySQL it reads committed rows only: under REPEATABLE READ a
    /// statement that scans `es_jobs` waits for (and deadlocks on) rows other claims lock, and
    /// takes gap locks that make claims deadlock with inserts of new jobs.
    #[doc(hidden)]
    fn jobs_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error>;

    /// The version and tag of the last event of one aggregate, if any.
    #[doc(hidden)]
    fn last_event<Id: IdColumn<Self::Backend>>(
        &mut self,
        table: &'static str,
        id: &Id,
    ) -> Result<Option<(i64, String)>, Error>;

    /// Inserts staged events with one multi-row `INSERT`, returning their ids in order, and runs
    /// `save`, the upsert of the aggregate's row (its table, the statement), if any: on
    /// PostgreSQL in the same statement (`WITH saved AS (upsert) INSERT ...`), one round trip.
    #[doc(hidden)]
    fn insert_events<Id: IdColumn<Self::Backend>, A: es_core::Aggregate>(
        &mut self,
        table: &'static str,
        id: &Id,
        staged: &Staged<A>,
        save: Option<(&'static str, Query<'_, Self::Backend>)>,
    ) -> Result<Vec<i64>, Error>;

    /// Reads events with one query, streamed: each row is read and decoded as the iterator
    /// reaches it (errors come in event order), and the connection is busy until the iterator
    /// is dropped.
    #[doc(hidden)]
    fn select_events<'c, Id: IdColumn<Self::Backend> + 'c>(
        &'c mut self,
        table: &'static str,
        selection: Selection<'c, Id>,
    ) -> Result<Records<'c, Id>, Error>;

    /// The next `limit` aggregate ids that have events, after `after`, in order.
    #[doc(hidden)]
    fn aggregate_ids<Id: IdColumn<Self::Backend>>(
        &mut self,
        table: &'static str,
        after: Option<&Id>,
        limit: usize,
    ) -> Result<Vec<Id>, Error>;

    /// How many events of each type an events table holds per day (UTC), by day then type.
    #[doc(hidden)]
    fn event_counts(&mut self, table: &'static str) -> Result<Vec<EventCount>, Error>;

    /// Reads one event, erased, from an events table named at run time (a job's).
    #[doc(hidden)]
    fn select_any_event(&mut self, table: &str, event_id: i64) -> Result<Option<AnyEvent>, Error>;

    /// Events of several tables, erased, with an id greater than `after`, in global order.
    #[doc(hidden)]
    fn select_any_events_after(
        &mut self,
        tables: &[&'static str],
        after: i64,
        limit: usize,
    ) -> Result<Vec<AnyEvent>, Error>;

    /// Fails if a failed statement aborted the transaction and the next statement is its
    /// `COMMIT` (PostgreSQL answers that `COMMIT` with a silent rollback): the outermost write
    /// calls it when a reactor had the connection — it may have handled the error of a statement
    /// of its own — and no statement of the write would fail before the commit. A savepoint's
    /// `RELEASE` fails by itself, and SQLite and MySQL roll back only the failed statement: no
    /// statement is sent then.
    #[doc(hidden)]
    fn check_not_aborted(&mut self) -> Result<(), Error>;

    /// Inserts the jobs of async reactors (one multi-row `INSERT`) and wakes idle workers.
    #[doc(hidden)]
    fn insert_jobs(&mut self, jobs: &[NewJob]) -> Result<(), Error>;

    /// Claims up to `claim.limit` due jobs of `claim.reactors` (or such jobs whose worker's lease
    /// expired) for `claim.worker`, in one write transaction; other workers skip the rows it
    /// locks. Expired jobs that already had their last attempt are made dead, not claimed. Times
    /// are the database's clock (PostgreSQL, MySQL) or the process's (SQLite, one machine).
    #[doc(hidden)]
    fn claim_jobs(&mut self, claim: &JobClaim<'_>) -> Result<Vec<ClaimedJob>, Error>;

    /// Extends the lease of the claims `held` (their ids and attempt numbers) of `worker` by
    /// `lease` from now; returns how many were still held.
    #[doc(hidden)]
    fn renew_jobs(
        &mut self,
        worker: &str,
        held: &[(i64, i32)],
        lease: TimeDelta,
    ) -> Result<usize, Error>;

    /// Records that the claims `done` of `worker` completed, with one statement; returns how many
    /// were still held (a claim taken over by another worker after its lease expired is not).
    #[doc(hidden)]
    fn complete_jobs(&mut self, worker: &str, done: &[(i64, i32)]) -> Result<usize, Error>;

    /// Records the failed attempt of a claim of `worker`: pending again after `outcome`'s delay,
    /// or dead. Returns whether the claim was still held.
    #[doc(hidden)]
    fn fail_job(
        &mut self,
        worker: &str,
        job: &ClaimedJob,
        outcome: &JobOutcome,
    ) -> Result<bool, Error>;

    /// Gives claims back, unrun (graceful shutdown): pending again, their attempt not counted.
    #[doc(hidden)]
    fn release_jobs(&mut self, worker: &str, held: &[(i64, i32)]) -> Result<usize, Error>;

    /// Makes dead jobs (all, or one) pending again with fresh attempts; returns how many.
    #[doc(hidden)]
    fn retry_dead_jobs(&mut self, id: Option<i64>) -> Result<usize, Error>;

    /// Deletes up to `limit` done jobs that finished more than `older_than` ago; returns how
    /// many.
    #[doc(hidden)]
    fn prune_jobs(&mut self, older_than: TimeDelta, limit: usize) -> Result<usize, Error>;

    /// How many jobs are in each state, `(reactor, state, count)`: of each reactor if `by_reactor`,
    /// else of all reactors (reactor `""`), which the `(state, run_at)` index answers without
    /// reading the table — a cheap poll while workers drain the jobs.
    #[doc(hidden)]
    fn job_counts(&mut self, by_reactor: bool) -> Result<Vec<(String, String, i64)>, Error>;

    /// The dead jobs, oldest first.
    #[doc(hidden)]
    fn dead_jobs(&mut self, limit: usize) -> Result<Vec<DeadJob>, Error>;

    /// Subscribes this connection to new-job notifications (PostgreSQL `LISTEN`; a no-op elsewhere).
    #[doc(hidden)]
    fn listen_for_jobs(&mut self) -> Result<(), Error>;

    /// Waits up to `timeout` for a new-job notification (PostgreSQL; returns whether one came) or
    /// sleeps (elsewhere; returns false). A connection lost meanwhile is an error.
    #[doc(hidden)]
    fn wait_for_jobs(&mut self, timeout: std::time::Duration) -> Result<bool, Error>;

    /// The statements creating the framework's own tables (the global event position, jobs).
    fn framework_ddl() -> Vec<String>;

    /// The statements creating one events table whose `aggregate_id` column has type `id_type`.
    fn events_table_ddl(table: &str, id_type: &str) -> Vec<String>;
}

mod sealed {
    pub trait Sealed {}
}

/// Which events [`Database::select_events`] reads.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a, Id> {
    /// One aggregate's events in version order, up to `as_of`.
    Aggregate { id: &'a Id, as_of: Option<AsOf> },
    /// Several aggregates' events, by aggregate then version.
    Aggregates(&'a [Id]),
    /// Events of every aggregate matching a filter, in global order.
    Filter(&'a EventFilter),
    /// One event, by id.
    Id(i64),
}

/// Ends the transaction begun by [`Database::begin_write`]: commits it if `result` is a success,
/// rolls it back otherwise — as diesel's `Connection::transaction` does.
pub(crate) fn finish_write<C: Connection, T, E: From<Error>>(
    conn: &mut C,
    result: Result<T, E>,
) -> Result<T, E> {
    use diesel::connection::TransactionManager;
    match result {
        Ok(value) => {
            C::TransactionManager::commit_transaction(conn).map_err(storage("transaction"))?;
            Ok(value)
        }
        Err(error) => match C::TransactionManager::rollback_transaction(conn) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
            Err(rollback) => Err(storage("transaction")(rollback).into()),
        },
    }
}

/// Whether a database error is lock contention between concurrent transactions, so that running
/// the same transaction again may succeed: a serialization failure (PostgreSQL `40001`) or
/// deadlock (PostgreSQL `40P01`, MySQL 1213), a lock wait that timed out (MySQL 1205), or SQLite's
/// busy or locked database (`SQLITE_BUSY`, `SQLITE_LOCKED`: a deferred transaction could not
/// become the writer because another connection wrote since it read, or the lock was not granted
/// within the busy timeout). The one classification of contention, for every path that retries.
pub(crate) fn is_contention(error: &diesel::result::Error) -> bool {
    use diesel::result::DatabaseErrorKind;
    /// How the errors diesel reports as `Unknown` begin: PostgreSQL's deadlock, MySQL's lock wait
    /// timeout, SQLite's `SQLITE_BUSY` and `SQLITE_LOCKED`.
    const CONTENDED: [&str; 5] = [
        "deadlock detected",
        "Lock wait timeout exceeded",
        "database is locked",
        "database table is locked",
        "database schema is locked",
    ];
    match error {
        diesel::result::Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        diesel::result::Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            CONTENDED.iter().any(|start| message.starts_with(start))
        }
        _ => false,
    }
}

/// Runs `transaction` again, up to `attempts` times in all, while it fails with contention
/// ([`is_contention`]: a deadlock, a serialization failure, a busy SQLite), after a random pause
/// that doubles with each attempt (up to 10 ms, 20 ms, ... 500 ms); it must be safe to repeat (a
/// whole transaction, rolled back when it failed).
pub(crate) fn retry_contention<T>(
    attempts: u32,
    mut transaction: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    let mut attempt = 1;
    loop {
        match transaction() {
            Err(Error::Storage { source, .. })
                if attempt < attempts
                    && source
                        .downcast_ref::<diesel::result::Error>()
                        .is_some_and(is_contention) =>
            {
                tracing::debug!(attempt, "a transaction collided with another, retrying");
                let longest = longest_contention_pause_ms(attempt);
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(fastrand::u64(1..=longest)));
            }
            other => return other,
        }
    }
}

/// The longest pause before the attempt after `attempt` (from 1): 10 ms, doubling, at most 500 ms.
fn longest_contention_pause_ms(attempt: u32) -> u64 {
    (10u64 << (attempt.max(1) - 1).min(6)).min(500)
}

pub(crate) fn storage(table: &'static str) -> impl FnOnce(diesel::result::Error) -> Error {
    move |source| Error::Storage {
        table,
        source: Box::new(source),
    }
}

/// Events read from an events table as the rows arrive, decoded one by one: each row is dropped
/// before the next is read, so a scan of any length runs in constant memory. A row that cannot be
/// read is an error in its place, and the rows after it are read as usual.
#[doc(hidden)]
pub struct Records<'c, Id> {
    rows: Box<dyn Iterator<Item = diesel::QueryResult<EventRow<Id>>> + 'c>,
    table: &'static str,
    metadata: MetadataCache,
}

impl<Id> std::fmt::Debug for Records<'_, Id> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl<Id: es_core::AggregateId> Records<'_, Id> {
    /// The next event, or the error of a row that cannot be read with its aggregate when that
    /// column could be read: what a replay needs to skip that aggregate and go on.
    pub(crate) fn next_row(&mut self) -> Option<Result<RecordedEvent<Id>, BadRow<Id>>> {
        let row = self.rows.next()?;
        Some(match row {
            Ok(row) => row.into_record(self.table, &mut self.metadata),
            Err(error) => Err(BadRow {
                aggregate_id: None,
                error: storage(self.table)(error),
            }),
        })
    }
}

impl<Id: es_core::AggregateId> Iterator for Records<'_, Id> {
    type Item = Result<RecordedEvent<Id>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().map(|row| row.map_err(|bad| bad.error))
    }
}

/// A row of an events table that cannot be read, and its aggregate if that column could be.
#[derive(Debug)]
pub(crate) struct BadRow<Id> {
    /// The aggregate the row belongs to, if its `aggregate_id` column could be read.
    pub(crate) aggregate_id: Option<Id>,
    /// What is wrong, naming the table, event id, tag and column.
    pub(crate) error: Error,
}

/// What a column's reader failed with (diesel's deserialization error).
type ColumnError = Box<dyn std::error::Error + Send + Sync>;

/// One row of an events table as read from the database: its event id (the primary key, always
/// readable), then its other columns, or the first of them that cannot be read.
#[derive(Debug)]
struct EventRow<Id> {
    id: i64,
    columns: Result<Columns<Id>, BadColumn<Id>>,
}

/// The columns of an event row after its id.
#[derive(Debug)]
struct Columns<Id> {
    aggregate_id: Id,
    version: i64,
    event_type: String,
    data: String,
    metadata: String,
    created_at: DateTime<Utc>,
}

/// The first column of an event row that cannot be read, with what could be read of the row's
/// aggregate and tag.
#[derive(Debug)]
struct BadColumn<Id> {
    aggregate_id: Option<Id>,
    tag: Option<String>,
    column: &'static str,
    source: ColumnError,
}

impl<Id> EventRow<Id> {
    /// A row from what each column's reader returned, in the order of `SELECT_COLUMNS`.
    fn new(
        id: i64,
        aggregate_id: Result<Id, ColumnError>,
        version: Result<i64, ColumnError>,
        event_type: Result<String, ColumnError>,
        data: Result<String, ColumnError>,
        metadata: Result<String, ColumnError>,
        created_at: Result<DateTime<Utc>, ColumnError>,
    ) -> Self {
        let columns = match (aggregate_id, event_type) {
            (Err(source), tag) => Err(BadColumn {
                aggregate_id: None,
                tag: tag.ok(),
                column: "aggregate_id",
                source,
            }),
            (Ok(aggregate_id), Err(source)) => Err(BadColumn {
                aggregate_id: Some(aggregate_id),
                tag: None,
                column: "type",
                source,
            }),
            (Ok(aggregate_id), Ok(event_type)) => {
                let at = |column: &'static str| move |source| (column, source);
                let rest = version.map_err(at("version")).and_then(|version| {
                    let data = data.map_err(at("data"))?;
                    let metadata = metadata.map_err(at("metadata"))?;
                    Ok((
                        version,
                        data,
                        metadata,
                        created_at.map_err(at("created_at"))?,
                    ))
                });
                match rest {
                    Ok((version, data, metadata, created_at)) => Ok(Columns {
                        aggregate_id,
                        version,
                        event_type,
                        data,
                        metadata,
                        created_at,
                    }),
                    Err((column, source)) => Err(BadColumn {
                        aggregate_id: Some(aggregate_id),
                        tag: Some(event_type),
                        column,
                        source,
                    }),
                }
            }
        };
        Self { id, columns }
    }
}

/// The last `metadata` decoded, with its JSON: the events of one append share their metadata, so
/// a run of rows with the same JSON is decoded once and shared.
#[derive(Debug, Default)]
struct MetadataCache(Option<(String, Arc<Metadata>)>);

impl MetadataCache {
    fn decode(
        &mut self,
        json: String,
        table: &'static str,
        event_id: i64,
        tag: &str,
    ) -> Result<Arc<Metadata>, Error> {
        if let Some((_, metadata)) = self.0.as_ref().filter(|(last, _)| *last == json) {
            return Ok(Arc::clone(metadata));
        }
        let metadata = Metadata::from_json(&json).map_err(|source| Error::DecodeMetadata {
            table,
            event_id,
            tag: tag.to_owned(),
            source,
        })?;
        let metadata = Arc::new(metadata);
        self.0 = Some((json, Arc::clone(&metadata)));
        Ok(metadata)
    }
}

impl<Id: es_core::AggregateId> EventRow<Id> {
    fn into_record(
        self,
        table: &'static str,
        cache: &mut MetadataCache,
    ) -> Result<RecordedEvent<Id>, BadRow<Id>> {
        let event_id = self.id;
        let columns = self.columns.map_err(|bad| BadRow {
            error: Error::BadColumn {
                table,
                event_id,
                aggregate_id: bad.aggregate_id.as_ref().map(ToString::to_string),
                tag: bad.tag,
                column: bad.column,
                source: bad.source,
            },
            aggregate_id: bad.aggregate_id,
        })?;
        let metadata = match cache.decode(columns.metadata, table, event_id, &columns.event_type) {
            Ok(metadata) => metadata,
            Err(error) => {
                return Err(BadRow {
                    aggregate_id: Some(columns.aggregate_id),
                    error,
                });
            }
        };
        Ok(RecordedEvent {
            id: event_id,
            aggregate_id: columns.aggregate_id,
            version: columns.version,
            event_type: columns.event_type,
            data: columns.data,
            metadata,
            created_at: columns.created_at,
        })
    }
}

/// An event row of any events table, with the table's name.
struct AnyRow {
    events_table: String,
    row: EventRow<String>,
}

impl AnyRow {
    fn into_event(self, cache: &mut MetadataCache) -> Result<AnyEvent, Error> {
        let record = self
            .row
            .into_record("events", cache)
            .map_err(|bad| bad.error)?;
        Ok(AnyEvent {
            events_table: self.events_table,
            aggregate_id: record.aggregate_id,
            id: record.id,
            version: record.version,
            event_type: record.event_type,
            data: record.data,
            metadata: record.metadata,
            created_at: record.created_at,
        })
    }
}

/// How many events of one type were created on one day: a line of
/// [`event_counts`](crate::event_counts).
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName, serde::Serialize)]
pub struct EventCount {
    /// The day, in UTC (`2026-04-20`).
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub day: String,
    /// The type tag (`task.completed`).
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "type")]
    #[serde(rename = "type")]
    pub event_type: String,
    /// How many events.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub events: i64,
}

/// The last event of one aggregate: its id, version and tag (`SELECT id, version, type`).
struct LastEvent {
    id: i64,
    version: Result<i64, ColumnError>,
    event_type: Result<String, ColumnError>,
}

impl LastEvent {
    /// Its version and tag, or the first of them that cannot be read.
    fn into_head<Id: std::fmt::Display>(
        self,
        table: &'static str,
        aggregate_id: &Id,
    ) -> Result<(i64, String), Error> {
        let bad = |tag: Option<String>, column, source| Error::BadColumn {
            table,
            event_id: self.id,
            aggregate_id: Some(aggregate_id.to_string()),
            tag,
            column,
            source,
        };
        match (self.version, self.event_type) {
            (Ok(version), Ok(tag)) => Ok((version, tag)),
            (Err(source), tag) => Err(bad(tag.ok(), "version", source)),
            (Ok(_), Err(source)) => Err(bad(None, "type", source)),
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Number {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    value: i64,
}

/// Implements [`Database`] for one connection type. `$dialect` is a module providing the
/// backend's differences: `SELECT_COLUMNS` (id, aggregate_id, version, type, data, metadata,
/// created_at: `EventRow` reads them by position), `JSON_PLACEHOLDER_SUFFIX`,
/// `WAKE_WORKERS` (SQL around the jobs' `INSERT` that wakes idle workers), `bind_time`,
/// `read_version`, `read_text`, `read_time` (an event row's columns), `begin_write`,
/// `check_not_aborted`, `EventsLoading` (diesel's loading mode for events), `insert_events`,
/// `before_jobs_transaction`, `listen_for_jobs`, `wait_for_jobs`, `now_plus`, `DELETE_DONE_JOBS`,
/// `framework_ddl`,
/// `events_table_ddl`.
macro_rules! database {
    ($conn:ty, $db:ty, $dialect:ident) => {
        impl sealed::Sealed for $conn {}

        impl<Id: IdColumn<$db>> diesel::deserialize::QueryableByName<$db> for EventRow<Id> {
            fn build<'a>(
                row: &impl diesel::row::NamedRow<'a, $db>,
            ) -> diesel::deserialize::Result<Self> {
                // By position, in the order of `SELECT_COLUMNS` (diesel finds a column by name
                // by comparing every column's name, and in row-by-row mode it first rebuilds the
                // names for every row). Only the id fails the row: any other column that cannot
                // be read is reported with it, and the rows after it are read.
                Ok(EventRow::new(
                    row.get_value::<diesel::sql_types::BigInt, i64, _>(0)?,
                    Id::read(row, 1),
                    $dialect::read_version(row, 2),
                    $dialect::read_text(row, 3),
                    $dialect::read_text(row, 4),
                    $dialect::read_text(row, 5),
                    $dialect::read_time(row, 6),
                ))
            }
        }

        impl diesel::deserialize::QueryableByName<$db> for LastEvent {
            fn build<'a>(
                row: &impl diesel::row::NamedRow<'a, $db>,
            ) -> diesel::deserialize::Result<Self> {
                Ok(Self {
                    id: row.get_value::<diesel::sql_types::BigInt, i64, _>(0)?,
                    version: $dialect::read_version(row, 1),
                    event_type: $dialect::read_text(row, 2),
                })
            }
        }

        impl diesel::deserialize::QueryableByName<$db> for AnyRow {
            fn build<'a>(
                row: &impl diesel::row::NamedRow<'a, $db>,
            ) -> diesel::deserialize::Result<Self> {
                Ok(Self {
                    events_table: diesel::row::NamedRow::get::<diesel::sql_types::Text, String>(
                        row,
                        "events_table",
                    )?,
                    row: <EventRow<String> as diesel::deserialize::QueryableByName<$db>>::build(row)?,
                })
            }
        }

        impl Database for $conn {
            fn begin_write(&mut self) -> Result<(), Error> {
                $dialect::begin_write(self).map_err(storage("transaction"))
            }

            fn snapshot_transaction<T>(
                &mut self,
                f: impl FnOnce(&mut Self) -> Result<T, Error>,
            ) -> Result<T, Error> {
                $dialect::begin_snapshot(self).map_err(storage("transaction"))?;
                let result = f(self);
                finish_write(self, result)
            }

            fn jobs_transaction<T>(
                &mut self,
                f: impl FnOnce(&mut Self) -> Result<T, Error>,
            ) -> Result<T, Error> {
                $dialect::before_jobs_transaction(self)?;
                self.write_transaction(f)
            }

            fn last_event<Id: IdColumn<$db>>(
                &mut self,
                table: &'static str,
                id: &Id,
            ) -> Result<Option<(i64, String)>, Error> {
                use diesel::{OptionalExtension, RunQueryDsl};
                let query = Query::<$db>::new(
                    format!("SELECT id, version, type FROM {table} WHERE aggregate_id = ")
                )
                .bind_id(id)
                .sql(" ORDER BY version DESC LIMIT 1");
                let last: Option<LastEvent> = query
                    .get_result(self)
                    .optional()
                    .map_err(storage(table))?;
                last.map(|last| last.into_head(table, id)).transpose()
            }

            fn insert_events<Id: IdColumn<$db>, A: es_core::Aggregate>(
                &mut self,
                table: &'static str,
                id: &Id,
                staged: &Staged<A>,
                save: Option<(&'static str, Query<'_, $db>)>,
            ) -> Result<Vec<i64>, Error> {
                $dialect::insert_events(self, table, id, staged, save)
            }

            fn select_events<'c, Id: IdColumn<$db> + 'c>(
                &'c mut self,
                table: &'static str,
                selection: Selection<'c, Id>,
            ) -> Result<Records<'c, Id>, Error> {
                let mut query = Query::<$db>::new(
                    format!("SELECT {} FROM {table} WHERE ", $dialect::SELECT_COLUMNS)
                );
                match selection {
                    Selection::Aggregate { id, as_of } => {
                        query = query.sql("aggregate_id = ").bind_id(id);
                        query = match as_of {
                            None => query,
                            Some(AsOf::Version(version)) => {
                                query
                                    .sql(" AND version <= ")
                                    .bind::<diesel::sql_types::BigInt, _>(version)
                            }
                            Some(AsOf::Time(time)) => {
                                $dialect::bind_time(query.sql(" AND created_at <= "), time)
                            }
                        };
                        query = query.sql(" ORDER BY version");
                    }
                    Selection::Aggregates(ids) => {
                        query = query.sql("aggregate_id IN (");
                        for (index, id) in ids.iter().enumerate() {
                            if index > 0 {
                                query = query.sql(", ");
                            }
                            query = query.bind_id(id);
                        }
                        query = query.sql(") ORDER BY aggregate_id, version");
                    }
                    Selection::Id(event_id) => {
                        query = query.sql("id = ").bind::<diesel::sql_types::BigInt, _>(event_id);
                    }
                    Selection::Filter(filter) => {
                        query = query.sql("1 = 1");
                        if !filter.tags.is_empty() {
                            query = query.sql(" AND type IN (");
                            for (index, tag) in filter.tags.iter().enumerate() {
                                if index > 0 {
                                    query = query.sql(", ");
                                }
                                query = query.bind::<diesel::sql_types::Text, _>(tag.clone());
                            }
                            query = query.sql(")");
                        }
                        if let Some(since) = filter.since {
                            query =
                                $dialect::bind_time(query.sql(" AND created_at >= "), since);
                        }
                        if let Some(until) = filter.until {
                            query =
                                $dialect::bind_time(query.sql(" AND created_at < "), until);
                        }
                        if let Some(after) = filter.after_id {
                            query = query
                                .sql(" AND id > ")
                                .bind::<diesel::sql_types::BigInt, _>(after);
                        }
                        query = query.sql(" ORDER BY id");
                        if let Some(limit) = filter.limit {
                            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                            query = query
                                .sql(" LIMIT ")
                                .bind::<diesel::sql_types::BigInt, _>(limit);
                        }
                    }
                }
                let rows = diesel::RunQueryDsl::load_iter::<EventRow<Id>, $dialect::EventsLoading>(
                    query, self,
                )
                .map_err(storage(table))?;
                Ok(Records {
                    rows: Box::new(rows),
                    table,
                    metadata: MetadataCache::default(),
                })
            }

            fn aggregate_ids<Id: IdColumn<$db>>(
                &mut self,
                table: &'static str,
                after: Option<&Id>,
                limit: usize,
            ) -> Result<Vec<Id>, Error> {
                use diesel::RunQueryDsl;
                struct IdRow<Id>(Id);
                impl<Id: IdColumn<$db>> diesel::deserialize::QueryableByName<$db> for IdRow<Id> {
                    fn build<'a>(
                        row: &impl diesel::row::NamedRow<'a, $db>,
                    ) -> diesel::deserialize::Result<Self> {
                        Id::read(row, "aggregate_id")
                            .map(IdRow)
                            .map_err(|source| format!("column `aggregate_id`: {source}").into())
                    }
                }
                // A loose index scan: one index seek per id, whatever the planner's statistics
                // say (`SELECT DISTINCT ... LIMIT` scans the whole table on PostgreSQL when a bulk
                // load has not been analyzed yet: 6 s per batch of a 1,000,000-event table).
                let mut query = Query::<$db>::new(
                    format!(
                        "WITH RECURSIVE ids (aggregate_id, n) AS (SELECT (SELECT aggregate_id \
                         FROM {table}"
                    )
                );
                if let Some(after) = after {
                    query = query.sql(" WHERE aggregate_id > ").bind_id(after);
                }
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                query = query
                    .sql(&format!(
                        " ORDER BY aggregate_id LIMIT 1), 1 UNION ALL SELECT (SELECT aggregate_id \
                         FROM {table} AS e WHERE e.aggregate_id > ids.aggregate_id \
                         ORDER BY e.aggregate_id LIMIT 1), n + 1 FROM ids \
                         WHERE ids.aggregate_id IS NOT NULL AND n < "
                    ))
                    .bind::<diesel::sql_types::BigInt, _>(limit)
                    .sql(") SELECT aggregate_id FROM ids WHERE aggregate_id IS NOT NULL");
                let rows: Vec<IdRow<Id>> = query.load(self).map_err(storage(table))?;
                Ok(rows.into_iter().map(|row| row.0).collect())
            }

            fn event_counts(&mut self, table: &'static str) -> Result<Vec<EventCount>, Error> {
                use diesel::RunQueryDsl;
                diesel::sql_query(format!(
                    "SELECT {} AS day, type, COUNT(*) AS events FROM {table} \
                     GROUP BY day, type ORDER BY day, type",
                    $dialect::DAY_OF_CREATED_AT
                ))
                .load(self)
                .map_err(storage(table))
            }

            fn select_any_event(
                &mut self,
                table: &str,
                event_id: i64,
            ) -> Result<Option<AnyEvent>, Error> {
                use diesel::{OptionalExtension, RunQueryDsl};
                if !is_identifier(table) {
                    return Ok(None);
                }
                let query = Query::<$db>::new(
                    format!("SELECT {} FROM {table} WHERE id = ", $dialect::SELECT_ANY_COLUMNS)
                )
                .bind::<diesel::sql_types::BigInt, _>(event_id);
                let row: Option<EventRow<String>> =
                    query.get_result(self).optional().map_err(storage("jobs"))?;
                let Some(row) = row else { return Ok(None) };
                let record = row
                    .into_record("jobs", &mut MetadataCache::default())
                    .map_err(|bad| bad.error)?;
                Ok(Some(AnyEvent {
                    events_table: table.to_owned(),
                    aggregate_id: record.aggregate_id,
                    id: record.id,
                    version: record.version,
                    event_type: record.event_type,
                    data: record.data,
                    metadata: record.metadata,
                    created_at: record.created_at,
                }))
            }

            fn select_any_events_after(
                &mut self,
                tables: &[&'static str],
                after: i64,
                limit: usize,
            ) -> Result<Vec<AnyEvent>, Error> {
                use diesel::RunQueryDsl;
                let mut query = Query::<$db>::new(String::new());
                for (index, table) in tables.iter().enumerate() {
                    if index > 0 {
                        query = query.sql(" UNION ALL ");
                    }
                    query = query
                        .sql(&format!(
                            "SELECT {}, '{table}' AS events_table FROM {table} WHERE id > ",
                            $dialect::SELECT_ANY_COLUMNS
                        ))
                        .bind::<diesel::sql_types::BigInt, _>(after);
                }
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                query = query
                    .sql(" ORDER BY id LIMIT ")
                    .bind::<diesel::sql_types::BigInt, _>(limit);
                let rows: Vec<AnyRow> = query.load(self).map_err(storage("events"))?;
                let mut cache = MetadataCache::default();
                rows.into_iter().map(|row| row.into_event(&mut cache)).collect()
            }

            fn check_not_aborted(&mut self) -> Result<(), Error> {
                $dialect::check_not_aborted(self)
            }

            fn insert_jobs(&mut self, jobs: &[NewJob]) -> Result<(), Error> {
                use diesel::RunQueryDsl;
                if jobs.is_empty() {
                    return Ok(());
                }
                let [wake_before, wake_after] = $dialect::WAKE_WORKERS;
                let mut query = Query::<$db>::new(
                    format!(
                        "{wake_before}INSERT INTO es_jobs (events_table, event_id, reactor, state, \
                         attempts, run_at, created_at) VALUES "
                    )
                );
                for (index, job) in jobs.iter().enumerate() {
                    query = query
                        .sql(if index == 0 { "(" } else { ", (" })
                        .bind::<diesel::sql_types::Text, _>(job.events_table.to_owned())
                        .sql(", ")
                        .bind::<diesel::sql_types::BigInt, _>(job.event_id)
                        .sql(", ")
                        .bind::<diesel::sql_types::Text, _>(job.reactor.to_owned())
                        .sql(", 'pending', 0, ");
                    query = $dialect::now_plus(query, TimeDelta::zero()).sql(", ");
                    query = $dialect::now_plus(query, TimeDelta::zero()).sql(")");
                }
                query
                    .sql(wake_after)
                    .execute(self)
                    .map_err(storage("es_jobs"))?;
                Ok(())
            }

            fn claim_jobs(&mut self, claim: &JobClaim<'_>) -> Result<Vec<ClaimedJob>, Error> {
                use diesel::RunQueryDsl;
                if claim.reactors.is_empty() {
                    return Ok(Vec::new());
                }
                self.jobs_transaction(|conn| {
                    let mut query = $dialect::now_plus(
                        Query::<$db>::new(
                            "SELECT id, events_table, event_id, reactor, attempts FROM es_jobs \
                             WHERE ((state = 'pending' AND run_at <= "
                        ),
                        TimeDelta::zero(),
                    )
                    .sql(") OR (state = 'running' AND locked_until < ");
                    query = $dialect::now_plus(query, TimeDelta::zero())
                        .sql(")) AND reactor IN (")
                        .bind_list::<diesel::sql_types::Text, _>(
                            claim.reactors.iter().map(|reactor| (*reactor).to_owned()),
                        )
                        .sql(") ORDER BY run_at, id LIMIT ")
                        .bind::<diesel::sql_types::BigInt, _>(
                            i64::try_from(claim.limit).unwrap_or(i64::MAX),
                        )
                        .sql($dialect::CLAIM_LOCK);
                    let found: Vec<ClaimedJob> = query.load(conn).map_err(storage("es_jobs"))?;
                    let (exhausted, mut claimed): (Vec<ClaimedJob>, Vec<ClaimedJob>) = found
                        .into_iter()
                        .partition(|job| job.attempts >= claim.max_attempts);
                    for job in &exhausted {
                        let error = format!(
                            "attempt {} of {} did not finish: its worker stopped before its \
                             lease expired",
                            job.attempts, claim.max_attempts
                        );
                        let dead = $dialect::now_plus(
                            Query::<$db>::new("UPDATE es_jobs SET state = 'dead', last_error = ")
                                .bind::<diesel::sql_types::Text, _>(error)
                                .sql(", locked_by = NULL, locked_until = NULL, finished_at = "),
                            TimeDelta::zero(),
                        )
                        .sql(" WHERE id = ")
                        .bind::<diesel::sql_types::BigInt, _>(job.id);
                        dead.execute(conn).map_err(storage("es_jobs"))?;
                        tracing::warn!(
                            job_id = job.id,
                            reactor = %job.reactor,
                            attempts = job.attempts,
                            "a job whose last attempt never finished is dead"
                        );
                    }
                    if claimed.is_empty() {
                        return Ok(claimed);
                    }
                    let update = $dialect::now_plus(
                        Query::<$db>::new(
                            "UPDATE es_jobs SET state = 'running', attempts = attempts + 1, \
                             locked_by = "
                        )
                        .bind::<diesel::sql_types::Text, _>(claim.worker.to_owned())
                        .sql(", locked_until = "),
                        claim.lease,
                    )
                    .sql(" WHERE id IN (")
                    .bind_list::<diesel::sql_types::BigInt, _>(claimed.iter().map(|job| job.id))
                    .sql(")");
                    update.execute(conn).map_err(storage("es_jobs"))?;
                    for job in &mut claimed {
                        job.attempts += 1;
                    }
                    Ok(claimed)
                })
            }

            fn renew_jobs(
                &mut self,
                worker: &str,
                held: &[(i64, i32)],
                lease: TimeDelta,
            ) -> Result<usize, Error> {
                use diesel::RunQueryDsl;
                if held.is_empty() {
                    return Ok(0);
                }
                let query = $dialect::now_plus(
                    Query::<$db>::new("UPDATE es_jobs SET locked_until = "),
                    lease,
                )
                .sql(" WHERE ");
                let query = held_by(query, worker, held);
                self.jobs_transaction(|conn| query.execute(conn).map_err(storage("es_jobs")))
            }

            fn complete_jobs(&mut self, worker: &str, done: &[(i64, i32)]) -> Result<usize, Error> {
                use diesel::RunQueryDsl;
                if done.is_empty() {
                    return Ok(0);
                }
                let query = $dialect::now_plus(
                    Query::<$db>::new(
                        "UPDATE es_jobs SET state = 'done', last_error = NULL, locked_by = NULL, \
                         locked_until = NULL, finished_at = "
                    ),
                    TimeDelta::zero(),
                )
                .sql(" WHERE ");
                held_by(query, worker, done).execute(self).map_err(storage("es_jobs"))
            }

            fn fail_job(
                &mut self,
                worker: &str,
                job: &ClaimedJob,
                outcome: &JobOutcome,
            ) -> Result<bool, Error> {
                use diesel::RunQueryDsl;
                let query = Query::<$db>::new("UPDATE es_jobs SET state = ");
                let query = match outcome {
                    JobOutcome::Done => query.sql("'done', last_error = NULL, finished_at = "),
                    JobOutcome::Retry { error, .. } => query
                        .sql("'pending', last_error = ")
                        .bind::<diesel::sql_types::Text, _>(error.clone())
                        .sql(", run_at = "),
                    JobOutcome::Dead { error } => query
                        .sql("'dead', last_error = ")
                        .bind::<diesel::sql_types::Text, _>(error.clone())
                        .sql(", finished_at = "),
                };
                let delay = match outcome {
                    JobOutcome::Retry { delay, .. } => *delay,
                    JobOutcome::Done | JobOutcome::Dead { .. } => TimeDelta::zero(),
                };
                let query = $dialect::now_plus(query, delay)
                    .sql(", locked_by = NULL, locked_until = NULL WHERE ");
                let held = held_by(query, worker, &[(job.id, job.attempts)])
                    .execute(self)
                    .map_err(storage("es_jobs"))?;
                Ok(held > 0)
            }

            fn release_jobs(&mut self, worker: &str, held: &[(i64, i32)]) -> Result<usize, Error> {
                use diesel::RunQueryDsl;
                if held.is_empty() {
                    return Ok(0);
                }
                let query = Query::<$db>::new(
                    "UPDATE es_jobs SET state = 'pending', attempts = attempts - 1, \
                     locked_by = NULL, locked_until = NULL WHERE "
                );
                let query = held_by(query, worker, held);
                self.jobs_transaction(|conn| query.execute(conn).map_err(storage("es_jobs")))
            }

            fn retry_dead_jobs(&mut self, id: Option<i64>) -> Result<usize, Error> {
                use diesel::RunQueryDsl;
                let mut query = $dialect::now_plus(
                    Query::<$db>::new(
                        "UPDATE es_jobs SET state = 'pending', attempts = 0, finished_at = NULL, \
                         run_at = "
                    ),
                    TimeDelta::zero(),
                )
                .sql(" WHERE state = 'dead'");
                if let Some(id) = id {
                    query = query.sql(" AND id = ").bind::<diesel::sql_types::BigInt, _>(id);
                }
                query.execute(self).map_err(storage("es_jobs"))
            }

            fn prune_jobs(&mut self, older_than: TimeDelta, limit: usize) -> Result<usize, Error> {
                use diesel::RunQueryDsl;
                let [before, between, after] = $dialect::DELETE_DONE_JOBS;
                let query = $dialect::now_plus(Query::<$db>::new(before), -older_than)
                    .sql(between)
                    .bind::<diesel::sql_types::BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
                    .sql(after);
                self.jobs_transaction(|conn| query.execute(conn).map_err(storage("es_jobs")))
            }

            fn job_counts(&mut self, by_reactor: bool) -> Result<Vec<(String, String, i64)>, Error> {
                use diesel::RunQueryDsl;
                #[derive(diesel::QueryableByName)]
                struct StateCount {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    reactor: String,
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    state: String,
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    value: i64,
                }
                let query = if by_reactor {
                    "SELECT reactor, state, COUNT(*) AS value FROM es_jobs GROUP BY reactor, state \
                     ORDER BY reactor, state"
                } else {
                    "SELECT '' AS reactor, state, COUNT(*) AS value FROM es_jobs GROUP BY state \
                     ORDER BY state"
                };
                let rows: Vec<StateCount> = diesel::sql_query(query)
                .load(self)
                .map_err(storage("es_jobs"))?;
                Ok(rows.into_iter().map(|row| (row.reactor, row.state, row.value)).collect())
            }

            fn dead_jobs(&mut self, limit: usize) -> Result<Vec<DeadJob>, Error> {
                use diesel::RunQueryDsl;
                Query::<$db>::new(
                    "SELECT id, events_table, event_id, reactor, attempts, last_error FROM es_jobs \
                     WHERE state = 'dead' ORDER BY id LIMIT "
                )
                .bind::<diesel::sql_types::BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
                .load(self)
                .map_err(storage("es_jobs"))
            }

            fn listen_for_jobs(&mut self) -> Result<(), Error> {
                $dialect::listen_for_jobs(self)
            }

            fn wait_for_jobs(&mut self, timeout: std::time::Duration) -> Result<bool, Error> {
                $dialect::wait_for_jobs(self, timeout)
            }

            fn framework_ddl() -> Vec<String> {
                $dialect::framework_ddl()
            }

            fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
                $dialect::events_table_ddl(table, id_type)
            }
        }
    };
}

/// The `INSERT` of staged events: `(aggregate_id, version, type, data, metadata, created_at)`
/// for each, preceded by an explicit `id` when `with_ids` holds the first position.
fn insert_query<'a, DB, Id>(
    table: &str,
    id: &Id,
    staged: &Staged<impl Sized>,
    first_position: Option<i64>,
    json_suffix: &str,
    bind_time: fn(Query<'a, DB>, DateTime<Utc>) -> Query<'a, DB>,
) -> Query<'a, DB>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>,
    Id: IdColumn<DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
{
    let columns = if first_position.is_some() {
        "id, aggregate_id, version, type, data, metadata, created_at"
    } else {
        "aggregate_id, version, type, data, metadata, created_at"
    };
    let mut query = Query::new(format!("INSERT INTO {table} ({columns}) VALUES "));
    for (index, event) in staged.events.iter().enumerate() {
        query = query.sql(if index == 0 { "(" } else { ", (" });
        if let Some(first) = first_position {
            let position = first + i64::try_from(index).unwrap_or(i64::MAX);
            query = query
                .bind::<diesel::sql_types::BigInt, _>(position)
                .sql(", ");
        }
        query = query
            .bind_id(id)
            .sql(", ")
            .bind::<diesel::sql_types::BigInt, _>(event.version)
            .sql(", ")
            .bind::<diesel::sql_types::Text, _>(event.tag.to_owned())
            .sql(", ")
            .bind::<diesel::sql_types::Text, _>(event.data.clone())
            .sql(json_suffix)
            .sql(", ")
            .bind::<diesel::sql_types::Text, _>(staged.metadata_json.clone())
            .sql(json_suffix)
            .sql(", ");
        query = bind_time(query, staged.created_at).sql(")");
    }
    query
}

/// Appends the condition that selects the claims `held` (ids and attempt numbers) of `worker`,
/// and only while they are still its own: running, locked by it, at the attempt it claimed. The
/// attempt number is each claim's fencing token (every claim increments it), so a worker whose
/// lease expired and whose job was claimed again cannot record an outcome over the new attempt.
fn held_by<'a, DB>(query: Query<'a, DB>, worker: &str, held: &[(i64, i32)]) -> Query<'a, DB>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Integer>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    i32: diesel::serialize::ToSql<diesel::sql_types::Integer, DB>,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
{
    let mut by_attempt = std::collections::BTreeMap::<i32, Vec<i64>>::new();
    for &(id, attempt) in held {
        by_attempt.entry(attempt).or_default().push(id);
    }
    let mut query = query
        .sql("state = 'running' AND locked_by = ")
        .bind::<diesel::sql_types::Text, _>(worker.to_owned())
        .sql(" AND (");
    for (index, (attempt, ids)) in by_attempt.into_iter().enumerate() {
        query = query
            .sql(if index == 0 {
                "(attempts = "
            } else {
                " OR (attempts = "
            })
            .bind::<diesel::sql_types::Integer, _>(attempt)
            .sql(" AND id IN (")
            .bind_list::<diesel::sql_types::BigInt, _>(ids)
            .sql("))");
    }
    query.sql(")")
}

/// Runs the upsert of an aggregate's row that [`Database::insert_events`] was given, if any.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
fn run_save<C: Connection>(
    conn: &mut C,
    save: Option<(&'static str, Query<'_, C::Backend>)>,
) -> Result<(), Error>
where
    for<'a> Query<'a, C::Backend>: diesel::query_dsl::methods::ExecuteDsl<C>,
{
    use diesel::RunQueryDsl;
    if let Some((table, upsert)) = save {
        upsert.execute(conn).map_err(storage(table))?;
    }
    Ok(())
}

/// How a backend tells apart the two unique keys of an events table, and how its position is moved.
struct UniqueKeys {
    /// Whether a unique violation in events table `table` is that of `(aggregate_id, version)`,
    /// named `{table}_aggregate_version` by the DDL (the other is the id, the position).
    is_version: fn(&str, &dyn diesel::result::DatabaseErrorInformation) -> bool,
    /// The statement moving the global position past `<highest id>`, once its last id taken.
    move_position: &'static str,
}

/// Classifies an error of the `INSERT` of events into `table`: a unique violation of
/// `(aggregate_id, version)` is a concurrency conflict (a concurrent writer stored that version
/// first); one of the id is a position taken by a row the store did not write ([`PositionTaken`]);
/// anything else a storage error of the events table (whose contention the caller classifies).
/// `allocated` is the range of ids the store gave the events, when it chose them (not PostgreSQL,
/// whose column default does).
fn insert_error<Id: std::fmt::Display>(
    table: &'static str,
    (aggregate, id): (&'static str, &Id),
    first_version: i64,
    allocated: Option<(i64, i64)>,
    keys: &'static UniqueKeys,
) -> impl FnOnce(diesel::result::Error) -> Error {
    move |error| match error {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            ref info,
        ) => {
            if (keys.is_version)(table, info.as_ref()) {
                Error::Conflict {
                    aggregate,
                    aggregate_id: id.to_string(),
                    expected: first_version - 1,
                    actual: first_version,
                }
            } else {
                Error::Storage {
                    table,
                    source: Box::new(PositionTaken {
                        table,
                        allocated: match allocated {
                            Some((first, last)) if first == last => format!("event id {first}"),
                            Some((first, last)) => format!("one of the event ids {first}..={last}"),
                            None => "the event id".to_owned(),
                        },
                        fix: keys.move_position,
                        source: error,
                    }),
                }
            }
        }
        other => storage(table)(other),
    }
}

/// The position (the id) the store allocated to an event is taken already in its events table, by
/// a row the store did not write: it took its id elsewhere than from the global position.
#[derive(Debug, thiserror::Error)]
#[error(
    "{allocated} the store allocated in `{table}` is taken already, by a row the store did not \
     write (inserted by hand?): move the position past the highest id of every events table \
     (`{fix}`), then write again ({source})"
)]
struct PositionTaken {
    table: &'static str,
    allocated: String,
    fix: &'static str,
    #[source]
    source: diesel::result::Error,
}

/// Whether a table name read from the database (a job's) is a plain identifier, safe to put in SQL.
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= 63
}

/// A time offset in microseconds, as the servers' interval arithmetic takes it (saturating: the
/// worker's options are checked to stay far within range).
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn microseconds(offset: TimeDelta) -> i64 {
    offset
        .num_microseconds()
        .unwrap_or(if offset < TimeDelta::zero() {
            i64::MIN
        } else {
            i64::MAX
        })
}

/// Sleeps for `timeout` (backends without notifications): no job announced itself.
fn sleep_for_jobs(timeout: std::time::Duration) -> Result<bool, Error> {
    std::thread::sleep(timeout);
    Ok(false)
}

fn indexes_ddl(table: &str) -> [String; 2] {
    [
        format!("CREATE INDEX IF NOT EXISTS {table}_type_created_at ON {table} (type, created_at)"),
        format!("CREATE INDEX IF NOT EXISTS {table}_created_at ON {table} (created_at)"),
    ]
}

/// An integer of a SQLite row, refusing what SQLite would convert to one (`'abc'` to 0).
#[cfg(feature = "sqlite")]
pub(crate) use sqlite::read_version as read_sqlite_integer;

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    use diesel::deserialize::FromSql;
    use diesel::result::{UnexpectedEndOfRow, UnexpectedNullError};
    use diesel::sqlite::{Sqlite, SqliteConnection, SqliteType, SqliteValue};
    pub(super) const SELECT_COLUMNS: &str =
        "id, aggregate_id, version, type, data, metadata, created_at";
    pub(super) const SELECT_ANY_COLUMNS: &str = "id, CAST(aggregate_id AS TEXT) AS aggregate_id, \
         version, type, data, metadata, created_at";
    pub(super) const CLAIM_LOCK: &str = "";
    pub(super) const DAY_OF_CREATED_AT: &str = "substr(created_at, 1, 10)";
    const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

    pub(super) const WAKE_WORKERS: [&str; 2] = ["", ""];

    pub(super) const DELETE_DONE_JOBS: [&str; 3] = [
        "DELETE FROM es_jobs WHERE id IN (SELECT id FROM es_jobs WHERE state = 'done' \
         AND finished_at < ",
        " ORDER BY id LIMIT ",
        ")",
    ];

    /// The time `offset` from now. SQLite runs on one machine: its clock is this process's.
    pub(super) fn now_plus(query: Query<'_, Sqlite>, offset: TimeDelta) -> Query<'_, Sqlite> {
        let time =
            es_core::now()
                .checked_add_signed(offset)
                .unwrap_or(if offset < TimeDelta::zero() {
                    DateTime::<Utc>::MIN_UTC
                } else {
                    DateTime::<Utc>::MAX_UTC
                });
        bind_time(query, time)
    }

    pub(super) fn before_jobs_transaction(_: &mut SqliteConnection) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn listen_for_jobs(_: &mut SqliteConnection) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn wait_for_jobs(
        _: &mut SqliteConnection,
        timeout: std::time::Duration,
    ) -> Result<bool, Error> {
        sleep_for_jobs(timeout)
    }

    pub(super) fn bind_time(query: Query<'_, Sqlite>, time: DateTime<Utc>) -> Query<'_, Sqlite> {
        query.bind::<diesel::sql_types::Text, _>(time.format(FORMAT).to_string())
    }

    /// The value of `column`, to `read`; SQL `NULL` is an error (the store never writes one).
    fn with_value<'a, I, T>(
        row: &(impl diesel::row::Row<'a, Sqlite> + diesel::row::RowIndex<I>),
        column: I,
        read: impl FnOnce(SqliteValue<'_, '_, '_>) -> diesel::deserialize::Result<T>,
    ) -> diesel::deserialize::Result<T> {
        use diesel::row::Field;
        let field = diesel::row::Row::get(row, column).ok_or(UnexpectedEndOfRow)?;
        read(field.value().ok_or(UnexpectedNullError)?)
    }

    /// What SQLite holds in a value, for a message: a column's affinity converts what it can, but
    /// `'abc'` stays text in an integer column, and a blob stays a blob anywhere.
    fn kind(value_type: Option<SqliteType>) -> &'static str {
        match value_type {
            Some(SqliteType::Long) => "an integer",
            Some(SqliteType::Double) => "a real number",
            Some(SqliteType::Binary) => "a blob",
            _ => "text",
        }
    }

    /// A stored text in a message: quoted, and cut after 40 characters.
    fn quoted(text: &str) -> String {
        match text.char_indices().nth(40) {
            Some((end, _)) => format!("`{}...`", &text[..end]),
            None => format!("`{text}`"),
        }
    }

    /// An integer column (`version`, an integer `aggregate_id`): SQLite hands out 0 for `'abc'`
    /// and 2 for 2.5 when asked for an integer, so any other value is an error.
    pub(crate) fn read_version<'a, I>(
        row: &(impl diesel::row::Row<'a, Sqlite> + diesel::row::RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<i64> {
        with_value(row, column, |mut value| match value.value_type() {
            Some(SqliteType::Long) => Ok(value.read_long()),
            Some(SqliteType::Double) => {
                Err(format!("{} is a real number, not an integer", value.read_double()).into())
            }
            Some(SqliteType::Binary) => Err("a blob, not an integer".into()),
            _ => Err(format!("{} is text, not an integer", quoted(value.read_text())).into()),
        })
    }

    /// A text column (`type`, `data`, `metadata`): a blob is an error, not text of its bytes.
    pub(super) fn read_text<'a, I>(
        row: &(impl diesel::row::Row<'a, Sqlite> + diesel::row::RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<String> {
        with_value(row, column, |value| match value.value_type() {
            Some(SqliteType::Text) => {
                <String as FromSql<diesel::sql_types::Text, Sqlite>>::from_sql(value)
            }
            other => Err(format!("{}, not text", kind(other)).into()),
        })
    }

    /// `created_at`: the format this store writes, any other RFC 3339 time, or SQLite's own
    /// `YYYY-MM-DD HH:MM:SS[.SSS]` (what `CURRENT_TIMESTAMP` and `datetime('now')` write, in UTC),
    /// so that a row inserted by hand with SQLite's functions reads as the time they meant.
    pub(super) fn read_time<'a, I>(
        row: &(impl diesel::row::Row<'a, Sqlite> + diesel::row::RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<DateTime<Utc>> {
        let text = read_text(row, column)?;
        read_stored_time(&text).ok_or_else(|| {
            format!(
                "{} is not a time (write `2026-04-20T09:00:00.000000Z` or SQLite's \
                 `2026-04-20 09:00:00`, in UTC)",
                quoted(&text)
            )
            .into()
        })
    }

    /// A stored `created_at` ([`read_time`]), if it is a time in one of the formats it reads.
    fn read_stored_time(text: &str) -> Option<DateTime<Utc>> {
        parse_stored_time(text)
            .or_else(|| {
                DateTime::parse_from_rfc3339(text)
                    .ok()
                    .map(|time| time.to_utc())
            })
            .or_else(|| {
                chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                    .ok()
                    .map(|time| time.and_utc())
            })
    }

    /// Reads the one format this store writes (`2026-12-01T10:20:30.123456Z`, [`FORMAT`]) with
    /// no general parser: chrono's RFC 3339 parser was a tenth of a replay. `None` for any other
    /// text, which the caller hands to that parser.
    fn parse_stored_time(text: &str) -> Option<DateTime<Utc>> {
        let bytes = text.as_bytes();
        let separators = [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
        ];
        if bytes.len() != 27
            || bytes.get(26) != Some(&b'Z')
            || separators
                .iter()
                .any(|&(at, separator)| bytes.get(at) != Some(&separator))
        {
            return None;
        }
        let number = |from: usize, to: usize| -> Option<u32> {
            bytes.get(from..to)?.iter().try_fold(0u32, |value, &digit| {
                digit
                    .is_ascii_digit()
                    .then(|| value * 10 + u32::from(digit - b'0'))
            })
        };
        let year = i32::try_from(number(0, 4)?).ok()?;
        let date = chrono::NaiveDate::from_ymd_opt(year, number(5, 7)?, number(8, 10)?)?;
        let time = date.and_hms_micro_opt(
            number(11, 13)?,
            number(14, 16)?,
            number(17, 19)?,
            number(20, 26)?,
        )?;
        Some(time.and_utc())
    }

    /// Stepped through SQLite's cursor: each row is read when the iterator reaches it.
    pub(super) type EventsLoading = diesel::connection::DefaultLoadingMode;

    pub(super) fn begin_write(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
        let nested = AnsiTransactionManager::transaction_manager_status_mut(conn)
            .transaction_depth()?
            .is_some();
        if nested {
            AnsiTransactionManager::begin_transaction(conn)
        } else {
            AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN IMMEDIATE")
        }
    }

    /// A deferred `BEGIN`: its first read takes the WAL snapshot it keeps, and no lock that
    /// stops writers.
    pub(super) fn begin_snapshot(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
        AnsiTransactionManager::begin_transaction(conn)
    }

    /// SQLite rolls back a failed statement only, never the transaction around it.
    pub(super) fn check_not_aborted(_: &mut SqliteConnection) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn insert_events<Id: IdColumn<Sqlite>, A: es_core::Aggregate>(
        conn: &mut SqliteConnection,
        table: &'static str,
        id: &Id,
        staged: &Staged<A>,
        save: Option<(&'static str, Query<'_, Sqlite>)>,
    ) -> Result<Vec<i64>, Error> {
        use diesel::RunQueryDsl;
        let count = i64::try_from(staged.events.len()).unwrap_or(i64::MAX);
        let last: Number = Query::new("UPDATE es_positions SET position = position + ")
            .bind::<diesel::sql_types::BigInt, _>(count)
            .sql(" WHERE name = 'events' RETURNING position AS value")
            .get_result(conn)
            .map_err(storage("es_positions"))?;
        let first = last.value - count + 1;
        let first_version = staged.events.first().map_or(1, |event| event.version);
        let allocated = Some((first, last.value));
        insert_query(table, id, staged, Some(first), "", bind_time)
            .execute(conn)
            .map_err(insert_error(
                table,
                (A::NAME, id),
                first_version,
                allocated,
                &UNIQUE_KEYS,
            ))?;
        run_save(conn, save)?;
        Ok((first..=last.value).collect())
    }

    /// SQLite names the columns of a violated unique constraint, never the constraint.
    static UNIQUE_KEYS: UniqueKeys = UniqueKeys {
        is_version: |table, info| {
            info.message()
                == format!("UNIQUE constraint failed: {table}.aggregate_id, {table}.version")
        },
        move_position: "UPDATE es_positions SET position = <highest id> WHERE name = 'events'",
    };

    pub(super) fn framework_ddl() -> Vec<String> {
        vec![
            "CREATE TABLE IF NOT EXISTS es_positions (name TEXT NOT NULL PRIMARY KEY, \
             position BIGINT NOT NULL)"
                .to_owned(),
            "INSERT INTO es_positions (name, position) VALUES ('events', 0) \
             ON CONFLICT (name) DO NOTHING"
                .to_owned(),
            "CREATE TABLE IF NOT EXISTS es_jobs (\
             id INTEGER PRIMARY KEY AUTOINCREMENT, \
             events_table TEXT NOT NULL, \
             event_id BIGINT NOT NULL, \
             reactor TEXT NOT NULL, \
             state TEXT NOT NULL, \
             attempts INTEGER NOT NULL DEFAULT 0, \
             run_at TEXT NOT NULL, \
             locked_by TEXT, \
             locked_until TEXT, \
             last_error TEXT, \
             created_at TEXT NOT NULL, \
             finished_at TEXT, \
             UNIQUE (event_id, reactor))"
                .to_owned(),
            "CREATE INDEX IF NOT EXISTS es_jobs_ready ON es_jobs (state, run_at)".to_owned(),
        ]
    }

    pub(super) fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
        let [by_type, by_time] = indexes_ddl(table);
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 id INTEGER PRIMARY KEY NOT NULL, \
                 aggregate_id {id_type} NOT NULL, \
                 version BIGINT NOT NULL, \
                 type TEXT NOT NULL, \
                 data TEXT NOT NULL, \
                 metadata TEXT NOT NULL, \
                 created_at TEXT NOT NULL, \
                 CONSTRAINT {table}_aggregate_version UNIQUE (aggregate_id, version))"
            ),
            by_type,
            by_time,
        ]
    }

    database!(SqliteConnection, Sqlite, sqlite);

    /// A write transaction holds SQLite's only write lock from `BEGIN IMMEDIATE` on: nothing can
    /// append between its statements, so the head read with the row is always current.
    impl crate::table::HeadInLock for SqliteConnection {
        fn head_is_current(_table: &str, _id_column: &str) -> String {
            "1".to_owned()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The error of `statement` on a fresh `task_events` holding one event at position 1.
        fn unique_violation(statement: &str) -> diesel::result::Error {
            use diesel::connection::SimpleConnection;
            let mut conn = SqliteConnection::establish(":memory:").unwrap();
            for ddl in events_table_ddl("task_events", "BIGINT") {
                conn.batch_execute(&ddl).unwrap();
            }
            let row = "'t', '{}', '{}', '2026-04-20T12:00:00.000000Z'";
            conn.batch_execute(&format!("INSERT INTO task_events VALUES (1, 7, 1, {row})"))
                .unwrap();
            conn.batch_execute(&statement.replace("ROW", row))
                .unwrap_err()
        }

        #[test]
        fn a_taken_version_is_told_from_a_taken_position() {
            let version = unique_violation("INSERT INTO task_events VALUES (2, 7, 1, ROW)");
            let position = unique_violation("INSERT INTO task_events VALUES (1, 8, 1, ROW)");
            let is_version = |error: &diesel::result::Error| match error {
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    info,
                ) => (UNIQUE_KEYS.is_version)("task_events", info.as_ref()),
                other => panic!("not a unique violation: {other}"),
            };
            assert!(is_version(&version), "{version}");
            assert!(!is_version(&position), "{position}");
        }

        #[test]
        fn stored_times_parse_as_rfc3339_does() {
            for text in [
                "2026-12-01T10:20:30.123456Z",
                "1970-01-01T00:00:00.000000Z",
                "2024-02-29T23:59:59.999999Z",
            ] {
                let expected = DateTime::parse_from_rfc3339(text).map(|time| time.to_utc());
                assert_eq!(parse_stored_time(text), expected.ok(), "{text}");
                let written = parse_stored_time(text).map(|time| time.format(FORMAT).to_string());
                assert_eq!(written.as_deref(), Some(text));
            }
        }

        #[test]
        fn sqlites_own_format_and_other_rfc3339_times_read_as_utc() {
            let at = |text: &str| text.parse::<DateTime<Utc>>().ok();
            for (stored, time) in [
                ("2026-04-20 12:00:00", "2026-04-20T12:00:00Z"),
                ("2026-04-20 12:00:00.123", "2026-04-20T12:00:00.123Z"),
                ("2026-04-20T14:00:00+02:00", "2026-04-20T12:00:00Z"),
                ("2026-04-20T12:00:00.5Z", "2026-04-20T12:00:00.5Z"),
            ] {
                assert_eq!(read_stored_time(stored), at(time), "{stored}");
            }
            for stored in [
                "yesterday",
                "2026-04-20",
                "2026-04-20 25:00:00",
                "+262143-01-01T00:00:00Z",
            ] {
                assert_eq!(read_stored_time(stored), None, "{stored}");
            }
        }

        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig {
                cases: 10_000,
                failure_persistence: None,
                ..proptest::prelude::ProptestConfig::default()
            })]

            /// Any text, and texts shaped like times: the fast path reads what RFC 3339 reads
            /// the same (or leaves it to it), and the whole reader is chrono's RFC 3339 parser
            /// or SQLite's format, never a panic.
            #[test]
            fn stored_times_read_as_chrono_does(
                text in proptest::prop_oneof![
                    proptest::arbitrary::any::<String>(),
                    "[0-9+-]{0,7}-[0-9]{1,2}-[0-9]{1,2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?(Z|z|[+-][0-9]{2}:[0-9]{2})?",
                    "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z",
                ]
            ) {
                let rfc3339 = DateTime::parse_from_rfc3339(&text).ok().map(|time| time.to_utc());
                if let Some(fast) = parse_stored_time(&text) {
                    proptest::prop_assert_eq!(Some(fast), rfc3339);
                }
                let sqlite = chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
                    .ok()
                    .map(|time| time.and_utc());
                proptest::prop_assert_eq!(read_stored_time(&text), rfc3339.or(sqlite));
            }
        }

        #[test]
        fn other_times_are_left_to_the_rfc3339_parser() {
            for text in [
                "2026-12-01T10:20:30Z",
                "2026-12-01T10:20:30.123456+01:00",
                "2026-02-30T10:20:30.123456Z",
                "2026-12-01 10:20:30.123456Z",
                "2026-12-01T10:20:3x.123456Z",
                "2026-12-01T10:20:30.12345éZ",
                "",
            ] {
                assert_eq!(parse_stored_time(text), None, "{text}");
            }
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use diesel::pg::{Pg, PgConnection};
    pub(super) const SELECT_COLUMNS: &str = "id, aggregate_id, version, type, data::text AS data, \
         metadata::text AS metadata, created_at";
    pub(super) const SELECT_ANY_COLUMNS: &str = "id, aggregate_id::text AS aggregate_id, version, \
         type, data::text AS data, metadata::text AS metadata, created_at";
    pub(super) const CLAIM_LOCK: &str = " FOR UPDATE SKIP LOCKED";
    /// The day of `created_at`, or its text when it has none (`infinity`).
    pub(super) const DAY_OF_CREATED_AT: &str =
        "COALESCE(to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), created_at::text)";

    pub(super) fn before_jobs_transaction(_: &mut PgConnection) -> Result<(), Error> {
        Ok(())
    }

    pub(super) const DELETE_DONE_JOBS: [&str; 3] = [
        "DELETE FROM es_jobs WHERE id IN (SELECT id FROM es_jobs WHERE state = 'done' \
         AND finished_at < ",
        " ORDER BY id LIMIT ",
        ")",
    ];

    /// The time `offset` from the server's `now()` (the start of its transaction), so that the
    /// leases of workers on several machines compare one clock, never their own.
    pub(super) fn now_plus(query: Query<'_, Pg>, offset: TimeDelta) -> Query<'_, Pg> {
        query
            .sql("(now() + ")
            .bind::<diesel::sql_types::BigInt, _>(microseconds(offset))
            .sql(" * INTERVAL '1 microsecond')")
    }

    /// Wraps the jobs' `INSERT` in a statement that also notifies `es_jobs` (delivered at commit,
    /// as `NOTIFY` is): one round trip where `INSERT` then `NOTIFY` took two. A data-modifying
    /// `WITH` runs to completion whether or not the outer `SELECT` reads it.
    pub(super) const WAKE_WORKERS: [&str; 2] = [
        "WITH jobs AS (",
        ") SELECT pg_notify('es_jobs', '') AS woken",
    ];

    pub(super) fn listen_for_jobs(conn: &mut PgConnection) -> Result<(), Error> {
        use diesel::connection::SimpleConnection;
        conn.batch_execute("LISTEN es_jobs")
            .map_err(storage("es_jobs"))
    }

    /// Polls the connection for notifications (no query: libpq reads what the server pushed)
    /// every few milliseconds until one arrives or `timeout` passes. A connection the server
    /// closed yields an error on every poll: that is the first error, returned.
    pub(super) fn wait_for_jobs(
        conn: &mut PgConnection,
        timeout: std::time::Duration,
    ) -> Result<bool, Error> {
        let step = std::time::Duration::from_millis(5);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut woken = false;
            for notification in conn.notifications_iter() {
                notification.map_err(storage("es_jobs"))?;
                woken = true;
            }
            if woken {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(step);
        }
    }

    pub(super) fn bind_time(query: Query<'_, Pg>, time: DateTime<Utc>) -> Query<'_, Pg> {
        query.bind::<diesel::sql_types::Timestamptz, _>(time)
    }

    pub(super) fn read_version<'a, I>(
        row: &(impl diesel::row::Row<'a, Pg> + diesel::row::RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<i64> {
        diesel::row::Row::get_value::<diesel::sql_types::BigInt, i64, I>(row, column)
    }

    pub(super) fn read_text<'a, I>(
        row: &(impl diesel::row::Row<'a, Pg> + diesel::row::RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<String> {
        diesel::row::Row::get_value::<diesel::sql_types::Text, String, I>(row, column)
    }

    pub(super) fn read_time<'a, I>(
        row: &(impl diesel::row::Row<'a, Pg> + diesel::row::RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<DateTime<Utc>> {
        diesel::row::Row::get_value::<diesel::sql_types::Timestamptz, DateTime<Utc>, I>(row, column)
    }

    /// Row by row (libpq's single-row mode): the rows are decoded as they arrive, while the
    /// server is still sending the rest, instead of after the whole result is buffered. Dropping
    /// the iterator early reads and discards the rows still to come (libpq has no other way to
    /// end a result and keep the connection).
    pub(super) type EventsLoading = diesel::pg::PgRowByRowLoadingMode;

    pub(super) fn begin_write(conn: &mut PgConnection) -> diesel::QueryResult<()> {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        AnsiTransactionManager::begin_transaction(conn)
    }

    pub(super) fn begin_snapshot(conn: &mut PgConnection) -> diesel::QueryResult<()> {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        if AnsiTransactionManager::transaction_manager_status_mut(conn)
            .transaction_depth()?
            .is_some()
        {
            return AnsiTransactionManager::begin_transaction(conn);
        }
        AnsiTransactionManager::begin_transaction_sql(
            conn,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )
    }

    /// PostgreSQL aborts a transaction at its first failed statement and answers its `COMMIT`
    /// with a rollback, and no error: before the outermost commit, one statement that fails in an
    /// aborted transaction (a savepoint's `RELEASE` fails by itself).
    pub(super) fn check_not_aborted(conn: &mut PgConnection) -> Result<(), Error> {
        use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
        let depth = AnsiTransactionManager::transaction_manager_status_mut(conn)
            .transaction_depth()
            .map_err(storage("transaction"))?;
        if depth.is_none_or(|depth| depth.get() > 1) {
            return Ok(());
        }
        conn.batch_execute("SELECT 1").map_err(|error| match error {
            diesel::result::Error::DatabaseError(_, ref info)
                if info.message().starts_with("current transaction is aborted") =>
            {
                Error::Storage {
                    table: "transaction",
                    source: Box::new(AbortedWrite(error)),
                }
            }
            other => storage("transaction")(other),
        })
    }

    /// A write PostgreSQL aborted under a reactor that went on.
    #[derive(Debug, thiserror::Error)]
    #[error(
        "a statement failed in the write transaction and the reactor that ran it went on (it \
         handled the error and returned `Ok`), so PostgreSQL aborted the transaction: nothing of \
         the write is stored ({0})"
    )]
    struct AbortedWrite(#[source] diesel::result::Error);

    pub(super) fn insert_events<Id: IdColumn<Pg>, A: es_core::Aggregate>(
        conn: &mut PgConnection,
        table: &'static str,
        id: &Id,
        staged: &Staged<A>,
        save: Option<(&'static str, Query<'_, Pg>)>,
    ) -> Result<Vec<i64>, Error> {
        use diesel::RunQueryDsl;
        let first_version = staged.events.first().map_or(1, |event| event.version);
        let insert = insert_query(table, id, staged, None, "::jsonb", bind_time)
            .sql(" RETURNING id AS value");
        let (query, saved_table) = match save {
            Some((saved_table, upsert)) => (
                Query::new("WITH es_saved AS (")
                    .append(upsert)
                    .sql(") ")
                    .append(insert),
                Some(saved_table),
            ),
            None => (insert, None),
        };
        let rows: Vec<Number> = query.load(conn).map_err(|error| {
            let from_save = matches!(
                &error,
                diesel::result::Error::DatabaseError(_, info)
                    if info.table_name().is_some_and(|name| Some(name) == saved_table)
            );
            match saved_table {
                Some(saved_table) if from_save => storage(saved_table)(error),
                _ => insert_error(table, (A::NAME, id), first_version, None, &UNIQUE_KEYS)(error),
            }
        })?;
        Ok(rows.into_iter().map(|row| row.value).collect())
    }

    /// PostgreSQL names the violated constraint: `{table}_aggregate_version`, or in a table
    /// created before it was named, the default `{table}_aggregate_id_version_key` (its detail
    /// names the columns whatever the name, when the default was cut to 63 bytes).
    static UNIQUE_KEYS: UniqueKeys = UniqueKeys {
        is_version: |table, info| {
            info.constraint_name().is_some_and(|name| {
                name == format!("{table}_aggregate_version")
                    || name == format!("{table}_aggregate_id_version_key")
            }) || info
                .details()
                .is_some_and(|details| details.starts_with("Key (aggregate_id, version)="))
        },
        move_position: "SELECT setval('es_event_position', <highest id>)",
    };

    pub(super) fn framework_ddl() -> Vec<String> {
        vec![
            "CREATE SEQUENCE IF NOT EXISTS es_event_position".to_owned(),
            "CREATE TABLE IF NOT EXISTS es_jobs (\
             id BIGSERIAL PRIMARY KEY, \
             events_table TEXT NOT NULL, \
             event_id BIGINT NOT NULL, \
             reactor TEXT NOT NULL, \
             state TEXT NOT NULL, \
             attempts INTEGER NOT NULL DEFAULT 0, \
             run_at TIMESTAMPTZ NOT NULL, \
             locked_by TEXT, \
             locked_until TIMESTAMPTZ, \
             last_error TEXT, \
             created_at TIMESTAMPTZ NOT NULL, \
             finished_at TIMESTAMPTZ, \
             UNIQUE (event_id, reactor))"
                .to_owned(),
            "CREATE INDEX IF NOT EXISTS es_jobs_ready ON es_jobs (state, run_at)".to_owned(),
        ]
    }

    pub(super) fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
        let [by_type, by_time] = indexes_ddl(table);
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 id BIGINT PRIMARY KEY DEFAULT nextval('es_event_position'), \
                 aggregate_id {id_type} NOT NULL, \
                 version BIGINT NOT NULL, \
                 type TEXT NOT NULL, \
                 data JSONB NOT NULL, \
                 metadata JSONB NOT NULL, \
                 created_at TIMESTAMPTZ NOT NULL, \
                 CONSTRAINT {table}_aggregate_version UNIQUE (aggregate_id, version))"
            ),
            by_type,
            by_time,
        ]
    }

    database!(PgConnection, Pg, postgres);
    /// The subqueries of a `SELECT ... FOR UPDATE` read with the statement's snapshot, taken
    /// before the row lock is granted. If a writer changed the row after that snapshot (the lock
    /// waited for it, or it committed between the snapshot and the lock), PostgreSQL locks the
    /// row's newest version, but the head the subqueries read misses that writer's events. Every
    /// append writes its aggregate's row, so the head is current exactly when the locked version
    /// is the one the snapshot sees: the same `ctid`. Otherwise the store reads the head again.
    impl crate::table::HeadInLock for PgConnection {
        fn head_is_current(table: &str, id_column: &str) -> String {
            format!(
                "COALESCE((SELECT es_snapshot.ctid FROM \"{table}\" AS es_snapshot \
                 WHERE es_snapshot.\"{id_column}\" = \"{table}\".\"{id_column}\") \
                 = \"{table}\".ctid, FALSE)"
            )
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lease_times_are_the_servers_clock() {
            let query = now_plus(Query::new("SELECT "), TimeDelta::seconds(2));
            assert_eq!(
                diesel::debug_query::<Pg, _>(&query).to_string(),
                "SELECT (now() + $1 * INTERVAL '1 microsecond') -- binds: [2000000]"
            );
        }

        /// A unique violation as PostgreSQL describes it.
        struct Violation {
            constraint: &'static str,
            details: &'static str,
        }

        impl diesel::result::DatabaseErrorInformation for Violation {
            fn message(&self) -> &str {
                "duplicate key value violates unique constraint"
            }
            fn details(&self) -> Option<&str> {
                Some(self.details)
            }
            fn hint(&self) -> Option<&str> {
                None
            }
            fn table_name(&self) -> Option<&str> {
                Some("task_events")
            }
            fn column_name(&self) -> Option<&str> {
                None
            }
            fn constraint_name(&self) -> Option<&str> {
                Some(self.constraint)
            }
            fn statement_position(&self) -> Option<i32> {
                None
            }
        }

        #[test]
        fn a_taken_version_is_told_from_a_taken_position() {
            let version = "Key (aggregate_id, version)=(7, 1) already exists.";
            let cases = [
                ("task_events_aggregate_version", version, true),
                ("task_events_aggregate_id_version_key", version, true),
                ("a_cut_default_name_key", version, true),
                ("task_events_pkey", "Key (id)=(2) already exists.", false),
            ];
            for (constraint, details, is_version) in cases {
                let violation = Violation {
                    constraint,
                    details,
                };
                assert_eq!(
                    (UNIQUE_KEYS.is_version)("task_events", &violation),
                    is_version,
                    "{constraint}"
                );
            }
        }
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use diesel::mysql::{Mysql, MysqlConnection};
    pub(super) const SELECT_COLUMNS: &str =
        "id, aggregate_id, version, type, data, metadata, created_at";
    pub(super) const SELECT_ANY_COLUMNS: &str = "id, CAST(aggregate_id AS CHAR) AS aggregate_id, \
         version, type, data, metadata, created_at";
    pub(super) const CLAIM_LOCK: &str = " FOR UPDATE SKIP LOCKED";
    pub(super) const DAY_OF_CREATED_AT: &str = "DATE_FORMAT(created_at, '%Y-%m-%d')";

    pub(super) const WAKE_WORKERS: [&str; 2] = ["", ""];

    pub(super) const DELETE_DONE_JOBS: [&str; 3] = [
        "DELETE FROM es_jobs WHERE state = 'done' AND finished_at < ",
        " ORDER BY id LIMIT ",
        "",
    ];

    /// The time `offset` from the server's clock, in UTC as the store's times are, so that the
    /// leases of workers on several machines compare one clock, never their own.
    pub(super) fn now_plus(query: Query<'_, Mysql>, offset: TimeDelta) -> Query<'_, Mysql> {
        query
            .sql("(UTC_TIMESTAMP(6) + INTERVAL ")
            .bind::<diesel::sql_types::BigInt, _>(microseconds(offset))
            .sql(" MICROSECOND)")
    }

    /// The bookkeeping of jobs reads committed rows only: under REPEATABLE READ, InnoDB's gap
    /// locks on the jobs index make claims deadlock with concurrent inserts of new jobs, and a
    /// statement that scans rows another claim locked waits for it instead of skipping rows that
    /// do not match.
    pub(super) fn before_jobs_transaction(conn: &mut MysqlConnection) -> Result<(), Error> {
        use diesel::connection::SimpleConnection;
        conn.batch_execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .map_err(storage("es_jobs"))
    }

    pub(super) fn listen_for_jobs(_: &mut MysqlConnection) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn wait_for_jobs(
        _: &mut MysqlConnection,
        timeout: std::time::Duration,
    ) -> Result<bool, Error> {
        sleep_for_jobs(timeout)
    }

    pub(super) fn bind_time(query: Query<'_, Mysql>, time: DateTime<Utc>) -> Query<'_, Mysql> {
        query.bind::<diesel::sql_types::Datetime, _>(time.naive_utc())
    }

    pub(super) fn read_version<'a, I>(
        row: &(impl diesel::row::Row<'a, Mysql> + diesel::row::RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<i64> {
        diesel::row::Row::get_value::<diesel::sql_types::BigInt, i64, I>(row, column)
    }

    pub(super) fn read_text<'a, I>(
        row: &(impl diesel::row::Row<'a, Mysql> + diesel::row::RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<String> {
        diesel::row::Row::get_value::<diesel::sql_types::Text, String, I>(row, column)
    }

    pub(super) fn read_time<'a, I>(
        row: &(impl diesel::row::Row<'a, Mysql> + diesel::row::RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<DateTime<Utc>> {
        let naive =
            diesel::row::Row::get_value::<diesel::sql_types::Datetime, chrono::NaiveDateTime, I>(
                row, column,
            )?;
        Ok(naive.and_utc())
    }

    /// Fetched from the prepared statement's result as the iterator reaches each row.
    pub(super) type EventsLoading = diesel::connection::DefaultLoadingMode;

    pub(super) fn begin_write(conn: &mut MysqlConnection) -> diesel::QueryResult<()> {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        AnsiTransactionManager::begin_transaction(conn)
    }

    /// `REPEATABLE READ` for the next transaction only (a session may read committed rows for
    /// the jobs' bookkeeping), then a transaction whose snapshot is taken at once.
    pub(super) fn begin_snapshot(conn: &mut MysqlConnection) -> diesel::QueryResult<()> {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        if AnsiTransactionManager::transaction_manager_status_mut(conn)
            .transaction_depth()?
            .is_some()
        {
            return AnsiTransactionManager::begin_transaction(conn);
        }
        diesel::connection::SimpleConnection::batch_execute(
            conn,
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        )?;
        AnsiTransactionManager::begin_transaction_sql(
            conn,
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        )
    }

    /// InnoDB rolls back a failed statement only (a deadlock rolls back the whole transaction, and
    /// the next statement fails on its own).
    pub(super) fn check_not_aborted(_: &mut MysqlConnection) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn insert_events<Id: IdColumn<Mysql>, A: es_core::Aggregate>(
        conn: &mut MysqlConnection,
        table: &'static str,
        id: &Id,
        staged: &Staged<A>,
        save: Option<(&'static str, Query<'_, Mysql>)>,
    ) -> Result<Vec<i64>, Error> {
        use diesel::RunQueryDsl;
        let count = i64::try_from(staged.events.len()).unwrap_or(i64::MAX);
        Query::new("UPDATE es_positions SET position = LAST_INSERT_ID(position + ")
            .bind::<diesel::sql_types::BigInt, _>(count)
            .sql(") WHERE name = 'events'")
            .execute(conn)
            .map_err(storage("es_positions"))?;
        let last: Number = Query::<Mysql>::new("SELECT CAST(LAST_INSERT_ID() AS SIGNED) AS value")
            .get_result(conn)
            .map_err(storage("es_positions"))?;
        let first = last.value - count + 1;
        let first_version = staged.events.first().map_or(1, |event| event.version);
        let allocated = Some((first, last.value));
        insert_query(table, id, staged, Some(first), "", bind_time)
            .execute(conn)
            .map_err(insert_error(
                table,
                (A::NAME, id),
                first_version,
                allocated,
                &UNIQUE_KEYS,
            ))?;
        run_save(conn, save)?;
        Ok((first..=last.value).collect())
    }

    /// MySQL names the violated key in its message: `... for key 'task_events_aggregate_version'`
    /// (MariaDB), `... for key 'task_events.task_events_aggregate_version'` (MySQL 8).
    static UNIQUE_KEYS: UniqueKeys = UniqueKeys {
        is_version: |table, info| {
            info.message()
                .ends_with(&format!("{table}_aggregate_version'"))
        },
        move_position: "UPDATE es_positions SET position = <highest id> WHERE name = 'events'",
    };

    pub(super) fn framework_ddl() -> Vec<String> {
        vec![
            "CREATE TABLE IF NOT EXISTS es_positions (name VARCHAR(64) NOT NULL PRIMARY KEY, \
             position BIGINT NOT NULL) ENGINE=InnoDB"
                .to_owned(),
            "INSERT IGNORE INTO es_positions (name, position) VALUES ('events', 0)".to_owned(),
            "CREATE TABLE IF NOT EXISTS es_jobs (\
             id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             events_table VARCHAR(64) NOT NULL, \
             event_id BIGINT NOT NULL, \
             reactor VARCHAR(128) NOT NULL, \
             state VARCHAR(16) NOT NULL, \
             attempts INTEGER NOT NULL DEFAULT 0, \
             run_at DATETIME(6) NOT NULL, \
             locked_by TEXT, \
             locked_until DATETIME(6), \
             last_error TEXT, \
             created_at DATETIME(6) NOT NULL, \
             finished_at DATETIME(6), \
             UNIQUE KEY es_jobs_event_reactor (event_id, reactor), \
             KEY es_jobs_ready (state, run_at)) ENGINE=InnoDB"
                .to_owned(),
        ]
    }

    pub(super) fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
        vec![format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
             id BIGINT NOT NULL PRIMARY KEY, \
             aggregate_id {id_type} NOT NULL, \
             version BIGINT NOT NULL, \
             type VARCHAR(255) NOT NULL, \
             data JSON NOT NULL, \
             metadata JSON NOT NULL, \
             created_at DATETIME(6) NOT NULL, \
             UNIQUE KEY {table}_aggregate_version (aggregate_id, version), \
             KEY {table}_type_created_at (type, created_at), \
             KEY {table}_created_at (created_at)) ENGINE=InnoDB"
        )]
    }

    database!(MysqlConnection, Mysql, mysql);

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lease_times_are_the_servers_clock_in_utc() {
            let query = now_plus(Query::new("SELECT "), TimeDelta::milliseconds(-3));
            assert_eq!(
                diesel::debug_query::<Mysql, _>(&query).to_string(),
                "SELECT (UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND) -- binds: [-3000]"
            );
        }

        #[test]
        fn a_taken_version_is_told_from_a_taken_position() {
            let cases = [
                (
                    "Duplicate entry '7-1' for key 'task_events_aggregate_version'",
                    true,
                ),
                (
                    "Duplicate entry '7-1' for key 'task_events.task_events_aggregate_version'",
                    true,
                ),
                ("Duplicate entry '2' for key 'PRIMARY'", false),
                ("Duplicate entry '2' for key 'task_events.PRIMARY'", false),
            ];
            for (message, is_version) in cases {
                let info = message.to_owned();
                assert_eq!(
                    (UNIQUE_KEYS.is_version)("task_events", &info),
                    is_version,
                    "{message}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::*;

    fn failure(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    fn deadlock() -> Error {
        storage("tasks")(failure(DatabaseErrorKind::Unknown, "deadlock detected"))
    }

    #[test]
    fn collisions_are_contention_and_other_failures_are_not() {
        for message in [
            "deadlock detected",
            "Lock wait timeout exceeded; try restarting transaction",
            "database is locked",
            "database table is locked",
            "database schema is locked",
        ] {
            assert!(
                is_contention(&failure(DatabaseErrorKind::Unknown, message)),
                "{message}"
            );
        }
        assert!(is_contention(&failure(
            DatabaseErrorKind::SerializationFailure,
            ""
        )));
        assert!(!is_contention(&failure(
            DatabaseErrorKind::Unknown,
            "syntax error"
        )));
        assert!(!is_contention(&failure(
            DatabaseErrorKind::UniqueViolation,
            "deadlock detected"
        )));
        assert!(!is_contention(&DieselError::NotFound));
    }

    #[test]
    fn contention_is_retried_up_to_the_attempts_in_all() {
        let tries = Cell::new(0);
        let result: Result<(), Error> = retry_contention(3, || {
            tries.set(tries.get() + 1);
            Err(deadlock())
        });
        assert!(matches!(result, Err(Error::Storage { .. })));
        assert_eq!(tries.get(), 3);
    }

    #[test]
    fn a_success_ends_the_retries() {
        let tries = Cell::new(0);
        let result = retry_contention(5, || {
            tries.set(tries.get() + 1);
            if tries.get() < 2 {
                Err(deadlock())
            } else {
                Ok(tries.get())
            }
        });
        assert_eq!(result.unwrap(), 2);
    }

    #[test]
    fn other_failures_are_never_retried() {
        let tries = Cell::new(0);
        let result: Result<(), Error> = retry_contention(5, || {
            tries.set(tries.get() + 1);
            Err(storage("tasks")(failure(
                DatabaseErrorKind::Unknown,
                "syntax error",
            )))
        });
        assert!(result.is_err());
        assert_eq!(tries.get(), 1);
    }

    #[test]
    fn the_pause_doubles_up_to_half_a_second() {
        let pauses: Vec<u64> = (1..=8).map(longest_contention_pause_ms).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 500, 500]);
    }
}
