//! MySQL's (and MariaDB's) differences: `JSON` and `DATETIME(6)` columns in UTC, the
//! `es_positions` counter moved through `LAST_INSERT_ID`, `READ COMMITTED` for the jobs'
//! bookkeeping, the server's clock for leases, keys named in error messages, its DDL. No head is
//! read in the lock (see `HeadInLock`), and aggregates are saved by update-or-insert.
//!
//! Calls `backend` (the traits it implements), `statement` and `errors`.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use diesel::connection::{AnsiTransactionManager, SimpleConnection};
use diesel::deserialize::{self, FromSql};
use diesel::mysql::{Mysql, MysqlConnection, MysqlValue};
use diesel::result::DatabaseErrorInformation;
use diesel::row::{Row, RowIndex};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{Datetime, HasSqlType};
use es_core::Error;

use super::{
    Dialect, Number, SqlDialect, begin_outermost, microseconds, run_statements, sealed,
    subscription_tables_ddl,
};
use crate::errors::storage;
use crate::sql_types::{ColumnType, UtcDateTime, UtcTime};
use crate::statement::Statement;

impl sealed::Sealed for Mysql {}
impl sealed::Sealed for MysqlConnection {}

impl SqlDialect for Mysql {
    const SELECT_COLUMNS: &'static str =
        "id, aggregate_id, version, type, data, metadata, created_at";
    const SELECT_ANY_COLUMNS: &'static str = "id, CAST(aggregate_id AS CHAR) AS aggregate_id, \
         version, type, data, metadata, created_at";
    const JSON_CAST: &'static str = "";
    const DAY_OF_CREATED_AT: &'static str = "DATE_FORMAT(created_at, '%Y-%m-%d')";
    const CLAIM_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";
    /// Workers poll: MySQL has no notifications.
    const WAKE_WORKERS: [&'static str; 2] = ["", ""];
    const DELETE_DONE_JOBS: [&'static str; 3] = [
        "DELETE FROM es_jobs WHERE state = 'done' AND finished_at < ",
        " ORDER BY id LIMIT ",
        "",
    ];
    const MOVE_POSITION: &'static str =
        "UPDATE es_positions SET position = <highest id> WHERE name = 'events'";
    const LOCK_ROW: &'static str = " FOR UPDATE";
    const KEEP_EXISTING_SUBSCRIPTION: &'static str = " ON DUPLICATE KEY UPDATE name = name";

    /// MySQL names the violated key in its message: `... for key 'task_events_aggregate_version'`
    /// (MariaDB), `... for key 'task_events.task_events_aggregate_version'` (MySQL 8).
    fn is_version_key(table: &str, info: &dyn DatabaseErrorInformation) -> bool {
        info.message()
            .ends_with(&format!("{table}_aggregate_version'"))
    }

    fn bind_time(query: Statement<'_, Mysql>, time: DateTime<Utc>) -> Statement<'_, Mysql> {
        query.bind::<Datetime, _>(time.naive_utc())
    }

    /// The server's clock, in UTC as the store's times are, so that the leases of workers on
    /// several machines compare one clock, never their own.
    fn now_plus(query: Statement<'_, Mysql>, offset: TimeDelta) -> Statement<'_, Mysql> {
        query
            .sql("(UTC_TIMESTAMP(6) + INTERVAL ")
            .big_int(microseconds(offset))
            .sql(" MICROSECOND)")
    }

    fn read_time<'a, I>(
        row: &(impl Row<'a, Mysql> + RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<DateTime<Utc>> {
        let naive = Row::get_value::<Datetime, chrono::NaiveDateTime, I>(row, column)?;
        Ok(naive.and_utc())
    }

    fn column_type(column: ColumnType) -> &'static str {
        match column {
            ColumnType::BigInt => "BIGINT",
            ColumnType::Integer => "INTEGER",
            ColumnType::Bool => "BOOLEAN",
            ColumnType::Text => "TEXT",
            ColumnType::Double => "DOUBLE",
            ColumnType::Time => "DATETIME(6)",
        }
    }

    fn framework_ddl() -> Vec<String> {
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
        .into_iter()
        .chain(subscription_tables_ddl(
            "VARCHAR(191)",
            "VARCHAR(255)",
            "DATETIME(6)",
            " ENGINE=InnoDB",
        ))
        .collect()
    }

    fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
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
}

impl Dialect for MysqlConnection {
    fn concrete(&mut self) -> super::concrete::Concrete<'_> {
        super::concrete::Concrete::Mysql(self)
    }

    // Events are fetched from the prepared statement's result as the iterator reaches each row.
    run_statements!(diesel::connection::DefaultLoadingMode);

    /// `REPEATABLE READ` for the next transaction only (a session may read committed rows for
    /// the jobs' bookkeeping), then a transaction whose snapshot is taken at once.
    fn begin_snapshot(&mut self) -> diesel::QueryResult<()> {
        begin_outermost(self, |conn| {
            conn.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
            AnsiTransactionManager::begin_transaction_sql(
                conn,
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            )
        })
    }

    /// The bookkeeping of jobs reads committed rows only: under REPEATABLE READ, InnoDB's gap
    /// locks on the jobs index make claims deadlock with concurrent inserts of new jobs, and a
    /// statement that scans rows another claim locked waits for it instead of skipping rows that
    /// do not match.
    fn before_jobs_transaction(&mut self) -> Result<(), Error> {
        self.batch_execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .map_err(storage("es_jobs"))
    }

    /// The `es_positions` counter row, moved into the session's `LAST_INSERT_ID`, then read.
    fn reserve_positions(&mut self, count: i64) -> Result<Option<i64>, Error> {
        self.execute(
            Statement::new("UPDATE es_positions SET position = LAST_INSERT_ID(position + ")
                .big_int(count)
                .sql(") WHERE name = 'events'"),
        )
        .map_err(storage("es_positions"))?;
        let last: Vec<Number> = self
            .load(Statement::new(
                "SELECT CAST(LAST_INSERT_ID() AS SIGNED) AS value",
            ))
            .map_err(storage("es_positions"))?;
        let last = last
            .first()
            .ok_or_else(|| storage("es_positions")(diesel::result::Error::NotFound))?;
        Ok(Some(last.0))
    }
}

/// [`UtcTime`] is MySQL's `DATETIME(6)`, in UTC.
impl HasSqlType<UtcTime> for Mysql {
    fn metadata(lookup: &mut Self::MetadataLookup) -> Self::TypeMetadata {
        <Mysql as HasSqlType<Datetime>>::metadata(lookup)
    }
}

impl ToSql<UtcTime, Mysql> for UtcDateTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        <NaiveDateTime as ToSql<Datetime, Mysql>>::to_sql(&self.naive_utc(), &mut out.reborrow())
    }
}

impl FromSql<UtcTime, Mysql> for UtcDateTime {
    fn from_sql(value: MysqlValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Datetime, Mysql>>::from_sql(value)
            .map(|time| UtcDateTime(time.and_utc()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_times_are_the_servers_clock_in_utc() {
        let query = Mysql::now_plus(Statement::new("SELECT "), TimeDelta::milliseconds(-3));
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
                Mysql::is_version_key("task_events", &info),
                is_version,
                "{message}"
            );
        }
    }
}
