//! Events, calculators (`apply`), and the stored form of an event.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::Aggregate;
use crate::error::Error;
use crate::metadata::Metadata;

/// Something that happened to one aggregate, stored forever in the aggregate's events table.
///
/// Implemented by [`#[derive(Event)]`](macro@crate::Event); see the crate documentation for
/// every attribute. The struct's fields are its *data attributes*, stored as the `data` JSON
/// through the struct's own `serde` implementation, so serde's field attributes
/// (`#[serde(default)]`, `#[serde(alias)]`, ...) are how an event's shape evolves.
pub trait Event:
    Serialize + DeserializeOwned + Apply<Self::Aggregate> + Send + Sync + 'static
{
    /// The aggregate this event belongs to.
    type Aggregate: Aggregate;

    /// The stable type tag stored in the `type` column (`task.completed`).
    const TAG: &'static str;

    /// Former tags that still decode to this event (after a rename).
    const ALIASES: &'static [&'static str];

    /// Whether this event creates its aggregate: it is applied to [`Aggregate::new`] and is refused
    /// when the aggregate already exists.
    const CREATES: bool;

    /// Whether this event destroys its aggregate: after it is applied, the aggregate's row is
    /// deleted. (Soft deletion is an ordinary event whose `apply` sets a `deleted_at`.)
    const DESTROYS: bool;

    /// Checks that `metadata` carries the application metadata this event declares with
    /// `#[event(metadata = Type)]`: that [`Metadata::app`] reads it as that type. The store calls
    /// it before writing the event; an event that declares none accepts any metadata.
    fn check_metadata(metadata: &Metadata) -> Result<(), serde_json::Error> {
        let _ = metadata;
        Ok(())
    }

    /// Whether a stored tag designates this event (its tag or one of its aliases).
    fn has_tag(tag: &str) -> bool {
        tag == Self::TAG || Self::ALIASES.contains(&tag)
    }

    /// Decodes a stored record of this event type.
    ///
    /// Fails with [`Error::UnexpectedEventType`] if the record's tag is neither the tag nor an
    /// alias of this event, and with [`Error::Decode`] if its data does not fit.
    fn decode(record: &RecordedEvent<<Self::Aggregate as Aggregate>::Id>) -> Result<Self, Error> {
        if !Self::has_tag(&record.event_type) {
            return Err(Error::UnexpectedEventType {
                table: Self::Aggregate::EVENTS_TABLE,
                event_id: record.id,
                tag: record.event_type.clone(),
                expected: Self::TAG,
            });
        }
        serde_json::from_str(&record.data).map_err(|source| Error::Decode {
            table: Self::Aggregate::EVENTS_TABLE,
            event_id: record.id,
            tag: record.event_type.clone(),
            source,
        })
    }
}

/// The calculator: how an event changes its aggregate.
///
/// `apply` must only use the event (its data attributes) and the [`EventContext`] (its
/// `created_at`, `version`, metadata) — never the clock or the database — so that replaying the
/// events later gives exactly the same aggregate.
#[diagnostic::on_unimplemented(
    message = "event `{Self}` has no calculator for `{A}`",
    label = "this event needs `impl Apply<{A}> for {Self}`",
    note = "write `impl es_core::Apply<{A}> for {Self} {{ fn apply(&self, aggregate: &mut {A}, event: &es_core::EventContext<'_>) {{ ... }} }}`: it says how the event changes its aggregate"
)]
pub trait Apply<A> {
    /// Applies this event to the aggregate.
    fn apply(&self, aggregate: &mut A, event: &EventContext<'_>);
}

/// What `apply` may read besides the event's data: nothing here changes when events are replayed.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct EventContext<'a> {
    /// When the event was created (UTC, microsecond precision). Use it instead of the clock.
    pub created_at: DateTime<Utc>,
    /// The event's version within its aggregate: 1 for the first event.
    pub version: i64,
    /// Who created the event and from where.
    pub metadata: &'a Metadata,
}

impl<'a> EventContext<'a> {
    /// A context for applying an event by hand (tests of calculators, custom stores).
    pub fn new(created_at: DateTime<Utc>, version: i64, metadata: &'a Metadata) -> Self {
        Self {
            created_at,
            version,
            metadata,
        }
    }
}

/// One row of an events table: an event as it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent<Id> {
    /// The event's id: its global position, shared by every events table of the database, so that
    /// events of several aggregates can be replayed in the order they were written.
    pub id: i64,
    /// The aggregate the event belongs to.
    pub aggregate_id: Id,
    /// The event's position within its aggregate: 1, 2, 3, ... with no gap.
    pub version: i64,
    /// The type tag (the `type` column).
    pub event_type: String,
    /// The data attributes, as JSON text.
    pub data: String,
    /// Who created the event and from where: shared, not copied, by the events of one append
    /// (and by a run of stored events with the same metadata when they are read).
    pub metadata: Arc<Metadata>,
    /// When the event was created (UTC, microsecond precision).
    pub created_at: DateTime<Utc>,
}

impl<Id> RecordedEvent<Id> {
    /// The context `apply` receives for this event.
    pub fn context(&self) -> EventContext<'_> {
        EventContext::new(self.created_at, self.version, &self.metadata)
    }

    /// The data attributes as a JSON value (for display; decoding uses [`Event::decode`]).
    pub fn data_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

/// An event about to be stored, its type erased so that one command can emit several kinds.
///
/// Built from any event with `NewEvent::from(event)` (or `.into()`).
pub struct NewEvent<A> {
    inner: Box<dyn PendingEvent<A>>,
}

impl<A: Aggregate> NewEvent<A> {
    /// The event's type tag.
    pub fn tag(&self) -> &'static str {
        self.inner.tag()
    }

    /// Whether the event creates its aggregate.
    pub fn creates(&self) -> bool {
        self.inner.creates()
    }

    /// Whether the event destroys its aggregate.
    pub fn destroys(&self) -> bool {
        self.inner.destroys()
    }

    /// Checks `metadata` against the application metadata the event declares
    /// ([`Event::check_metadata`]).
    pub fn check_metadata(&self, metadata: &Metadata) -> Result<(), Error> {
        self.inner
            .check_metadata(metadata)
            .map_err(|source| Error::InvalidMetadata {
                table: A::EVENTS_TABLE,
                tag: self.tag(),
                source,
            })
    }

    /// Encodes the event's data attributes as the JSON stored in the `data` column.
    pub fn encode(&self) -> Result<String, Error> {
        self.inner.encode().map_err(|source| Error::Encode {
            table: A::EVENTS_TABLE,
            tag: self.tag(),
            source,
        })
    }

    /// Applies the event to an aggregate.
    pub fn apply(&self, aggregate: &mut A, event: &EventContext<'_>) {
        self.inner.apply(aggregate, event);
    }

    /// The typed event, if it is an `E`.
    pub fn downcast_ref<E: Event<Aggregate = A>>(&self) -> Option<&E> {
        self.inner.as_any().downcast_ref()
    }

    /// The typed event, for code that does not know its aggregate statically (dispatchers).
    pub fn as_any(&self) -> &dyn Any {
        self.inner.as_any()
    }
}

impl<A> fmt::Debug for NewEvent<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEvent")
            .field("tag", &self.inner.tag())
            .finish_non_exhaustive()
    }
}

impl<E: Event> From<E> for NewEvent<E::Aggregate> {
    fn from(event: E) -> Self {
        Self {
            inner: Box::new(event),
        }
    }
}

trait PendingEvent<A>: Send + Sync {
    fn tag(&self) -> &'static str;
    fn creates(&self) -> bool;
    fn destroys(&self) -> bool;
    fn encode(&self) -> Result<String, serde_json::Error>;
    fn check_metadata(&self, metadata: &Metadata) -> Result<(), serde_json::Error>;
    fn apply(&self, aggregate: &mut A, event: &EventContext<'_>);
    fn as_any(&self) -> &dyn Any;
}

impl<E: Event> PendingEvent<E::Aggregate> for E {
    fn tag(&self) -> &'static str {
        E::TAG
    }
    fn creates(&self) -> bool {
        E::CREATES
    }
    fn destroys(&self) -> bool {
        E::DESTROYS
    }
    fn encode(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
    fn check_metadata(&self, metadata: &Metadata) -> Result<(), serde_json::Error> {
        E::check_metadata(metadata)
    }
    fn apply(&self, aggregate: &mut E::Aggregate, event: &EventContext<'_>) {
        Apply::apply(self, aggregate, event);
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What [`append`](crate::EventStore::append) accepts: one event, or a list of [`NewEvent`]s.
pub trait IntoEvents<A> {
    /// The events, in the order they are applied and stored.
    fn into_events(self) -> Vec<NewEvent<A>>;
}

impl<E: Event> IntoEvents<E::Aggregate> for E {
    fn into_events(self) -> Vec<NewEvent<E::Aggregate>> {
        vec![NewEvent::from(self)]
    }
}

impl<A> IntoEvents<A> for Vec<NewEvent<A>> {
    fn into_events(self) -> Vec<NewEvent<A>> {
        self
    }
}
