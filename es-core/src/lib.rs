//! Event sourcing made simple, the way Kickstarter made it simple for Rails: your aggregates stay
//! ordinary structs (with `es-diesel`, ordinary diesel models in ordinary tables), each change is
//! an event stored forever in the aggregate's events table, and each event knows how to apply
//! itself. You get the full history of every record, replay to backfill a column or fix a bug, and
//! time travel.
//!
//! # The pieces
//!
//! - An **aggregate** ([`Aggregate`]) is the current state of one record: a `Task`.
//! - An **event** ([`Event`]) is something that happened to one aggregate: `task.completed`. Its
//!   fields are its *data attributes*, stored as the `data` JSON; who did it and from where is its
//!   [`Metadata`].
//! - A **calculator** ([`Apply`]) is how an event changes its aggregate. It reads only the event
//!   and its [`EventContext`] (creation time, version, metadata), never the clock, so replaying
//!   the events gives the same aggregate.
//! - A **store** ([`EventStore`]) appends events atomically and reads, replays and time-travels
//!   them: [`InMemoryStore`] here for unit tests, the diesel store in `es-diesel` for real.
//! - The **catalog** ([`catalog`]) documents every event for the data team, generated from the
//!   code: YAML, a JSON Schema per event's `data` and for the metadata, and a Markdown page with
//!   a Mermaid diagram of the flows, committed and kept fresh by a test.
//!
//! ```
//! use es_core::{Aggregate, AppendOptions, Apply, AsOf, Event, EventContext, EventStore};
//! use es_core::{InMemoryStore, Metadata};
//! use chrono::{DateTime, Utc};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Aggregate, Default, Clone, Debug, PartialEq)]
//! pub struct Task {
//!     pub id: i64,
//!     pub title: String,
//!     pub completed_at: Option<DateTime<Utc>>,
//!     pub completed_by: Option<String>,
//! }
//!
//! /// A task was created.
//! #[derive(Event, Serialize, Deserialize, JsonSchema)]
//! #[aggregate(Task)]
//! #[event(creates)]
//! pub struct Created {
//!     /// What is to be done.
//!     #[data_attributes]
//!     pub title: String,
//! }
//!
//! /// A task was completed.
//! #[derive(Event, Serialize, Deserialize, JsonSchema)]
//! #[aggregate(Task)]
//! pub struct Completed {}
//!
//! impl Apply<Task> for Created {
//!     fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
//!         task.title = self.title.clone();
//!     }
//! }
//!
//! impl Apply<Task> for Completed {
//!     fn apply(&self, task: &mut Task, event: &EventContext<'_>) {
//!         task.completed_at = Some(event.created_at); // never the wall clock
//!         task.completed_by = event.metadata.actor_id.clone();
//!     }
//! }
//!
//! let mut store = InMemoryStore::new();
//! store.append(&1, Created { title: "Slides".into() }, &AppendOptions::default())?;
//! let by_ann = AppendOptions::with_metadata(Metadata::by_actor("ann"));
//! store.append(&1, Completed {}, &by_ann)?;
//!
//! let task: Task = store.load(&1)?.unwrap();
//! assert_eq!(task.completed_by.as_deref(), Some("ann"));
//! let history = store.history::<Task>(&1)?;
//! assert_eq!(history[1].event_type, "task.completed");
//! let before: Option<Task> = store.state_as_of(&1, AsOf::Version(1))?;
//! assert_eq!(before.unwrap().completed_at, None);
//! # Ok::<(), es_core::Error>(())
//! ```
//!
//! # `#[derive(Aggregate)]`
//!
//! On a struct with named fields that implements `Default`. Implements [`Aggregate`]; its `new`
//! is `Default` with the id set.
//!
//! | attribute | where | meaning |
//! |---|---|---|
//! | `#[aggregate(name = "task")]` | struct | the aggregate's name; default: the struct name in snake case |
//! | `#[aggregate(events_table = "task_events")]` | struct | its events table; default: `{name}_events` |
//! | `#[aggregate(id)]` | field | the identifier field; default: the field named `id` |
//! | `#[aggregate(table = crate::schema::tasks)]` | struct | with `es-diesel`: the diesel table of the aggregate; generates `es_diesel::AggregateTable` (the model must also derive diesel's `Queryable`, `Selectable` and `Insertable`) |
//! | `#[aggregate(backend = postgres)]` | struct, repeatable | with `table`: generate the table's queries only for these backends (`sqlite`, `postgres`, `mysql`; default: every backend enabled in `es-diesel`), for models using backend-specific column types |
//!
//! # `#[derive(Event)]`
//!
//! On a struct with named fields (or no fields) that also derives serde's `Serialize` and
//! `Deserialize` and schemars' `JsonSchema` (the schema of its `data` in the [`catalog`]), and
//! implements [`Apply`] for its aggregate. Implements [`Event`] and registers the event in the
//! [`Registry`], so that stored records find their type by tag. A data attribute stored through
//! `#[serde(with = "cents")]` names the type of its JSON for the schema:
//! `#[schemars(with = "i64")]`.
//!
//! | attribute | where | meaning |
//! |---|---|---|
//! | `#[aggregate(Task)]` | struct, required | the aggregate the event belongs to |
//! | `#[event(tag = "task.done")]` | struct | the stored type tag; default: `{aggregate}.{event}` in snake case (`task.completed`) |
//! | `#[event(alias = "task.finished")]` | struct, repeatable | a former tag that still decodes to this event, after a rename |
//! | `#[event(creates)]` | struct | the event creates its aggregate (applied to [`Aggregate::new`], refused if it exists) |
//! | `#[event(destroys)]` | struct | the event destroys its aggregate (its row is deleted) |
//! | `#[event(metadata = Webhook)]` | struct | its `metadata` carries the application's own `Webhook` (serde + schemars, written with [`Metadata::with_app`], read with [`Metadata::app`]): checked before the event is written ([`Error::InvalidMetadata`]), documented in the catalog |
//! | `#[data_attributes]` | every field | the field is stored in the `data` JSON |
//!
//! Tags are dot-separated identifiers (`task.completed`, `billing.invoice_paid`).
//!
//! **Why `#[data_attributes]` marks each field** rather than listing names: the `data` JSON is a
//! contract kept forever (naming is the hard part, as the talk says), so each stored attribute is
//! a visible decision at the field it stores, next to its doc comment and its serde attributes —
//! which is where schema evolution happens. Every field must carry it: an event stores everything
//! its calculator needs, so a field that is not stored would silently differ on replay. Adding an
//! attribute to an event that already has stored rows is done with serde:
//!
//! ```
//! # use es_core::{Aggregate, Apply, Event, EventContext};
//! # use schemars::JsonSchema;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Aggregate, Default)] pub struct Subscription { pub id: i64, pub currency: String }
//! /// A subscription was created.
//! #[derive(Event, Serialize, Deserialize, JsonSchema)]
//! #[aggregate(Subscription)]
//! #[event(creates, alias = "subscription.started")]
//! pub struct Created {
//!     /// Old events have no currency: they were all in US dollars.
//!     #[data_attributes]
//!     #[serde(default = "usd")]
//!     pub currency: String,
//! }
//! fn usd() -> String { "USD".into() }
//! # impl Apply<Subscription> for Created {
//! #     fn apply(&self, s: &mut Subscription, _: &EventContext<'_>) { s.currency = self.currency.clone() }
//! # }
//! ```
//!
//! # Commands
//!
//! Requests change aggregates through [`Command`]s: a struct of typed attributes that validates
//! them (`#[derive(Validate)]` of the [`validator`] crate: put `validator = { version = "0.20",
//! features = ["derive"] }` in your `Cargo.toml`), and a [`decide`](Command::decide) that gets the
//! aggregate as stored now, under the write lock, and returns its events — or a [`Rejection`], or
//! no event at all for a no-op. [`EventStore::execute`] always validates, then decides, then
//! writes; a no-op writes nothing and runs no reactor. [`changed`] is the change detection of
//! update commands (an event only for what changed). Several commands run in one transaction with
//! [`Transactional::transaction`]. Errors are typed per case ([`CommandError`]): invalid
//! attributes per field, not found, already exists, not allowed in this state, a concurrency
//! conflict, a storage failure. See [`Command`] for a complete example.
//!
//! # Testing
//!
//! [`testing::Scenario`] is the test kit: *given* events, *when* a command, *then* its events, its
//! no-op or its error, and (on the diesel store) the trigger reactors it ran and the jobs it
//! queued. It runs on [`InMemoryStore`] and on `es_diesel::DieselStore` (SQLite in a temporary
//! file is as fast as it gets for a real database), whose history it stores without running
//! reactors.

mod aggregate;
mod aggregate_type_methods;
pub mod catalog;
mod command;
mod error;
mod event;
mod history;
mod memory;
mod metadata;
mod registry;
mod route;
mod store;
pub mod testing;

pub use aggregate::{Aggregate, AggregateId};
pub use command::{Command, CommandError, Rejection, changed};
pub use error::Error;
#[cfg(feature = "diesel")]
pub use error::is_contention;
pub use event::{Apply, Event, EventContext, IntoEvents, NewEvent, RecordedEvent};
pub use history::{AppendOptions, AsOf, Head, Rebuild, Staged, StagedEvent, now, rebuild, stage};
pub use memory::InMemoryStore;
pub use metadata::Metadata;
pub use registry::{AppMetadataDescriptor, AttributeDescriptor, EventDescriptor, Registry};
pub use route::{EventRef, Pattern, Reactor, Route};
pub use store::{
    Committed, Conflicted, EventFilter, EventStore, OnBadHistory, Reaction, ReactionKind,
    ReplayProgress, ReplayReport, SkippedAggregate, Transactional, retry_on_conflict,
};
/// The validation crate of commands, whose `ValidationErrors` [`CommandError::Invalid`] carries.
/// Its derive expands to `::validator::...`: put `validator = { version = "0.20", features =
/// ["derive"] }` in your `Cargo.toml` to write `#[derive(Validate)]`.
pub use validator;

/// Derives [`Aggregate`]; see the [crate documentation](crate#deriveaggregate).
pub use es_derive::Aggregate;
/// Derives [`Event`]; see the [crate documentation](crate#deriveevent).
pub use es_derive::Event;
/// The JSON Schema crate every event's `data` schema comes from: events derive
/// `schemars::JsonSchema` next to serde's traits.
pub use schemars;

#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{
        ApplyFailure, app_metadata_schema_for, apply_erased, check_app_metadata, schema_for,
    };
    pub use inventory;
    pub use serde_json;

    use crate::{Aggregate, Event, EventRef};

    /// An event whose `data` has a JSON Schema, for the catalog.
    #[diagnostic::on_unimplemented(
        message = "event `{Self}` has no JSON Schema for the catalog",
        label = "this event needs `schemars::JsonSchema`",
        note = "derive it next to serde's traits: `#[derive(Event, Serialize, Deserialize, JsonSchema)]` with `use schemars::JsonSchema;`"
    )]
    pub trait EventSchema: schemars::JsonSchema {}

    impl<T: schemars::JsonSchema> EventSchema for T {}

    /// Application metadata with a JSON Schema, for the catalog.
    #[diagnostic::on_unimplemented(
        message = "application metadata `{Self}` has no JSON Schema for the catalog",
        label = "this type needs `schemars::JsonSchema`",
        note = "derive it next to serde's traits: `#[derive(Serialize, Deserialize, JsonSchema)]` with `use schemars::JsonSchema;`"
    )]
    pub trait AppMetadataSchema: schemars::JsonSchema {}

    impl<T: schemars::JsonSchema> AppMetadataSchema for T {}

    /// An event a reactor may create, as declared in a dispatcher (`reactor -> [Unpinned]`).
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not an event, so a reactor cannot create it",
        label = "not an event",
        note = "list after `->` the events the reactor appends, each a type deriving `Event`: `reactor -> [Unpinned]`"
    )]
    pub trait CreatedEvent: Event {}

    impl<E: Event> CreatedEvent for E {}

    /// The description of an event a reactor may create.
    pub const fn event_ref<E: CreatedEvent>() -> EventRef {
        EventRef {
            aggregate: <E::Aggregate as Aggregate>::NAME,
            tag: E::TAG,
        }
    }

    /// A type that a data attribute can have: one serde can write to and read from JSON.
    #[diagnostic::on_unimplemented(
        message = "data attribute type `{Self}` cannot be stored in the event's `data` JSON",
        label = "this type needs serde's `Serialize` and `Deserialize`",
        note = "derive them (`#[derive(serde::Serialize, serde::Deserialize)]`), or store the field through `#[serde(with = \"...\")]`"
    )]
    pub trait DataAttribute {}

    impl<T: serde::Serialize + serde::de::DeserializeOwned> DataAttribute for T {}

    /// Fails to compile, at the field, when a data attribute cannot be stored as JSON.
    pub const fn assert_data_attribute<T: DataAttribute>() {}
}
