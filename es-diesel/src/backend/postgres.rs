//! PostgreSQL's differences: `jsonb` and `timestamptz` columns, the `es_event_position` sequence
//! (the `INSERT` returns the ids and carries the aggregate's upsert in a data-modifying `WITH`),
//! row-by-row reading, `LISTEN`/`NOTIFY` to wake workers, the server's clock for leases, the
//! `ctid` check of a head read in the lock, the aborted-transaction check, its DDL.
//!
//! Calls `backend` (the traits it implements), `statement` and `errors`.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgConnection, PgValue};
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::result::DatabaseErrorInformation;
use diesel::row::{Row, RowIndex};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{HasSqlType, Timestamptz};
use es_core::Error;

use super::{
    Dialect, HeadInLock, SqlDialect, begin_outermost, indexes_ddl, microseconds, run_statements,
    sealed, subscription_tables_ddl,
};
use crate::errors::storage;
use crate::sql_types::{ColumnType, UtcDateTime, UtcTime};
use crate::statement::Statement;

impl sealed::Sealed for Pg {}
impl sealed::Sealed for PgConnection {}

impl SqlDialect for Pg {
    const SELECT_COLUMNS: &'static str = "id, aggregate_id, version, type, data::text AS data, \
         metadata::text AS metadata, created_at";
    const SELECT_ANY_COLUMNS: &'static str = "id, aggregate_id::text AS aggregate_id, version, \
         type, data::text AS data, metadata::text AS metadata, created_at";
    const JSON_CAST: &'static str = "::jsonb";
    /// The day of `created_at`, or its text when it has none (`infinity`).
    const DAY_OF_CREATED_AT: &'static str =
        "COALESCE(to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), created_at::text)";
    const CLAIM_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";
    /// Wraps the jobs' `INSERT` in a statement that also notifies `es_jobs` (delivered at commit,
    /// as `NOTIFY` is): one round trip where `INSERT` then `NOTIFY` took two. A data-modifying
    /// `WITH` runs to completion whether or not the outer `SELECT` reads it.
    const WAKE_WORKERS: [&'static str; 2] = [
        "WITH jobs AS (",
        ") SELECT pg_notify('es_jobs', '') AS woken",
    ];
    const DELETE_DONE_JOBS: [&'static str; 3] = [
        "DELETE FROM es_jobs WHERE id IN (SELECT id FROM es_jobs WHERE state = 'done' \
         AND finished_at < ",
        " ORDER BY id LIMIT ",
        ")",
    ];
    const MOVE_POSITION: &'static str = "SELECT setval('es_event_position', <highest id>)";
    const FEED_ORDER_COLUMN: &'static str = "tx_order";
    const FEED_ORDER: &'static str = " ORDER BY tx_order, id";
    const LOCK_ROW: &'static str = " FOR UPDATE";
    const KEEP_EXISTING_SUBSCRIPTION: &'static str = " ON CONFLICT (name) DO NOTHING";

    /// Below the horizon: every transaction that may still append writes a `tx_order` at or
    /// above it (see [`Dialect::feed_horizon`]).
    fn feed_after<'a>(
        query: Statement<'a, Pg>,
        (tx_order, id): (i64, i64),
        horizon: Option<i64>,
    ) -> Statement<'a, Pg> {
        let query = query
            .sql("(tx_order, id) > (")
            .big_int(tx_order)
            .sql(", ")
            .big_int(id)
            .sql(")");
        match horizon {
            Some(horizon) => query.sql(" AND tx_order < ").big_int(horizon),
            None => query,
        }
    }

    /// The writing transaction's id (`xid8`, assigned in start order, never reused), raised to
    /// the aggregate's last event's `tx_order` when that is higher: a transaction that took its
    /// id, then waited for the aggregate's lock while a younger one appended to it, orders its
    /// events after the younger one's, as their versions are. Either way the value is at least
    /// the writer's own id, so no row can appear below the horizon of a running writer.
    fn insert_order(table: &str) -> Option<[String; 2]> {
        Some([
            format!(
                "es_order AS (SELECT GREATEST(pg_current_xact_id()::text::bigint, \
                 COALESCE((SELECT tx_order FROM {table} WHERE aggregate_id = "
            ),
            " ORDER BY version DESC LIMIT 1), 0)) AS tx_order)".to_owned(),
        ])
    }

    /// PostgreSQL names the violated constraint: `{table}_aggregate_version`, or in a table
    /// created before it was named, the default `{table}_aggregate_id_version_key` (its detail
    /// names the columns whatever the name, when the default was cut to 63 bytes).
    fn is_version_key(table: &str, info: &dyn DatabaseErrorInformation) -> bool {
        info.constraint_name().is_some_and(|name| {
            name == format!("{table}_aggregate_version")
                || name == format!("{table}_aggregate_id_version_key")
        }) || info
            .details()
            .is_some_and(|details| details.starts_with("Key (aggregate_id, version)="))
    }

    fn bind_time(query: Statement<'_, Pg>, time: DateTime<Utc>) -> Statement<'_, Pg> {
        query.bind::<Timestamptz, _>(time)
    }

    /// The server's `now()` (the start of its transaction), so that the leases of workers on
    /// several machines compare one clock, never their own.
    fn now_plus(query: Statement<'_, Pg>, offset: TimeDelta) -> Statement<'_, Pg> {
        query
            .sql("(now() + ")
            .big_int(microseconds(offset))
            .sql(" * INTERVAL '1 microsecond')")
    }

    fn read_time<'a, I>(
        row: &(impl Row<'a, Pg> + RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<DateTime<Utc>> {
        Row::get_value::<Timestamptz, DateTime<Utc>, I>(row, column)
    }

    fn column_type(column: ColumnType) -> &'static str {
        match column {
            ColumnType::BigInt => "BIGINT",
            ColumnType::Integer => "INTEGER",
            ColumnType::Bool => "BOOLEAN",
            ColumnType::Text => "TEXT",
            ColumnType::Double => "DOUBLE PRECISION",
            ColumnType::Time => "TIMESTAMPTZ",
        }
    }

    fn framework_ddl() -> Vec<String> {
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
        .into_iter()
        .chain(subscription_tables_ddl("TEXT", "TEXT", "TIMESTAMPTZ", ""))
        .collect()
    }

    fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
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
                 tx_order BIGINT NOT NULL DEFAULT pg_current_xact_id()::text::bigint, \
                 CONSTRAINT {table}_aggregate_version UNIQUE (aggregate_id, version))"
            ),
            // An events table created before the feed: its rows, all committed, come first.
            format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute \
                 WHERE attrelid = '{table}'::regclass AND attname = 'tx_order') THEN \
                 ALTER TABLE {table} ADD COLUMN tx_order BIGINT NOT NULL DEFAULT 0; \
                 ALTER TABLE {table} ALTER COLUMN tx_order \
                 SET DEFAULT pg_current_xact_id()::text::bigint; END IF; END $$"
            ),
            format!("CREATE INDEX IF NOT EXISTS {table}_feed ON {table} (tx_order, id)"),
            by_type,
            by_time,
        ]
    }
}

impl Dialect for PgConnection {
    fn concrete(&mut self) -> super::concrete::Concrete<'_> {
        super::concrete::Concrete::Postgres(self)
    }

    // Events row by row (libpq's single-row mode): the rows are decoded as they arrive, while the
    // server is still sending the rest, instead of after the whole result is buffered. Dropping
    // the iterator early reads and discards the rows still to come (libpq has no other way to
    // end a result and keep the connection).
    run_statements!(diesel::pg::PgRowByRowLoadingMode);

    fn begin_snapshot(&mut self) -> diesel::QueryResult<()> {
        begin_outermost(self, |conn| {
            AnsiTransactionManager::begin_transaction_sql(
                conn,
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            )
        })
    }

    /// The oldest transaction still running (`pg_snapshot_xmin` of a snapshot taken now): every
    /// transaction that may still append took its id at or above it, and writes a `tx_order` at
    /// least that id.
    fn feed_horizon(&mut self) -> Result<Option<i64>, Error> {
        snapshot_bound(self, "pg_snapshot_xmin")
    }

    /// The next transaction id (`pg_snapshot_xmax` of a snapshot taken now): every event
    /// committed so far has a `tx_order` below it (its own transaction's id, or an aggregate's
    /// earlier event's, both of transactions already assigned).
    fn feed_committed_bound(&mut self) -> Result<Option<i64>, Error> {
        snapshot_bound(self, "pg_snapshot_xmax")
    }

    /// The `es_event_position` sequence is the id column's default.
    fn reserve_positions(&mut self, _count: i64) -> Result<Option<i64>, Error> {
        Ok(None)
    }

    /// PostgreSQL aborts a transaction at its first failed statement and answers its `COMMIT`
    /// with a rollback, and no error: before the outermost commit, one statement that fails in an
    /// aborted transaction (a savepoint's `RELEASE` fails by itself).
    fn check_not_aborted(&mut self) -> Result<(), Error> {
        let depth = AnsiTransactionManager::transaction_manager_status_mut(self)
            .transaction_depth()
            .map_err(storage("transaction"))?;
        if depth.is_none_or(|depth| depth.get() > 1) {
            return Ok(());
        }
        self.batch_execute("SELECT 1").map_err(|error| match error {
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

    fn listen_for_jobs(&mut self) -> Result<(), Error> {
        self.batch_execute("LISTEN es_jobs")
            .map_err(storage("es_jobs"))
    }

    /// Polls the connection for notifications (no query: libpq reads what the server pushed)
    /// every few milliseconds until one arrives or `timeout` passes. A connection the server
    /// closed yields an error on every poll: that is the first error, returned.
    fn wait_for_jobs(&mut self, timeout: std::time::Duration) -> Result<bool, Error> {
        let step = std::time::Duration::from_millis(5);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut woken = false;
            for notification in self.notifications_iter() {
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
}

/// A bound of a snapshot taken now (`pg_snapshot_xmin` or `pg_snapshot_xmax`), as a number.
fn snapshot_bound(conn: &mut PgConnection, bound: &str) -> Result<Option<i64>, Error> {
    let value: Vec<super::Number> = conn
        .load(Statement::new(format!(
            "SELECT {bound}(pg_current_snapshot())::text::bigint AS value"
        )))
        .map_err(storage("es_subscriptions"))?;
    Ok(value.first().map(|value| value.0))
}

/// A write PostgreSQL aborted under a reactor that went on.
#[derive(Debug, thiserror::Error)]
#[error(
    "a statement failed in the write transaction and the reactor that ran it went on (it \
         handled the error and returned `Ok`), so PostgreSQL aborted the transaction: nothing of \
         the write is stored ({0})"
)]
struct AbortedWrite(#[source] diesel::result::Error);

/// The subqueries of a `SELECT ... FOR UPDATE` read with the statement's snapshot, taken
/// before the row lock is granted. If a writer changed the row after that snapshot (the lock
/// waited for it, or it committed between the snapshot and the lock), PostgreSQL locks the
/// row's newest version, but the head the subqueries read misses that writer's events. Every
/// append writes its aggregate's row, so the head is current exactly when the locked version
/// is the one the snapshot sees: the same `ctid`. Otherwise the store reads the head again.
impl HeadInLock for PgConnection {
    fn head_is_current<'b>(
        table: &'b dyn QueryFragment<Pg>,
        id_column: &str,
        mut out: AstPass<'_, 'b, Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("COALESCE((SELECT es_snapshot.ctid FROM ");
        table.walk_ast(out.reborrow())?;
        out.push_sql(&format!(
            " AS es_snapshot WHERE es_snapshot.\"{id_column}\" = "
        ));
        table.walk_ast(out.reborrow())?;
        out.push_sql(&format!(".\"{id_column}\") = "));
        table.walk_ast(out.reborrow())?;
        out.push_sql(".ctid, FALSE)");
        Ok(())
    }
}

/// [`UtcTime`] is PostgreSQL's `timestamptz`.
impl HasSqlType<UtcTime> for Pg {
    fn metadata(lookup: &mut Self::MetadataLookup) -> Self::TypeMetadata {
        <Pg as HasSqlType<Timestamptz>>::metadata(lookup)
    }
}

impl ToSql<UtcTime, Pg> for UtcDateTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<UtcTime, Pg> for UtcDateTime {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<Timestamptz, Pg>>::from_sql(value).map(UtcDateTime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_times_are_the_servers_clock() {
        let query = Pg::now_plus(Statement::new("SELECT "), TimeDelta::seconds(2));
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
                Pg::is_version_key("task_events", &violation),
                is_version,
                "{constraint}"
            );
        }
    }
}
