//! The database-specific half of the store: write transactions, the events tables, the DDL.
//!
//! Everything here is written once and instantiated per connection type by `database!`, so that
//! each backend keeps its own SQL types, placeholders and locking while sharing the logic.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::connection::Connection;
use es_core::{AsOf, Error, EventFilter, Metadata, RecordedEvent, Staged};

use crate::dispatch::{AnyEvent, NewJob};
use crate::id::IdColumn;
use crate::jobs::{ClaimedJob, DeadJob, JobOutcome};
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

    /// Inserts the jobs of async reactors (one multi-row `INSERT`) and wakes idle workers.
    #[doc(hidden)]
    fn insert_jobs(&mut self, jobs: &[NewJob]) -> Result<(), Error>;

    /// Claims up to `limit` due jobs (or jobs whose worker's lease expired) for `worker`, in one
    /// write transaction; other workers skip the rows it locks.
    #[doc(hidden)]
    fn claim_jobs(
        &mut self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ClaimedJob>, Error>;

    /// Records the outcome of a claimed job, if `worker` still holds it.
    #[doc(hidden)]
    fn finish_job(
        &mut self,
        job: &ClaimedJob,
        worker: &str,
        outcome: &JobOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), Error>;

    /// Records that claimed jobs completed (those `worker` still holds), with one statement.
    #[doc(hidden)]
    fn complete_jobs(&mut self, ids: &[i64], worker: &str, now: DateTime<Utc>)
    -> Result<(), Error>;

    /// Gives claimed jobs back, unrun (graceful shutdown).
    #[doc(hidden)]
    fn release_jobs(&mut self, ids: &[i64], worker: &str) -> Result<(), Error>;

    /// Makes dead jobs (all, or one) pending again with fresh attempts; returns how many.
    #[doc(hidden)]
    fn retry_dead_jobs(&mut self, id: Option<i64>, now: DateTime<Utc>) -> Result<usize, Error>;

    /// How many jobs are in each state.
    #[doc(hidden)]
    fn job_counts(&mut self) -> Result<Vec<(String, i64)>, Error>;

    /// The dead jobs, oldest first.
    #[doc(hidden)]
    fn dead_jobs(&mut self, limit: usize) -> Result<Vec<DeadJob>, Error>;

    /// Subscribes this connection to new-job notifications (PostgreSQL `LISTEN`; a no-op elsewhere).
    #[doc(hidden)]
    fn listen_for_jobs(&mut self) -> Result<(), Error>;

    /// Waits up to `timeout` for a new-job notification (PostgreSQL; returns whether one came) or
    /// sleeps (elsewhere; returns false).
    #[doc(hidden)]
    fn wait_for_jobs(&mut self, timeout: std::time::Duration) -> bool;

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

pub(crate) fn storage(table: &'static str) -> impl FnOnce(diesel::result::Error) -> Error {
    move |source| Error::Storage {
        table,
        source: Box::new(source),
    }
}

/// Events read from an events table as the rows arrive, decoded one by one: each row is dropped
/// before the next is read, so a scan of any length runs in constant memory.
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

impl<Id> Iterator for Records<'_, Id> {
    type Item = Result<RecordedEvent<Id>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let row = self.rows.next()?;
        Some(
            row.map_err(storage(self.table))
                .and_then(|row| row.into_record(self.table, &mut self.metadata)),
        )
    }
}

/// One row of an events table as read from the database.
#[derive(Debug)]
struct EventRow<Id> {
    id: i64,
    aggregate_id: Id,
    version: i64,
    event_type: String,
    data: String,
    metadata: String,
    created_at: DateTime<Utc>,
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
    ) -> Result<Arc<Metadata>, Error> {
        if let Some((_, metadata)) = self.0.as_ref().filter(|(last, _)| *last == json) {
            return Ok(Arc::clone(metadata));
        }
        let metadata = Metadata::from_json(&json).map_err(|source| Error::DecodeMetadata {
            table,
            event_id,
            source,
        })?;
        let metadata = Arc::new(metadata);
        self.0 = Some((json, Arc::clone(&metadata)));
        Ok(metadata)
    }
}

impl<Id> EventRow<Id> {
    fn into_record(
        self,
        table: &'static str,
        cache: &mut MetadataCache,
    ) -> Result<RecordedEvent<Id>, Error> {
        let metadata = cache.decode(self.metadata, table, self.id)?;
        Ok(RecordedEvent {
            id: self.id,
            aggregate_id: self.aggregate_id,
            version: self.version,
            event_type: self.event_type,
            data: self.data,
            metadata,
            created_at: self.created_at,
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
        let record = self.row.into_record("events", cache)?;
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

#[derive(diesel::QueryableByName)]
struct LastEvent {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    version: i64,
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "type")]
    event_type: String,
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
/// `read_time`, `begin_write`, `EventsLoading` (diesel's loading mode for events),
/// `insert_events`, `before_claim`, `listen_for_jobs`, `wait_for_jobs`, `framework_ddl`,
/// `events_table_ddl`.
macro_rules! database {
    ($conn:ty, $db:ty, $dialect:ident) => {
        impl sealed::Sealed for $conn {}

        impl<Id: IdColumn<$db>> diesel::deserialize::QueryableByName<$db> for EventRow<Id> {
            fn build<'a>(
                row: &impl diesel::row::NamedRow<'a, $db>,
            ) -> diesel::deserialize::Result<Self> {
                use diesel::sql_types::{BigInt, Text};
                // By position, in the order of `SELECT_COLUMNS` (diesel finds a column by name
                // by comparing every column's name, and in row-by-row mode it first rebuilds the
                // names for every row).
                Ok(Self {
                    id: row.get_value::<BigInt, i64, _>(0)?,
                    aggregate_id: Id::read(row, 1)?,
                    version: row.get_value::<BigInt, i64, _>(2)?,
                    event_type: row.get_value::<Text, String, _>(3)?,
                    data: row.get_value::<Text, String, _>(4)?,
                    metadata: row.get_value::<Text, String, _>(5)?,
                    created_at: $dialect::read_time(row, 6)?,
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

            fn last_event<Id: IdColumn<$db>>(
                &mut self,
                table: &'static str,
                id: &Id,
            ) -> Result<Option<(i64, String)>, Error> {
                use diesel::{OptionalExtension, RunQueryDsl};
                let query = Query::<$db>::new(
                    format!("SELECT version, type FROM {table} WHERE aggregate_id = ")
                )
                .bind_id(id)
                .sql(" ORDER BY version DESC LIMIT 1");
                let last: Option<LastEvent> = query
                    .get_result(self)
                    .optional()
                    .map_err(storage(table))?;
                Ok(last.map(|last| (last.version, last.event_type)))
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
                        Id::read(row, "aggregate_id").map(IdRow)
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
                let record = row.into_record("jobs", &mut MetadataCache::default())?;
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

            fn insert_jobs(&mut self, jobs: &[NewJob]) -> Result<(), Error> {
                use diesel::RunQueryDsl;
                if jobs.is_empty() {
                    return Ok(());
                }
                let now = es_core::now();
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
                    query = $dialect::bind_time(query, now).sql(", ");
                    query = $dialect::bind_time(query, now).sql(")");
                }
                query
                    .sql(wake_after)
                    .execute(self)
                    .map_err(storage("es_jobs"))?;
                Ok(())
            }

            fn claim_jobs(
                &mut self,
                worker: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: usize,
            ) -> Result<Vec<ClaimedJob>, Error> {
                use diesel::RunQueryDsl;
                let worker = worker.to_owned();
                $dialect::before_claim(self)?;
                self.write_transaction(|conn| {
                    let mut query = Query::<$db>::new(
                        "SELECT id, events_table, event_id, reactor, attempts FROM es_jobs \
                         WHERE (state = 'pending' AND run_at <= "
                    );
                    query = $dialect::bind_time(query, now)
                        .sql(") OR (state = 'running' AND locked_until < ");
                    query = $dialect::bind_time(query, now)
                        .sql(") ORDER BY run_at, id LIMIT ")
                        .bind::<diesel::sql_types::BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
                        .sql($dialect::CLAIM_LOCK);
                    let mut claimed: Vec<ClaimedJob> =
                        query.load(conn).map_err(storage("es_jobs"))?;
                    if claimed.is_empty() {
                        return Ok(claimed);
                    }
                    let mut update = Query::<$db>::new(
                        "UPDATE es_jobs SET state = 'running', attempts = attempts + 1, locked_by = "
                    )
                    .bind::<diesel::sql_types::Text, _>(worker.clone())
                    .sql(", locked_until = ");
                    update = $dialect::bind_time(update, lease_until).sql(" WHERE id IN (");
                    for (index, job) in claimed.iter().enumerate() {
                        if index > 0 {
                            update = update.sql(", ");
                        }
                        update = update.bind::<diesel::sql_types::BigInt, _>(job.id);
                    }
                    update.sql(")").execute(conn).map_err(storage("es_jobs"))?;
                    for job in &mut claimed {
                        job.attempts += 1;
                    }
                    Ok(claimed)
                })
            }

            fn finish_job(
                &mut self,
                job: &ClaimedJob,
                worker: &str,
                outcome: &JobOutcome,
                now: DateTime<Utc>,
            ) -> Result<(), Error> {
                use diesel::RunQueryDsl;
                let mut query = Query::<$db>::new("UPDATE es_jobs SET state = ");
                query = match outcome {
                    JobOutcome::Done => $dialect::bind_time(
                        query.sql("'done', last_error = NULL, finished_at = "),
                        now,
                    ),
                    JobOutcome::Retry { at, error } => $dialect::bind_time(
                        query
                            .sql("'pending', last_error = ")
                            .bind::<diesel::sql_types::Text, _>(error.clone())
                            .sql(", run_at = "),
                        *at,
                    ),
                    JobOutcome::Dead { error } => $dialect::bind_time(
                        query
                            .sql("'dead', last_error = ")
                            .bind::<diesel::sql_types::Text, _>(error.clone())
                            .sql(", finished_at = "),
                        now,
                    ),
                };
                query
                    .sql(", locked_by = NULL, locked_until = NULL WHERE id = ")
                    .bind::<diesel::sql_types::BigInt, _>(job.id)
                    .sql(" AND state = 'running' AND locked_by = ")
                    .bind::<diesel::sql_types::Text, _>(worker.to_owned())
                    .execute(self)
                    .map_err(storage("es_jobs"))?;
                Ok(())
            }

            fn complete_jobs(
                &mut self,
                ids: &[i64],
                worker: &str,
                now: DateTime<Utc>,
            ) -> Result<(), Error> {
                use diesel::RunQueryDsl;
                if ids.is_empty() {
                    return Ok(());
                }
                let mut query = $dialect::bind_time(
                    Query::<$db>::new(
                        "UPDATE es_jobs SET state = 'done', last_error = NULL, locked_by = NULL, \
                         locked_until = NULL, finished_at = "
                    ),
                    now,
                )
                .sql(" WHERE state = 'running' AND locked_by = ")
                .bind::<diesel::sql_types::Text, _>(worker.to_owned())
                .sql(" AND id IN (");
                for (index, id) in ids.iter().enumerate() {
                    if index > 0 {
                        query = query.sql(", ");
                    }
                    query = query.bind::<diesel::sql_types::BigInt, _>(*id);
                }
                query.sql(")").execute(self).map_err(storage("es_jobs"))?;
                Ok(())
            }

            fn release_jobs(&mut self, ids: &[i64], worker: &str) -> Result<(), Error> {
                use diesel::RunQueryDsl;
                if ids.is_empty() {
                    return Ok(());
                }
                let mut query = Query::<$db>::new(
                    "UPDATE es_jobs SET state = 'pending', attempts = attempts - 1, \
                     locked_by = NULL, locked_until = NULL WHERE state = 'running' AND locked_by = "
                )
                .bind::<diesel::sql_types::Text, _>(worker.to_owned())
                .sql(" AND id IN (");
                for (index, id) in ids.iter().enumerate() {
                    if index > 0 {
                        query = query.sql(", ");
                    }
                    query = query.bind::<diesel::sql_types::BigInt, _>(*id);
                }
                query.sql(")").execute(self).map_err(storage("es_jobs"))?;
                Ok(())
            }

            fn retry_dead_jobs(&mut self, id: Option<i64>, now: DateTime<Utc>) -> Result<usize, Error> {
                use diesel::RunQueryDsl;
                let mut query = $dialect::bind_time(
                    Query::<$db>::new(
                        "UPDATE es_jobs SET state = 'pending', attempts = 0, finished_at = NULL, \
                         run_at = "
                    ),
                    now,
                )
                .sql(" WHERE state = 'dead'");
                if let Some(id) = id {
                    query = query.sql(" AND id = ").bind::<diesel::sql_types::BigInt, _>(id);
                }
                query.execute(self).map_err(storage("es_jobs"))
            }

            fn job_counts(&mut self) -> Result<Vec<(String, i64)>, Error> {
                use diesel::RunQueryDsl;
                #[derive(diesel::QueryableByName)]
                struct StateCount {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    state: String,
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    value: i64,
                }
                let rows: Vec<StateCount> = diesel::sql_query(
                    "SELECT state, COUNT(*) AS value FROM es_jobs GROUP BY state ORDER BY state",
                )
                .load(self)
                .map_err(storage("es_jobs"))?;
                Ok(rows.into_iter().map(|row| (row.state, row.value)).collect())
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

            fn wait_for_jobs(&mut self, timeout: std::time::Duration) -> bool {
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

/// Maps the unique violation of `(aggregate_id, version)` to a concurrency conflict.
fn insert_error<Id: std::fmt::Display>(
    table: &'static str,
    aggregate: &'static str,
    id: &Id,
    first_version: i64,
) -> impl FnOnce(diesel::result::Error) -> Error {
    move |error| match error {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation
            | diesel::result::DatabaseErrorKind::SerializationFailure,
            _,
        ) => Error::Conflict {
            aggregate,
            aggregate_id: id.to_string(),
            expected: first_version - 1,
            actual: first_version,
        },
        other => storage(table)(other),
    }
}

/// Whether a table name read from the database (a job's) is a plain identifier, safe to put in SQL.
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= 63
}

/// Sleeps for `timeout` (backends without notifications): no job announced itself.
fn sleep_for_jobs(timeout: std::time::Duration) -> bool {
    std::thread::sleep(timeout);
    false
}

fn indexes_ddl(table: &str) -> [String; 2] {
    [
        format!("CREATE INDEX IF NOT EXISTS {table}_type_created_at ON {table} (type, created_at)"),
        format!("CREATE INDEX IF NOT EXISTS {table}_created_at ON {table} (created_at)"),
    ]
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    use diesel::sqlite::{Sqlite, SqliteConnection};
    pub(super) const SELECT_COLUMNS: &str =
        "id, aggregate_id, version, type, data, metadata, created_at";
    pub(super) const SELECT_ANY_COLUMNS: &str = "id, CAST(aggregate_id AS TEXT) AS aggregate_id, \
         version, type, data, metadata, created_at";
    pub(super) const CLAIM_LOCK: &str = "";
    pub(super) const DAY_OF_CREATED_AT: &str = "substr(created_at, 1, 10)";
    const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

    pub(super) const WAKE_WORKERS: [&str; 2] = ["", ""];

    pub(super) fn before_claim(_: &mut SqliteConnection) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn listen_for_jobs(_: &mut SqliteConnection) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn wait_for_jobs(_: &mut SqliteConnection, timeout: std::time::Duration) -> bool {
        sleep_for_jobs(timeout)
    }

    pub(super) fn bind_time(query: Query<'_, Sqlite>, time: DateTime<Utc>) -> Query<'_, Sqlite> {
        query.bind::<diesel::sql_types::Text, _>(time.format(FORMAT).to_string())
    }

    pub(super) fn read_time<'a, I>(
        row: &(impl diesel::row::Row<'a, Sqlite> + diesel::row::RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<DateTime<Utc>> {
        let text = diesel::row::Row::get_value::<diesel::sql_types::Text, String, I>(row, column)?;
        match parse_stored_time(&text) {
            Some(time) => Ok(time),
            None => Ok(DateTime::parse_from_rfc3339(&text)?.with_timezone(&Utc)),
        }
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
        insert_query(table, id, staged, Some(first), "", bind_time)
            .execute(conn)
            .map_err(insert_error(table, A::NAME, id, first_version))?;
        run_save(conn, save)?;
        Ok((first..=last.value).collect())
    }

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
                 UNIQUE (aggregate_id, version))"
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
    pub(super) const DAY_OF_CREATED_AT: &str =
        "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')";

    pub(super) fn before_claim(_: &mut PgConnection) -> Result<(), Error> {
        Ok(())
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
    /// every few milliseconds until one arrives or `timeout` passes.
    pub(super) fn wait_for_jobs(conn: &mut PgConnection, timeout: std::time::Duration) -> bool {
        let step = std::time::Duration::from_millis(5);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if conn.notifications_iter().count() > 0 {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(step);
        }
    }

    pub(super) fn bind_time(query: Query<'_, Pg>, time: DateTime<Utc>) -> Query<'_, Pg> {
        query.bind::<diesel::sql_types::Timestamptz, _>(time)
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
                _ => insert_error(table, A::NAME, id, first_version)(error),
            }
        })?;
        Ok(rows.into_iter().map(|row| row.value).collect())
    }

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
                 UNIQUE (aggregate_id, version))"
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

    /// Claims read committed rows only: under REPEATABLE READ, InnoDB's gap locks on the jobs
    /// index make claims deadlock with concurrent inserts of new jobs.
    pub(super) fn before_claim(conn: &mut MysqlConnection) -> Result<(), Error> {
        use diesel::connection::SimpleConnection;
        conn.batch_execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .map_err(storage("es_jobs"))
    }

    pub(super) fn listen_for_jobs(_: &mut MysqlConnection) -> Result<(), Error> {
        Ok(())
    }

    pub(super) fn wait_for_jobs(_: &mut MysqlConnection, timeout: std::time::Duration) -> bool {
        sleep_for_jobs(timeout)
    }

    pub(super) fn bind_time(query: Query<'_, Mysql>, time: DateTime<Utc>) -> Query<'_, Mysql> {
        query.bind::<diesel::sql_types::Datetime, _>(time.naive_utc())
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
        insert_query(table, id, staged, Some(first), "", bind_time)
            .execute(conn)
            .map_err(insert_error(table, A::NAME, id, first_version))?;
        run_save(conn, save)?;
        Ok((first..=last.value).collect())
    }

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
}
