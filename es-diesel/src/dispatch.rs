//! Reactors and the dispatcher: side effects that hang off events.
//!
//! A [`dispatcher!`](crate::dispatcher) routes events to reactors. A `trigger` reactor runs inside
//! the write transaction, after the events are applied, and may create further events through
//! [`TriggerContext::append`] (all of it commits or rolls back together). An `async` reactor
//! becomes a row of `es_jobs` inserted in the same transaction, run after commit by a
//! [`Worker`](crate::Worker). A `project` handler maintains a read model: it runs in the write
//! transaction like a trigger and is re-run, in global event order, by
//! [`rebuild_projection`](crate::rebuild_projection). Reactors never run during replay.
//!
//! What a reactor sees lives here: [`Dispatch`], [`Dispatched`], [`Recorded`], [`TriggerContext`]
//! and [`JobContext`]. Calls `write` (a reactor's `append` is an append: the crate's one import
//! circle), `events`, `jobs::queue`, `table`, `database` and `errors`.

use std::any::{Any, TypeId};

use chrono::{DateTime, Utc};
use es_core::{
    Aggregate, AppendOptions, Committed, Error, Event, IntoEvents, Metadata, ReactionKind,
    RecordedEvent, Route,
};

use crate::database::Database;
use crate::errors::reactor_error;
use crate::events::{AnyEvent, Selection, select_any_event, select_events};
use crate::jobs::queue::{ClaimedJob, NewJob};
use crate::table::AggregateTable;
use crate::write::{UnitOfWork, append, append_in_transaction};

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

/// How this connection type runs the routes of dispatcher `D`: generated by
/// [`dispatcher!`](crate::dispatcher) for the connection type of every backend it is for. A trait
/// of the connection, like [`Stores`](crate::Stores), so that an app's own trait can imply it:
/// `trait AppDatabase: Database + Stores<Task> + Dispatches<AppDispatcher> {}`.
pub trait Dispatches<D>: Database {
    /// Runs the trigger reactors and projection handlers routed for `event`, in the order they are
    /// declared, and queues its async reactors.
    #[doc(hidden)]
    fn dispatch(
        dispatcher: &D,
        ctx: &mut TriggerContext<'_, Self>,
        event: &Dispatched<'_>,
    ) -> Result<(), Error>;

    /// Runs the handlers of `projection` routed for a stored event (projection rebuilds).
    #[doc(hidden)]
    fn project(
        dispatcher: &D,
        conn: &mut Self,
        projection: &str,
        event: &AnyEvent,
    ) -> Result<(), Error>;

    /// Runs the async reactor of a job.
    #[doc(hidden)]
    fn run_job(dispatcher: &D, ctx: &mut JobContext<'_, Self>) -> Result<(), Error>;

    /// The routes, as declared.
    fn routes(dispatcher: &D) -> &'static [Route];
}

/// The routes of a dispatcher on connection `C`, as the store and the worker take them
/// (`&dyn Dispatch<C>`): implemented for every dispatcher `D` that `C` [`Dispatches`].
pub trait Dispatch<C: Database>: Send + Sync {
    /// [`Dispatches::dispatch`].
    #[doc(hidden)]
    fn dispatch(
        &self,
        ctx: &mut TriggerContext<'_, C>,
        event: &Dispatched<'_>,
    ) -> Result<(), Error>;

    /// [`Dispatches::project`].
    #[doc(hidden)]
    fn project(&self, conn: &mut C, projection: &str, event: &AnyEvent) -> Result<(), Error>;

    /// [`Dispatches::run_job`].
    #[doc(hidden)]
    fn run_job(&self, ctx: &mut JobContext<'_, C>) -> Result<(), Error>;

    /// The routes, as declared.
    fn routes(&self) -> &'static [Route];
}

impl<C: Dispatches<D>, D: Send + Sync> Dispatch<C> for D {
    fn dispatch(
        &self,
        ctx: &mut TriggerContext<'_, C>,
        event: &Dispatched<'_>,
    ) -> Result<(), Error> {
        C::dispatch(self, ctx, event)
    }

    fn project(&self, conn: &mut C, projection: &str, event: &AnyEvent) -> Result<(), Error> {
        C::project(self, conn, projection, event)
    }

    fn run_job(&self, ctx: &mut JobContext<'_, C>) -> Result<(), Error> {
        C::run_job(self, ctx)
    }

    fn routes(&self) -> &'static [Route] {
        C::routes(self)
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

impl RecordedCause {
    /// `options` for events this event causes: it is their causation, its correlation theirs.
    fn caused(self, options: &AppendOptions) -> AppendOptions {
        let mut options = options.clone();
        options.metadata.causation_id = Some(self.event_id);
        if let Some(correlation) = self.correlation_id {
            options.metadata.correlation_id = Some(correlation);
        }
        options
    }
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
        let options = self.cause.caused(options);
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
        run(self).map_err(|source| {
            reactor_error(
                reactor,
                (event.events_table, event.event_id, event.event_type),
                source,
            )
        })
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

/// What an async reactor receives: a connection of the worker, the job, and the way to create
/// events caused by the job's event.
pub struct JobContext<'a, C: Database> {
    conn: &'a mut C,
    dispatcher: &'a dyn Dispatch<C>,
    job: &'a ClaimedJob,
    correlation_id: Option<uuid::Uuid>,
}

impl<C: Database> std::fmt::Debug for JobContext<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("job", self.job)
            .finish_non_exhaustive()
    }
}

impl<'a, C: Database> JobContext<'a, C> {
    /// The context of a claimed job, run on `conn`.
    pub(crate) fn new(
        conn: &'a mut C,
        dispatcher: &'a dyn Dispatch<C>,
        job: &'a ClaimedJob,
    ) -> Self {
        Self {
            conn,
            dispatcher,
            job,
            correlation_id: None,
        }
    }

    /// The worker's connection (not in a transaction).
    pub fn connection(&mut self) -> &mut C {
        self.conn
    }

    /// The job.
    pub fn job(&self) -> &ClaimedJob {
        self.job
    }

    /// A key unique to this event and reactor, the same on every attempt: record it with the side
    /// effect to make a reactor idempotent under at-least-once delivery.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.job.event_id, self.job.reactor)
    }

    /// This attempt's number: 1 for the first run.
    pub fn attempt(&self) -> i32 {
        self.job.attempts
    }

    /// Appends events in a transaction of their own, with the job's event as causation and its
    /// correlation id; their reactors run as usual.
    pub fn append<A: AggregateTable<C>>(
        &mut self,
        id: &A::Id,
        events: impl IntoEvents<A>,
        options: &AppendOptions,
    ) -> Result<Committed<A>, Error> {
        let cause = RecordedCause {
            event_id: self.job.event_id,
            correlation_id: self.correlation_id,
        };
        let options = cause.caused(options);
        let events = events.into_events();
        append(
            self.conn,
            Some(self.dispatcher),
            id,
            |_| Ok::<_, Error>(events),
            &options,
        )
    }

    /// The job's event, if it belongs to aggregate `A`.
    #[doc(hidden)]
    pub fn load<A: Aggregate>(&mut self) -> Result<Option<RecordedEvent<A::Id>>, Error>
    where
        A::Id: crate::IdColumn<C::Backend>,
    {
        if self.job.events_table != A::EVENTS_TABLE {
            return Ok(None);
        }
        let record = select_events(self.conn, A::EVENTS_TABLE, Selection::Id(self.job.event_id))?
            .next()
            .transpose()?;
        if let Some(record) = &record {
            self.correlation_id = record.metadata.correlation_id;
        }
        Ok(record)
    }

    /// The job's event, erased.
    #[doc(hidden)]
    pub fn load_any(&mut self) -> Result<Option<AnyEvent>, Error> {
        let event = select_any_event(self.conn, &self.job.events_table, self.job.event_id)?;
        if let Some(event) = &event {
            self.correlation_id = event.metadata.correlation_id;
        }
        Ok(event)
    }

    /// Runs the reactor, naming it in its error.
    #[doc(hidden)]
    pub fn run(
        &mut self,
        reactor: &'static str,
        tag: &str,
        run: impl FnOnce(&mut Self) -> Result<(), ReactorError>,
    ) -> Result<(), Error> {
        let (table, event_id) = (self.job.events_table.clone(), self.job.event_id);
        run(self).map_err(|source| Error::Reactor {
            reactor,
            table,
            event_id,
            tag: tag.to_owned(),
            source,
        })
    }

    /// The error of a job no route of the dispatcher handles for its event (a route removed
    /// since the job was queued).
    #[doc(hidden)]
    pub fn unrouted(&self) -> Error {
        Error::UnroutedJob {
            job_id: self.job.id,
            reactor: self.job.reactor.clone(),
            event_id: self.job.event_id,
            table: self.job.events_table.clone(),
        }
    }
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

/// A dispatcher with no route: what a store without a dispatcher uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReactors;

impl<C: Database> Dispatches<NoReactors> for C {
    fn dispatch(
        _: &NoReactors,
        _: &mut TriggerContext<'_, C>,
        _: &Dispatched<'_>,
    ) -> Result<(), Error> {
        Ok(())
    }

    fn project(_: &NoReactors, _: &mut C, _: &str, _: &AnyEvent) -> Result<(), Error> {
        Ok(())
    }

    fn run_job(_: &NoReactors, ctx: &mut JobContext<'_, C>) -> Result<(), Error> {
        Err(ctx.unrouted())
    }

    fn routes(_: &NoReactors) -> &'static [Route] {
        &[]
    }
}
