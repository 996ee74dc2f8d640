//! Projections: rebuilding one from the events, in the order they were written, and the typed
//! view of a stored event the generated `project` handlers take.
//!
//! Calls `database`, `dispatch`, `events` and `table`.

use std::collections::{BTreeSet, VecDeque};

use es_core::{Error, Event, Pattern, Route};

use crate::database::Database;
use crate::dispatch::{Dispatch, ReactorError, Recorded};
use crate::events::{AnyEvent, select_any_events_after};
use crate::table::events_tables_on;

/// How many events a projection rebuild reads per query.
pub const PROJECTION_BATCH: usize = 1_000;

/// Rebuilds projection `name` of `dispatcher`: in one write transaction, runs `reset` (empty the
/// read model), then feeds every event its routes match to its handlers, in global event order
/// across aggregates and events tables, reading [`PROJECTION_BATCH`] events of one table per
/// query. No reactor runs. Returns the number of events read.
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
        let mut unread: Vec<Unread> = tables.iter().copied().map(Unread::new).collect();
        let mut read = 0;
        while let Some(event) =
            next_in_order(conn, &mut unread, PROJECTION_BATCH, select_any_events_after)?
        {
            read += 1;
            dispatcher.project(conn, name, &event)?;
        }
        Ok(read)
    })
}

/// The unread events of one events table a projection listens to.
struct Unread {
    table: &'static str,
    events: VecDeque<AnyEvent>,
    after: i64,
    exhausted: bool,
}

impl Unread {
    fn new(table: &'static str) -> Self {
        Self {
            table,
            events: VecDeque::new(),
            after: 0,
            exhausted: false,
        }
    }
}

/// The event with the lowest id of all `tables`' unread events (global order), reading `batch`
/// events of one table at a time with `read(conn, table, after, batch)` when a table's read
/// events are all taken. Each statement reads one table, so an error names it.
fn next_in_order<C>(
    conn: &mut C,
    tables: &mut [Unread],
    batch: usize,
    read: impl Fn(&mut C, &'static str, i64, usize) -> Result<Vec<AnyEvent>, Error>,
) -> Result<Option<AnyEvent>, Error> {
    for table in tables.iter_mut() {
        if table.events.is_empty() && !table.exhausted {
            let events = read(conn, table.table, table.after, batch)?;
            table.exhausted = events.len() < batch;
            if let Some(last) = events.last() {
                table.after = last.id;
            }
            table.events.extend(events);
        }
    }
    Ok(tables
        .iter_mut()
        .filter_map(|table| Some((table.events.front()?.id, table)))
        .min_by_key(|(id, _)| *id)
        .and_then(|(_, table)| table.events.pop_front()))
}

/// The events tables projection `name` listens to (see [`routed_tables`]).
fn projection_tables<C: Database>(
    dispatcher: &dyn Dispatch<C>,
    name: &str,
) -> Result<Vec<&'static str>, Error> {
    routed_tables(dispatcher, |route| route.projections.contains(&name)).ok_or_else(|| {
        Error::UnknownProjection {
            name: name.to_owned(),
        }
    })
}

/// The events tables of the routes of `dispatcher` that `selected`, or `None` if it selects no
/// route: the table of each route's event or aggregate, or for a `*` route every events table of
/// an aggregate of the program with queries on `C` (an aggregate restricted to other backends
/// has no table here).
pub(crate) fn routed_tables<C: Database>(
    dispatcher: &dyn Dispatch<C>,
    selected: impl Fn(&Route) -> bool,
) -> Option<Vec<&'static str>> {
    let mut tables = BTreeSet::new();
    let routes: Vec<_> = dispatcher
        .routes()
        .iter()
        .filter(|route| selected(route))
        .collect();
    if routes.is_empty() {
        return None;
    }
    for route in routes {
        match route.pattern {
            Pattern::Event { events_table, .. } | Pattern::Aggregate { events_table, .. } => {
                tables.insert(events_table);
            }
            Pattern::All => tables.extend(events_tables_on::<C>()),
        }
    }
    Some(tables.into_iter().collect())
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use chrono::DateTime;
    use es_core::{Metadata, RecordedEvent};

    use super::*;

    fn event(table: &str, id: i64) -> AnyEvent {
        let record = RecordedEvent {
            id,
            aggregate_id: "1".to_owned(),
            version: id,
            event_type: "any".to_owned(),
            data: "{}".to_owned(),
            metadata: Arc::new(Metadata::default()),
            created_at: DateTime::UNIX_EPOCH,
        };
        AnyEvent::erased(table.to_owned(), record)
    }

    /// Three tables whose ids interleave (one of them empty), read two events at a time: every
    /// event comes once, in global order, and each read is of one table after its last event
    /// (none after a short batch).
    #[test]
    fn events_of_several_tables_come_in_global_order_batch_by_batch() {
        let stored: BTreeMap<&'static str, Vec<i64>> = [
            ("a_events", vec![1, 2, 3, 7, 8, 12]),
            ("b_events", vec![4, 5, 6, 9, 10, 11, 13]),
            ("c_events", vec![]),
        ]
        .into();
        let mut reads = Vec::new();
        let read = |reads: &mut Vec<(&'static str, i64)>, table, after, limit| {
            reads.push((table, after));
            Ok(stored[table]
                .iter()
                .filter(|id| **id > after)
                .take(limit)
                .map(|id| event(table, *id))
                .collect())
        };
        let mut tables: Vec<Unread> = stored.keys().copied().map(Unread::new).collect();
        let mut order = Vec::new();
        while let Some(next) = next_in_order(&mut reads, &mut tables, 2, read).unwrap() {
            let expected_table = if stored["a_events"].contains(&next.id) {
                "a_events"
            } else {
                "b_events"
            };
            assert_eq!(next.events_table, expected_table);
            order.push(next.id);
        }
        assert_eq!(order, (1..=13).collect::<Vec<_>>());
        assert_eq!(
            reads,
            [
                ("a_events", 0),
                ("b_events", 0),
                ("c_events", 0),
                ("a_events", 2),
                ("b_events", 5),
                ("a_events", 7),
                ("b_events", 9),
                ("b_events", 11),
                ("a_events", 12),
            ]
        );
    }

    /// A failing read is the error of the table it read.
    #[test]
    fn a_failing_read_names_its_table() {
        let mut tables = vec![Unread::new("a_events"), Unread::new("b_events")];
        let read = |(): &mut (), table: &'static str, _, _| -> Result<Vec<AnyEvent>, Error> {
            if table == "b_events" {
                Err(crate::errors::storage(table)(
                    diesel::result::Error::NotFound,
                ))
            } else {
                Ok(vec![event(table, 1)])
            }
        };
        let error = next_in_order(&mut (), &mut tables, 2, read).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Storage {
                    table: "b_events",
                    ..
                }
            ),
            "{error}"
        );
    }
}
