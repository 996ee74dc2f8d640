//! Projections: rebuilding one from the events, in the order they were written, and the typed
//! view of a stored event the generated `project` handlers take.
//!
//! Calls `database`, `dispatch` and `events`.

use std::collections::BTreeSet;

use es_core::{Error, Event, Pattern, Registry};

use crate::database::Database;
use crate::dispatch::{Dispatch, ReactorError, Recorded};
use crate::events::{AnyEvent, select_any_events_after};

/// How many events a projection rebuild reads per query.
pub const PROJECTION_BATCH: usize = 1_000;

/// Rebuilds projection `name` of `dispatcher`: in one write transaction, runs `reset` (empty the
/// read model), then feeds every event its routes match to its handlers, in global event order
/// across aggregates, reading [`PROJECTION_BATCH`] events per query. No reactor runs. Returns the
/// number of events read.
///
/// Readers see the old read model until the rebuild commits, and the new one after. A `name` that
/// no route of `dispatcher` names is [`Error::UnknownProjection`], before anything is reset.
pub fn rebuild_projection<C: Database>(
    conn: &mut C,
    dispatcher: &dyn Dispatch<C>,
    name: &str,
    reset: impl FnOnce(&mut C) -> Result<(), ReactorError>,
) -> Result<u64, Error> {
    let tables = projection_tables(dispatcher, name)?;
    let span = tracing::info_span!("rebuild_projection", projection = name);
    let _entered = span.enter();
    conn.write_transaction(|conn| {
        reset(conn).map_err(|source| Error::Reactor {
            reactor: "reset",
            table: name.to_owned(),
            event_id: 0,
            tag: String::new(),
            source,
        })?;
        let mut after = 0;
        let mut read = 0;
        loop {
            let events = select_any_events_after(conn, &tables, after, PROJECTION_BATCH)?;
            let Some(last) = events.last() else {
                return Ok(read);
            };
            after = last.id;
            read += events.len() as u64;
            for event in &events {
                dispatcher.project(conn, name, event)?;
            }
        }
    })
}

/// The events tables projection `name` listens to: those of its routes, or every events table of
/// the program for a `*` route.
fn projection_tables<C: Database>(
    dispatcher: &dyn Dispatch<C>,
    name: &str,
) -> Result<Vec<&'static str>, Error> {
    let mut tables = BTreeSet::new();
    let routes: Vec<_> = dispatcher
        .routes()
        .iter()
        .filter(|route| route.projections.contains(&name))
        .collect();
    if routes.is_empty() {
        return Err(Error::UnknownProjection {
            name: name.to_owned(),
        });
    }
    for route in routes {
        match route.pattern {
            Pattern::Event { events_table, .. } | Pattern::Aggregate { events_table, .. } => {
                tables.insert(events_table);
            }
            Pattern::All => {
                tables.extend(
                    Registry::global()?
                        .events()
                        .iter()
                        .map(|event| event.events_table),
                );
            }
        }
    }
    Ok(tables.into_iter().collect())
}

/// Runs `f` with the typed event if a stored erased event is an `E` (projection rebuilds).
#[doc(hidden)]
pub fn typed_from_any<E: Event>(
    event: &AnyEvent,
    f: impl FnOnce(Recorded<'_, E>) -> Result<(), Error>,
) -> Result<(), Error> {
    if !E::has_tag(&event.event_type) {
        return Ok(());
    }
    let Some(record) = event.record_of::<E::Aggregate>() else {
        return Ok(());
    };
    let decoded = E::decode(&record)?;
    f(Recorded {
        event: &decoded,
        record: &record,
    })
}
