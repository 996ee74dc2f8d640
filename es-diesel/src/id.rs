//! How aggregate ids are stored in the `aggregate_id` column of each backend.
//!
//! Calls `backend` (SQLite's strict integers) and `text_uuid`.

use diesel::backend::Backend;
use diesel::deserialize;
use diesel::query_builder::QueryFragment;
use diesel::row::{Row, RowIndex};
use es_core::AggregateId;

use crate::text_uuid::TextUuid;

/// An aggregate id type the backend `DB` can store: `i64`, `i32`, `String` and
/// [`TextUuid`](crate::TextUuid) everywhere, `uuid::Uuid` natively on PostgreSQL (and as text in
/// the events tables of SQLite and MySQL). Implemented for each of these id types, for
/// every backend, so that code generic over a [`Database`](crate::Database) needs no bound of
/// its own for its ids.
pub trait IdColumn<DB: Backend>: AggregateId {
    /// The column type in `CREATE TABLE`.
    const DDL: &'static str;

    /// This id as a value bound to a query, in the column's SQL type.
    #[doc(hidden)]
    fn bind_value(&self) -> Box<dyn QueryFragment<DB> + Send>;

    /// Reads an id from `column` of a result row: its name, or its position.
    fn read<'a, I>(row: &(impl Row<'a, DB> + RowIndex<I>), column: I) -> deserialize::Result<Self>;
}

/// How backend `Self` stores ids of type `Id`: the backend's side of [`IdColumn`].
#[doc(hidden)]
pub trait IdValue<Id>: Backend {
    /// The column type in `CREATE TABLE`.
    const DDL: &'static str;

    /// `id` as a value bound to a query.
    fn bind_value(id: &Id) -> Box<dyn QueryFragment<Self> + Send>;

    /// Reads an id from `column` of a result row.
    fn read<'a, I>(row: &(impl Row<'a, Self> + RowIndex<I>), column: I) -> deserialize::Result<Id>;
}

impl<DB: IdValue<Id>, Id: AggregateId> IdColumn<DB> for Id {
    const DDL: &'static str = <DB as IdValue<Id>>::DDL;

    fn bind_value(&self) -> Box<dyn QueryFragment<DB> + Send> {
        <DB as IdValue<Id>>::bind_value(self)
    }

    fn read<'a, I>(row: &(impl Row<'a, DB> + RowIndex<I>), column: I) -> deserialize::Result<Self> {
        <DB as IdValue<Id>>::read(row, column)
    }
}

/// A backend that stores every id type of the crate: every backend [`Database`](crate::Database)
/// runs on is one, which is how `i64: IdColumn<C::Backend>` holds for any `C: Database`.
#[doc(hidden)]
pub trait StoresIds:
    IdValue<i64> + IdValue<i32> + IdValue<String> + IdValue<TextUuid> + IdValue<uuid::Uuid>
{
}

impl<DB> StoresIds for DB where
    DB: IdValue<i64> + IdValue<i32> + IdValue<String> + IdValue<TextUuid> + IdValue<uuid::Uuid>
{
}

macro_rules! id_column {
    ($db:ty, $id:ty, $sql:ty, $ddl:expr, |$this:ident| $to:expr, |$value:ident: $value_ty:ty| $from:expr) => {
        impl IdValue<$id> for $db {
            const DDL: &'static str = $ddl;

            fn bind_value($this: &$id) -> Box<dyn QueryFragment<$db> + Send> {
                Box::new(diesel::expression::AsExpression::<$sql>::as_expression($to))
            }

            fn read<'a, I>(
                row: &(impl Row<'a, $db> + RowIndex<I>),
                column: I,
            ) -> deserialize::Result<$id> {
                let $value: $value_ty = Row::get_value::<$sql, $value_ty, I>(row, column)?;
                $from
            }
        }
    };
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! integer_ids {
    ($db:ty) => {
        id_column!(
            $db,
            i64,
            diesel::sql_types::BigInt,
            "BIGINT",
            |id| *id,
            |value: i64| Ok(value)
        );
        id_column!(
            $db,
            i32,
            diesel::sql_types::Integer,
            "INTEGER",
            |id| *id,
            |value: i32| Ok(value)
        );
    };
}

macro_rules! string_id {
    ($db:ty, $string_ddl:expr) => {
        id_column!(
            $db,
            String,
            diesel::sql_types::Text,
            $string_ddl,
            |id| id.clone(),
            |value: String| Ok(value)
        );
    };
}

/// Integer ids on SQLite, whose integer columns keep what is not an integer (`'abc'` stays
/// text): such a value is an error naming what it is, not the 0 SQLite converts it to.
#[cfg(feature = "sqlite")]
macro_rules! sqlite_integer_id {
    ($id:ty, $sql:ty, $ddl:expr) => {
        impl IdValue<$id> for diesel::sqlite::Sqlite {
            const DDL: &'static str = $ddl;

            fn bind_value(id: &$id) -> Box<dyn QueryFragment<diesel::sqlite::Sqlite> + Send> {
                Box::new(diesel::expression::AsExpression::<$sql>::as_expression(*id))
            }

            fn read<'a, I>(
                row: &(impl Row<'a, diesel::sqlite::Sqlite> + RowIndex<I>),
                column: I,
            ) -> deserialize::Result<$id> {
                let value = crate::backend::sqlite::read_integer(row, column)?;
                Ok(<$id>::try_from(value)?)
            }
        }
    };
}

#[cfg(any(feature = "sqlite", feature = "mysql"))]
macro_rules! text_uuid {
    ($db:ty, $ddl:expr) => {
        id_column!(
            $db,
            uuid::Uuid,
            diesel::sql_types::Text,
            $ddl,
            |id| id.hyphenated().to_string(),
            |value: String| Ok(uuid::Uuid::parse_str(&value)?)
        );
    };
}

#[cfg(feature = "sqlite")]
sqlite_integer_id!(i64, diesel::sql_types::BigInt, "BIGINT");
#[cfg(feature = "sqlite")]
sqlite_integer_id!(i32, diesel::sql_types::Integer, "INTEGER");
#[cfg(feature = "sqlite")]
string_id!(diesel::sqlite::Sqlite, "TEXT");
#[cfg(feature = "sqlite")]
text_uuid!(diesel::sqlite::Sqlite, "TEXT");

#[cfg(feature = "mysql")]
integer_ids!(diesel::mysql::Mysql);
#[cfg(feature = "mysql")]
string_id!(diesel::mysql::Mysql, "VARCHAR(255)");
#[cfg(feature = "mysql")]
text_uuid!(diesel::mysql::Mysql, "CHAR(36)");

#[cfg(feature = "postgres")]
integer_ids!(diesel::pg::Pg);
#[cfg(feature = "postgres")]
string_id!(diesel::pg::Pg, "TEXT");
#[cfg(feature = "postgres")]
id_column!(
    diesel::pg::Pg,
    uuid::Uuid,
    diesel::sql_types::Uuid,
    "UUID",
    |id| *id,
    |value: uuid::Uuid| Ok(value)
);

macro_rules! text_uuid_id {
    ($db:ty, $ddl:expr) => {
        id_column!(
            $db,
            crate::TextUuid,
            diesel::sql_types::Text,
            $ddl,
            |id| id.to_string(),
            |value: String| Ok(value.parse::<crate::TextUuid>()?)
        );
    };
}

#[cfg(feature = "sqlite")]
text_uuid_id!(diesel::sqlite::Sqlite, "TEXT");
#[cfg(feature = "mysql")]
text_uuid_id!(diesel::mysql::Mysql, "CHAR(36)");
#[cfg(feature = "postgres")]
text_uuid_id!(diesel::pg::Pg, "TEXT");
