//! The contract every store implements: the in-memory one here, the diesel one in `es-diesel`.

use chrono::{DateTime, Utc};

use crate::aggregate::Aggregate;
use crate::error::Error;
use crate::event::{IntoEvents, RecordedEvent};
use crate::history::{AppendOptions, AsOf};

/// Appending, reading, replaying and time travel for the events of aggregate `A`.
pub trait EventStore<A: Aggregate> {
    /// Appends events to aggregate `id` atomically: under the aggregate's write lock, checks the
    /// expected version, applies each event, saves the aggregate and stores the events — all of it
    /// or nothing.
    fn append(
        &mut self,
        id: &A::Id,
        events: impl IntoEvents<A>,
        options: &AppendOptions,
    ) -> Result<Committed<A>, Error>;

    /// The aggregate as stored now (`None` if it does not exist).
    fn load(&mut self, id: &A::Id) -> Result<Option<A>, Error>;

    /// Every event of aggregate `id`, in version order: its "git log".
    fn history(&mut self, id: &A::Id) -> Result<Vec<RecordedEvent<A::Id>>, Error>;

    /// Events of every aggregate of type `A` matching `filter`, in global order.
    fn events(&mut self, filter: &EventFilter) -> Result<Vec<RecordedEvent<A::Id>>, Error>;

    /// Time travel: the state of aggregate `id` as of a version or a time, computed in memory
    /// (nothing is written).
    fn state_as_of(&mut self, id: &A::Id, as_of: AsOf) -> Result<Option<A>, Error>;

    /// Rebuilds aggregate `id` from its events and writes it back (deleting it if its events
    /// destroyed it, restoring it if it was deleted). Reactors never run.
    fn replay(&mut self, id: &A::Id) -> Result<Option<A>, Error>;

    /// Rebuilds every aggregate of type `A` from its events, reporting progress after each batch.
    fn replay_all(
        &mut self,
        progress: &mut dyn FnMut(&ReplayProgress),
    ) -> Result<ReplayProgress, Error>;
}

/// What an append wrote.
#[derive(Debug)]
pub struct Committed<A: Aggregate> {
    /// The aggregate after the events (`None` if they destroyed it).
    pub state: Option<A>,
    /// The stored events, with their ids and versions.
    pub events: Vec<RecordedEvent<A::Id>>,
}

/// Which events [`EventStore::events`] returns.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only these type tags (all if empty).
    pub tags: Vec<String>,
    /// Only events created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only events whose id (global position) is greater than this one.
    pub after_id: Option<i64>,
    /// At most this many events.
    pub limit: Option<usize>,
}

impl EventFilter {
    /// Whether a stored event passes the filter (ignoring `limit`).
    pub fn matches<Id>(&self, record: &RecordedEvent<Id>) -> bool {
        (self.tags.is_empty() || self.tags.contains(&record.event_type))
            && self.since.is_none_or(|since| record.created_at >= since)
            && self.until.is_none_or(|until| record.created_at < until)
            && self.after_id.is_none_or(|after| record.id > after)
    }
}

/// How far a replay has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Aggregates rebuilt and written back.
    pub aggregates: u64,
    /// Events applied.
    pub events: u64,
}
