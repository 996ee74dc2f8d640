//! The write path, top to bottom, in the order an append visits it: the write transaction, the
//! lock of the aggregate's row and its head, the decision, staging (es-core's folding rules),
//! the `INSERT` of the events with the row's upsert, the dispatch of each event to its trigger
//! reactors (whose appends come back here, a savepoint each), the jobs of async reactors, and the
//! commit.
//!
//! Calls `events` and `jobs::queue` (the statements), `table`, `errors`, and `dispatch` — the one
//! circle of the crate, and a real one: a trigger's `append` is an append.

use std::slice;

use es_core::{AppendOptions, Committed, Error, Head, NewEvent, Reaction, ReactionKind, stage};

use crate::database::Database;
use crate::dispatch::{Dispatch, Dispatched, TriggerContext};
use crate::errors::{contended, storage};
use crate::events::{insert_events, last_event};
use crate::jobs::queue::{NewJob, insert_jobs};
use crate::table::{AggregateTable, Locked};

/// Appends the events `decide` makes from the aggregate's stored state in one write transaction:
/// [`append_in_transaction`], then the jobs of the async reactors, then the commit.
pub(crate) fn append<C: Database, A: AggregateTable<C>, E: From<Error>>(
    conn: &mut C,
    dispatcher: Option<&dyn Dispatch<C>>,
    id: &A::Id,
    decide: impl FnOnce(Option<&A>) -> Result<Vec<NewEvent<A>>, E>,
    options: &AppendOptions,
) -> Result<Committed<A>, E> {
    let span = tracing::info_span!(
        "append",
        aggregate = A::NAME,
        aggregate_id = %id,
        events = tracing::field::Empty
    );
    let _entered = span.enter();
    let committed = conn.write_transaction(|conn| {
        let mut unit = UnitOfWork::default();
        let committed = append_in_transaction(conn, dispatcher, &mut unit, id, decide, options)?;
        if unit.lent && unit.jobs.is_empty() {
            conn.check_not_aborted()?;
        }
        insert_jobs(conn, &unit.jobs)?;
        Ok::<_, E>(committed)
    })?;
    span.record("events", committed.events.len());
    Ok(committed)
}

/// Appends the events `decide` makes inside the current write transaction: lock the row, read the
/// head, check the expected version, decide, apply, insert the events, save the row, then dispatch
/// each event (its trigger reactors may append more, through this same function). Async jobs and
/// the reactions accumulate in `unit`; the returned reactions are those of this call.
pub(crate) fn append_in_transaction<C: Database, A: AggregateTable<C>, E: From<Error>>(
    conn: &mut C,
    dispatcher: Option<&dyn Dispatch<C>>,
    unit: &mut UnitOfWork,
    id: &A::Id,
    decide: impl FnOnce(Option<&A>) -> Result<Vec<NewEvent<A>>, E>,
    options: &AppendOptions,
) -> Result<Committed<A>, E> {
    let (current, head) = lock_head::<C, A>(conn, id, options).map_err(contended::<A>(id))?;
    let events = decide(current.as_ref())?;
    if events.is_empty() {
        return Ok(Committed::new(current, Vec::new()));
    }
    let first_reaction = unit.reactions.len();
    let mut committed =
        write_events(conn, id, current, head, &events, options).map_err(contended::<A>(id))?;
    if let Some(dispatcher) = dispatcher {
        for (event, record) in events.iter().zip(&committed.events) {
            unit.chain.push(record.event_type.clone());
            Dispatched::describe::<A, _>(record, Some(event.as_any()), |dispatched| {
                let mut ctx = TriggerContext::new(conn, dispatcher, unit, record);
                dispatcher.dispatch(&mut ctx, dispatched)
            })?;
            unit.chain.pop();
        }
    }
    committed.reactions = unit.reactions[first_reaction..].to_vec();
    Ok(committed)
}

/// Locks the aggregate's row and reads its head, checking the version the caller expects.
fn lock_head<C: Database, A: AggregateTable<C>>(
    conn: &mut C,
    id: &A::Id,
    options: &AppendOptions,
) -> Result<(Option<A>, Head), Error> {
    let (current, last) = match A::lock(conn, id).map_err(storage(A::TABLE))? {
        Locked::WithHead(row, last) => (Some(row), last),
        Locked::Row(row) => (row, last_event(conn, A::EVENTS_TABLE, id)?),
    };
    let head = Head::new::<A>(
        last.as_ref().map_or(0, |(version, _)| *version),
        last.as_ref().map(|(_, tag)| tag.as_str()),
    );
    head.check_expected::<A>(id, options)?;
    Ok((current, head))
}

/// Applies the events to the locked aggregate, inserts them and saves (or deletes) its row.
fn write_events<C: Database, A: AggregateTable<C>>(
    conn: &mut C,
    id: &A::Id,
    current: Option<A>,
    head: Head,
    events: &[NewEvent<A>],
    options: &AppendOptions,
) -> Result<Committed<A>, Error> {
    let staged = {
        let _apply =
            tracing::info_span!("apply", aggregate = A::NAME, aggregate_id = %id).entered();
        stage(id, current, head, events, options)?
    };
    let upsert = staged.state.as_ref().and_then(A::upsert);
    let saved_with_events = upsert.is_some();
    let positions = insert_events(
        conn,
        A::EVENTS_TABLE,
        id,
        &staged,
        upsert.map(|upsert| (A::TABLE, upsert)),
    )?;
    if !saved_with_events {
        match &staged.state {
            Some(state) => A::save(conn, slice::from_ref(state)),
            None => A::delete(conn, slice::from_ref(id)),
        }
        .map_err(storage(A::TABLE))?;
    }
    Ok(Committed::from_staged(staged, id, positions))
}

/// What one write transaction accumulates while its reactors cascade.
#[derive(Debug, Default)]
pub(crate) struct UnitOfWork {
    pub(crate) jobs: Vec<NewJob>,
    pub(crate) chain: Vec<String>,
    pub(crate) reactions: Vec<Reaction>,
    /// Whether a reactor had the connection (a trigger's [`TriggerContext::connection`], a
    /// projection handler): it may have handled the error of a statement of its own, which on
    /// PostgreSQL aborted the transaction ([`Dialect::check_not_aborted`](crate::backend::Dialect::check_not_aborted)).
    pub(crate) lent: bool,
}

/// How much a [`UnitOfWork`] held before a nested append, to forget what it added if it fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    jobs: usize,
    chain: usize,
    reactions: usize,
}

impl UnitOfWork {
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            jobs: self.jobs.len(),
            chain: self.chain.len(),
            reactions: self.reactions.len(),
        }
    }

    /// Forgets the jobs, cascade steps and reactions added since `mark`: those of a nested append
    /// whose savepoint was rolled back.
    pub(crate) fn truncate(&mut self, mark: Mark) {
        self.jobs.truncate(mark.jobs);
        self.chain.truncate(mark.chain);
        self.reactions.truncate(mark.reactions);
    }

    pub(crate) fn record(
        &mut self,
        kind: ReactionKind,
        reactor: &'static str,
        event: &Dispatched<'_>,
    ) {
        self.reactions.push(Reaction {
            kind,
            reactor,
            events_table: event.events_table,
            event_id: event.event_id,
            event_type: event.event_type.to_owned(),
        });
    }
}
