//! Subscriptions: named, durable readers of the events, each in one total order — the *feed* —
//! from a checkpoint of its own (a row of `es_subscriptions`).
//!
//! A subscription is declared in the dispatcher, `Task::* => subscribe: [search_index]`: its
//! handlers take the connection and the event as projection handlers do, and a [`Subscriber`]
//! runs them after commit, batch by batch, each batch one transaction with the checkpoint's
//! update, so that what a handler writes to the same database is written once per event.
//!
//! The feed never skips an event. On SQLite and MySQL positions are allocated in commit order
//! (one writer at a time holds `es_positions` until it commits), and the feed is in id order. On
//! PostgreSQL ids come from a sequence and transactions commit in any order, so a reader taking
//! `id > checkpoint` would skip an event committed after a higher id was read; there each event
//! also records its transaction's order (`tx_order`: the writing transaction's id, or the order of
//! its aggregate's previous event when higher), the feed is in `(tx_order, id)` order, and a
//! reader takes only the events below the oldest transaction still running
//! (`pg_snapshot_xmin(pg_current_snapshot())`), which no later commit can precede. A long
//! transaction anywhere on the server holds the feed back until it ends.
//!
//! Calls its rooms (`checkpoint.rs`, `held.rs`, `options.rs`, `subscriber.rs`), `database`,
//! `dispatch`, `events` and `projection` (the tables a subscription's routes read).

pub(crate) mod checkpoint;
mod held;
mod options;
mod subscriber;

use chrono::{DateTime, Utc};
use es_core::Error;

pub use self::held::HeldEvent;
pub use self::options::{SubscriberOptions, SubscriberStats};
pub use self::subscriber::{Sink, Subscriber};
use crate::database::Database;
use crate::dispatch::Dispatch;
pub use crate::events::Position;
use crate::events::{AnyEvent, FeedEvent, count_feed_after, feed_position, select_feed};
use crate::projection::routed_tables;

/// Where a subscription starts: its first run, or a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// Before every event.
    #[default]
    Beginning,
    /// At the end of the feed: the events committed from now on. On PostgreSQL the end is the
    /// feed's horizon, so the events of the transactions running now come too, and so may
    /// events committed shortly before while an older transaction was still running: never a
    /// skip, at the price of a few events again.
    End,
    /// Before the first event, in feed order, created at or after a time.
    Time(DateTime<Utc>),
    /// Just after one event, by id: the event must be in one of the subscription's tables.
    AfterEvent(i64),
}

/// A subscription as [`subscriptions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionStatus {
    /// Its name, as the dispatcher declares it.
    pub name: String,
    /// Where it stands: every event up to here is handled. `None` before its first run.
    pub position: Option<Position>,
    /// The events it handled since it started, or since its last reset.
    pub handled: i64,
    /// The events after its position.
    pub behind: i64,
    /// When the first of those was created: how far behind it is in time.
    pub behind_since: Option<DateTime<Utc>>,
    /// The subscriber holding it, if any.
    pub owner: Option<String>,
    /// Until when that subscriber holds it unless it renews its lease.
    pub lease_until: Option<DateTime<Utc>>,
    /// The error of its last batch, if it failed; cleared by the next batch that commits.
    pub last_error: Option<String>,
    /// When its row last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

/// Every subscription `dispatcher` declares, with its checkpoint and how far behind it is (one
/// entry per shard, `name#index/count`, for a subscription read in shards: what it is behind
/// counts every event after its position, the other shards' too), by name; then the checkpoints
/// of subscriptions it does not declare (another app's, or removed).
pub fn subscriptions<C: Database>(
    conn: &mut C,
    dispatcher: &dyn Dispatch<C>,
) -> Result<Vec<SubscriptionStatus>, Error> {
    let mut rows = checkpoint::list(conn)?;
    let mut statuses = Vec::new();
    for name in subscription_names(dispatcher) {
        let tables = subscription_tables(dispatcher, name)?;
        let (family, others): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|row| of(name, &row.name));
        rows = others;
        statuses.extend(family_statuses(conn, name, &tables, family)?);
    }
    statuses.extend(
        rows.into_iter()
            .map(|row| status(row.name.clone(), Some(row), 0, None)),
    );
    Ok(statuses)
}

/// The statuses of the checkpoints `family` of subscription `name` reading `tables`: one per
/// checkpoint (each shard's), or one of a subscription that has none yet.
pub(crate) fn family_statuses<C: Database>(
    conn: &mut C,
    name: &str,
    tables: &[&'static str],
    family: Vec<checkpoint::Checkpoint>,
) -> Result<Vec<SubscriptionStatus>, Error> {
    let family: Vec<Option<checkpoint::Checkpoint>> = if family.is_empty() {
        vec![None]
    } else {
        family.into_iter().map(Some).collect()
    };
    let mut statuses = Vec::new();
    for row in family {
        let after = row.as_ref().map_or(Position::START, |row| row.position);
        let mut behind = 0;
        let mut first: Option<DateTime<Utc>> = None;
        for table in tables {
            behind += count_feed_after(conn, table, after)?;
            let next = select_feed(conn, table, after, None, 1)?;
            if let Some((_, event)) = next.into_iter().next() {
                first = Some(first.map_or(event.created_at, |first| first.min(event.created_at)));
            }
        }
        let row_name = row
            .as_ref()
            .map_or(name, |row| row.name.as_str())
            .to_owned();
        statuses.push(status(row_name, row, behind, first));
    }
    Ok(statuses)
}

fn status(
    name: String,
    row: Option<checkpoint::Checkpoint>,
    behind: i64,
    behind_since: Option<DateTime<Utc>>,
) -> SubscriptionStatus {
    SubscriptionStatus {
        name,
        position: row.as_ref().map(|row| row.position),
        handled: row.as_ref().map_or(0, |row| row.handled),
        behind,
        behind_since,
        owner: row.as_ref().and_then(|row| row.owner.clone()),
        lease_until: row.as_ref().and_then(|row| row.lease_until),
        last_error: row.as_ref().and_then(|row| row.last_error.clone()),
        updated_at: row.map(|row| row.updated_at),
    }
}

/// Moves subscription `name` of `dispatcher` — every shard of it — to `to` (creating its
/// checkpoint if it has none) and returns the position: its next batch, by whichever subscriber holds it, reads on from
/// there. What its handlers wrote stays: to rebuild a read model from the start, empty it in the
/// same transaction as the reset.
pub fn reset_subscription<C: Database>(
    conn: &mut C,
    dispatcher: &dyn Dispatch<C>,
    name: &str,
    to: Start,
) -> Result<Position, Error> {
    let tables = subscription_tables(dispatcher, name)?;
    reset_family(conn, name, &tables, to)
}

/// Moves every checkpoint of subscription `name` reading `tables` to `to`.
pub(crate) fn reset_family<C: Database>(
    conn: &mut C,
    name: &str,
    tables: &[&'static str],
    to: Start,
) -> Result<Position, Error> {
    let position = start_position(conn, tables, to)?;
    let family = family(conn, name)?;
    if family.is_empty() {
        checkpoint::reset(conn, name, position)?;
    }
    for row in family {
        checkpoint::reset(conn, &row.name, position)?;
    }
    Ok(position)
}

/// Whether checkpoint `row` is subscription `name`'s: its own, or one of its shards'.
fn of(name: &str, row: &str) -> bool {
    row.strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('#'))
}

/// The checkpoints of subscription `name`: its own, and its shards'.
pub(crate) fn family<C: Database>(
    conn: &mut C,
    name: &str,
) -> Result<Vec<checkpoint::Checkpoint>, Error> {
    Ok(checkpoint::list(conn)?
        .into_iter()
        .filter(|row| of(name, &row.name))
        .collect())
}

/// The events subscriptions hold back ([`SubscriberOptions::hold_back`]), by subscription then
/// feed position; of one subscription for `Some`.
pub fn held_events<C: Database>(
    conn: &mut C,
    subscription: Option<&str>,
) -> Result<Vec<HeldEvent>, Error> {
    held::list(conn, subscription)
}

/// Deletes the checkpoints of subscription `name` (its shards' too; any name: a subscription no
/// longer declared too), once it is retired — after a blue/green switch to its successor, say; returns whether
/// it had one. A subscriber still running it recreates it at its start position.
pub fn retire_subscription<C: Database>(conn: &mut C, name: &str) -> Result<bool, Error> {
    let mut had = false;
    for row in family(conn, name)? {
        had |= checkpoint::delete(conn, &row.name)?;
    }
    Ok(had)
}

/// Whether subscription `name` of `dispatcher` (every shard of it) has handled event `event_id`
/// (committed): what a page checks after a write before it renders a read model the subscription maintains ("still
/// processing…" until it has). An event not in the subscription's tables is
/// [`Error::InvalidOption`].
pub fn has_handled<C: Database>(
    conn: &mut C,
    dispatcher: &dyn Dispatch<C>,
    name: &str,
    event_id: i64,
) -> Result<bool, Error> {
    let tables = subscription_tables(dispatcher, name)?;
    let event = start_position(conn, &tables, Start::AfterEvent(event_id))?;
    let family = family(conn, name)?;
    Ok(!family.is_empty() && family.iter().all(|row| row.position >= event))
}

/// The names of the subscriptions `dispatcher` declares, each once, in the order of its routes.
pub(crate) fn subscription_names<C: Database>(dispatcher: &dyn Dispatch<C>) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for name in dispatcher
        .routes()
        .iter()
        .flat_map(|route| route.subscriptions)
    {
        if !names.contains(name) {
            names.push(name);
        }
    }
    names
}

/// The events tables subscription `name` reads.
fn subscription_tables<C: Database>(
    dispatcher: &dyn Dispatch<C>,
    name: &str,
) -> Result<Vec<&'static str>, Error> {
    routed_tables(dispatcher, |route| route.subscriptions.contains(&name)).ok_or_else(|| {
        Error::UnknownSubscription {
            name: name.to_owned(),
        }
    })
}

/// The position a subscription reading `tables` starts at, for `start`.
fn start_position<C: Database>(
    conn: &mut C,
    tables: &[&'static str],
    start: Start,
) -> Result<Position, Error> {
    match start {
        Start::Beginning => Ok(Position::START),
        Start::End => match conn.feed_horizon()? {
            // Every event below the horizon is behind; those of running transactions are not.
            Some(horizon) => Ok(Position {
                tx_order: horizon - 1,
                event_id: i64::MAX,
            }),
            None => {
                let mut end = Position::START;
                for table in tables {
                    end = end.max(feed_position(conn, table, FeedEvent::Last)?.unwrap_or_default());
                }
                Ok(end)
            }
        },
        Start::Time(time) => {
            let mut first: Option<Position> = None;
            for table in tables {
                if let Some(position) = feed_position(conn, table, FeedEvent::FirstSince(time))? {
                    first = Some(first.map_or(position, |first| first.min(position)));
                }
            }
            match first {
                Some(first) => Ok(Position {
                    tx_order: first.tx_order,
                    event_id: first.event_id - 1,
                }),
                None => start_position(conn, tables, Start::End),
            }
        }
        Start::AfterEvent(event_id) => {
            for table in tables {
                if let Some(position) = feed_position(conn, table, FeedEvent::Id(event_id))? {
                    return Ok(position);
                }
            }
            Err(Error::InvalidOption {
                option: "Start::AfterEvent",
                reason: format!(
                    "no event {event_id} in the subscription's events tables ({})",
                    tables.join(", ")
                ),
            })
        }
    }
}

/// The shard of `count` that the events of aggregate `aggregate_id` (its id as text, as
/// [`AnyEvent::aggregate_id`] holds it) belong to: FNV-1a (64 bits) of the text, modulo `count`
/// — stable across processes, machines and versions, so that every subscriber agrees.
pub fn shard_of(aggregate_id: &str, count: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = aggregate_id.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    u32::try_from(hash % u64::from(count.max(1))).unwrap_or_default()
}

/// At most `limit` events of `tables` after `after` that a reader may take now (below
/// `horizon`), in feed order: each table's next `limit` events, merged, up to the last event
/// read of any table that has more.
fn read_feed<C: Database>(
    conn: &mut C,
    tables: &[&'static str],
    after: Position,
    horizon: Option<i64>,
    limit: usize,
) -> Result<Vec<(Position, AnyEvent)>, Error> {
    if let [table] = tables {
        return select_feed(conn, table, after, horizon, limit);
    }
    let mut events = Vec::new();
    let mut bound: Option<Position> = None;
    for table in tables {
        let read = select_feed(conn, table, after, horizon, limit)?;
        if read.len() == limit {
            if let Some((last, _)) = read.last() {
                bound = Some(bound.map_or(*last, |bound| bound.min(*last)));
            }
        }
        events.extend(read);
    }
    events.sort_by_key(|(position, _)| *position);
    if let Some(bound) = bound {
        events.retain(|(position, _)| *position <= bound);
    }
    events.truncate(limit);
    Ok(events)
}
