//! Aggregates: the current state that events are applied to.

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The current state of one record, rebuilt by applying its events in order.
///
/// An aggregate is an ordinary struct (with `es-diesel`, an ordinary diesel model in an ordinary
/// table). Derive it with [`#[derive(Aggregate)]`](macro@crate::Aggregate):
///
/// ```
/// use es_core::Aggregate;
///
/// #[derive(Aggregate, Default, Clone, Debug, PartialEq)]
/// #[aggregate(name = "task")]
/// pub struct Task {
///     pub id: i64,
///     pub title: String,
/// }
///
/// assert_eq!(<Task as Aggregate>::NAME, "task");
/// assert_eq!(<Task as Aggregate>::EVENTS_TABLE, "task_events");
/// assert_eq!(Task::new(7).id, 7);
/// ```
pub trait Aggregate: Sized + Send + Sync + 'static {
    /// The type of the aggregate's identifier (`i64`, `uuid::Uuid`, ...).
    type Id: AggregateId;

    /// The aggregate's name in snake case (`task`, `subscription`), used in tags, errors and docs.
    const NAME: &'static str;

    /// The table that stores this aggregate's events (`task_events` by default).
    const EVENTS_TABLE: &'static str;

    /// The fresh state a creation event is applied to: every attribute at its default, the id set.
    fn new(id: Self::Id) -> Self;

    /// The aggregate's identifier.
    fn id(&self) -> &Self::Id;
}

/// A type usable as an aggregate identifier: integers (the Rails default) or UUIDs. Its text form
/// (`Display`, parsed back by `FromStr`) is how ids appear in errors, erased events and tools.
pub trait AggregateId:
    Clone
    + Eq
    + Ord
    + Hash
    + Debug
    + Display
    + FromStr
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl AggregateId for i32 {}
impl AggregateId for i64 {}
impl AggregateId for String {}
impl AggregateId for uuid::Uuid {}
