//! The subscription of the gap and kill tests: `seen`, over the tasks' and the projects' events,
//! whose handler writes each event it is given as a row of `seen`, in the subscriber's
//! transaction, numbered in the order it came (`seq`). What the tests check is read back from it.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Text};
use es_core::RecordedEvent;
use es_diesel::{Database, ReactorError, dispatcher};

use crate::domain::{Project, Task};

/// The tables of `seen`: `seen`, one row per event handled, `seq` counting from 1 in the order
/// the events came (without a unique event id: an event handled twice is two rows); `refusals`,
/// the aggregates whose [`REFUSED`] events `seen` fails on (the bug), and `refused_writes`,
/// which refuses every row (how it fails).
pub const SEEN_TABLES: &[&str] = &[
    "CREATE TABLE seen (seq BIGINT PRIMARY KEY NOT NULL, event_id BIGINT NOT NULL, \
     tag VARCHAR(64) NOT NULL, aggregate_id BIGINT NOT NULL, version BIGINT NOT NULL, \
     doomed BOOLEAN NOT NULL)",
    "CREATE TABLE refusals (aggregate_id BIGINT NOT NULL)",
    "CREATE TABLE refused_writes (aggregate_id BIGINT NOT NULL CHECK (aggregate_id < 0))",
];

/// What an event's data carries when its transaction is rolled back on purpose: no subscriber
/// may ever see it.
pub const DOOMED: &str = "doomed";

dispatcher! {
    /// The subscription `seen`, over two events tables.
    pub struct SubscriptionDispatcher;
    Task::* => subscribe: [seen];
    Project::* => subscribe: [seen];
}

/// What an event's data carries when `seen` is to fail on it, after writing its row, while its
/// aggregate is in `refusals`.
pub const REFUSED: &str = "refused";

/// What an event's data carries when `seen` is to panic on it, after writing its row.
pub const PANICKING: &str = "panicking";

/// Writes the event as the next row of `seen`. A subscriber holds its subscription alone (its
/// checkpoint row is locked by the batch), so the next `seq` is the highest plus one. Then fails
/// on an event whose data says [`REFUSED`] while its aggregate is in `refusals` (copying that
/// row into `refused_writes`, which refuses it), and panics on one that says [`PANICKING`]: their
/// rows are written, and must be rolled back.
pub fn seen<C: Database>(conn: &mut C, event: &RecordedEvent<i64>) -> Result<(), ReactorError> {
    let doomed = event.data.contains(DOOMED);
    conn.batch_execute(&format!(
        "INSERT INTO seen (seq, event_id, tag, aggregate_id, version, doomed) \
         SELECT COALESCE(MAX(seq), 0) + 1, {}, '{}', {}, {}, {} FROM seen",
        event.id,
        event.event_type,
        event.aggregate_id,
        event.version,
        if doomed { "TRUE" } else { "FALSE" },
    ))?;
    if event.data.contains(REFUSED) {
        conn.batch_execute(&format!(
            "INSERT INTO refused_writes (aggregate_id) \
             SELECT aggregate_id FROM refusals WHERE aggregate_id = {}",
            event.aggregate_id
        ))?;
    }
    assert!(
        !event.data.contains(PANICKING),
        "`seen` panics on event {}",
        event.id
    );
    Ok(())
}

/// A row of `seen`.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its place in the order the events came.
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    /// The event's id.
    #[diesel(sql_type = BigInt)]
    pub event_id: i64,
    /// Its tag.
    #[diesel(sql_type = Text)]
    pub tag: String,
    /// Its aggregate.
    #[diesel(sql_type = BigInt)]
    pub aggregate_id: i64,
    /// Its version.
    #[diesel(sql_type = BigInt)]
    pub version: i64,
    /// Whether its data says its transaction was rolled back on purpose.
    #[diesel(sql_type = Bool)]
    pub doomed: bool,
}
