//! The contract every store implements: the in-memory one here, the diesel one in `es-diesel`.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::aggregate::Aggregate;
use crate::command::{Command, CommandError};
use crate::error::Error;
use crate::event::{IntoEvents, NewEvent, RecordedEvent};
use crate::history::{AppendOptions, AsOf, Staged};

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
    ) -> Result<Committed<A>, Error> {
        let events = events.into_events();
        self.append_with(id, |_| Ok(events), options)
    }

    /// Appends the events that `decide` makes from the aggregate as stored now (`None` if it does
    /// not exist), under the aggregate's write lock, in one transaction. The expected version is
    /// checked before `decide` runs. No events is a no-op: nothing is written and no reactor runs.
    ///
    /// This is the primitive under [`execute`](EventStore::execute); `decide` may fail with any
    /// error that a store error converts into, and then nothing is written.
    fn append_with<E: From<Error>>(
        &mut self,
        id: &A::Id,
        decide: impl FnOnce(Option<&A>) -> Result<Vec<NewEvent<A>>, E>,
        options: &AppendOptions,
    ) -> Result<Committed<A>, E>;

    /// Runs a [`Command`]: validates its attributes, then decides and appends its events under
    /// the write lock ([`append_with`](EventStore::append_with)). Returns the stored events, none
    /// for a no-op.
    fn execute<Cmd: Command<Aggregate = A>>(
        &mut self,
        command: &Cmd,
        options: &AppendOptions,
    ) -> Result<Committed<A>, CommandError> {
        let name = command.name();
        command.validate().map_err(|errors| CommandError::Invalid {
            command: name,
            errors,
        })?;
        let id = command.aggregate_id();
        self.append_with(
            &id,
            |current| {
                command
                    .decide(current)
                    .map_err(|rejection| rejection.into_error::<A>(name, &id))
            },
            options,
        )
    }

    /// The aggregate as stored now (`None` if it does not exist).
    fn load(&mut self, id: &A::Id) -> Result<Option<A>, Error>;

    /// The version of aggregate `id` now: that of its last event (0 if it has none). What an
    /// optimistic writer expects ([`AppendOptions::expect_version`]).
    fn version(&mut self, id: &A::Id) -> Result<i64, Error>;

    /// Every event of aggregate `id`, in version order: its "git log".
    fn history(&mut self, id: &A::Id) -> Result<Vec<RecordedEvent<A::Id>>, Error>;

    /// Events of every aggregate of type `A` matching `filter`, in global order, collected: see
    /// [`stream_events`](EventStore::stream_events) to read more events than fit in memory.
    fn events(&mut self, filter: &EventFilter) -> Result<Vec<RecordedEvent<A::Id>>, Error> {
        self.stream_events(filter)?.collect()
    }

    /// Events of every aggregate of type `A` matching `filter`, in global order, streamed: one
    /// query whose rows are decoded as the iterator reaches them, so reading every event of a
    /// large table (a custom projection, an export, a migration) runs in constant memory.
    ///
    /// A row that cannot be read is an `Err` item in its place; the rows before it were yielded.
    /// The store is borrowed until the iterator is dropped. On PostgreSQL, dropping it before
    /// the end still receives (and discards) the rest of the result: bound a partial read with
    /// [`EventFilter::limit`].
    ///
    /// ```
    /// # use es_core::{Aggregate, AppendOptions, Apply, Event, EventContext};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Aggregate, Default, Clone)] pub struct Account { pub id: i64, pub balance: i64 }
    /// # /// An account was opened.
    /// # #[derive(Event, Serialize, Deserialize, JsonSchema)]
    /// # #[aggregate(Account)]
    /// # #[event(creates)]
    /// # pub struct Opened {}
    /// # impl Apply<Account> for Opened { fn apply(&self, _: &mut Account, _: &EventContext<'_>) {} }
    /// use std::collections::BTreeMap;
    ///
    /// use es_core::{Error, EventFilter, EventStore, InMemoryStore, Metadata};
    ///
    /// let mut store = InMemoryStore::new();
    /// for (id, actor) in [(1, "ann"), (2, "bob"), (3, "ann")] {
    ///     store.append(&id, Opened {}, &AppendOptions::with_metadata(Metadata::by_actor(actor)))?;
    /// }
    /// let mut opened_by = BTreeMap::<String, u64>::new();
    /// for record in store.stream_events::<Account>(&EventFilter::default())? {
    ///     let actor = record?.metadata.actor_id.clone().unwrap_or_default();
    ///     *opened_by.entry(actor).or_default() += 1;
    /// }
    /// assert_eq!(opened_by, BTreeMap::from([("ann".into(), 2), ("bob".into(), 1)]));
    /// # Ok::<(), Error>(())
    /// ```
    fn stream_events<'s>(
        &'s mut self,
        filter: &'s EventFilter,
    ) -> Result<impl Iterator<Item = Result<RecordedEvent<A::Id>, Error>> + 's, Error>;

    /// Time travel: the state of aggregate `id` as of a version or a time, computed in memory
    /// (nothing is written).
    fn state_as_of(&mut self, id: &A::Id, as_of: AsOf) -> Result<Option<A>, Error>;

    /// Rebuilds aggregate `id` from its events and writes it back (deleting it if its events
    /// destroyed it, restoring it if it was deleted). Reactors never run.
    fn replay(&mut self, id: &A::Id) -> Result<Option<A>, Error>;

    /// Rebuilds every aggregate of type `A` from its events, reporting progress after each batch.
    /// The first aggregate whose events cannot be replayed stops it with that error (naming the
    /// table, event id and tag); see [`replay_all_with`](EventStore::replay_all_with) to skip such
    /// aggregates instead.
    fn replay_all(
        &mut self,
        progress: &mut dyn FnMut(&ReplayProgress),
    ) -> Result<ReplayProgress, Error> {
        self.replay_all_with(OnBadHistory::Stop, progress)
            .map(|report| report.progress)
    }

    /// Rebuilds every aggregate of type `A` from its events, treating an aggregate whose events
    /// cannot be replayed (data that does not decode, an unknown type tag, a version gap) as
    /// `on_bad` says: stop with its error, or skip it — its row is left as it is — and record it
    /// in the report. An event row with a column that cannot be read (metadata that is not JSON,
    /// a `created_at` that is not a time) makes its aggregate's history bad; only a row whose
    /// aggregate id cannot be read always stops.
    fn replay_all_with(
        &mut self,
        on_bad: OnBadHistory,
        progress: &mut dyn FnMut(&ReplayProgress),
    ) -> Result<ReplayReport, Error>;
}

/// A store that can keep several writes together: one request, several commands, on one or
/// several aggregates, all or nothing.
pub trait Transactional {
    /// Runs `work` in one transaction: every append and command in it (on any aggregate) is kept
    /// together, or — when `work` fails — none is.
    ///
    /// ```
    /// # use es_core::{Aggregate, AppendOptions, Apply, Event, EventContext};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Aggregate, Default, Clone)] pub struct Account { pub id: i64, pub balance: i64 }
    /// # /// Money was deposited.
    /// # #[derive(Event, Serialize, Deserialize, JsonSchema)]
    /// # #[aggregate(Account)]
    /// # pub struct Deposited { #[data_attributes] pub amount: i64 }
    /// # impl Apply<Account> for Deposited {
    /// #     fn apply(&self, account: &mut Account, _: &EventContext<'_>) { account.balance += self.amount }
    /// # }
    /// # /// An account was opened.
    /// # #[derive(Event, Serialize, Deserialize, JsonSchema)]
    /// # #[aggregate(Account)]
    /// # #[event(creates)]
    /// # pub struct Opened {}
    /// # impl Apply<Account> for Opened { fn apply(&self, _: &mut Account, _: &EventContext<'_>) {} }
    /// use es_core::{Error, EventStore, InMemoryStore, Transactional};
    ///
    /// let mut store = InMemoryStore::new();
    /// let none = AppendOptions::default();
    /// store.append(&1, Opened {}, &none)?;
    /// let failed: Result<(), Error> = store.transaction(|store| {
    ///     store.append(&1, Deposited { amount: 10 }, &none)?;
    ///     store.append(&2, Deposited { amount: -10 }, &none)?; // account 2 does not exist
    ///     Ok(())
    /// });
    /// assert!(failed.is_err());
    /// let account: Account = store.load(&1)?.unwrap();
    /// assert_eq!(account.balance, 0); // the deposit was not kept either
    /// # Ok::<(), Error>(())
    /// ```
    fn transaction<R, E: From<Error>>(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<R, E>,
    ) -> Result<R, E>;
}

/// An error that a concurrent write caused, so that the same work, done again on fresh state, may
/// succeed: [`Error::Conflict`] (a stale expected version, or a version taken by a concurrent
/// writer), [`Error::Contention`] (a deadlock, a lock wait timeout, a database busy with another
/// writer), and [`CommandError::Conflict`].
pub trait Conflicted {
    /// Whether this error is a concurrency conflict.
    fn is_conflict(&self) -> bool;
}

impl Conflicted for Error {
    fn is_conflict(&self) -> bool {
        self.is_collision()
    }
}

impl Conflicted for CommandError {
    fn is_conflict(&self) -> bool {
        matches!(self, CommandError::Conflict(_))
    }
}

/// Runs `attempt` until it does not fail with a concurrency conflict, `attempts` times at most
/// (at least once), and returns its last result. `attempt` must reread what it depends on — the
/// aggregate's [`version`](EventStore::version) for an expected version — each time.
///
/// ```
/// # use es_core::{Aggregate, AppendOptions, Apply, Event, EventContext};
/// # use schemars::JsonSchema;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Aggregate, Default, Clone)] pub struct Counter { pub id: i64, pub count: i64 }
/// # /// Opened.
/// # #[derive(Event, Serialize, Deserialize, JsonSchema)]
/// # #[aggregate(Counter)]
/// # #[event(creates)]
/// # pub struct Opened {}
/// # impl Apply<Counter> for Opened { fn apply(&self, _: &mut Counter, _: &EventContext<'_>) {} }
/// # /// Counted.
/// # #[derive(Event, Serialize, Deserialize, JsonSchema)]
/// # #[aggregate(Counter)]
/// # pub struct Counted {}
/// # impl Apply<Counter> for Counted {
/// #     fn apply(&self, counter: &mut Counter, _: &EventContext<'_>) { counter.count += 1 }
/// # }
/// use es_core::{EventStore, InMemoryStore, retry_on_conflict};
///
/// let mut store = InMemoryStore::new();
/// store.append(&1, Opened {}, &AppendOptions::default())?;
/// // The first attempt expects version 0, which is stale: it conflicts, and is retried on the
/// // version read again.
/// let mut tries = 0;
/// retry_on_conflict(3, || {
///     tries += 1;
///     let seen = if tries == 1 { 0 } else { store.version::<Counter>(&1)? };
///     store.append(&1, Counted {}, &AppendOptions::default().expect_version(seen))
/// })?;
/// assert_eq!(tries, 2);
/// # Ok::<(), es_core::Error>(())
/// ```
pub fn retry_on_conflict<T, E: Conflicted>(
    attempts: usize,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut tried = 1;
    loop {
        match attempt() {
            Err(error) if error.is_conflict() && tried < attempts => tried += 1,
            result => return result,
        }
    }
}

/// What an append (or a command) wrote.
#[derive(Debug)]
#[non_exhaustive]
pub struct Committed<A: Aggregate> {
    /// The aggregate after the events (`None` if they destroyed it or it does not exist).
    pub state: Option<A>,
    /// The stored events, with their ids and versions (none for a no-op).
    pub events: Vec<RecordedEvent<A::Id>>,
    /// The reactors the write ran or queued, in order, including those of events that trigger
    /// reactors created (a store without a dispatcher runs none).
    pub reactions: Vec<Reaction>,
}

impl<A: Aggregate> Committed<A> {
    /// A write of `events` leaving the aggregate in `state`, before any reactor ran.
    pub fn new(state: Option<A>, events: Vec<RecordedEvent<A::Id>>) -> Self {
        Self {
            state,
            events,
            reactions: Vec::new(),
        }
    }

    /// The stored events of aggregate `id` at `positions` (their global ids, in order), and the
    /// aggregate after them, from what [`stage`](crate::stage) staged: what a store returns once
    /// it has written them.
    pub fn from_staged(
        staged: Staged<A>,
        id: &A::Id,
        positions: impl IntoIterator<Item = i64>,
    ) -> Self {
        let Staged {
            state,
            events,
            metadata,
            created_at,
            ..
        } = staged;
        let metadata = Arc::new(metadata);
        let recorded = events
            .into_iter()
            .zip(positions)
            .map(|(event, position)| RecordedEvent {
                id: position,
                aggregate_id: id.clone(),
                version: event.version,
                event_type: event.tag.to_owned(),
                data: event.data,
                metadata: Arc::clone(&metadata),
                created_at,
            })
            .collect();
        Self::new(state, recorded)
    }

    /// Whether nothing was written: a command that decided no event.
    pub fn is_noop(&self) -> bool {
        self.events.is_empty()
    }
}

/// One reactor that a write ran or queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// How it runs.
    pub kind: ReactionKind,
    /// The reactor (or projection handler), as routed in the dispatcher.
    pub reactor: &'static str,
    /// The events table of the event it reacts to.
    pub events_table: &'static str,
    /// The id of the event it reacts to.
    pub event_id: i64,
    /// The tag of that event.
    pub event_type: String,
}

/// How a [`Reaction`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionKind {
    /// A `trigger` reactor, run in the write transaction.
    Trigger,
    /// A `project` handler, run in the write transaction.
    Projection,
    /// An `async` reactor, queued as a job run after commit.
    Job,
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
#[non_exhaustive]
pub struct ReplayProgress {
    /// Aggregates rebuilt and written back.
    pub aggregates: u64,
    /// The events of the aggregates rebuilt.
    pub events: u64,
    /// Aggregates skipped because their events could not be replayed.
    pub skipped: u64,
}

/// What a replay does with an aggregate whose events cannot be replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnBadHistory {
    /// Stop with its error; nothing of the batch being replayed is written.
    #[default]
    Stop,
    /// Leave its row as it is, record it in [`ReplayReport::skipped`], and go on.
    Skip,
}

/// An aggregate a replay skipped, and why.
#[derive(Debug)]
pub struct SkippedAggregate {
    /// The aggregate's id, as text.
    pub aggregate_id: String,
    /// The first error its events gave (naming the table, event id and tag).
    pub error: Error,
}

/// The outcome of [`EventStore::replay_all_with`].
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// What was replayed.
    pub progress: ReplayProgress,
    /// What was skipped, in the order met.
    pub skipped: Vec<SkippedAggregate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict() -> Error {
        Error::Conflict {
            aggregate: "task",
            aggregate_id: "1".into(),
            expected: 1,
            actual: 2,
        }
    }

    fn contention() -> Error {
        Error::Contention {
            aggregate: "task",
            aggregate_id: "1".into(),
            source: "deadlock detected".into(),
        }
    }

    fn not_found() -> Error {
        Error::NotFound {
            aggregate: "task",
            aggregate_id: "1".into(),
        }
    }

    #[test]
    fn conflicts_and_contention_are_conflicts_and_nothing_else_is() {
        assert!(conflict().is_conflict());
        assert!(contention().is_conflict());
        assert!(!not_found().is_conflict());
        assert!(CommandError::Conflict(conflict()).is_conflict());
        assert!(CommandError::from(contention()).is_conflict());
        assert!(!CommandError::from(not_found()).is_conflict());
        assert!(!CommandError::Store(contention()).is_conflict());
    }

    /// `?` on a diesel error of the application's own: a query error, a conflict when it is
    /// contention (so `retry_on_conflict` runs the transaction again), in both error types.
    #[cfg(feature = "diesel")]
    #[test]
    fn diesel_errors_convert_and_contention_among_them_is_a_conflict() {
        use diesel::result::{DatabaseErrorKind, Error as DieselError};
        let failure =
            |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
        let deadlock = || failure(DatabaseErrorKind::Unknown, "deadlock detected");
        let serialization = || {
            failure(
                DatabaseErrorKind::SerializationFailure,
                "could not serialize",
            )
        };
        let unique = || failure(DatabaseErrorKind::UniqueViolation, "duplicate key");
        for contended in [deadlock(), serialization()] {
            assert!(Error::from(contended).is_conflict());
        }
        assert!(matches!(
            CommandError::from(deadlock()),
            CommandError::Conflict(Error::Query { .. })
        ));
        let error = Error::from(unique());
        assert!(!error.is_conflict());
        assert_eq!(error.to_string(), "query failed: duplicate key");
        assert!(matches!(
            CommandError::from(DieselError::NotFound),
            CommandError::Store(Error::Query {
                source: DieselError::NotFound
            })
        ));
        let mut tries = 0;
        let retried: Result<(), Error> = retry_on_conflict(3, || {
            tries += 1;
            Err(deadlock())?
        });
        assert!(retried.is_err());
        assert_eq!(tries, 3);
    }

    #[test]
    fn conflicts_are_retried_until_the_attempts_run_out() {
        let mut tries = 0;
        let result: Result<(), Error> = retry_on_conflict(3, || {
            tries += 1;
            Err(conflict())
        });
        assert!(matches!(result, Err(Error::Conflict { .. })));
        assert_eq!(tries, 3);
    }

    #[test]
    fn the_first_success_ends_the_retries() {
        let mut tries = 0;
        let result = retry_on_conflict(5, || {
            tries += 1;
            if tries < 3 {
                Err(contention())
            } else {
                Ok(tries)
            }
        });
        assert_eq!(result.unwrap(), 3);
        assert_eq!(tries, 3);
    }

    #[test]
    fn other_errors_are_never_retried() {
        let mut tries = 0;
        let result: Result<(), Error> = retry_on_conflict(5, || {
            tries += 1;
            Err(not_found())
        });
        assert!(matches!(result, Err(Error::NotFound { .. })));
        assert_eq!(tries, 1);
    }

    #[test]
    fn at_least_one_attempt_is_made() {
        let mut tries = 0;
        let result: Result<(), Error> = retry_on_conflict(0, || {
            tries += 1;
            Err(conflict())
        });
        assert!(result.is_err());
        assert_eq!(tries, 1);
    }
}
