//! [`Database`], the connections the store runs on: a connection whose backend has a
//! [`Dialect`](crate::backend::Dialect). Everything a backend does differently is in `backend/`;
//! the statements on events tables in `events.rs`, on `es_jobs` in `jobs/queue.rs` and `jobs/admin.rs`.
//!
//! Calls `backend` and `id`.

use crate::backend::{Dialect, SqlDialect};
use crate::id::StoresIds;

/// A diesel connection the store can use: `SqliteConnection` (feature `sqlite`), `PgConnection`
/// (feature `postgres`), `MysqlConnection` (feature `mysql`). Sealed: implemented for every
/// connection whose backend the store speaks, and only for those.
pub trait Database: Dialect<Backend: StoresIds> {
    /// The statements creating the framework's own tables (the global event position, jobs).
    fn framework_ddl() -> Vec<String> {
        <Self::Backend as SqlDialect>::framework_ddl()
    }

    /// The statements creating one events table whose `aggregate_id` column has type `id_type`.
    fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
        <Self::Backend as SqlDialect>::events_table_ddl(table, id_type)
    }
}

impl<C: Dialect<Backend: StoresIds>> Database for C {}
