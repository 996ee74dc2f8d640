//! The checkpoints of subscriptions, `es_subscriptions`: one row per subscription with its
//! position in the feed, who holds it and until when, and its last failure — every statement on
//! the table, written once over the backend's dialect.
//!
//! Calls `backend` (the dialect), `statement` and `errors`.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::deserialize::{self, QueryableByName};
use diesel::row::NamedRow;
use es_core::Error;

use super::Position;
use crate::backend::{Dialect, SqlDialect};
use crate::errors::storage;
use crate::statement::Statement;

const TABLE: &str = "es_subscriptions";
const COLUMNS: &str =
    "name, tx_order, event_id, handled, owner, lease_until, last_error, updated_at";

/// A subscription's row.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoint {
    pub(crate) name: String,
    pub(crate) position: Position,
    pub(crate) handled: i64,
    pub(crate) owner: Option<String>,
    pub(crate) lease_until: Option<DateTime<Utc>>,
    pub(crate) last_error: Option<String>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl<DB: SqlDialect> QueryableByName<DB> for Checkpoint {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        Ok(Self {
            name: DB::get_text(row, 0)?,
            position: Position {
                tx_order: DB::get_big_int(row, 1)?,
                event_id: DB::get_big_int(row, 2)?,
            },
            handled: DB::get_big_int(row, 3)?,
            owner: DB::get_optional_text(row, 4)?,
            lease_until: DB::read_optional_time(row, 5)?,
            last_error: DB::get_optional_text(row, 6)?,
            updated_at: DB::read_time(row, 7)?,
        })
    }
}

fn now<DB: SqlDialect>(query: Statement<'_, DB>) -> Statement<'_, DB> {
    DB::now_plus(query, TimeDelta::zero())
}

/// Creates the row of subscription `name` at `position`, unless it exists: then it is kept as
/// it is.
pub(crate) fn create<C: Dialect>(
    conn: &mut C,
    name: &str,
    position: Position,
) -> Result<(), Error> {
    let query = Statement::new(format!(
        "INSERT INTO {TABLE} (name, tx_order, event_id, handled, updated_at) VALUES ("
    ))
    .text(name)
    .sql(", ")
    .big_int(position.tx_order)
    .sql(", ")
    .big_int(position.event_id)
    .sql(", 0, ");
    let query = now(query)
        .sql(")")
        .sql(C::Backend::KEEP_EXISTING_SUBSCRIPTION);
    conn.execute(query).map_err(storage(TABLE))?;
    Ok(())
}

/// Takes or renews the lease of subscription `name` for `owner`, unless another owner holds an
/// unexpired one: returns that owner then.
pub(crate) fn claim<C: Dialect>(
    conn: &mut C,
    name: &str,
    owner: &str,
    lease: TimeDelta,
) -> Result<Result<(), String>, Error> {
    let query = Statement::new(format!("UPDATE {TABLE} SET owner = ")).text(owner);
    let query = C::Backend::now_plus(query.sql(", lease_until = "), lease)
        .sql(" WHERE name = ")
        .text(name)
        .sql(" AND (owner IS NULL OR owner = ")
        .text(owner)
        .sql(" OR lease_until < ");
    let query = now(query).sql(")");
    if conn.execute(query).map_err(storage(TABLE))? == 1 {
        return Ok(Ok(()));
    }
    let holder = read(conn, name)?
        .and_then(|row| row.owner)
        .unwrap_or_else(|| "nobody (the subscription has no row)".to_owned());
    Ok(Err(holder))
}

/// Reads and locks the row of subscription `name` until the transaction ends.
pub(crate) fn lock<C: Dialect>(conn: &mut C, name: &str) -> Result<Option<Checkpoint>, Error> {
    let query = Statement::new(format!("SELECT {COLUMNS} FROM {TABLE} WHERE name = "))
        .text(name)
        .sql(C::Backend::LOCK_ROW);
    let rows: Vec<Checkpoint> = conn.load(query).map_err(storage(TABLE))?;
    Ok(rows.into_iter().next())
}

/// Reads the row of subscription `name`.
pub(crate) fn read<C: Dialect>(conn: &mut C, name: &str) -> Result<Option<Checkpoint>, Error> {
    let query = Statement::new(format!("SELECT {COLUMNS} FROM {TABLE} WHERE name = ")).text(name);
    let rows: Vec<Checkpoint> = conn.load(query).map_err(storage(TABLE))?;
    Ok(rows.into_iter().next())
}

/// Every subscription's row, by name.
pub(crate) fn list<C: Dialect>(conn: &mut C) -> Result<Vec<Checkpoint>, Error> {
    conn.load(Statement::new(format!(
        "SELECT {COLUMNS} FROM {TABLE} ORDER BY name"
    )))
    .map_err(storage(TABLE))
}

/// Moves subscription `name` (whose row the transaction locked) to `position` after handling
/// `handled` events, clears its failure and renews `owner`'s lease.
pub(crate) fn advance<C: Dialect>(
    conn: &mut C,
    name: &str,
    position: Position,
    handled: usize,
    lease: TimeDelta,
) -> Result<(), Error> {
    let query = Statement::new(format!("UPDATE {TABLE} SET tx_order = "))
        .big_int(position.tx_order)
        .sql(", event_id = ")
        .big_int(position.event_id)
        .sql(", handled = handled + ")
        .big_int(i64::try_from(handled).unwrap_or(i64::MAX))
        .sql(", last_error = NULL, lease_until = ");
    let query = C::Backend::now_plus(query, lease).sql(", updated_at = ");
    let query = now(query).sql(" WHERE name = ").text(name);
    conn.execute(query).map_err(storage(TABLE))?;
    Ok(())
}

/// Records the failure of `owner`'s subscription `name`, where it stands.
pub(crate) fn record_error<C: Dialect>(
    conn: &mut C,
    name: &str,
    owner: &str,
    error: &str,
) -> Result<(), Error> {
    let query = Statement::new(format!("UPDATE {TABLE} SET last_error = "))
        .text(error)
        .sql(", updated_at = ");
    let query = now(query)
        .sql(" WHERE name = ")
        .text(name)
        .sql(" AND owner = ")
        .text(owner);
    conn.execute(query).map_err(storage(TABLE))?;
    Ok(())
}

/// Gives up `owner`'s lease of subscription `name`, so that another subscriber may take it now.
pub(crate) fn release<C: Dialect>(conn: &mut C, name: &str, owner: &str) -> Result<(), Error> {
    let query = Statement::new(format!(
        "UPDATE {TABLE} SET owner = NULL, lease_until = NULL WHERE name = "
    ))
    .text(name)
    .sql(" AND owner = ")
    .text(owner);
    conn.execute(query).map_err(storage(TABLE))?;
    Ok(())
}

/// Moves subscription `name` to `position`, counting its handled events from zero and clearing
/// its failure; creates its row if it has none. Its lease stays with its holder, whose next
/// batch reads on from `position`.
pub(crate) fn reset<C: Dialect>(conn: &mut C, name: &str, position: Position) -> Result<(), Error> {
    let query = Statement::new(format!("UPDATE {TABLE} SET tx_order = "))
        .big_int(position.tx_order)
        .sql(", event_id = ")
        .big_int(position.event_id)
        .sql(", handled = 0, last_error = NULL, updated_at = ");
    let query = now(query).sql(" WHERE name = ").text(name);
    if conn.execute(query).map_err(storage(TABLE))? == 0 {
        create(conn, name, position)?;
    }
    Ok(())
}

/// Deletes the row of subscription `name`; returns whether it had one.
pub(crate) fn delete<C: Dialect>(conn: &mut C, name: &str) -> Result<bool, Error> {
    let query = Statement::new(format!("DELETE FROM {TABLE} WHERE name = ")).text(name);
    Ok(conn.execute(query).map_err(storage(TABLE))? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_back_as_written() {
        let mut conn = crate::sqlite::establish(":memory:").unwrap();
        for statement in <diesel::sqlite::Sqlite as SqlDialect>::framework_ddl() {
            diesel::connection::SimpleConnection::batch_execute(&mut conn, &statement).unwrap();
        }
        let at = Position {
            tx_order: 0,
            event_id: 41,
        };
        create(&mut conn, "search", at).unwrap();
        create(&mut conn, "search", Position::START).unwrap();
        assert_eq!(
            claim(&mut conn, "search", "a", TimeDelta::seconds(30)).unwrap(),
            Ok(())
        );
        assert_eq!(
            claim(&mut conn, "search", "b", TimeDelta::seconds(30)).unwrap(),
            Err("a".to_owned())
        );
        let row = read(&mut conn, "search").unwrap().unwrap();
        assert_eq!((row.position, row.owner.as_deref()), (at, Some("a")));
        release(&mut conn, "search", "a").unwrap();
        assert_eq!(
            claim(&mut conn, "search", "b", TimeDelta::seconds(30)).unwrap(),
            Ok(())
        );
    }
}
