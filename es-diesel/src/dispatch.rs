//! Reactors and the dispatcher: side effects that hang off events.
//!
//! A [`dispatcher!`](crate::dispatcher) routes events to reactors. A `trigger` reactor runs inside
//! the write transaction, after the events are applied, and may create further events through
//! [`TriggerContext::append`] (all of it commits or rolls back together). An `async` reactor
//! becomes a row of `es_jobs` inserted in the same transaction, run after commit by a
//! [`Worker`](crate::Worker). A `project` handler maintains a read model: it runs in the write
//! transaction like a trigger and is re-run, in global event order, by
//! [`rebuild_projection`](crate::rebuild_projection). Reactors never run during replay.

use std::any::{Any, TypeId};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use es_core::{
    Aggregate, AppendOptions, Committed, Error, Event, IntoEvents, Metadata, Reaction,
    ReactionKind, RecordedEvent, Route,
};

use crate::database::Database;
use crate::store::append_in_transaction;
use crate::table::AggregateTable;

/// What a reactor returns when it fails: any error.
pub type ReactorError = Box<dyn std::error::Error + Send + Sync>;

/// How deep trigger reactors may cascade (an event whose reactor creates an event whose reactor
/// creates an event ...) before the write fails with [`Error::CascadeTooDeep`].
pub const MAX_CASCADE: usize = 32;

/// A stored event of type `E`, as a reactor receives it: the typed event and its record (id,
/// aggregate id, version, metadata, creation time).
#[derive(Debug)]
pub struct Recorded<'a, E: Event> {
    /// The event.
    pub event: &'a E,
    /// Its stored record.
    pub record: &'a RecordedEvent<<E::Aggregate as Aggregate>::Id>,
}

impl<E: Event> Clone for Recorded<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E: Event> Copy for Recorded<'_, E> {}

impl<'a, E: Event> Recorded<'a, E> {
    /// The event's id (its global position).
    pub fn id(&self) -> i64 {
        self.record.id
    }

    /// The aggregate the event belongs to.
    pub fn aggregate_id(&self) -> &'a <E::Aggregate as Aggregate>::Id {
        &self.record.aggregate_id
    }

    /// Who created the event and from where.
    pub fn metadata(&self) -> &'a Metadata {
        &self.record.metadata
    }

    /// When the event was created.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.record.created_at
    }
}

impl<E: Event> std::ops::Deref for Recorded<'_, E> {
    type Target = E;
    fn deref(&self) -> &E {
        self.event
    }
}

/// Any stored event, as a reactor routed with `*` receives it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AnyEvent {
    /// The events table it is stored in (names its aggregate).
    pub events_table: String,
    /// The aggregate id, as text.
    pub aggregate_id: String,
    /// The event's id (its global position).
    pub id: i64,
    /// Its version within its aggregate.
    pub version: i64,
    /// Its type tag.
    pub event_type: String,
    /// Its data attributes, as JSON text.
    pub data: String,
    /// Who created it and from where.
    pub metadata: Arc<Metadata>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl AnyEvent {
    /// The typed record, if this event belongs to aggregate `A` and its id parses.
    pub fn record_of<A: Aggregate>(&self) -> Option<RecordedEvent<A::Id>> {
        if self.events_table != A::EVENTS_TABLE {
            return None;
        }
        Some(RecordedEvent {
            id: self.id,
            aggregate_id: self.aggregate_id.parse().ok()?,
            version: self.version,
            event_type: self.event_type.clone(),
            data: self.data.clone(),
            metadata: self.metadata.clone(),
            created_at: self.created_at,
        })
    }

    /// The erased form of a record of aggregate `A`.
    pub fn of<A: Aggregate>(record: &RecordedEvent<A::Id>) -> Self {
        Self {
            events_table: A::EVENTS_TABLE.to_owned(),
            aggregate_id: record.aggregate_id.to_string(),
            id: record.id,
            version: record.version,
            event_type: record.event_type.clone(),
            data: record.data.clone(),
            metadata: record.metadata.clone(),
            created_at: record.created_at,
        }
    }
}

/// An event being dispatched, its types erased so that one dispatcher serves every aggregate.
#[doc(hidden)]
pub struct Dispatched<'a> {
    pub aggregate: TypeId,
    pub events_table: &'static str,
    pub event_type: &'a str,
    pub event_id: i64,
    /// The typed event, when it is at hand (live writes); decoded from the record otherwise.
    pub event: Option<&'a dyn Any>,
    /// The `RecordedEvent<A::Id>` of the event.
    pub record: &'a dyn Any,
    pub erased: &'a dyn Fn() -> AnyEvent,
}

impl std::fmt::Debug for Dispatched<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatched")
            .field("events_table", &self.events_table)
            .field("event_type", &self.event_type)
            .field("event_id", &self.event_id)
            .finish_non_exhaustive()
    }
}

impl<'a> Dispatched<'a> {
    /// Runs `f` with the typed event if this is an `E`.
    pub fn typed<E: Event, R>(
        &self,
        f: impl FnOnce(Recorded<'_, E>) -> Result<R, Error>,
    ) -> Result<Option<R>, Error> {
        if self.aggregate != TypeId::of::<E::Aggregate>() || !E::has_tag(self.event_type) {
            return Ok(None);
        }
        let Some(record) = self.record_of::<E::Aggregate>() else {
            return Ok(None);
        };
        let decoded;
        let event = match self.event.and_then(|event| event.downcast_ref::<E>()) {
            Some(event) => event,
            None => {
                decoded = E::decode(record)?;
                &decoded
            }
        };
        f(Recorded { event, record }).map(Some)
    }

    /// The record, if this event belongs to aggregate `A`.
    pub fn record_of<A: Aggregate>(&self) -> Option<&'a RecordedEvent<A::Id>> {
        if self.aggregate != TypeId::of::<A>() {
            return None;
        }
        self.record.downcast_ref()
    }

    /// Describes a record of aggregate `A` for dispatching.
    pub fn describe<A: Aggregate, R>(
        record: &RecordedEvent<A::Id>,
        event: Option<&dyn Any>,
        f: impl FnOnce(&Dispatched<'_>) -> R,
    ) -> R {
        let erased = || AnyEvent::of::<A>(record);
        f(&Dispatched {
            aggregate: TypeId::of::<A>(),
            events_table: A::EVENTS_TABLE,
            event_type: &record.event_type,
            event_id: record.id,
            event,
            record,
            erased: &erased,
        })
    }
}

/// The routes of a dispatcher, generated by [`dispatcher!`](crate::dispatcher) for connection `C`.
pub trait Dispatch<C: Database>: Send + Sync {
    /// Runs the trigger reactors and projection handlers routed for `event`, in the order they are
    /// declared, and queues its async reactors.
    #[doc(hidden)]
    fn dispatch(
        &self,
        ctx: &mut TriggerContext<'_, C>,
        event: &Dispatched<'_>,
    ) -> Result<(), Error>;

    /// Runs the handlers of `projection` routed for a stored event (projection rebuilds).
    #[doc(hidden)]
    fn project(&self, conn: &mut C, projection: &str, event: &AnyEvent) -> Result<(), Error>;

    /// Runs the async reactor of a job.
    #[doc(hidden)]
    fn run_job(&self, ctx: &mut crate::JobContext<'_, C>) -> Result<(), Error>;

    /// The routes, as declared.
    fn routes(&self) -> &'static [Route];
}

/// A job to insert with the events of a write.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub(crate) events_table: &'static str,
    pub(crate) event_id: i64,
    pub(crate) reactor: &'static str,
}

/// What one write transaction accumulates while its reactors cascade.
#[derive(Debug, Default)]
pub(crate) struct UnitOfWork {
    pub(crate) jobs: Vec<NewJob>,
    pub(crate) chain: Vec<String>,
    pub(crate) reactions: Vec<Reaction>,
    /// Whether a reactor had the connection (a trigger's [`TriggerContext::connection`], a
    /// projection handler): it may have handled the error of a statement of its own, which on
    /// PostgreSQL aborted the transaction ([`Database::check_not_aborted`]).
    pub(crate) lent: bool,
}

/// How much a [`UnitOfWork`] held before a nested append, to forget what it added if it fails.
#[derive(Debug, Clone, Copy)]
struct Mark {
    jobs: usize,
    chain: usize,
    reactions: usize,
}

impl UnitOfWork {
    fn mark(&self) -> Mark {
        Mark {
            jobs: self.jobs.len(),
            chain: self.chain.len(),
            reactions: self.reactions.len(),
        }
    }

    /// Forgets the jobs, cascade steps and reactions added since `mark`: those of a nested append
    /// whose savepoint was rolled back.
    fn truncate(&mut self, mark: Mark) {
        self.jobs.truncate(mark.jobs);
        self.chain.truncate(mark.chain);
        self.reactions.truncate(mark.reactions);
    }

    fn record(&mut self, kind: ReactionKind, reactor: &'static str, event: &Dispatched<'_>) {
        self.reactions.push(Reaction {
            kind,
            reactor,
            events_table: event.events_table,
            event_id: event.event_id,
            event_type: event.event_type.to_owned(),
        });
    }
}

/// What a trigger reactor receives: the write transaction, and the way to create more events in
/// it.
pub struct TriggerContext<'t, C: Database> {
    conn: &'t mut C,
    dispatcher: &'t dyn Dispatch<C>,
    unit: &'t mut UnitOfWork,
    cause: RecordedCause,
}

#[derive(Debug, Clone, Copy)]
struct RecordedCause {
    event_id: i64,
    correlation_id: Option<uuid::Uuid>,
}

impl<C: Database> std::fmt::Debug for TriggerContext<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerContext")
            .field("cause", &self.cause)
            .finish_non_exhaustive()
    }
}

impl<'t, C: Database> TriggerContext<'t, C> {
    pub(crate) fn new(
        conn: &'t mut C,
        dispatcher: &'t dyn Dispatch<C>,
        unit: &'t mut UnitOfWork,
        cause: &RecordedEvent<impl Sized>,
    ) -> Self {
        Self {
            conn,
            dispatcher,
            unit,
            cause: RecordedCause {
                event_id: cause.id,
                correlation_id: cause.metadata.correlation_id,
            },
        }
    }

    /// The write transaction's connection, for reads and for writes that must commit with the
    /// event.
    ///
    /// A statement that fails here and whose error the reactor handles, returning `Ok`, is rolled
    /// back alone on SQLite and MySQL; PostgreSQL aborts the whole transaction, and the write then
    /// fails rather than report what it cannot store. Return the error, or run the statement in
    /// a savepoint of its own (diesel's `Connection::transaction` here is one).
    pub fn connection(&mut self) -> &mut C {
        self.unit.lent = true;
        self.conn
    }

    /// Appends events to another aggregate in the same transaction. Their metadata gets the
    /// triggering event as causation and its correlation id; their own reactors run in turn.
    ///
    /// The append is a savepoint: when it fails, nothing of it remains — no event, no row, none of
    /// the jobs or reactions of its own reactors — whatever the trigger does next. A trigger may
    /// handle the error and go on; returning it fails the whole write.
    pub fn append<A: AggregateTable<C>>(
        &mut self,
        id: &A::Id,
        events: impl IntoEvents<A>,
        options: &AppendOptions,
    ) -> Result<Committed<A>, Error> {
        if self.unit.chain.len() >= MAX_CASCADE {
            return Err(Error::CascadeTooDeep {
                limit: MAX_CASCADE,
                chain: self.unit.chain.join(" -> "),
            });
        }
        let options = self.caused(options);
        let events = events.into_events();
        let (dispatcher, unit) = (self.dispatcher, &mut *self.unit);
        let mark = unit.mark();
        let appended = self.conn.write_transaction(|conn| {
            append_in_transaction(
                conn,
                Some(dispatcher),
                unit,
                id,
                |_| Ok::<_, Error>(events),
                &options,
            )
        });
        if appended.is_err() {
            self.unit.truncate(mark);
        }
        appended
    }

    fn caused(&self, options: &AppendOptions) -> AppendOptions {
        let mut options = options.clone();
        options.metadata.causation_id = Some(self.cause.event_id);
        if let Some(correlation) = self.cause.correlation_id {
            options.metadata.correlation_id = Some(correlation);
        }
        options
    }

    /// Runs one trigger reactor, naming it in its error and its tracing span.
    #[doc(hidden)]
    pub fn run_trigger(
        &mut self,
        reactor: &'static str,
        event: &Dispatched<'_>,
        run: impl FnOnce(&mut Self) -> Result<(), ReactorError>,
    ) -> Result<(), Error> {
        let span = tracing::info_span!(
            "reactor",
            kind = "trigger",
            reactor,
            event_type = event.event_type,
            event_id = event.event_id
        );
        let _entered = span.enter();
        self.unit.record(ReactionKind::Trigger, reactor, event);
        run(self).map_err(|source| reactor_error(reactor, event, source))
    }

    /// Runs one projection handler.
    #[doc(hidden)]
    pub fn run_projection(
        &mut self,
        projection: &'static str,
        event: &Dispatched<'_>,
        run: impl FnOnce(&mut C) -> Result<(), ReactorError>,
    ) -> Result<(), Error> {
        self.unit
            .record(ReactionKind::Projection, projection, event);
        self.unit.lent = true;
        run_projection(
            self.conn,
            projection,
            (event.events_table, event.event_id, event.event_type),
            run,
        )
    }

    /// Queues the job of an async reactor, inserted with the events when the write commits.
    #[doc(hidden)]
    pub fn enqueue(&mut self, reactor: &'static str, event: &Dispatched<'_>) {
        let job = NewJob {
            events_table: event.events_table,
            event_id: event.event_id,
            reactor,
        };
        if !self.unit.jobs.contains(&job) {
            self.unit.jobs.push(job);
            self.unit.record(ReactionKind::Job, reactor, event);
        }
    }
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

/// Runs one projection handler, naming it in its error and its tracing span.
#[doc(hidden)]
pub fn run_projection<C>(
    conn: &mut C,
    projection: &'static str,
    (events_table, event_id, event_type): (&str, i64, &str),
    run: impl FnOnce(&mut C) -> Result<(), ReactorError>,
) -> Result<(), Error> {
    let span = tracing::info_span!("projection", projection, event_type, event_id);
    let _entered = span.enter();
    run(conn).map_err(|source| Error::Reactor {
        reactor: projection,
        table: events_table.to_owned(),
        event_id,
        tag: event_type.to_owned(),
        source,
    })
}

/// Names the failing reactor in its error — unless the error comes from deeper in the cascade (a
/// reactor of an event this one created, or the cascade limit), which already says where, or is
/// a collision with another writer (a deadlock, a busy database: [`Error::Contention`]), which
/// makes the whole write one to run again, as `retry_on_conflict` does.
pub(crate) fn reactor_error(
    reactor: &'static str,
    event: &Dispatched<'_>,
    source: ReactorError,
) -> Error {
    match source.downcast::<Error>() {
        Ok(inner)
            if matches!(
                *inner,
                Error::Reactor { .. } | Error::CascadeTooDeep { .. } | Error::Contention { .. }
            ) =>
        {
            *inner
        }
        Ok(inner) => wrap(reactor, event, inner),
        Err(source) => wrap(reactor, event, source),
    }
}

fn wrap(reactor: &'static str, event: &Dispatched<'_>, source: ReactorError) -> Error {
    Error::Reactor {
        reactor,
        table: event.events_table.to_owned(),
        event_id: event.event_id,
        tag: event.event_type.to_owned(),
        source,
    }
}

/// A dispatcher with no route: what a store without a dispatcher uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReactors;

impl<C: Database> Dispatch<C> for NoReactors {
    fn dispatch(&self, _: &mut TriggerContext<'_, C>, _: &Dispatched<'_>) -> Result<(), Error> {
        Ok(())
    }

    fn project(&self, _: &mut C, _: &str, _: &AnyEvent) -> Result<(), Error> {
        Ok(())
    }

    fn run_job(&self, ctx: &mut crate::JobContext<'_, C>) -> Result<(), Error> {
        Err(ctx.unrouted())
    }

    fn routes(&self) -> &'static [Route] {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reacting_to<R>(check: impl FnOnce(&Dispatched<'_>) -> R) -> R {
        let erased = || -> AnyEvent { unreachable!("the test's event is never erased") };
        check(&Dispatched {
            aggregate: TypeId::of::<()>(),
            events_table: "task_events",
            event_type: "task.created",
            event_id: 7,
            event: None,
            record: &(),
            erased: &erased,
        })
    }

    #[test]
    fn a_reactors_own_failure_names_the_reactor_and_the_event() {
        let not_found = Error::NotFound {
            aggregate: "project",
            aggregate_id: "3".into(),
        };
        for source in [ReactorError::from(not_found), "mail server down".into()] {
            let error = reacting_to(|event| reactor_error("notify", event, source));
            let Error::Reactor {
                reactor,
                table,
                event_id,
                tag,
                ..
            } = error
            else {
                panic!("not a reactor error: {error:?}");
            };
            assert_eq!(
                (reactor, table.as_str(), event_id, tag.as_str()),
                ("notify", "task_events", 7, "task.created")
            );
        }
    }

    #[test]
    fn a_collision_or_a_deeper_failure_passes_through() {
        let contention = Error::Contention {
            aggregate: "project",
            aggregate_id: "3".into(),
            source: "deadlock detected".into(),
        };
        let error = reacting_to(|event| reactor_error("notify", event, contention.into()));
        assert!(matches!(error, Error::Contention { .. }), "{error:?}");
        let deeper = Error::Reactor {
            reactor: "audit",
            table: "project_events".into(),
            event_id: 8,
            tag: "project.started".into(),
            source: "disk full".into(),
        };
        let error = reacting_to(|event| reactor_error("notify", event, deeper.into()));
        assert!(
            matches!(
                error,
                Error::Reactor {
                    reactor: "audit",
                    event_id: 8,
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
