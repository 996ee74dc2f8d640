//! Folding events into aggregates: the rules shared by every store for appending, replaying and
//! time travel, so that a live write and a replay of the same events always agree.

use chrono::{DateTime, SubsecRound, Utc};

use crate::aggregate::Aggregate;
use crate::error::Error;
use crate::event::{EventContext, NewEvent, RecordedEvent};
use crate::metadata::Metadata;
use crate::registry::Registry;

/// A point in an aggregate's history, for time travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// The state right after the event with this version (0: before any event).
    Version(i64),
    /// The state with every event created at or before this time.
    Time(DateTime<Utc>),
}

impl AsOf {
    /// Whether a stored event is part of the state as of this point.
    pub fn includes<Id>(&self, record: &RecordedEvent<Id>) -> bool {
        match *self {
            AsOf::Version(version) => record.version <= version,
            AsOf::Time(time) => record.created_at <= time,
        }
    }
}

/// How an event is appended: its metadata, the version the caller expects, and its time.
#[derive(Debug, Clone, Default)]
pub struct AppendOptions {
    /// Who creates the events and from where.
    pub metadata: Metadata,
    /// The version the aggregate must have now (optimistic concurrency); `Some(0)` means the
    /// aggregate must have no event yet.
    pub expected_version: Option<i64>,
    /// The creation time of the events; `None` means now. Set it to import history.
    pub created_at: Option<DateTime<Utc>>,
}

impl AppendOptions {
    /// Options with this metadata.
    pub fn with_metadata(metadata: Metadata) -> Self {
        Self {
            metadata,
            ..Self::default()
        }
    }

    /// Requires the aggregate to be at `version` (optimistic concurrency).
    #[must_use]
    pub fn expect_version(mut self, version: i64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Records the events as created at `created_at` (truncated to microseconds).
    #[must_use]
    pub fn at(mut self, created_at: DateTime<Utc>) -> Self {
        self.created_at = Some(created_at);
        self
    }
}

/// The current time truncated to microseconds, the precision every backend stores.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Where an aggregate's history stands before an append: its last version, and whether its last
/// event destroyed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    /// The version of the last stored event (0 if none).
    pub version: i64,
    /// Whether the last stored event destroyed the aggregate (so a creation event may follow).
    pub destroyed: bool,
}

impl Head {
    /// The head of a history whose last event has `version` and tag `last_tag`.
    pub fn new<A: Aggregate>(version: i64, last_tag: Option<&str>) -> Self {
        let destroyed = last_tag.is_some_and(|tag| {
            Registry::global()
                .ok()
                .and_then(|registry| registry.lookup::<A>(tag))
                .is_some_and(|event| event.destroys)
        });
        Self { version, destroyed }
    }

    /// Fails with [`Error::Conflict`] unless the aggregate is at the version `options` expects
    /// (if it expects one).
    pub fn check_expected<A: Aggregate>(
        &self,
        id: &A::Id,
        options: &AppendOptions,
    ) -> Result<(), Error> {
        match options.expected_version {
            Some(expected) if expected != self.version => Err(Error::Conflict {
                aggregate: A::NAME,
                aggregate_id: id.to_string(),
                expected,
                actual: self.version,
            }),
            _ => Ok(()),
        }
    }
}

/// An event validated and applied in memory, ready to be written.
#[derive(Debug, Clone)]
pub struct StagedEvent {
    /// The event's version within its aggregate.
    pub version: i64,
    /// The type tag.
    pub tag: &'static str,
    /// The data attributes as JSON.
    pub data: String,
}

/// The outcome of applying new events to an aggregate in memory, before anything is written.
#[derive(Debug)]
pub struct Staged<A> {
    /// The aggregate after the events (`None` if they destroyed it).
    pub state: Option<A>,
    /// The events, with their versions and encoded data.
    pub events: Vec<StagedEvent>,
    /// The metadata shared by the events: the caller's, with a correlation id generated when it
    /// had none (so that every event caused by this request, through reactors too, shares one).
    pub metadata: Metadata,
    /// The same metadata as JSON.
    pub metadata_json: String,
    /// The creation time shared by the events.
    pub created_at: DateTime<Utc>,
}

/// Applies new events to the current state of an aggregate, enforcing the rules of the write path:
///
/// - an event that is not a creation event needs an existing aggregate ([`Error::NotFound`]);
/// - a creation event needs an absent one ([`Error::AlreadyExists`]) whose history, if any, ends
///   with a destroying event: a missing row with a live history means a concurrent creator got
///   there first, or the row was deleted by hand and needs a replay ([`Error::Conflict`]);
/// - after a destroying event the aggregate is absent;
/// - no event follows version `i64::MAX` ([`Error::VersionOverflow`]).
///
/// Every store calls this under its write lock — after [`Head::check_expected`], which it calls
/// before deciding the events — then writes [`Staged`] in one transaction.
pub fn stage<A: Aggregate>(
    id: &A::Id,
    current: Option<A>,
    head: Head,
    events: &[NewEvent<A>],
    options: &AppendOptions,
) -> Result<Staged<A>, Error> {
    let current_version = head.version;
    let created_at = options
        .created_at
        .map_or_else(now, |time| time.trunc_subsecs(6));
    let mut metadata = options.metadata.clone();
    metadata
        .correlation_id
        .get_or_insert_with(uuid::Uuid::new_v4);
    let metadata_json = metadata.to_json().map_err(|source| Error::Encode {
        table: A::EVENTS_TABLE,
        tag: events.first().map_or("", NewEvent::tag),
        source,
    })?;
    let mut state = current;
    let mut staged: Vec<StagedEvent> = Vec::with_capacity(events.len());
    for event in events {
        event.check_metadata(&metadata)?;
        let previous = staged.last().map_or(current_version, |last| last.version);
        let version = next_version::<A>(id, previous)?;
        let mut aggregate = match (state.take(), event.creates()) {
            (None, true) if staged.is_empty() && current_version > 0 && !head.destroyed => {
                return Err(Error::Conflict {
                    aggregate: A::NAME,
                    aggregate_id: id.to_string(),
                    expected: 0,
                    actual: current_version,
                });
            }
            (None, true) => A::new(id.clone()),
            (Some(aggregate), false) => aggregate,
            (None, false) => {
                return Err(Error::NotFound {
                    aggregate: A::NAME,
                    aggregate_id: id.to_string(),
                });
            }
            (Some(_), true) => {
                return Err(Error::AlreadyExists {
                    aggregate: A::NAME,
                    aggregate_id: id.to_string(),
                    tag: event.tag(),
                });
            }
        };
        event.apply(
            &mut aggregate,
            &EventContext::new(created_at, version, &metadata),
        );
        state = (!event.destroys()).then_some(aggregate);
        staged.push(StagedEvent {
            version,
            tag: event.tag(),
            data: event.encode()?,
        });
    }
    Ok(Staged {
        state,
        events: staged,
        metadata,
        metadata_json,
        created_at,
    })
}

/// The version after `version` of aggregate `id`: [`Error::VersionOverflow`] after `i64::MAX`.
fn next_version<A: Aggregate>(id: &A::Id, version: i64) -> Result<i64, Error> {
    version
        .checked_add(1)
        .ok_or_else(|| Error::VersionOverflow {
            aggregate: A::NAME,
            table: A::EVENTS_TABLE,
            aggregate_id: id.to_string(),
            version,
        })
}

/// Rebuilds one aggregate from its stored events, in version order.
///
/// Replay is deliberately lenient where the write path is strict: any first event starts from
/// [`Aggregate::new`], so that events stored before an event was marked `creates` still replay.
/// It is strict about data: versions must be contiguous from 1, and every record must decode.
#[derive(Debug)]
pub struct Rebuild<A: Aggregate> {
    id: A::Id,
    state: Option<A>,
    version: i64,
    registry: &'static Registry,
}

impl<A: Aggregate> Rebuild<A> {
    /// Starts rebuilding aggregate `id` from nothing.
    pub fn new(id: A::Id) -> Result<Self, Error> {
        Ok(Self {
            id,
            state: None,
            version: 0,
            registry: Registry::global()?,
        })
    }

    /// Applies the next stored event.
    pub fn apply(&mut self, record: &RecordedEvent<A::Id>) -> Result<(), Error> {
        let expected = next_version::<A>(&self.id, self.version)?;
        if record.version != expected {
            return Err(Error::VersionGap {
                table: A::EVENTS_TABLE,
                aggregate_id: self.id.to_string(),
                expected,
                found: record.version,
                event_id: record.id,
            });
        }
        let mut aggregate = self.state.take().unwrap_or_else(|| A::new(self.id.clone()));
        let descriptor = self.registry.apply(&mut aggregate, record)?;
        self.state = (!descriptor.destroys).then_some(aggregate);
        self.version = record.version;
        Ok(())
    }

    /// The id of the aggregate being rebuilt.
    pub fn id(&self) -> &A::Id {
        &self.id
    }

    /// The version of the last event applied (0 before any).
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The aggregate rebuilt so far (`None` before the first event or after a destroying one).
    pub fn state(&self) -> Option<&A> {
        self.state.as_ref()
    }

    /// The rebuilt aggregate.
    pub fn finish(self) -> Option<A> {
        self.state
    }
}

/// Rebuilds aggregate `id` from its events (in version order), stopping at `as_of` if given.
///
/// This is both replay (with `as_of = None`) and time travel, computed in memory.
pub fn rebuild<A: Aggregate>(
    id: A::Id,
    records: impl IntoIterator<Item = Result<RecordedEvent<A::Id>, Error>>,
    as_of: Option<AsOf>,
) -> Result<Option<A>, Error> {
    let mut rebuild = Rebuild::new(id)?;
    for record in records {
        let record = record?;
        if as_of.is_some_and(|as_of| !as_of.includes(&record)) {
            break;
        }
        rebuild.apply(&record)?;
    }
    Ok(rebuild.finish())
}
