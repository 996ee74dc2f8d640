//! [`TextUuid`]: a UUID aggregate id that every backend can store.
//!
//! Calls nothing of the crate.

use std::fmt;
use std::str::FromStr;

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, ToSql};
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

/// A UUID stored as its hyphenated text (`TEXT` on SQLite, `CHAR(36)` on MySQL, `TEXT` on
/// PostgreSQL), for aggregates keyed by UUID on every backend. diesel maps `uuid::Uuid` only to
/// PostgreSQL's `uuid` type; on PostgreSQL alone, use `uuid::Uuid` directly.
///
/// ```
/// use es_diesel::TextUuid;
///
/// let id = TextUuid::new_v4();
/// assert_eq!(id.to_string().parse::<TextUuid>().unwrap(), id);
/// ```
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
    AsExpression,
    FromSqlRow,
)]
#[diesel(sql_type = Text)]
#[serde(transparent)]
pub struct TextUuid(pub uuid::Uuid);

impl TextUuid {
    /// A new random (version 4) UUID.
    pub fn new_v4() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for TextUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for TextUuid {
    type Err = uuid::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(text).map(Self)
    }
}

impl From<uuid::Uuid> for TextUuid {
    fn from(uuid: uuid::Uuid) -> Self {
        Self(uuid)
    }
}

impl From<TextUuid> for uuid::Uuid {
    fn from(id: TextUuid) -> Self {
        id.0
    }
}

impl es_core::AggregateId for TextUuid {}

impl<DB: Backend> FromSql<Text, DB> for TextUuid
where
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        let text = String::from_sql(bytes)?;
        Ok(text.parse()?)
    }
}

#[cfg(feature = "sqlite")]
impl ToSql<Text, diesel::sqlite::Sqlite> for TextUuid {
    fn to_sql<'b>(
        &'b self,
        out: &mut serialize::Output<'b, '_, diesel::sqlite::Sqlite>,
    ) -> serialize::Result {
        out.set_value(self.to_string());
        Ok(serialize::IsNull::No)
    }
}

#[cfg(feature = "postgres")]
impl ToSql<Text, diesel::pg::Pg> for TextUuid {
    fn to_sql<'b>(
        &'b self,
        out: &mut serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> serialize::Result {
        use std::io::Write;
        write!(out, "{self}")?;
        Ok(serialize::IsNull::No)
    }
}

#[cfg(feature = "mysql")]
impl ToSql<Text, diesel::mysql::Mysql> for TextUuid {
    fn to_sql<'b>(
        &'b self,
        out: &mut serialize::Output<'b, '_, diesel::mysql::Mysql>,
    ) -> serialize::Result {
        use std::io::Write;
        write!(out, "{self}")?;
        Ok(serialize::IsNull::No)
    }
}
