//! The [`Subscriber`]: reads one subscription's feed (or one shard of it) from its checkpoint
//! and runs its handlers, batch by batch, each batch one transaction with the checkpoint's
//! update; catches up, then follows the feed by polling it; holds back failing aggregates and
//! retries them. Its options and stats are `options.rs`.
//!
//! Calls `subscription` (the feed, checkpoints, held events, options), `database`, `dispatch`,
//! `errors`, `events` and `jobs` (the worker's backoff and health check).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use es_core::Error;

use super::{Position, read_feed, shard_of, start_position, subscription_tables};
use super::{SubscriberOptions, SubscriberStats, checkpoint, held};
use crate::database::Database;
use crate::dispatch::{Dispatch, ReactorError};
use crate::errors::{error_chain, panic_message};
use crate::events::{AnyEvent, select_any_event};
use crate::jobs::queue::checked_delta;
use crate::jobs::shift::{Trouble, sleep_unless_stopped};
use crate::jobs::worker::healthy;

/// The reader of one subscription: runs its handlers on the events of its feed, in feed order,
/// each batch of events in one transaction with the checkpoint's update.
///
/// One subscriber at a time holds a subscription (a lease in its checkpoint row, which each
/// batch locks): start several, on several machines, and the others wait to take over once the
/// holder has been silent for a whole lease. A handler sees each event at least once; what it
/// writes through the connection it is given commits with the checkpoint, so it is written once
/// per event, whatever stops the subscriber. A handler's error or panic rolls its batch back:
/// the events before it are handled again and committed, the failure is recorded in the
/// checkpoint row (`last_error`, which `subscriptions` shows) and the failing event is retried
/// after a growing wait, never skipped — later events wait behind it.
pub struct Subscriber<'d, C: Database> {
    handlers: Handlers<'d, C>,
    name: String,
    /// The name of its checkpoint row: the subscription's, or its shard's (`name#index/count`).
    checkpoint: String,
    /// The shard it reads, `(index, count)`, if the subscription is split.
    shard: Option<(u32, u32)>,
    tables: Vec<&'static str>,
    options: SubscriberOptions,
    /// The lease's owner: the subscriber's name and a suffix of its own.
    owner: String,
}

impl<C: Database> std::fmt::Debug for Subscriber<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.name)
            .field("checkpoint", &self.checkpoint)
            .field("owner", &self.owner)
            .field("tables", &self.tables)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What a subscriber does with the events it reads.
enum Handlers<'d, C> {
    /// Runs the dispatcher's handlers of the subscription on each event, in the batch's
    /// transaction.
    Dispatcher(&'d dyn Dispatch<C>),
    /// Hands each batch's events at once to a destination outside the database, then moves the
    /// checkpoint past them in a short transaction.
    Sink(&'d dyn Sink),
}

/// A destination outside the database that a subscriber delivers its events to, batch by batch
/// ([`Subscriber::to_sink`]; the NATS relay is one): [`deliver`](Sink::deliver) returns once the
/// destination has them all, and the checkpoint moves past them only then, in a short
/// transaction of its own (no transaction is open while the destination answers). An error
/// leaves the checkpoint where it was (recorded as its last error) and the batch is delivered
/// again after a growing wait; so is a batch whose subscriber died before the checkpoint moved. The destination must drop what it already has, by the event's identity (its events
/// table, aggregate id and version).
pub trait Sink: Sync {
    /// Delivers one batch's events, in feed order, each with its position.
    fn deliver(&self, events: &[(Position, &AnyEvent)]) -> Result<(), Error>;
}

/// How a batch ended.
enum Batch<T = ()> {
    /// It read `read` events (0: the feed had none) and handled `handled` of them (those of its
    /// shard), up to `position`, reading below `horizon`, and what ran in its transaction after
    /// them returned `then`.
    Handled {
        read: usize,
        handled: usize,
        position: Position,
        horizon: Option<i64>,
        then: T,
    },
    /// Another subscriber holds the subscription.
    Held(String),
}

/// Why a batch rolled back.
enum BatchError {
    /// The handler of the event after the first `read` ones of the batch failed.
    Handler { read: usize, error: Error },
    /// Anything else.
    Store(Error),
}

impl From<Error> for BatchError {
    fn from(error: Error) -> Self {
        BatchError::Store(error)
    }
}

impl<'d, C: Database> Subscriber<'d, C> {
    /// The subscriber of subscription `name` of `dispatcher` (the name of its `subscribe`
    /// handlers): [`Error::UnknownSubscription`] if no route declares it.
    pub fn new(
        dispatcher: &'d dyn Dispatch<C>,
        name: &str,
        options: SubscriberOptions,
    ) -> Result<Self, Error> {
        let tables = subscription_tables(dispatcher, name)?;
        Ok(Self::reading(
            name,
            tables,
            Handlers::Dispatcher(dispatcher),
            options,
        ))
    }

    /// The subscriber of checkpoint `name` that reads the feed of `tables` (events tables) and
    /// delivers each batch to `sink`: in one total order, each aggregate's events in version
    /// order, under a lease, as [`new`](Self::new)'s subscriber runs handlers. Each batch is
    /// delivered before a short transaction moves the checkpoint, so no write lock is held while
    /// the destination answers. [`SubscriberOptions::hold_back`] does not apply: a failed delivery
    /// holds the whole feed.
    pub fn to_sink(
        name: &str,
        tables: Vec<&'static str>,
        sink: &'d dyn Sink,
        options: SubscriberOptions,
    ) -> Self {
        Self::reading(name, tables, Handlers::Sink(sink), options)
    }

    /// The subscriber of subscription `name` reading `tables` for `handlers`, with an owner's
    /// name of its own.
    fn reading(
        name: &str,
        tables: Vec<&'static str>,
        handlers: Handlers<'d, C>,
        options: SubscriberOptions,
    ) -> Self {
        let owner = format!("{}/{:08x}", options.subscriber_id, fastrand::u32(..));
        Self {
            handlers,
            name: name.to_owned(),
            checkpoint: name.to_owned(),
            shard: None,
            tables,
            options,
            owner,
        }
    }

    /// This subscriber reads shard `index` of `count` only: the events of the aggregates whose
    /// id [`shard_of`] puts there, each aggregate's in order, from a checkpoint of the shard's
    /// own (`name#index/count`), with a lease of its own — run one subscriber per shard, on as
    /// many machines as you like, and each shard is held by one at a time and moves on when its
    /// holder dies. Each shard reads the whole feed and skips the other shards' events. The
    /// count is part of the checkpoints' names: with another count, the shards start again at
    /// [`SubscriberOptions::start`]. An index at or above the count is
    /// [`Error::InvalidOption`].
    pub fn shard(mut self, index: u32, count: u32) -> Result<Self, Error> {
        if index >= count {
            return Err(Error::InvalidOption {
                option: "Subscriber::shard",
                reason: format!("shard {index} of {count}: the index must be below the count"),
            });
        }
        self.checkpoint = format!("{}#{index}/{count}", self.name);
        self.shard = Some((index, count));
        Ok(self)
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of its checkpoint: the subscription's, or its shard's (`name#index/count`).
    pub fn checkpoint(&self) -> &str {
        &self.checkpoint
    }

    /// The name this subscriber's lease records: [`subscriber_id`](SubscriberOptions::subscriber_id)
    /// and a suffix of its own.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Handles every event committed before it was called, batch by batch, on `conn`, then
    /// gives up its lease and returns: for scripts, tests and deploys. On PostgreSQL that waits
    /// (polling) for the transactions running when it was called to end, as the feed does. A
    /// subscription held by another subscriber is [`Error::SubscriptionHeld`]; a handler's
    /// failure is returned once the events before it are committed (and recorded in the
    /// checkpoint row).
    pub fn catch_up(&self, conn: &mut C) -> Result<SubscriberStats, Error> {
        self.options.validate()?;
        self.claim(conn)?;
        let caught_up = self.catch_up_holding(conn);
        checkpoint::release(conn, &self.checkpoint, &self.owner)?;
        caught_up
    }

    /// The batches of [`catch_up`](Self::catch_up), the lease held.
    fn catch_up_holding(&self, conn: &mut C) -> Result<SubscriberStats, Error> {
        let committed = conn.feed_committed_bound()?;
        let mut stats = SubscriberStats::default();
        loop {
            match self.batch(conn) {
                Ok(Batch::Handled {
                    read: 0, horizon, ..
                }) => {
                    if horizon >= committed {
                        return Ok(stats);
                    }
                    std::thread::sleep(self.options.poll);
                }
                Ok(Batch::Handled { handled, .. }) => stats.count(handled),
                Ok(Batch::Held(owner)) => {
                    return Err(Error::SubscriptionHeld {
                        name: self.checkpoint.clone(),
                        owner,
                    });
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Catches up as [`catch_up`](Self::catch_up) does, then, in one transaction and under the same
    /// lease, handles the events committed meanwhile and runs `then` — the switch of a blue/green rebuild: a
    /// subscription rebuilding a read model beside the one serving reads catches up, then the
    /// readers move to it (`then` replaces a view, say) in the transaction of its last batch, so
    /// they never see it behind where it was when they moved, nor an empty one. A failure of
    /// `then` rolls back that last batch with it ([`Error::Reactor`] of reactor `then`).
    pub fn catch_up_then<T>(
        &self,
        conn: &mut C,
        then: impl FnOnce(&mut C) -> Result<T, ReactorError>,
    ) -> Result<(SubscriberStats, T), Error> {
        self.options.validate()?;
        self.claim(conn)?;
        let switched = self.catch_up_holding(conn).and_then(|mut stats| {
            let last = self.handle_then(conn, usize::MAX, |conn| {
                then(conn).map_err(|source| Error::Reactor {
                    reactor: "then",
                    table: self.name.clone(),
                    event_id: 0,
                    tag: String::new(),
                    source,
                })
            });
            match last {
                Ok(Batch::Handled { handled, then, .. }) => {
                    stats.count(handled);
                    Ok((stats, then))
                }
                Ok(Batch::Held(owner)) => Err(Error::SubscriptionHeld {
                    name: self.checkpoint.clone(),
                    owner,
                }),
                Err(BatchError::Store(error) | BatchError::Handler { error, .. }) => Err(error),
            }
        });
        checkpoint::release(conn, &self.checkpoint, &self.owner)?;
        switched
    }

    /// Follows the feed until `stop` is set: takes the subscription (waiting while another
    /// subscriber holds it), catches up at scan speed, then polls every
    /// [`poll`](SubscriberOptions::poll) for new events. Errors — a handler's, a lost connection
    /// — are logged, recorded, waited out with a growing delay (50 ms to 5 s) and retried;
    /// returns an error only for invalid options or a first connection that fails.
    pub fn run<F, E>(&self, connect: F, stop: &AtomicBool) -> Result<SubscriberStats, Error>
    where
        F: Fn() -> Result<C, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.options.validate()?;
        let connect = || {
            connect().map_err(|error| Error::Connect {
                source: error.into(),
            })
        };
        let mut conn = Some(connect()?);
        let mut stats = SubscriberStats::default();
        let mut trouble = Trouble::default();
        let mut held = false;
        while !stop.load(Ordering::Relaxed) {
            let Some(current) = conn.as_mut() else {
                match connect() {
                    Ok(fresh) => conn = Some(fresh),
                    Err(error) => {
                        stats.errors += 1;
                        tracing::error!(%error, subscription = %self.name, "cannot reconnect");
                        trouble.wait(stop);
                    }
                }
                continue;
            };
            let stepped = if held {
                self.batch(current).map(Some)
            } else {
                self.claim(current).map(|()| None)
            };
            match stepped {
                Ok(None) => {
                    trouble = Trouble::default();
                    held = true;
                }
                Ok(Some(Batch::Handled {
                    read,
                    handled,
                    position,
                    ..
                })) => {
                    trouble = Trouble::default();
                    if read > 0 {
                        stats.count(handled);
                    }
                    if read < self.options.batch {
                        self.wait_for_events(current, position, stop);
                    }
                }
                Ok(Some(Batch::Held(_))) | Err(Error::SubscriptionHeld { .. }) => {
                    held = false;
                    sleep_unless_stopped(self.options.lease / 3, stop);
                }
                Err(error) => {
                    stats.errors += 1;
                    tracing::error!(error = %error_chain(&error), subscription = %self.name,
                        "subscription batch failed; retrying");
                    trouble.wait(stop);
                    if !healthy(current) {
                        conn = None;
                        held = false;
                    }
                }
            }
        }
        if let (Some(conn), true) = (conn.as_mut(), held) {
            checkpoint::release(conn, &self.checkpoint, &self.owner)?;
        }
        Ok(stats)
    }

    /// Takes or renews the lease; creates the checkpoint at the start position first if the
    /// subscription has none.
    fn claim(&self, conn: &mut C) -> Result<(), Error> {
        if checkpoint::read(conn, &self.checkpoint)?.is_none() {
            let start = start_position(conn, &self.tables, self.options.start)?;
            checkpoint::create(conn, &self.checkpoint, start)?;
        }
        let lease = checked_delta("SubscriberOptions::lease", self.options.lease)?;
        checkpoint::claim(conn, &self.checkpoint, &self.owner, lease)?.map_err(|owner| {
            Error::SubscriptionHeld {
                name: self.checkpoint.clone(),
                owner,
            }
        })
    }

    /// Waits until the feed has an event after `position` that a reader may take, reading it
    /// every [`poll`](SubscriberOptions::poll) without a transaction, or until the lease is due
    /// for renewal (a third of it: the next batch renews it), or `stop` is set. An error returns
    /// at once: the next batch meets it.
    fn wait_for_events(&self, conn: &mut C, position: Position, stop: &AtomicBool) {
        let renew_at = Instant::now() + self.options.lease / 3;
        while !stop.load(Ordering::Relaxed) && Instant::now() < renew_at {
            let horizon = match conn.feed_horizon() {
                Ok(horizon) => horizon,
                Err(_) => return,
            };
            match read_feed(conn, &self.tables, position, horizon, 1) {
                Ok(events) if events.is_empty() => sleep_unless_stopped(self.options.poll, stop),
                _ => return,
            }
        }
    }

    /// One batch: in one write transaction, locks the checkpoint row, reads up to `batch`
    /// events after it, runs the handlers on each and moves the checkpoint past them. When a
    /// handler fails, the events before its event are handled again in a batch of their own and
    /// committed, and the failure is recorded and returned.
    fn batch(&self, conn: &mut C) -> Result<Batch, Error> {
        match self.handle(conn, self.options.batch) {
            Ok(batch) => Ok(batch),
            Err(BatchError::Store(error)) => Err(error),
            Err(BatchError::Handler { read, error }) => {
                if read > 0 {
                    match self.handle(conn, read) {
                        Ok(_) => {}
                        Err(BatchError::Store(error) | BatchError::Handler { error, .. }) => {
                            return Err(error);
                        }
                    }
                }
                checkpoint::record_error(
                    conn,
                    &self.checkpoint,
                    &self.owner,
                    &error_chain(&error),
                )?;
                Err(error)
            }
        }
    }

    /// Handles up to `limit` events in one write transaction (see [`batch`](Self::batch)).
    fn handle(&self, conn: &mut C, limit: usize) -> Result<Batch, BatchError> {
        self.handle_then(conn, limit, |_| Ok(()))
    }

    /// [`handle`](Self::handle), then `then` in the same transaction, before the commit.
    fn handle_then<T>(
        &self,
        conn: &mut C,
        limit: usize,
        then: impl FnOnce(&mut C) -> Result<T, Error>,
    ) -> Result<Batch<T>, BatchError> {
        // Taken before the transaction, which takes a transaction id of its own when it locks
        // the checkpoint: a horizon taken after would wait for this very transaction.
        let horizon = conn.feed_horizon()?;
        let lease = checked_delta("SubscriberOptions::lease", self.options.lease)?;
        let dispatcher = match self.handlers {
            Handlers::Dispatcher(dispatcher) => dispatcher,
            Handlers::Sink(sink) => return self.deliver_then(conn, sink, (limit, horizon), then),
        };
        conn.write_transaction(|conn| {
            let Some(row) = checkpoint::lock(conn, &self.checkpoint)? else {
                return Ok(Batch::Held(
                    "nobody (the subscription has no row)".to_owned(),
                ));
            };
            if row.owner.as_deref() != Some(self.owner.as_str()) {
                return Ok(Batch::Held(row.owner.unwrap_or_default()));
            }
            let events = read_feed(conn, &self.tables, row.position, horizon, limit)?;
            let mut position = row.position;
            let mut held_back = if self.options.hold_back {
                Some(held::aggregates(conn, &self.checkpoint)?)
            } else {
                None
            };
            let mut handled = 0;
            for (read, (at, event)) in events.iter().enumerate() {
                position = *at;
                if !self.reads(event) {
                    continue;
                }
                match held_back.as_mut() {
                    Some(held_back) => {
                        self.handle_or_hold(conn, dispatcher, (event, *at), held_back)?;
                    }
                    None => self
                        .handle_event(conn, dispatcher, event)
                        .map_err(|error| BatchError::Handler { read, error })?,
                }
                handled += 1;
            }
            checkpoint::advance(conn, &self.checkpoint, position, handled, lease)?;
            Ok(Batch::Handled {
                read: events.len(),
                handled,
                position,
                horizon,
                then: then(conn)?,
            })
        })
    }

    /// Whether the event is this subscriber's: of its shard, if it reads one.
    fn reads(&self, event: &AnyEvent) -> bool {
        self.shard
            .is_none_or(|(index, count)| shard_of(&event.aggregate_id, count) == index)
    }

    /// A batch of a sink: reads up to `limit` events after the checkpoint (below `horizon`),
    /// delivers them, then moves the checkpoint past them and runs `then` in one short write
    /// transaction — if the checkpoint is still this subscriber's and still where the batch
    /// started (a reset meanwhile wins: the next batch reads from there). Delivering outside the
    /// transaction keeps the database's write lock (SQLite's only one) free while the sink waits
    /// for its destination; the lease keeps other subscribers of the checkpoint away meanwhile,
    /// and one that takes it over after the lease expired delivers the same events in the same
    /// order, which the sink drops as copies.
    fn deliver_then<T>(
        &self,
        conn: &mut C,
        sink: &dyn Sink,
        (limit, horizon): (usize, Option<i64>),
        then: impl FnOnce(&mut C) -> Result<T, Error>,
    ) -> Result<Batch<T>, BatchError> {
        let lease = checked_delta("SubscriberOptions::lease", self.options.lease)?;
        let held = |row: Option<checkpoint::Checkpoint>| match row {
            None => Some("nobody (the subscription has no row)".to_owned()),
            Some(row) if row.owner.as_deref() != Some(self.owner.as_str()) => {
                Some(row.owner.unwrap_or_default())
            }
            Some(_) => None,
        };
        // One snapshot for the checkpoint and every table's events: reads of the tables in
        // snapshots of their own could each see another set of commits, and skip some.
        let (row, events) = conn.snapshot_transaction(|conn| {
            let row = checkpoint::read(conn, &self.checkpoint)?;
            let start = row.as_ref().map_or(Position::START, |row| row.position);
            let events = read_feed(conn, &self.tables, start, horizon, limit)?;
            Ok((row, events))
        })?;
        if let Some(owner) = held(row.clone()) {
            return Ok(Batch::Held(owner));
        }
        let start = row.map_or(Position::START, |row| row.position);
        let position = events.last().map_or(start, |(at, _)| *at);
        let delivered: Vec<(Position, &AnyEvent)> = events
            .iter()
            .filter(|(_, event)| self.reads(event))
            .map(|(at, event)| (*at, event))
            .collect();
        if !delivered.is_empty() {
            sink.deliver(&delivered)
                .map_err(|error| BatchError::Handler { read: 0, error })?;
        }
        conn.write_transaction(|conn| {
            let row = checkpoint::lock(conn, &self.checkpoint)?;
            if let Some(owner) = held(row.clone()) {
                return Ok(Batch::Held(owner));
            }
            let now = row.map_or(start, |row| row.position);
            let (handled, position) = if now == start {
                checkpoint::advance(conn, &self.checkpoint, position, delivered.len(), lease)?;
                (delivered.len(), position)
            } else {
                (0, now)
            };
            Ok(Batch::Handled {
                read: events.len(),
                handled,
                position,
                horizon,
                then: then(conn)?,
            })
        })
    }

    /// Handles one event in a savepoint of its own, or holds it back: when its aggregate is held
    /// back already, or when its handler fails (the savepoint rolled back), which holds its
    /// aggregate back from then on.
    fn handle_or_hold(
        &self,
        conn: &mut C,
        dispatcher: &dyn Dispatch<C>,
        (event, position): (&AnyEvent, Position),
        held_back: &mut HashSet<(String, String)>,
    ) -> Result<(), Error> {
        let aggregate = (event.events_table.clone(), event.aggregate_id.clone());
        if let Some((table, id)) = held_back.get(&aggregate) {
            let error = format!("held back behind an earlier event of {table} {id}");
            return held::hold(conn, &self.checkpoint, (event, position), &error);
        }
        if let Err(error) =
            conn.write_transaction(|conn| self.handle_event(conn, dispatcher, event))
        {
            tracing::warn!(error = %error_chain(&error), subscription = %self.name,
                "holding back an aggregate");
            held::hold(
                conn,
                &self.checkpoint,
                (event, position),
                &error_chain(&error),
            )?;
            held_back.insert(aggregate);
        }
        Ok(())
    }

    /// Retries the events the subscription holds back ([`hold_back`](SubscriberOptions::hold_back)),
    /// aggregate by aggregate in feed order, in one transaction that locks the checkpoint (a
    /// running subscriber waits): each handled one is let go; at the first that fails again, its
    /// error is recorded and the rest of its aggregate stays held. Returns how many were
    /// handled, and how many are still held.
    pub fn retry_held(&self, conn: &mut C) -> Result<(u64, u64), Error> {
        let Handlers::Dispatcher(dispatcher) = self.handlers else {
            return Ok((0, 0));
        };
        conn.write_transaction(|conn| {
            checkpoint::lock(conn, &self.checkpoint)?;
            let mut failing: HashSet<(String, String)> = HashSet::new();
            let (mut handled, mut still_held) = (0, 0);
            for held in held::list(conn, Some(&self.checkpoint))? {
                let aggregate = (held.events_table.clone(), held.aggregate_id.clone());
                if failing.contains(&aggregate) {
                    still_held += 1;
                    continue;
                }
                let retried = match select_any_event(conn, &held.events_table, held.event_id)? {
                    Some(event) => {
                        conn.write_transaction(|conn| self.handle_event(conn, dispatcher, &event))
                    }
                    None => Err(Error::InvalidOption {
                        option: "Subscriber::retry_held",
                        reason: format!(
                            "event {} of {} is not stored any more",
                            held.event_id, held.events_table
                        ),
                    }),
                };
                match retried {
                    Ok(()) => {
                        held::release(conn, &self.checkpoint, held.event_id)?;
                        handled += 1;
                    }
                    Err(error) => {
                        held::record_error(
                            conn,
                            &self.checkpoint,
                            held.event_id,
                            &error_chain(&error),
                        )?;
                        failing.insert(aggregate);
                        still_held += 1;
                    }
                }
            }
            Ok((handled, still_held))
        })
    }

    /// Runs the subscription's handlers on one event; a panic is the handler's error.
    fn handle_event(
        &self,
        conn: &mut C,
        dispatcher: &dyn Dispatch<C>,
        event: &AnyEvent,
    ) -> Result<(), Error> {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dispatcher.project(conn, &self.name, event)
        }));
        run.unwrap_or_else(|payload| {
            Err(Error::Reactor {
                reactor: "subscription",
                table: event.events_table.clone(),
                event_id: event.id,
                tag: event.event_type.clone(),
                source: format!(
                    "the handler of subscription `{}` panicked: {}",
                    self.name,
                    panic_message(&*payload)
                )
                .into(),
            })
        })
    }
}
