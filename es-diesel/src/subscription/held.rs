//! The events a subscription holds back, `es_held_events`: the sequenced dead letters of a
//! subscriber that [holds back](super::SubscriberOptions::hold_back) a failing aggregate — its
//! failed event and every later event of that aggregate, in feed order, until a retry handles
//! them. Every statement on the table, written once over the backend's dialect.
//!
//! Calls `backend` (the dialect), `events` (an event's row), `statement` and `errors`.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::deserialize::{self, QueryableByName};
use diesel::row::NamedRow;
use es_core::Error;

use super::Position;
use crate::backend::{Dialect, SqlDialect};
use crate::errors::storage;
use crate::events::AnyEvent;
use crate::statement::Statement;

const TABLE: &str = "es_held_events";
const COLUMNS: &str = "subscription, events_table, event_id, aggregate_id, tx_order, last_error, \
     held_at";

/// An event a subscription holds back, with the error that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldEvent {
    /// The subscription.
    pub subscription: String,
    /// The event's events table.
    pub events_table: String,
    /// The event's id.
    pub event_id: i64,
    /// Its aggregate, as text.
    pub aggregate_id: String,
    /// Its place in the feed.
    pub position: Position,
    /// Why it is held: its handler's error, or the earlier event of its aggregate it waits
    /// behind.
    pub last_error: String,
    /// When it was held back, or last retried.
    pub held_at: DateTime<Utc>,
}

impl<DB: SqlDialect> QueryableByName<DB> for HeldEvent {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        Ok(Self {
            subscription: DB::get_text(row, 0)?,
            events_table: DB::get_text(row, 1)?,
            event_id: DB::get_big_int(row, 2)?,
            aggregate_id: DB::get_text(row, 3)?,
            position: Position {
                tx_order: DB::get_big_int(row, 4)?,
                event_id: DB::get_big_int(row, 2)?,
            },
            last_error: DB::get_text(row, 5)?,
            held_at: DB::read_time(row, 6)?,
        })
    }
}

/// The aggregates (events table, aggregate id) subscription `name` holds back.
pub(crate) fn aggregates<C: Dialect>(
    conn: &mut C,
    name: &str,
) -> Result<HashSet<(String, String)>, Error> {
    Ok(list(conn, Some(name))?
        .into_iter()
        .map(|held| (held.events_table, held.aggregate_id))
        .collect())
}

/// Holds back `event` at `position` for subscription `name`, with `error`.
pub(crate) fn hold<C: Dialect>(
    conn: &mut C,
    name: &str,
    (event, position): (&AnyEvent, Position),
    error: &str,
) -> Result<(), Error> {
    let query = Statement::new(format!("INSERT INTO {TABLE} ({COLUMNS}) VALUES ("))
        .text(name)
        .sql(", ")
        .text(event.events_table.clone())
        .sql(", ")
        .big_int(event.id)
        .sql(", ")
        .text(event.aggregate_id.clone())
        .sql(", ")
        .big_int(position.tx_order)
        .sql(", ")
        .text(error)
        .sql(", ");
    let query = C::Backend::now_plus(query, TimeDelta::zero()).sql(")");
    conn.execute(query).map_err(storage(TABLE))?;
    Ok(())
}

/// The events held back, by subscription then feed position; of one subscription for `Some`.
pub(crate) fn list<C: Dialect>(
    conn: &mut C,
    subscription: Option<&str>,
) -> Result<Vec<HeldEvent>, Error> {
    let query = Statement::new(format!("SELECT {COLUMNS} FROM {TABLE}"));
    let query = match subscription {
        Some(name) => query.sql(" WHERE subscription = ").text(name),
        None => query,
    };
    conn.load(query.sql(" ORDER BY subscription, tx_order, event_id"))
        .map_err(storage(TABLE))
}

/// Lets go of a held event, handled at last.
pub(crate) fn release<C: Dialect>(conn: &mut C, name: &str, event_id: i64) -> Result<(), Error> {
    let query = Statement::new(format!("DELETE FROM {TABLE} WHERE subscription = "))
        .text(name)
        .sql(" AND event_id = ")
        .big_int(event_id);
    conn.execute(query).map_err(storage(TABLE))?;
    Ok(())
}

/// Records the error of a retry of a held event.
pub(crate) fn record_error<C: Dialect>(
    conn: &mut C,
    name: &str,
    event_id: i64,
    error: &str,
) -> Result<(), Error> {
    let query = Statement::new(format!("UPDATE {TABLE} SET last_error = "))
        .text(error)
        .sql(", held_at = ");
    let query = C::Backend::now_plus(query, TimeDelta::zero())
        .sql(" WHERE subscription = ")
        .text(name)
        .sql(" AND event_id = ")
        .big_int(event_id);
    conn.execute(query).map_err(storage(TABLE))?;
    Ok(())
}
