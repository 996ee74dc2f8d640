//! The concrete diesel connection behind a [`Database`](crate::Database): what
//! [`with_connection!`](crate::with_connection) matches on to run the same typed diesel code on
//! whichever backend a generic function was given. A backend whose feature is off has a variant
//! that cannot be built, so the match is exhaustive under every set of features.
//!
//! Calls nothing of the crate; each backend file implements `Dialect::concrete`.

use std::marker::PhantomData;

/// A backend whose feature is not enabled: no value of it exists.
#[doc(hidden)]
pub struct Disabled<'a>(Never, PhantomData<&'a mut ()>);

enum Never {}

impl Disabled<'_> {
    /// What a value that cannot exist turns into: anything.
    pub fn unreachable<T>(self) -> T {
        match self.0 {}
    }
}

#[cfg(feature = "sqlite")]
type SqliteSlot<'a> = &'a mut diesel::SqliteConnection;
#[cfg(not(feature = "sqlite"))]
type SqliteSlot<'a> = Disabled<'a>;

#[cfg(feature = "postgres")]
type PgSlot<'a> = &'a mut diesel::PgConnection;
#[cfg(not(feature = "postgres"))]
type PgSlot<'a> = Disabled<'a>;

#[cfg(feature = "mysql")]
type MysqlSlot<'a> = &'a mut diesel::MysqlConnection;
#[cfg(not(feature = "mysql"))]
type MysqlSlot<'a> = Disabled<'a>;

/// The connection a `&mut C` (`C: Database`) is, as its concrete type.
#[doc(hidden)]
pub enum Concrete<'a> {
    /// A `SqliteConnection`.
    Sqlite(SqliteSlot<'a>),
    /// A `PgConnection`.
    Postgres(PgSlot<'a>),
    /// A `MysqlConnection`.
    Mysql(MysqlSlot<'a>),
}

/// Runs typed diesel code on a connection of any backend: `with_connection!(conn, |c| body)`
/// expands `body` once for each backend enabled in `es-diesel`, with `c` bound to `conn` as that
/// backend's concrete connection (`&mut SqliteConnection`, `&mut PgConnection`,
/// `&mut MysqlConnection`), and runs the one that `conn` is. `conn` is a `&mut C` for any
/// `C: Database` — a reactor's `ctx.connection()`, a function generic over the backend — and the
/// body is ordinary diesel: it must compile on every enabled backend (features are unified across
/// a cargo workspace: a crate that enables `mysql` makes every body compile for MySQL too).
///
/// This is how a reactor or any code generic over the backend runs its own queries, with no trait
/// of its own and no macro per connection type:
///
/// ```
/// use diesel::prelude::*;
/// use es_diesel::{Database, with_connection};
///
/// diesel::table! {
///     posts (id) {
///         id -> BigInt,
///         pinned -> Bool,
///     }
/// }
///
/// /// The post pinned now, if any: on SQLite, PostgreSQL or MySQL alike.
/// fn pinned_post<C: Database>(conn: &mut C) -> QueryResult<Option<i64>> {
///     with_connection!(conn, |conn| {
///         posts::table
///             .filter(posts::pinned.eq(true))
///             .select(posts::id)
///             .first(conn)
///             .optional()
///     })
/// }
///
/// let mut conn = es_diesel::sqlite::establish(":memory:")?;
/// diesel::sql_query("CREATE TABLE posts (id BIGINT PRIMARY KEY NOT NULL, pinned BOOL NOT NULL)")
///     .execute(&mut conn)?;
/// diesel::sql_query("INSERT INTO posts VALUES (1, FALSE), (2, TRUE)").execute(&mut conn)?;
/// assert_eq!(pinned_post(&mut conn)?, Some(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[macro_export]
macro_rules! with_connection {
    ($conn:expr, |$name:ident| $body:expr) => {
        match $crate::__private::Dialect::concrete(&mut *$conn) {
            $crate::__private::Concrete::Sqlite(__es_connection) => {
                $crate::__on_sqlite!(__es_connection, $name, $body)
            }
            $crate::__private::Concrete::Postgres(__es_connection) => {
                $crate::__on_postgres!(__es_connection, $name, $body)
            }
            $crate::__private::Concrete::Mysql(__es_connection) => {
                $crate::__on_mysql!(__es_connection, $name, $body)
            }
        }
    };
}
