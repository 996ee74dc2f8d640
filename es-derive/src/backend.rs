//! The diesel backends the generated code is written for, and what each does differently: one
//! [`Backend`] per connection type, chosen by `#[aggregate(backend = ...)]` or
//! `dispatcher! { struct D for ...; }`. Used by `aggregate` and the dispatcher's generation; calls
//! nothing else of this crate.

use proc_macro2::TokenStream;
use quote::quote;

/// One backend: the paths the generated code names for it, and how its generated
/// `Stores` impl locks and writes rows.
pub(crate) struct Backend {
    /// Its name in `backend = ...` and `for ...`: `sqlite`, `postgres` or `mysql`.
    pub(crate) name: &'static str,
    /// `::es_diesel::__with_sqlite`: the macro that keeps the generated impls only when
    /// `es-diesel` enables the backend's feature.
    pub(crate) with: TokenStream,
    /// diesel's connection type: the one the generated `Stores<A>` and `Dispatches<D>` are for.
    pub(crate) connection: TokenStream,
    /// diesel's backend type, which selects and binds the row's columns.
    pub(crate) backend: TokenStream,
    /// Whether `lock` and `lock_many` lock the rows with `FOR UPDATE` (PostgreSQL, MySQL). Not
    /// SQLite: it has no row locks, the write transaction already holds the single writer's lock,
    /// so `lock` is a plain `SELECT` and `lock_many` does nothing.
    pub(crate) locks_rows: bool,
    /// Whether `lock` also reads the head of the aggregate's events in the locking statement
    /// (`HeadColumns`, one round trip; SQLite, PostgreSQL). Not MySQL: there a consistent read
    /// inside the locking statement would fix the transaction's snapshot before the lock is
    /// granted, so `lock` returns `Locked::Row` and the store reads the head after the lock.
    pub(crate) head_in_lock: bool,
    /// How `save` writes the rows: a batch upsert (SQLite, PostgreSQL), or an update-or-insert
    /// per row (MySQL).
    pub(crate) upsert: Upsert,
}

/// How `Stores::save` writes rows on one backend.
#[derive(Clone, Copy)]
pub(crate) enum Upsert {
    /// es-diesel's multi-row upsert (`ON CONFLICT ... DO UPDATE SET column = excluded.column`),
    /// prepared once per connection when short, which the store sends with the insert of the
    /// events on PostgreSQL (SQLite, PostgreSQL; diesel never prepares an upsert ahead, and on
    /// SQLite it turns a batch into one statement per row). A `None` field is stored as `NULL`.
    /// It resolves a conflict of the id only: a row breaking another unique key is an error.
    Statement,
    /// Per row, an `UPDATE` of the row with the aggregate's id and, when it matched none, an
    /// `INSERT` (MySQL: its upsert, `ON DUPLICATE KEY UPDATE`, fires on any unique key and would
    /// overwrite another aggregate's row that shares a value of an app's own unique key; diesel
    /// connects with `CLIENT_FOUND_ROWS`, so the count is of rows matched, changed or not).
    UpdateOrInsert,
}

impl Backend {
    /// Every backend, in the order their impls are generated.
    fn all() -> [Backend; 3] {
        [
            Backend {
                name: "sqlite",
                with: quote!(::es_diesel::__with_sqlite),
                connection: quote!(::es_diesel::__private::diesel::sqlite::SqliteConnection),
                backend: quote!(::es_diesel::__private::diesel::sqlite::Sqlite),
                locks_rows: false,
                head_in_lock: true,
                upsert: Upsert::Statement,
            },
            Backend {
                name: "postgres",
                with: quote!(::es_diesel::__with_postgres),
                connection: quote!(::es_diesel::__private::diesel::pg::PgConnection),
                backend: quote!(::es_diesel::__private::diesel::pg::Pg),
                locks_rows: true,
                head_in_lock: true,
                upsert: Upsert::Statement,
            },
            Backend {
                name: "mysql",
                with: quote!(::es_diesel::__with_mysql),
                connection: quote!(::es_diesel::__private::diesel::mysql::MysqlConnection),
                backend: quote!(::es_diesel::__private::diesel::mysql::Mysql),
                locks_rows: true,
                head_in_lock: false,
                upsert: Upsert::UpdateOrInsert,
            },
        ]
    }

    /// The backends named in `only` (every backend if it is empty), in the order of
    /// [`Self::all`]. Unknown names are reported by the caller's checks.
    pub(crate) fn chosen<N: PartialEq<str>>(only: &[N]) -> impl Iterator<Item = Backend> + '_ {
        Self::all()
            .into_iter()
            .filter(move |backend| only.is_empty() || only.iter().any(|name| name == backend.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbol::BACKENDS;

    #[test]
    fn every_accepted_backend_is_generated() {
        let names: Vec<&str> = Backend::all().iter().map(|backend| backend.name).collect();
        assert_eq!(names, BACKENDS);
    }

    #[test]
    fn the_chosen_backends_keep_their_order() {
        let names = |only: &[&str]| -> Vec<&str> {
            let only: Vec<String> = only.iter().map(|name| (*name).to_owned()).collect();
            Backend::chosen(&only).map(|backend| backend.name).collect()
        };
        assert_eq!(names(&[]), BACKENDS);
        assert_eq!(names(&["mysql", "sqlite"]), ["sqlite", "mysql"]);
    }
}
