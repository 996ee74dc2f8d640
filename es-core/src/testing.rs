//! The test kit: *given* these events, *when* this command runs, *then* these events (or this
//! error, or nothing) — on the [`InMemoryStore`] for domain logic, and on a real database with
//! `es-diesel` (whose store also reports the reactors a command triggered and the jobs it queued).
//!
//! ```
//! use es_core::testing::Scenario;
//! use validator::Validate;
//! use es_core::{Aggregate, Apply, Command, CommandError, Event, EventContext, InMemoryStore};
//! use es_core::{NewEvent, Rejection};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Aggregate, Default, Clone, Debug)]
//! pub struct Meeting {
//!     pub id: i64,
//!     pub cancelled: bool,
//!     pub accepted: bool,
//! }
//!
//! /// A meeting was scheduled.
//! #[derive(Event, Serialize, Deserialize, JsonSchema)]
//! #[aggregate(Meeting)]
//! #[event(creates)]
//! pub struct Scheduled {}
//!
//! /// A meeting was cancelled.
//! #[derive(Event, Serialize, Deserialize, JsonSchema)]
//! #[aggregate(Meeting)]
//! pub struct Cancelled {}
//!
//! /// A meeting was accepted.
//! #[derive(Event, Serialize, Deserialize, JsonSchema)]
//! #[aggregate(Meeting)]
//! pub struct Accepted {}
//!
//! impl Apply<Meeting> for Scheduled {
//!     fn apply(&self, _: &mut Meeting, _: &EventContext<'_>) {}
//! }
//! impl Apply<Meeting> for Cancelled {
//!     fn apply(&self, meeting: &mut Meeting, _: &EventContext<'_>) { meeting.cancelled = true }
//! }
//! impl Apply<Meeting> for Accepted {
//!     fn apply(&self, meeting: &mut Meeting, _: &EventContext<'_>) { meeting.accepted = true }
//! }
//!
//! /// Accepts a meeting.
//! #[derive(Validate)]
//! pub struct Accept {
//!     pub meeting: i64,
//! }
//!
//! impl Command for Accept {
//!     type Aggregate = Meeting;
//!     fn aggregate_id(&self) -> i64 {
//!         self.meeting
//!     }
//!     fn decide(&self, meeting: Option<&Meeting>) -> Result<Vec<NewEvent<Meeting>>, Rejection> {
//!         let meeting = meeting.ok_or(Rejection::NotFound)?;
//!         if meeting.cancelled {
//!             return Err(Rejection::not_allowed("the meeting was cancelled"));
//!         }
//!         if meeting.accepted {
//!             return Ok(vec![]);
//!         }
//!         Ok(vec![Accepted {}.into()])
//!     }
//! }
//!
//! let mut store = InMemoryStore::new();
//! Scenario::new(&mut store)
//!     .given(&1, Scheduled {})
//!     .when(Accept { meeting: 1 })
//!     .then_events(Accepted {})
//!     .then_state(|meeting: Option<&Meeting>| assert!(meeting.unwrap().accepted));
//!
//! Scenario::new(&mut store)
//!     .when(Accept { meeting: 1 })
//!     .then_noop();
//!
//! let error = Scenario::new(&mut store)
//!     .given(&2, vec![NewEvent::from(Scheduled {}), Cancelled {}.into()])
//!     .when(Accept { meeting: 2 })
//!     .then_error();
//! assert!(matches!(error, CommandError::NotAllowed { .. }));
//! ```

use serde_json::Value;

use crate::aggregate::Aggregate;
use crate::command::{Command, CommandError};
use crate::error::Error;
use crate::event::{IntoEvents, NewEvent, RecordedEvent};
use crate::history::AppendOptions;
use crate::memory::InMemoryStore;
use crate::store::{Committed, EventStore, Reaction, ReactionKind};

/// A store a [`Scenario`] can run on.
pub trait TestStore<A: Aggregate>: EventStore<A> {
    /// Stores events as the history a scenario starts from. No reactor runs for them: they
    /// happened before the scenario, like the events a replay reads.
    fn record_history(
        &mut self,
        id: &A::Id,
        events: Vec<NewEvent<A>>,
        options: &AppendOptions,
    ) -> Result<(), Error> {
        self.append(id, events, options).map(drop)
    }
}

impl<A: Aggregate + Clone> TestStore<A> for InMemoryStore {}

/// A given/when/then test of a command, on any [`TestStore`].
///
/// Every step panics with a message saying what differed, like `assert_eq!`.
#[derive(Debug)]
pub struct Scenario<'s, S> {
    store: &'s mut S,
}

impl<'s, S> Scenario<'s, S> {
    /// A scenario on this store (which may hold events already).
    pub fn new(store: &'s mut S) -> Self {
        Self { store }
    }

    /// Given these events of aggregate `id`, stored as history with default metadata.
    #[track_caller]
    #[must_use]
    pub fn given<A: Aggregate>(self, id: &A::Id, events: impl IntoEvents<A>) -> Self
    where
        S: TestStore<A>,
    {
        self.given_with(id, events, &AppendOptions::default())
    }

    /// Given these events of aggregate `id`, stored as history with these options (metadata, a
    /// creation time).
    #[track_caller]
    #[must_use]
    pub fn given_with<A: Aggregate>(
        self,
        id: &A::Id,
        events: impl IntoEvents<A>,
        options: &AppendOptions,
    ) -> Self
    where
        S: TestStore<A>,
    {
        if let Err(error) = self.store.record_history(id, events.into_events(), options) {
            panic!(
                "given: the events of {} {id} were refused: {error}",
                A::NAME
            );
        }
        self
    }

    /// When this command runs, with default options.
    pub fn when<Cmd: Command>(self, command: Cmd) -> Then<'s, S, Cmd::Aggregate>
    where
        S: EventStore<Cmd::Aggregate>,
    {
        self.when_with(command, &AppendOptions::default())
    }

    /// When this command runs, with these options (metadata, an expected version).
    pub fn when_with<Cmd: Command>(
        self,
        command: Cmd,
        options: &AppendOptions,
    ) -> Then<'s, S, Cmd::Aggregate>
    where
        S: EventStore<Cmd::Aggregate>,
    {
        let result = self.store.execute(&command, options);
        Then {
            store: self.store,
            command: command.name(),
            result,
        }
    }
}

/// The outcome of a [`Scenario`]'s command, to assert on.
#[derive(Debug)]
pub struct Then<'s, S, A: Aggregate> {
    store: &'s mut S,
    command: &'static str,
    result: Result<Committed<A>, CommandError>,
}

impl<S, A: Aggregate> Then<'_, S, A> {
    /// Then the command stored exactly these events, in order: same tags and same `data` (as
    /// JSON values).
    #[track_caller]
    pub fn then_events(self, expected: impl IntoEvents<A>) -> Self {
        let expected: Vec<(String, Value)> = expected
            .into_events()
            .iter()
            .map(|event| {
                let data = event
                    .encode()
                    .and_then(|json| {
                        serde_json::from_str(&json).map_err(|source| Error::Encode {
                            table: A::EVENTS_TABLE,
                            tag: event.tag(),
                            source,
                        })
                    })
                    .unwrap_or_else(|error| panic!("then_events: {error}"));
                (event.tag().to_owned(), data)
            })
            .collect();
        let actual = self.stored("then_events");
        assert!(
            actual == expected,
            "then_events: `{}` stored {} but {} was expected",
            self.command,
            describe(&actual),
            describe(&expected),
        );
        self
    }

    /// Then the command was a no-op: it stored no event.
    #[track_caller]
    pub fn then_noop(self) -> Self {
        let actual = self.stored("then_noop");
        assert!(
            actual.is_empty(),
            "then_noop: `{}` stored {} instead of nothing",
            self.command,
            describe(&actual),
        );
        self
    }

    /// Then the command failed: its error, to match on.
    #[track_caller]
    pub fn then_error(self) -> CommandError {
        match self.result {
            Err(error) => error,
            Ok(committed) => panic!(
                "then_error: `{}` succeeded and stored {}",
                self.command,
                describe(&tagged(&committed.events)),
            ),
        }
    }

    /// Then the command ran this `trigger` reactor (for one of its events, or of the events its
    /// triggers created).
    #[track_caller]
    pub fn then_triggered(self, reactor: &str) -> Self {
        self.expect_reaction(ReactionKind::Trigger, reactor, "then_triggered")
    }

    /// Then the command queued a job of this `async` reactor.
    #[track_caller]
    pub fn then_enqueued(self, reactor: &str) -> Self {
        self.expect_reaction(ReactionKind::Job, reactor, "then_enqueued")
    }

    /// Then the aggregate, after the command, passes `check`.
    #[track_caller]
    pub fn then_state(self, check: impl FnOnce(Option<&A>)) -> Self {
        check(self.committed("then_state").state.as_ref());
        self
    }

    /// The reactors the command ran or queued.
    #[track_caller]
    pub fn reactions(&self) -> &[Reaction] {
        &self.committed("reactions").reactions
    }

    /// The store, for further checks.
    pub fn store(&mut self) -> &mut S {
        self.store
    }

    /// What the command wrote.
    #[track_caller]
    pub fn into_committed(self) -> Committed<A> {
        match self.result {
            Ok(committed) => committed,
            Err(error) => panic!("`{}` failed: {error}", self.command),
        }
    }

    #[track_caller]
    fn committed(&self, step: &str) -> &Committed<A> {
        match &self.result {
            Ok(committed) => committed,
            Err(error) => panic!("{step}: `{}` failed: {error}", self.command),
        }
    }

    #[track_caller]
    fn stored(&self, step: &str) -> Vec<(String, Value)> {
        tagged(&self.committed(step).events)
    }

    #[track_caller]
    fn expect_reaction(self, kind: ReactionKind, reactor: &str, step: &str) -> Self {
        let reactions = &self.committed(step).reactions;
        let found = reactions
            .iter()
            .any(|reaction| reaction.kind == kind && reaction.reactor == reactor);
        assert!(
            found,
            "{step}: `{}` did not reach {kind:?} reactor `{reactor}`; its reactions: {:?}",
            self.command,
            reactions
                .iter()
                .map(|reaction| format!("{:?} {}", reaction.kind, reaction.reactor))
                .collect::<Vec<_>>(),
        );
        self
    }
}

/// The tags and data of stored events; data that is not JSON shows as a string.
fn tagged<Id>(events: &[RecordedEvent<Id>]) -> Vec<(String, Value)> {
    events
        .iter()
        .map(|event| {
            let data = event
                .data_json()
                .unwrap_or_else(|_| Value::String(event.data.clone()));
            (event.event_type.clone(), data)
        })
        .collect()
}

fn describe(events: &[(String, Value)]) -> String {
    if events.is_empty() {
        return "no event".to_owned();
    }
    let list: Vec<String> = events
        .iter()
        .map(|(tag, data)| format!("{tag} {data}"))
        .collect();
    format!("[{}]", list.join(", "))
}
