//! [`DieselStore`]: the [`EventStore`] of a diesel connection — reads, replay and time travel;
//! its appends are the write path of `write.rs`.
//!
//! Calls `write`, `dispatch` (the dispatcher it carries), `events`, `table`, `backend` (the
//! transaction it ends), `database` and `errors`.

use std::slice;

use diesel::connection::TransactionManager;

use es_core::testing::TestStore;
use es_core::{
    Aggregate, AppendOptions, AsOf, Committed, Error, EventFilter, EventStore, NewEvent,
    OnBadHistory, Rebuild, RecordedEvent, ReplayProgress, ReplayReport, SkippedAggregate,
    Transactional, rebuild,
};

use crate::backend::finish_write;
use crate::database::Database;
use crate::dispatch::Dispatch;
use crate::errors::{contended, retry_contention, storage};
use crate::events::{BadRow, Selection, aggregate_ids, last_event, select_events};
use crate::table::AggregateTable;
use crate::write::append;

/// How many aggregates a replay rebuilds per transaction unless told otherwise.
pub const DEFAULT_REPLAY_BATCH: usize = 500;

/// The event store on a diesel connection: each aggregate in its own table, its events in its
/// events table, every write one transaction.
///
/// It borrows the connection, so it runs inside your own transaction when you open one: its writes
/// then become a savepoint of yours, committed or rolled back with your own writes.
pub struct DieselStore<'c, C: Database> {
    conn: &'c mut C,
    dispatcher: Option<&'c dyn Dispatch<C>>,
    replay_batch: usize,
}

impl<C: Database> std::fmt::Debug for DieselStore<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DieselStore")
            .field(
                "dispatcher",
                &self.dispatcher.map(|dispatcher| dispatcher.routes().len()),
            )
            .field("replay_batch", &self.replay_batch)
            .finish_non_exhaustive()
    }
}

/// The outcome of replaying one batch of aggregates.
pub(crate) struct Replayed<A: Aggregate> {
    /// The events of the aggregates rebuilt (not of those skipped).
    pub(crate) events: u64,
    /// The aggregates rebuilt, written back.
    pub(crate) saved: Vec<A>,
    /// The aggregates whose events destroyed them, deleted.
    pub(crate) deleted: Vec<A::Id>,
    /// The aggregates whose events cannot be replayed, left as they are.
    pub(crate) skipped: Vec<SkippedAggregate>,
}

impl<'c, C: Database> DieselStore<'c, C> {
    es_core::__aggregate_type_methods!();

    /// A store on this connection.
    pub fn new(conn: &'c mut C) -> Self {
        Self {
            conn,
            dispatcher: None,
            replay_batch: DEFAULT_REPLAY_BATCH,
        }
    }

    /// Routes every appended event through `dispatcher`: its trigger reactors and projections run
    /// in the write transaction, its async reactors are enqueued as jobs in it.
    #[must_use]
    pub fn with_dispatcher(mut self, dispatcher: &'c dyn Dispatch<C>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// Sets how many aggregates a replay rebuilds per transaction (at least 1).
    #[must_use]
    pub fn replay_batch(mut self, aggregates: usize) -> Self {
        self.replay_batch = aggregates.max(1);
        self
    }

    /// The connection, for your own queries.
    pub fn connection(&mut self) -> &mut C {
        self.conn
    }

    /// Rebuilds `ids` from their events in one transaction that first locks their rows, then writes
    /// them back with one upsert and one delete. Aggregates without any event are left untouched.
    ///
    /// The batch locks its rows in id order, and a trigger cascade in its own: the two can
    /// deadlock. A batch of its own transaction that collides so is run again (a few times); one
    /// inside the caller's transaction, or one that keeps colliding, is [`Error::Contention`].
    pub(crate) fn replay_batch_of<A: AggregateTable<C>>(
        &mut self,
        ids: &[A::Id],
        on_bad: OnBadHistory,
    ) -> Result<Replayed<A>, Error> {
        let outermost = C::TransactionManager::transaction_manager_status_mut(self.conn)
            .transaction_depth()
            .map_err(storage("transaction"))?
            .is_none();
        let replayed = if outermost {
            retry_contention(REPLAY_BATCH_ATTEMPTS, || {
                Self::replay_batch_in(self.conn, ids, on_bad)
            })
        } else {
            Self::replay_batch_in(self.conn, ids, on_bad)
        };
        replayed.map_err(|error| match (ids.first(), ids.last()) {
            (Some(first), Some(last)) => contended::<A>(&format!("{first}..={last}"))(error),
            _ => error,
        })
    }

    /// [`replay_batch_of`](Self::replay_batch_of)'s transaction.
    fn replay_batch_in<A: AggregateTable<C>>(
        conn: &mut C,
        ids: &[A::Id],
        on_bad: OnBadHistory,
    ) -> Result<Replayed<A>, Error> {
        conn.write_transaction(|conn| {
            A::lock_many(conn, ids).map_err(storage(A::TABLE))?;
            let mut records = select_events(conn, A::EVENTS_TABLE, Selection::Aggregates(ids))?;
            let mut replayed = Replayed {
                events: 0,
                saved: Vec::with_capacity(ids.len()),
                deleted: Vec::new(),
                skipped: Vec::new(),
            };
            let mut current: Option<Rebuild<A>> = None;
            let mut bad: Option<A::Id> = None;
            while let Some(row) = records.next_row() {
                let (aggregate_id, error) = match row {
                    Ok(record) if bad.as_ref() == Some(&record.aggregate_id) => continue,
                    Ok(record) => {
                        let rebuild = match &mut current {
                            Some(rebuild) if rebuild.id() == &record.aggregate_id => rebuild,
                            _ => {
                                if let Some(done) = current.take() {
                                    finish(done, &mut replayed);
                                }
                                current.insert(Rebuild::new(record.aggregate_id.clone())?)
                            }
                        };
                        match rebuild.apply(&record) {
                            Ok(()) => continue,
                            Err(error) => (Some(record.aggregate_id), error),
                        }
                    }
                    Err(BadRow {
                        aggregate_id,
                        error,
                    }) => (aggregate_id, error),
                };
                // A history that cannot be replayed: skipped when its aggregate is known.
                let id = match (aggregate_id, on_bad) {
                    (Some(id), OnBadHistory::Skip) => id,
                    _ => return Err(error),
                };
                if bad.as_ref() == Some(&id) {
                    continue;
                }
                if let Some(done) = current.take().filter(|rebuild| rebuild.id() != &id) {
                    finish(done, &mut replayed);
                }
                replayed.skipped.push(SkippedAggregate {
                    aggregate_id: id.to_string(),
                    error,
                });
                bad = Some(id);
            }
            drop(records);
            if let Some(done) = current {
                finish(done, &mut replayed);
            }
            if !replayed.saved.is_empty() {
                A::save(conn, &replayed.saved).map_err(storage(A::TABLE))?;
            }
            if !replayed.deleted.is_empty() {
                A::delete(conn, &replayed.deleted).map_err(storage(A::TABLE))?;
            }
            Ok(replayed)
        })
    }
}

/// How many times a replay batch that lost a deadlock runs (its transaction is safe to repeat):
/// the writers it collides with keep going, so it may lose a few times in a row.
const REPLAY_BATCH_ATTEMPTS: u32 = 8;

/// Records a rebuilt aggregate in the batch's outcome, with its events (its versions run from 1).
fn finish<A: Aggregate>(rebuild: Rebuild<A>, replayed: &mut Replayed<A>) {
    replayed.events += rebuild.version().unsigned_abs();
    let id = rebuild.id().clone();
    match rebuild.finish() {
        Some(state) => replayed.saved.push(state),
        None => replayed.deleted.push(id),
    }
}

/// One database transaction (`BEGIN IMMEDIATE` on SQLite): each write in it is a savepoint, and
/// the reactors of each run in it too.
impl<C: Database> Transactional for DieselStore<'_, C> {
    fn transaction<R, E: From<Error>>(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<R, E>,
    ) -> Result<R, E> {
        self.conn.begin_write().map_err(storage("transaction"))?;
        let result = work(self);
        finish_write(self.conn, result)
    }
}

impl<C: Database, A: AggregateTable<C>> EventStore<A> for DieselStore<'_, C> {
    fn append_with<E: From<Error>>(
        &mut self,
        id: &A::Id,
        decide: impl FnOnce(Option<&A>) -> Result<Vec<NewEvent<A>>, E>,
        options: &AppendOptions,
    ) -> Result<Committed<A>, E> {
        append(self.conn, self.dispatcher, id, decide, options)
    }

    fn load(&mut self, id: &A::Id) -> Result<Option<A>, Error> {
        A::load(self.conn, id).map_err(storage(A::TABLE))
    }

    fn version(&mut self, id: &A::Id) -> Result<i64, Error> {
        let last = last_event(self.conn, A::EVENTS_TABLE, id)?;
        Ok(last.map_or(0, |(version, _)| version))
    }

    fn history(&mut self, id: &A::Id) -> Result<Vec<RecordedEvent<A::Id>>, Error> {
        select_events(
            self.conn,
            A::EVENTS_TABLE,
            Selection::Aggregate { id, as_of: None },
        )?
        .collect()
    }

    fn stream_events<'s>(
        &'s mut self,
        filter: &'s EventFilter,
    ) -> Result<impl Iterator<Item = Result<RecordedEvent<A::Id>, Error>> + 's, Error> {
        select_events(self.conn, A::EVENTS_TABLE, Selection::Filter(filter))
    }

    fn state_as_of(&mut self, id: &A::Id, as_of: AsOf) -> Result<Option<A>, Error> {
        let records = select_events(
            self.conn,
            A::EVENTS_TABLE,
            Selection::Aggregate {
                id,
                as_of: Some(as_of),
            },
        )?;
        rebuild(id.clone(), records, Some(as_of))
    }

    fn replay(&mut self, id: &A::Id) -> Result<Option<A>, Error> {
        let replayed = self.replay_batch_of::<A>(slice::from_ref(id), OnBadHistory::Stop)?;
        Ok(replayed.saved.into_iter().next())
    }

    fn replay_all_with(
        &mut self,
        on_bad: OnBadHistory,
        progress: &mut dyn FnMut(&ReplayProgress),
    ) -> Result<ReplayReport, Error> {
        let mut report = ReplayReport::default();
        let mut after: Option<A::Id> = None;
        loop {
            let ids = aggregate_ids(
                self.conn,
                A::EVENTS_TABLE,
                after.as_ref(),
                self.replay_batch,
            )?;
            let Some(last) = ids.last() else {
                return Ok(report);
            };
            after = Some(last.clone());
            let replayed = self.replay_batch_of::<A>(&ids, on_bad)?;
            let skipped = replayed.skipped.len() as u64;
            report.progress.aggregates += ids.len() as u64 - skipped;
            report.progress.events += replayed.events;
            report.progress.skipped += skipped;
            report.skipped.extend(replayed.skipped);
            progress(&report.progress);
        }
    }
}

/// A scenario's history is stored without the dispatcher: no reactor runs for it.
impl<C: Database, A: AggregateTable<C>> TestStore<A> for DieselStore<'_, C> {
    fn record_history(
        &mut self,
        id: &A::Id,
        events: Vec<NewEvent<A>>,
        options: &AppendOptions,
    ) -> Result<(), Error> {
        DieselStore::new(self.conn)
            .append(id, events, options)
            .map(drop)
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use diesel::Connection;

    use super::DieselStore;

    #[test]
    fn a_store_shows_its_dispatcher_and_replay_batch() {
        let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
        let store = DieselStore::new(&mut conn).replay_batch(7);
        assert_eq!(
            format!("{store:?}"),
            "DieselStore { dispatcher: None, replay_batch: 7, .. }"
        );
    }
}
