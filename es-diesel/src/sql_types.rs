//! SQL types the store brings to an application's own tables: [`UtcTime`], a time column that
//! holds a `chrono::DateTime<Utc>` ([`UtcDateTime`]) on every backend. What each backend stores
//! is in `backend/`.
//!
//! Calls nothing of the crate.

use std::fmt;
use std::ops::Deref;

use chrono::{DateTime, Utc};
use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::query_builder::QueryId;
use es_core::schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A UTC time column on every backend, what the store uses for the events' `created_at`, for a
/// `table!` of your own. Name it in the schema
/// (`completed_at -> Nullable<es_diesel::sql_types::UtcTime>`), declare the model's field as
/// [`UtcDateTime`] (or `Option<UtcDateTime>`), and create the column with the backend's type:
///
/// | backend | column type | stored as |
/// |---|---|---|
/// | PostgreSQL | `TIMESTAMPTZ` | the instant (microseconds) |
/// | MySQL / MariaDB | `DATETIME(6)` | the UTC date and time, microseconds |
/// | SQLite | `TEXT` | `2026-04-20T09:00:00.000000Z` (SQLite's `2026-04-20 09:00:00` reads too) |
///
/// Times keep microseconds on every backend (SQLite's text would keep more; it is written with
/// six digits), so a value read back equals the value written once truncated to microseconds —
/// which is what `apply` should store for replays to compare equal.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use diesel::prelude::*;
/// use es_diesel::UtcDateTime;
///
/// diesel::table! {
///     use diesel::sql_types::*;
///     use es_diesel::sql_types::UtcTime;
///
///     meetings (id) {
///         id -> BigInt,
///         starts_at -> UtcTime,
///         ended_at -> Nullable<UtcTime>,
///     }
/// }
///
/// #[derive(Queryable, Selectable, Insertable, Debug, PartialEq)]
/// #[diesel(table_name = meetings)]
/// struct Meeting {
///     id: i64,
///     starts_at: UtcDateTime,
///     ended_at: Option<UtcDateTime>,
/// }
///
/// let mut conn = es_diesel::sqlite::establish(":memory:")?;
/// diesel::sql_query("CREATE TABLE meetings (id BIGINT PRIMARY KEY NOT NULL, \
///                    starts_at TEXT NOT NULL, ended_at TEXT)")
///     .execute(&mut conn)?;
/// let starts_at = UtcDateTime(Utc.with_ymd_and_hms(2026, 4, 20, 9, 0, 0).unwrap());
/// let meeting = Meeting { id: 1, starts_at, ended_at: None };
/// diesel::insert_into(meetings::table).values(&meeting).execute(&mut conn)?;
/// let later: Vec<i64> = meetings::table
///     .filter(meetings::starts_at.ge(starts_at))
///     .select(meetings::id)
///     .load(&mut conn)?;
/// assert_eq!(later, [1]);
/// assert_eq!(meetings::table.select(Meeting::as_select()).first(&mut conn)?, meeting);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, QueryId, diesel::sql_types::SqlType)]
pub struct UtcTime;

/// A `DateTime<Utc>` as a [`UtcTime`] column holds it, on every backend: the field type of a
/// model's time column (`Option<UtcDateTime>` for a nullable one; the default is the Unix
/// epoch, as `DateTime<Utc>`'s). It dereferences to the
/// `DateTime<Utc>`, converts from and into it (`event.created_at.into()` in `apply`), and
/// serializes as it does.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    AsExpression,
    FromSqlRow,
)]
#[diesel(sql_type = UtcTime)]
#[serde(transparent)]
#[schemars(crate = "es_core::schemars")]
pub struct UtcDateTime(pub DateTime<Utc>);

impl Deref for UtcDateTime {
    type Target = DateTime<Utc>;

    fn deref(&self) -> &DateTime<Utc> {
        &self.0
    }
}

impl From<DateTime<Utc>> for UtcDateTime {
    fn from(time: DateTime<Utc>) -> Self {
        Self(time)
    }
}

impl From<UtcDateTime> for DateTime<Utc> {
    fn from(time: UtcDateTime) -> Self {
        time.0
    }
}

impl fmt::Display for UtcDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The column types the command line's `generate` writes a table with; each backend names them
/// in its DDL (`SqlDialect::column_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub enum ColumnType {
    /// `i64`.
    BigInt,
    /// `i32`.
    Integer,
    /// `bool`.
    Bool,
    /// `String`.
    Text,
    /// `f64`.
    Double,
    /// [`UtcDateTime`].
    Time,
}

impl ColumnType {
    /// Its diesel SQL type, as a `table!` names it.
    pub fn diesel_type(self) -> &'static str {
        match self {
            Self::BigInt => "BigInt",
            Self::Integer => "Integer",
            Self::Bool => "Bool",
            Self::Text => "Text",
            Self::Double => "Double",
            Self::Time => "UtcTime",
        }
    }
}
