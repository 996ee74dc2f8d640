//! The DDL of the events tables and of the framework's own tables, for every backend.
//!
//! Put it in a diesel migration (print it once with [`migration_sql`]) or run it at start-up with
//! [`create_tables`]; every statement is idempotent (`IF NOT EXISTS`).
//!
//! Calls `database` (each backend's DDL), `table`, `id` and `errors`.

use es_core::Error;

use crate::database::Database;
use crate::errors::storage;
use crate::id::IdColumn;
use crate::table::AggregateTable;

/// The statements creating the framework's tables and the events table of `A` on `C`.
pub fn ddl<C: Database, A: AggregateTable<C>>() -> Vec<String> {
    let mut statements = C::framework_ddl();
    statements.extend(C::events_table_ddl(
        A::EVENTS_TABLE,
        <A::Id as IdColumn<C::Backend>>::DDL,
    ));
    statements
}

/// The same statements as one SQL script, ready for a diesel migration's `up.sql`.
pub fn migration_sql<C: Database, A: AggregateTable<C>>() -> String {
    ddl::<C, A>()
        .iter()
        .map(|statement| format!("{statement};\n"))
        .collect()
}

/// Creates the framework's tables and the events table of `A`, if they do not exist.
pub fn create_tables<C: Database, A: AggregateTable<C>>(conn: &mut C) -> Result<(), Error> {
    for statement in ddl::<C, A>() {
        conn.batch_execute(&statement)
            .map_err(storage(A::EVENTS_TABLE))?;
    }
    Ok(())
}
