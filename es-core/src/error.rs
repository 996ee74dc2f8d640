//! The one error type of the framework.

/// Everything that can go wrong, each variant saying where: events table, event id, type tag,
/// aggregate id.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stored event's tag is neither the tag nor an alias of any event of its aggregate.
    #[error("unknown event type `{tag}` in `{table}` (event id {event_id})")]
    UnknownEventType {
        /// The events table.
        table: &'static str,
        /// The id of the stored event.
        event_id: i64,
        /// The tag found in the `type` column.
        tag: String,
    },

    /// A stored event was decoded as a type it is not.
    #[error("event {event_id} in `{table}` has type `{tag}`, not `{expected}`")]
    UnexpectedEventType {
        /// The events table.
        table: &'static str,
        /// The id of the stored event.
        event_id: i64,
        /// The tag found in the `type` column.
        tag: String,
        /// The tag of the type it was decoded as.
        expected: &'static str,
    },

    /// A stored event's `data` is not valid JSON, lacks a required attribute, or has one of the
    /// wrong type.
    #[error("cannot decode the data of event {event_id} (`{tag}`) in `{table}`: {source}")]
    Decode {
        /// The events table.
        table: &'static str,
        /// The id of the stored event.
        event_id: i64,
        /// The event's tag.
        tag: String,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },

    /// A stored event's `metadata` is not a valid metadata JSON object.
    #[error("cannot decode the metadata of event {event_id} (`{tag}`) in `{table}`: {source}")]
    DecodeMetadata {
        /// The events table.
        table: &'static str,
        /// The id of the stored event.
        event_id: i64,
        /// The event's tag.
        tag: String,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },

    /// A column of a stored event cannot be read as what the store writes there: a `created_at`
    /// that is not a time (or one out of range), a version that is not an integer, a blob where
    /// text belongs, text that is not UTF-8.
    #[error(
        "cannot read column `{column}` of event {event_id}{} in `{table}`: {source}",
        row_context(tag.as_deref(), aggregate_id.as_deref())
    )]
    BadColumn {
        /// The events table.
        table: &'static str,
        /// The id of the stored event.
        event_id: i64,
        /// The aggregate the event belongs to, unless that is the column that cannot be read.
        aggregate_id: Option<String>,
        /// The event's tag, unless the `type` column cannot be read.
        tag: Option<String>,
        /// The column (`created_at`, `version`, `type`, `data`, `metadata`, `aggregate_id`).
        column: &'static str,
        /// What is wrong with its value.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An aggregate's last stored version is `i64::MAX`, so no event can follow it.
    #[error(
        "{aggregate} {aggregate_id} in `{table}` is at version {version}: no version can follow it"
    )]
    VersionOverflow {
        /// The aggregate.
        aggregate: &'static str,
        /// The events table.
        table: &'static str,
        /// The aggregate id.
        aggregate_id: String,
        /// The last version stored.
        version: i64,
    },

    /// An event could not be encoded to JSON (a map with non-string keys, a failing `Serialize`).
    #[error("cannot encode event `{tag}` for `{table}`: {source}")]
    Encode {
        /// The events table.
        table: &'static str,
        /// The event's tag.
        tag: &'static str,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },

    /// An aggregate's state could not be encoded to JSON to be shown or compared (a failing
    /// `Serialize`).
    #[error("cannot encode {aggregate} {aggregate_id} to JSON: {source}")]
    EncodeState {
        /// The aggregate's name.
        aggregate: &'static str,
        /// The aggregate's id.
        aggregate_id: String,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },

    /// Two events of one aggregate claim the same tag (or alias), so stored rows would be
    /// ambiguous.
    #[error(
        "events `{first}` and `{second}` of aggregate `{aggregate}` share the type tag `{tag}`; \
         give one of them another `#[event(tag = \"...\")]` or alias"
    )]
    DuplicateTag {
        /// The aggregate.
        aggregate: &'static str,
        /// The shared tag.
        tag: &'static str,
        /// The Rust type of one event.
        first: &'static str,
        /// The Rust type of the other event.
        second: &'static str,
    },

    /// The events of an aggregate do not have contiguous versions 1, 2, 3, ...
    #[error(
        "version gap in `{table}` for aggregate {aggregate_id}: expected version {expected}, \
         found {found} (event id {event_id})"
    )]
    VersionGap {
        /// The events table.
        table: &'static str,
        /// The aggregate.
        aggregate_id: String,
        /// The version that should come next.
        expected: i64,
        /// The version stored.
        found: i64,
        /// The id of the stored event.
        event_id: i64,
    },

    /// The aggregate does not exist (and the first event is not a creation event).
    #[error("{aggregate} {aggregate_id} not found")]
    NotFound {
        /// The aggregate.
        aggregate: &'static str,
        /// The aggregate id.
        aggregate_id: String,
    },

    /// A creation event was appended to an aggregate that already exists.
    #[error("{aggregate} {aggregate_id} already exists (event `{tag}` creates it)")]
    AlreadyExists {
        /// The aggregate.
        aggregate: &'static str,
        /// The aggregate id.
        aggregate_id: String,
        /// The creation event's tag.
        tag: &'static str,
    },

    /// The aggregate's version is not the one the caller expected (optimistic concurrency), or a
    /// concurrent writer stored the same version first.
    #[error(
        "concurrency conflict on {aggregate} {aggregate_id}: expected version {expected}, \
         found {actual}"
    )]
    Conflict {
        /// The aggregate.
        aggregate: &'static str,
        /// The aggregate id.
        aggregate_id: String,
        /// The version the caller expected.
        expected: i64,
        /// The version found (or `expected + 1` when the unique constraint caught the race).
        actual: i64,
    },

    /// A reactor or projection failed; the transaction it ran in (if any) was rolled back.
    #[error("reactor `{reactor}` failed on event {event_id} (`{tag}`) of `{table}`: {source}")]
    Reactor {
        /// The reactor, as routed in the dispatcher.
        reactor: &'static str,
        /// The events table.
        table: String,
        /// The id of the event it reacted to.
        event_id: i64,
        /// The event's tag.
        tag: String,
        /// What the reactor reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A projection was asked for that no route of the dispatcher names.
    #[error("no route of the dispatcher names a projection `{name}`")]
    UnknownProjection {
        /// The name asked for.
        name: String,
    },

    /// A subscription was asked for that no route of the dispatcher names.
    #[error("no route of the dispatcher names a subscription `{name}`")]
    UnknownSubscription {
        /// The name asked for.
        name: String,
    },

    /// Another subscriber holds the subscription's lease: one subscriber reads a subscription at a
    /// time, and another takes it over once the holder has been silent for a whole lease.
    #[error("subscription `{name}` is held by {owner} until its lease expires")]
    SubscriptionHeld {
        /// The subscription.
        name: String,
        /// The subscriber holding it.
        owner: String,
    },

    /// Trigger reactors kept creating events that trigger reactors: a cycle in the dispatcher.
    #[error(
        "trigger reactors cascaded deeper than {limit} events (a cycle in the dispatcher?): {chain}"
    )]
    CascadeTooDeep {
        /// The deepest cascade allowed.
        limit: usize,
        /// The tags of the events of the cascade, first to last.
        chain: String,
    },

    /// Concurrent writers collided in the database (a deadlock, a serialization failure, a lock
    /// wait that timed out, a database busy with another writer) and this write was rolled back
    /// (also when the collision was a trigger reactor's write, deeper in its cascade);
    /// running it again is safe — inside a transaction of your own, run that whole transaction
    /// again, as [`retry_on_conflict`](crate::retry_on_conflict) does.
    #[error("concurrent writes on {aggregate} {aggregate_id} collided, retry: {source}")]
    Contention {
        /// The aggregate.
        aggregate: &'static str,
        /// The aggregate id.
        aggregate_id: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A job names an async reactor that the worker's dispatcher does not route for its event
    /// (a reactor removed or renamed since the job was queued).
    #[error(
        "job {job_id}: no async reactor `{reactor}` is routed for event {event_id} of `{table}`"
    )]
    UnroutedJob {
        /// The job's id.
        job_id: i64,
        /// The reactor the job names.
        reactor: String,
        /// The job's event.
        event_id: i64,
        /// The events table of that event.
        table: String,
    },

    /// An option was given a value it cannot take (a lease longer than a century, say).
    #[error("invalid `{option}`: {reason}")]
    InvalidOption {
        /// The option, as its builder method is written (`WorkerOptions::lease`).
        option: &'static str,
        /// What is wrong with the value, and which values are allowed.
        reason: String,
    },

    /// A connection to the database could not be opened.
    #[error("cannot connect to the database: {source}")]
    Connect {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A diesel query of the application's own failed: `?` on a `diesel::result::Error` in a
    /// function that returns this error — a transaction that runs the store's writes and queries
    /// of its own, a reactor (feature `diesel`, which `es-diesel` enables). A collision with a
    /// concurrent writer ([`is_contention`]) is a conflict: [`retry_on_conflict`] runs the
    /// transaction again.
    ///
    /// [`retry_on_conflict`]: crate::retry_on_conflict
    #[cfg(feature = "diesel")]
    #[error("query failed: {source}")]
    Query {
        /// diesel's error.
        #[from]
        source: diesel::result::Error,
    },

    /// An event's metadata lacks, or mistypes, the application metadata the event declares with
    /// `#[event(metadata = Type)]`; nothing was written.
    #[error(
        "the metadata of a `{tag}` event for `{table}` is not its application metadata: {source}"
    )]
    InvalidMetadata {
        /// The events table.
        table: &'static str,
        /// The event's type tag.
        tag: &'static str,
        /// What does not fit.
        #[source]
        source: serde_json::Error,
    },

    /// A message broker (NATS JetStream, for the relay) refused or lost a message, or could not
    /// be reached: `stream` names the stream, `subject` the message's subject (empty when the
    /// failure is not about one message), `what` what was being done.
    #[error(
        "NATS stream `{stream}`: cannot {what}{}: {source}",
        subject_context(subject)
    )]
    Broker {
        /// The stream.
        stream: String,
        /// The subject of the message involved, or empty.
        subject: String,
        /// What was being done (`publish event 7 of task_events`, `connect to nats://…`).
        what: String,
        /// The broker's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A message read from a broker's stream is not an event as the relay publishes it: a header
    /// is missing or unreadable. Nothing was applied.
    #[error("message {sequence} of NATS stream `{stream}` is not a relayed event: {reason}")]
    BadMessage {
        /// The stream.
        stream: String,
        /// The message's sequence number in the stream.
        sequence: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// The storage backend failed.
    #[error("storage error on `{table}`: {source}")]
    Storage {
        /// The table involved.
        table: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// ` (subject events.task.task.created)`, or nothing without a subject.
fn subject_context(subject: &str) -> String {
    if subject.is_empty() {
        String::new()
    } else {
        format!(" (subject {subject})")
    }
}

/// ` (`task.completed` of aggregate 7)`: what is known of a row besides its id, for a message.
fn row_context(tag: Option<&str>, aggregate_id: Option<&str>) -> String {
    match (tag, aggregate_id) {
        (Some(tag), Some(id)) => format!(" (`{tag}` of aggregate {id})"),
        (Some(tag), None) => format!(" (`{tag}`)"),
        (None, Some(id)) => format!(" (of aggregate {id})"),
        (None, None) => String::new(),
    }
}

impl Error {
    /// Whether this is a concurrency conflict: a stale expected version, or a collision with a
    /// concurrent writer (of the store's or, feature `diesel`, of a query of the application's).
    pub(crate) fn is_collision(&self) -> bool {
        match self {
            Error::Conflict { .. } | Error::Contention { .. } => true,
            #[cfg(feature = "diesel")]
            Error::Query { source } => is_contention(source),
            _ => false,
        }
    }
}

/// Whether a diesel error is lock contention between concurrent transactions, so that running
/// the same transaction again may succeed: a serialization failure (PostgreSQL `40001`) or
/// deadlock (PostgreSQL `40P01`, MySQL 1213), a lock wait that timed out (MySQL 1205), or SQLite's
/// busy or locked database (`SQLITE_BUSY`, `SQLITE_LOCKED`: a deferred transaction could not
/// become the writer because another connection wrote since it read, or the lock was not granted
/// within the busy timeout). The one classification of contention, for every path that retries
/// (feature `diesel`).
#[cfg(feature = "diesel")]
pub fn is_contention(error: &diesel::result::Error) -> bool {
    use diesel::result::DatabaseErrorKind;
    /// How the errors diesel reports as `Unknown` begin: PostgreSQL's deadlock, MySQL's lock wait
    /// timeout, SQLite's `SQLITE_BUSY` and `SQLITE_LOCKED`.
    const CONTENDED: [&str; 5] = [
        "deadlock detected",
        "Lock wait timeout exceeded",
        "database is locked",
        "database table is locked",
        "database schema is locked",
    ];
    match error {
        diesel::result::Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        diesel::result::Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            CONTENDED.iter().any(|start| message.starts_with(start))
        }
        _ => false,
    }
}
