//! An in-memory [`EventStore`], for unit tests of domain logic.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};

use crate::aggregate::Aggregate;
use crate::error::Error;
use crate::event::{NewEvent, RecordedEvent};
use crate::history::{AppendOptions, AsOf, Head, rebuild, stage};
use crate::store::{
    Committed, EventFilter, EventStore, OnBadHistory, ReplayProgress, ReplayReport,
    SkippedAggregate, Transactional,
};

/// Keeps aggregates and events in memory, with the same rules as the diesel store: one global
/// position for all events (here 1, 2, 3… without a gap), contiguous versions, atomic appends,
/// replay and time travel.
///
/// ```
/// use es_core::{Aggregate, AppendOptions, Apply, Event, EventContext, EventStore, InMemoryStore};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Aggregate, Default, Clone, Debug, PartialEq)]
/// pub struct Counter {
///     pub id: i64,
///     pub count: i64,
/// }
///
/// /// The counter was incremented.
/// #[derive(Event, Serialize, Deserialize, JsonSchema)]
/// #[aggregate(Counter)]
/// #[event(creates)]
/// pub struct Incremented {
///     #[data_attributes]
///     pub by: i64,
/// }
///
/// impl Apply<Counter> for Incremented {
///     fn apply(&self, counter: &mut Counter, _: &EventContext<'_>) {
///         counter.count += self.by;
///     }
/// }
///
/// let mut store = InMemoryStore::new();
/// let committed = store.append(&1, Incremented { by: 2 }, &AppendOptions::default())?;
/// assert_eq!(committed.events[0].event_type, "counter.incremented");
/// let counter: Counter = store.load(&1)?.unwrap();
/// assert_eq!(counter.count, 2);
/// # Ok::<(), es_core::Error>(())
/// ```
///
/// A [`transaction`](crate::Transactional::transaction) works on a copy of the whole store, kept only if the
/// work succeeds: fine for tests, not for large data.
#[derive(Default)]
pub struct InMemoryStore {
    tables: HashMap<TypeId, Box<dyn AnyTable>>,
    last_position: i64,
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("aggregate_types", &self.tables.len())
            .field("last_position", &self.last_position)
            .finish()
    }
}

impl Clone for InMemoryStore {
    fn clone(&self) -> Self {
        Self {
            tables: self
                .tables
                .iter()
                .map(|(aggregate, table)| (*aggregate, table.clone_table()))
                .collect(),
            last_position: self.last_position,
        }
    }
}

#[derive(Clone)]
struct Table<A: Aggregate> {
    rows: BTreeMap<A::Id, A>,
    events: BTreeMap<A::Id, Vec<RecordedEvent<A::Id>>>,
}

/// A [`Table`] of any aggregate.
trait AnyTable: Send + Sync {
    fn clone_table(&self) -> Box<dyn AnyTable>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<A: Aggregate + Clone> AnyTable for Table<A> {
    fn clone_table(&self) -> Box<dyn AnyTable> {
        Box::new(self.clone())
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<A: Aggregate> Default for Table<A> {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
            events: BTreeMap::new(),
        }
    }
}

impl InMemoryStore {
    crate::__aggregate_type_methods!();

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn table<A: Aggregate + Clone>(&mut self) -> &mut Table<A> {
        self.tables
            .entry(TypeId::of::<A>())
            .or_insert_with(|| Box::new(Table::<A>::default()))
            .as_any_mut()
            .downcast_mut()
            .expect("tables are keyed by the TypeId of their aggregate")
    }

    /// Deletes the stored row of aggregate `id`, keeping its events — what a careless
    /// `DELETE FROM tasks` does, and what replay repairs.
    pub fn delete_row<A: Aggregate + Clone>(&mut self, id: &A::Id) -> Option<A> {
        self.table::<A>().rows.remove(id)
    }

    fn rebuild_from_events<A: Aggregate + Clone>(
        &mut self,
        id: &A::Id,
        as_of: Option<AsOf>,
    ) -> Result<Option<A>, Error> {
        let records = self.table::<A>().events.get(id).into_iter().flatten();
        rebuild(id.clone(), records.cloned().map(Ok), as_of)
    }
}

impl Transactional for InMemoryStore {
    fn transaction<R, E: From<Error>>(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<R, E>,
    ) -> Result<R, E> {
        let before = self.clone();
        work(self).inspect_err(|_| *self = before)
    }
}

impl<A: Aggregate + Clone> EventStore<A> for InMemoryStore {
    fn append_with<E: From<Error>>(
        &mut self,
        id: &A::Id,
        decide: impl FnOnce(Option<&A>) -> Result<Vec<NewEvent<A>>, E>,
        options: &AppendOptions,
    ) -> Result<Committed<A>, E> {
        let table = self.table::<A>();
        let last = table.events.get(id).and_then(|events| events.last());
        let head = Head::new::<A>(
            last.map_or(0, |event| event.version),
            last.map(|event| event.event_type.as_str()),
        );
        head.check_expected::<A>(id, options)?;
        let current = table.rows.get(id).cloned();
        let events = decide(current.as_ref())?;
        if events.is_empty() {
            return Ok(Committed::new(current, Vec::new()));
        }
        let staged = stage(id, current, head, &events, options)?;
        let first = self.last_position + 1;
        let count = i64::try_from(staged.events.len()).unwrap_or(i64::MAX);
        let committed = Committed::from_staged(staged, id, first..first + count);
        let table = self.table::<A>();
        match &committed.state {
            Some(state) => table.rows.insert(id.clone(), state.clone()),
            None => table.rows.remove(id),
        };
        table
            .events
            .entry(id.clone())
            .or_default()
            .extend(committed.events.iter().cloned());
        self.last_position = first + count - 1;
        Ok(committed)
    }

    fn load(&mut self, id: &A::Id) -> Result<Option<A>, Error> {
        Ok(self.table::<A>().rows.get(id).cloned())
    }

    fn version(&mut self, id: &A::Id) -> Result<i64, Error> {
        let events = self.table::<A>().events.get(id);
        Ok(events
            .and_then(|events| events.last())
            .map_or(0, |event| event.version))
    }

    fn history(&mut self, id: &A::Id) -> Result<Vec<RecordedEvent<A::Id>>, Error> {
        Ok(self
            .table::<A>()
            .events
            .get(id)
            .cloned()
            .unwrap_or_default())
    }

    /// Collected, then yielded: the events live in memory already.
    fn stream_events<'s>(
        &'s mut self,
        filter: &'s EventFilter,
    ) -> Result<impl Iterator<Item = Result<RecordedEvent<A::Id>, Error>> + 's, Error> {
        let mut matching: Vec<_> = self
            .table::<A>()
            .events
            .values()
            .flatten()
            .filter(|record| filter.matches(record))
            .cloned()
            .collect();
        matching.sort_by_key(|record| record.id);
        matching.truncate(filter.limit.unwrap_or(usize::MAX));
        Ok(matching.into_iter().map(Ok))
    }

    fn state_as_of(&mut self, id: &A::Id, as_of: AsOf) -> Result<Option<A>, Error> {
        self.rebuild_from_events(id, Some(as_of))
    }

    fn replay(&mut self, id: &A::Id) -> Result<Option<A>, Error> {
        let state = self.rebuild_from_events::<A>(id, None)?;
        let rows = &mut self.table::<A>().rows;
        match &state {
            Some(state) => rows.insert(id.clone(), state.clone()),
            None => rows.remove(id),
        };
        Ok(state)
    }

    fn replay_all_with(
        &mut self,
        on_bad: OnBadHistory,
        progress: &mut dyn FnMut(&ReplayProgress),
    ) -> Result<ReplayReport, Error> {
        let ids: Vec<A::Id> = self.table::<A>().events.keys().cloned().collect();
        let mut rebuilt = Vec::with_capacity(ids.len());
        let mut report = ReplayReport::default();
        for id in ids {
            match (self.rebuild_from_events::<A>(&id, None), on_bad) {
                (Ok(state), _) => {
                    report.progress.aggregates += 1;
                    let events = self.table::<A>().events.get(&id).map_or(0, Vec::len);
                    report.progress.events += events as u64;
                    rebuilt.push((id, state));
                }
                (Err(error), OnBadHistory::Skip) => {
                    report.progress.skipped += 1;
                    report.skipped.push(SkippedAggregate {
                        aggregate_id: id.to_string(),
                        error,
                    });
                }
                (Err(error), OnBadHistory::Stop) => return Err(error),
            }
            progress(&report.progress);
        }
        let rows = &mut self.table::<A>().rows;
        for (id, state) in rebuilt {
            match state {
                Some(state) => rows.insert(id, state),
                None => rows.remove(&id),
            };
        }
        Ok(report)
    }
}
