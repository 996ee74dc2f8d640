//! SQLite: connections with the settings a store needs (public: `es_diesel::sqlite`), and every
//! other difference of SQLite — its single writer, times stored as text, strict reading of what
//! its column affinities let through, the `es_positions` counter, its DDL.
//!
//! SQLite's defaults (rollback journal, `synchronous=FULL`, no busy timeout) make a second
//! connection fail at once with "database is locked" and cost ~30× in write throughput. Every
//! connection made here sets, one statement each: `busy_timeout`, `journal_mode=WAL` (files only),
//! `synchronous=NORMAL`, `foreign_keys=ON`.
//!
//! Calls `backend` (the traits it implements), `statement` and `errors`.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::connection::{AnsiTransactionManager, SimpleConnection};
use diesel::deserialize::{self, FromSql};
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::result::{DatabaseErrorInformation, UnexpectedEndOfRow, UnexpectedNullError};
use diesel::row::{Row, RowIndex};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::HasSqlType;
use diesel::sqlite::{Sqlite, SqliteConnection, SqliteType, SqliteValue};
use diesel::{Connection, ConnectionResult};
use es_core::Error;

use super::{
    Dialect, HeadInLock, Number, SqlDialect, begin_outermost, indexes_ddl, run_statements, sealed,
    subscription_tables_ddl,
};
use crate::errors::storage;
use crate::sql_types::{ColumnType, UtcDateTime, UtcTime};
use crate::statement::Statement;

/// How long a connection waits for the write lock before failing.
pub const BUSY_TIMEOUT_MS: u32 = 10_000;

/// Applies the store's settings to an open connection.
pub fn configure(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
    conn.batch_execute(&format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"))?;
    conn.batch_execute("PRAGMA journal_mode = WAL;")?;
    conn.batch_execute("PRAGMA synchronous = NORMAL;")?;
    conn.batch_execute("PRAGMA foreign_keys = ON;")
}

/// Opens `url` (a path, or `:memory:`) and applies [`configure`].
pub fn establish(url: &str) -> ConnectionResult<SqliteConnection> {
    let mut conn = SqliteConnection::establish(url)?;
    configure(&mut conn).map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// An r2d2 customizer applying [`configure`] to every pooled connection.
///
/// ```
/// use diesel::r2d2::{ConnectionManager, Pool};
/// use diesel::sqlite::SqliteConnection;
///
/// let pool = Pool::builder()
///     .connection_customizer(Box::new(es_diesel::sqlite::Settings))
///     .build(ConnectionManager::<SqliteConnection>::new(":memory:"))?;
/// let _conn = pool.get()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "r2d2")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings;

#[cfg(feature = "r2d2")]
impl diesel::r2d2::CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Settings {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        configure(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// How this store writes `created_at`: RFC 3339 in UTC with microseconds, which sorts as text.
const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

impl sealed::Sealed for Sqlite {}
impl sealed::Sealed for SqliteConnection {}

impl SqlDialect for Sqlite {
    const SELECT_COLUMNS: &'static str =
        "id, aggregate_id, version, type, data, metadata, created_at";
    const SELECT_ANY_COLUMNS: &'static str = "id, CAST(aggregate_id AS TEXT) AS aggregate_id, \
         version, type, data, metadata, created_at";
    const JSON_CAST: &'static str = "";
    const DAY_OF_CREATED_AT: &'static str = "substr(created_at, 1, 10)";
    /// One writer at a time: a claim's transaction holds the write lock.
    const CLAIM_LOCK: &'static str = "";
    /// Workers poll: SQLite has no notifications.
    const WAKE_WORKERS: [&'static str; 2] = ["", ""];
    const DELETE_DONE_JOBS: [&'static str; 3] = [
        "DELETE FROM es_jobs WHERE id IN (SELECT id FROM es_jobs WHERE state = 'done' \
         AND finished_at < ",
        " ORDER BY id LIMIT ",
        ")",
    ];
    const MOVE_POSITION: &'static str =
        "UPDATE es_positions SET position = <highest id> WHERE name = 'events'";
    const LOCK_ROW: &'static str = "";
    const KEEP_EXISTING_SUBSCRIPTION: &'static str = " ON CONFLICT (name) DO NOTHING";

    /// SQLite names the columns of a violated unique constraint, never the constraint.
    fn is_version_key(table: &str, info: &dyn DatabaseErrorInformation) -> bool {
        info.message() == format!("UNIQUE constraint failed: {table}.aggregate_id, {table}.version")
    }

    fn bind_time(query: Statement<'_, Sqlite>, time: DateTime<Utc>) -> Statement<'_, Sqlite> {
        query.text(time.format(FORMAT).to_string())
    }

    /// SQLite runs on one machine: its clock is this process's.
    fn now_plus(query: Statement<'_, Sqlite>, offset: TimeDelta) -> Statement<'_, Sqlite> {
        let time =
            es_core::now()
                .checked_add_signed(offset)
                .unwrap_or(if offset < TimeDelta::zero() {
                    DateTime::<Utc>::MIN_UTC
                } else {
                    DateTime::<Utc>::MAX_UTC
                });
        Self::bind_time(query, time)
    }

    /// SQLite hands out 0 for `'abc'` and 2 for 2.5 when asked for an integer, so any value
    /// that is not an integer is an error.
    fn read_integer<'a, I>(
        row: &(impl Row<'a, Sqlite> + RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<i64> {
        read_integer(row, column)
    }

    /// A blob is an error, not text of its bytes.
    fn read_text<'a, I>(
        row: &(impl Row<'a, Sqlite> + RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<String> {
        with_value(row, column, |value| match value.value_type() {
            Some(SqliteType::Text) => {
                <String as FromSql<diesel::sql_types::Text, Sqlite>>::from_sql(value)
            }
            other => Err(format!("{}, not text", kind(other)).into()),
        })
    }

    /// The format this store writes, any other RFC 3339 time, or SQLite's own
    /// `YYYY-MM-DD HH:MM:SS[.SSS]` (what `CURRENT_TIMESTAMP` and `datetime('now')` write, in UTC),
    /// so that a row inserted by hand with SQLite's functions reads as the time they meant.
    fn read_time<'a, I>(
        row: &(impl Row<'a, Sqlite> + RowIndex<I>),
        column: I,
    ) -> diesel::deserialize::Result<DateTime<Utc>> {
        let text = Self::read_text(row, column)?;
        read_stored_time(&text).ok_or_else(|| {
            format!(
                "{} is not a time (write `2026-04-20T09:00:00.000000Z` or SQLite's \
                 `2026-04-20 09:00:00`, in UTC)",
                quoted(&text)
            )
            .into()
        })
    }

    fn column_type(column: ColumnType) -> &'static str {
        match column {
            ColumnType::BigInt => "BIGINT",
            ColumnType::Integer => "INTEGER",
            ColumnType::Bool => "BOOLEAN",
            ColumnType::Text | ColumnType::Time => "TEXT",
            ColumnType::Double => "DOUBLE",
        }
    }

    fn framework_ddl() -> Vec<String> {
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
        .into_iter()
        .chain(subscription_tables_ddl("TEXT", "TEXT", "TEXT", ""))
        .collect()
    }

    fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
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
}

impl Dialect for SqliteConnection {
    fn concrete(&mut self) -> super::concrete::Concrete<'_> {
        super::concrete::Concrete::Sqlite(self)
    }

    run_statements!(diesel::connection::DefaultLoadingMode);

    fn begin_write(&mut self) -> diesel::QueryResult<()> {
        begin_outermost(self, |conn| {
            AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN IMMEDIATE")
        })
    }

    /// The `es_positions` counter row, moved and read by one statement.
    fn reserve_positions(&mut self, count: i64) -> Result<Option<i64>, Error> {
        let last: Vec<Number> = self
            .load(
                Statement::new("UPDATE es_positions SET position = position + ")
                    .big_int(count)
                    .sql(" WHERE name = 'events' RETURNING position AS value"),
            )
            .map_err(storage("es_positions"))?;
        let last = last
            .first()
            .ok_or_else(|| storage("es_positions")(diesel::result::Error::NotFound))?;
        Ok(Some(last.0))
    }
}

/// A write transaction holds SQLite's only write lock from `BEGIN IMMEDIATE` on: nothing can
/// append between its statements, so the head read with the row is always current.
impl HeadInLock for SqliteConnection {
    fn head_is_current<'b>(
        _table: &'b dyn QueryFragment<Sqlite>,
        _id_column: &str,
        mut out: AstPass<'_, 'b, Sqlite>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("1");
        Ok(())
    }
}

/// The value of `column`, to `read`; SQL `NULL` is an error (the store never writes one).
fn with_value<'a, I, T>(
    row: &(impl Row<'a, Sqlite> + RowIndex<I>),
    column: I,
    read: impl FnOnce(SqliteValue<'_, '_, '_>) -> diesel::deserialize::Result<T>,
) -> diesel::deserialize::Result<T> {
    use diesel::row::Field;
    let field = Row::get(row, column).ok_or(UnexpectedEndOfRow)?;
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

/// An integer column (`version`, an integer `aggregate_id`): SQLite hands out 0 for `'abc'` and 2
/// for 2.5 when asked for an integer, so any other value is an error.
pub(crate) fn read_integer<'a, I>(
    row: &(impl Row<'a, Sqlite> + RowIndex<I>),
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

/// [`UtcTime`] is text on SQLite: written as the events' `created_at` is (`FORMAT`), read in
/// that format or SQLite's own (`2026-04-20 09:00:00`, UTC).
impl HasSqlType<UtcTime> for Sqlite {
    fn metadata(_: &mut ()) -> SqliteType {
        SqliteType::Text
    }
}

impl ToSql<UtcTime, Sqlite> for UtcDateTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.format(FORMAT).to_string());
        Ok(serialize::IsNull::No)
    }
}

impl FromSql<UtcTime, Sqlite> for UtcDateTime {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<diesel::sql_types::Text, Sqlite>>::from_sql(value)?;
        read_stored_time(&text)
            .map(UtcDateTime)
            .ok_or_else(|| format!("{} is not a time", quoted(&text)).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of `statement` on a fresh `task_events` holding one event at position 1.
    fn unique_violation(statement: &str) -> diesel::result::Error {
        use diesel::connection::SimpleConnection;
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        for ddl in Sqlite::events_table_ddl("task_events", "BIGINT") {
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
            ) => Sqlite::is_version_key("task_events", info.as_ref()),
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
