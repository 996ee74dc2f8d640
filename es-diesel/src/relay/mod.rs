//! The NATS JetStream relay (feature `nats`): a subscription whose handler publishes every
//! event to a JetStream stream, for the services and the warehouse on other machines, and the
//! consumer that reads it back on the other side.
//!
//! A [`Relay`] reads the feed of its events tables as a [`Subscriber`] does — in one total
//! order, from a checkpoint of its own (`relay:<stream>` in `es_subscriptions`), under a lease
//! that a standby relay takes over — and publishes each batch to subjects
//! `<prefix>.<aggregate>.<tag>`: the event's data JSON as the payload, its identity and metadata
//! as headers ([`message`]). The batch's messages are all sent before any acknowledgement is
//! awaited (pipelined), and the checkpoint moves past them, in a short transaction of its own,
//! once JetStream has acknowledged them all ([`Subscriber::to_sink`]). A relay killed in between publishes them again: each
//! message carries `Nats-Msg-Id` = [`message_id`] (events table, aggregate id, version), so the
//! stream keeps one copy of an event published again within its duplicate window
//! ([`RelayOptions::duplicate_window`], which a relay creating the stream sets). Each aggregate's
//! events are published in version order, one batch after the other, on one connection, so the
//! stream holds them in order; the [`VERSION`] header lets a consumer check it.
//!
//! A relay created on a database with history publishes it all (its checkpoint starts at
//! [`Start::Beginning`] unless told otherwise), then follows the feed;
//! [`reset_relay`] republishes from a point. [`relay_status`] is its lag and last error.
//! NATS down or restarting: the batch's acknowledgements time out, the batch rolls back and is
//! published again after a growing wait while the client reconnects.
//!
//! The runtime is tokio's, owned by the relay (one worker thread), so the store and its callers
//! stay synchronous, and a build without feature `nats` has no async runtime at all.
//!
//! Calls `subscription` (the subscriber, checkpoints, statuses), `database`, `events` and the
//! `message` and `consumer` files below.

mod consumer;
pub mod message;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use es_core::{Error, Registry};

pub use self::consumer::{Consumer, ConsumerOptions};
pub use self::message::{VERSION, message_id};
use crate::database::Database;
use crate::events::AnyEvent;
use crate::subscription::{
    Position, Sink, Start, Subscriber, SubscriberOptions, SubscriberStats, SubscriptionStatus,
    family, family_statuses, reset_family,
};

/// Where and how a [`Relay`] publishes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayOptions {
    /// The NATS server (`nats://127.0.0.1:4222`); several, comma-separated, for a cluster.
    pub url: String,
    /// The JetStream stream. The relay creates it (file storage, subjects `<prefix>.>`) if it
    /// does not exist; an existing one is used as it is. Its checkpoint is `relay:<stream>`.
    pub stream: String,
    /// The first token of every subject: `<prefix>.<aggregate>.<tag>`.
    pub subject_prefix: String,
    /// The events tables it relays; empty (the default): every events table of the program's
    /// events (the registry's).
    pub tables: Vec<&'static str>,
    /// How long JetStream remembers a message id to drop a copy, for a stream the relay creates:
    /// a relay that dies after publishing and before its checkpoint commits must be back within
    /// this window. Ten minutes by default (JetStream's own default is two).
    pub duplicate_window: Duration,
    /// How long the relay waits for each batch's acknowledgements before it gives the batch up
    /// and publishes it again. Five seconds by default.
    pub ack_timeout: Duration,
    /// How it reads the feed: batch size (the messages in flight at once), poll interval, lease,
    /// start, name.
    pub subscriber: SubscriberOptions,
}

impl RelayOptions {
    /// A relay to `url`'s stream `stream`, with subjects `<stream in lowercase>.…`.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        let stream = stream.into();
        Self {
            url: url.into(),
            subject_prefix: stream.to_lowercase(),
            stream,
            tables: Vec::new(),
            duplicate_window: Duration::from_secs(600),
            ack_timeout: Duration::from_secs(5),
            subscriber: SubscriberOptions::default(),
        }
    }

    /// Sets the subjects' first token.
    #[must_use]
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Relays these events tables only.
    #[must_use]
    pub fn tables(mut self, tables: &[&'static str]) -> Self {
        self.tables = tables.to_vec();
        self
    }

    /// Sets the duplicate window of a stream the relay creates.
    #[must_use]
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Sets how long a batch's acknowledgements may take.
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Sets how the feed is read.
    #[must_use]
    pub fn subscriber(mut self, options: SubscriberOptions) -> Self {
        self.subscriber = options;
        self
    }

    /// The name of the relay's checkpoint: `relay:<stream>`.
    pub fn checkpoint(&self) -> String {
        format!("relay:{}", self.stream)
    }

    /// The tables it relays: [`tables`](Self::tables), or every events table of the registry,
    /// by name.
    fn relayed_tables(&self) -> Result<Vec<&'static str>, Error> {
        if !self.tables.is_empty() {
            return Ok(self.tables.clone());
        }
        let mut tables: Vec<&'static str> = Registry::global()?
            .events()
            .iter()
            .map(|event| event.events_table)
            .collect();
        tables.sort_unstable();
        tables.dedup();
        Ok(tables)
    }

    fn validate(&self) -> Result<(), Error> {
        let token_ok = !self.subject_prefix.is_empty()
            && !self
                .subject_prefix
                .contains(|c: char| c.is_whitespace() || matches!(c, '*' | '>'));
        if !token_ok {
            return Err(Error::InvalidOption {
                option: "RelayOptions::subject_prefix",
                reason: format!(
                    "`{}`: a subject prefix is not empty and has no space, `*` or `>`",
                    self.subject_prefix
                ),
            });
        }
        if self.subscriber.hold_back {
            return Err(Error::InvalidOption {
                option: "RelayOptions::subscriber",
                reason: "a relay cannot hold events back: the stream must get each aggregate's \
                         events in order"
                    .to_owned(),
            });
        }
        self.subscriber.validate()
    }
}

/// What a [`Relay`] published since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Messages JetStream acknowledged as new.
    pub published: u64,
    /// Messages JetStream acknowledged as copies it already had (published again after a
    /// failure), which it dropped.
    pub duplicates: u64,
}

/// The relay of a database's events to a NATS JetStream stream: see the [module](self).
pub struct Relay {
    options: RelayOptions,
    tables: Vec<&'static str>,
    publisher: Publisher,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("options", &self.options)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay with `options`: starts its runtime and its connection to NATS, which it keeps
    /// trying in the background while the server is down (the first batch waits for it).
    /// Invalid options are [`Error::InvalidOption`].
    pub fn new(options: RelayOptions) -> Result<Self, Error> {
        options.validate()?;
        let tables = options.relayed_tables()?;
        let aggregates = Registry::global()?
            .events()
            .iter()
            .map(|event| (event.events_table, event.aggregate))
            .collect();
        let (runtime, mut jetstream) = connect("es-relay", &options.url, &options.stream)?;
        jetstream.set_timeout(options.ack_timeout);
        let publisher = Publisher {
            stream: options.stream.clone(),
            subject_prefix: options.subject_prefix.clone(),
            duplicate_window: options.duplicate_window,
            aggregates,
            runtime,
            jetstream,
            stream_ready: AtomicBool::new(false),
            published: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        };
        Ok(Self {
            options,
            tables,
            publisher,
        })
    }

    /// The name of its checkpoint, `relay:<stream>`.
    pub fn checkpoint(&self) -> String {
        self.options.checkpoint()
    }

    /// Publishes every event committed before it was called, then gives up its lease and
    /// returns (see [`Subscriber::catch_up`]): the backfill of a new relay, for scripts and
    /// tests. NATS unreachable is [`Error::Broker`], once the events before are published.
    pub fn catch_up<C: Database>(&self, conn: &mut C) -> Result<SubscriberStats, Error> {
        self.subscriber().catch_up(conn)
    }

    /// Publishes the feed until `stop` is set: takes the relay's checkpoint (waiting while
    /// another relay holds it), publishes the history behind it, then follows the feed (see
    /// [`Subscriber::run`]). A batch NATS does not acknowledge — the server down, restarting,
    /// unreachable — is recorded as the checkpoint's last error and published again after a
    /// growing wait (50 ms to 5 s), as a lost database connection is reopened.
    pub fn run<C, F, E>(&self, connect: F, stop: &AtomicBool) -> Result<SubscriberStats, Error>
    where
        C: Database,
        F: Fn() -> Result<C, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.subscriber().run(connect, stop)
    }

    /// Deletes the stream and every message in it (the message ids it remembers too), if it
    /// exists: for a demo or a test that starts over. Returns whether it existed. The checkpoint
    /// stays where it is: [`reset_relay`] it to publish again.
    pub fn delete_stream(&self) -> Result<bool, Error> {
        let publisher = &self.publisher;
        publisher.stream_ready.store(false, Ordering::Relaxed);
        let deleted = publisher
            .runtime
            .block_on(publisher.jetstream.delete_stream(&publisher.stream));
        match deleted {
            Ok(deleted) => Ok(deleted.success),
            Err(error)
                if matches!(
                    error.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref error)
                        if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(broker(&publisher.stream, "delete the stream", error)),
        }
    }

    /// What it published since it was created.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            published: self.publisher.published.load(Ordering::Relaxed),
            duplicates: self.publisher.duplicates.load(Ordering::Relaxed),
        }
    }

    fn subscriber<C: Database>(&self) -> Subscriber<'_, C> {
        Subscriber::to_sink(
            &self.options.checkpoint(),
            self.tables.clone(),
            &self.publisher,
            self.options.subscriber.clone(),
        )
    }
}

/// The relay of `options`' lag and last error, from its checkpoint (the relay itself need not
/// run, nor NATS be up): where it stands, how many events are behind and since when, who holds
/// it.
pub fn relay_status<C: Database>(
    conn: &mut C,
    options: &RelayOptions,
) -> Result<SubscriptionStatus, Error> {
    let name = options.checkpoint();
    let tables = options.relayed_tables()?;
    let family = family(conn, &name)?;
    let mut statuses = family_statuses(conn, &name, &tables, family)?;
    Ok(statuses.remove(0))
}

/// Moves the relay of `options` to `to`: its next batch, by whichever relay holds it, publishes
/// from there. Events the stream still remembers within its duplicate window are dropped as
/// copies; to publish everything again into an emptied stream, purge it (its message ids go too),
/// or use a stream of another name.
pub fn reset_relay<C: Database>(
    conn: &mut C,
    options: &RelayOptions,
    to: Start,
) -> Result<Position, Error> {
    reset_family(conn, &options.checkpoint(), &options.relayed_tables()?, to)
}

/// The relay's half that talks to NATS: publishes batches.
struct Publisher {
    stream: String,
    subject_prefix: String,
    duplicate_window: Duration,
    /// The aggregate's name of each events table, for subjects.
    aggregates: HashMap<&'static str, &'static str>,
    runtime: tokio::runtime::Runtime,
    jetstream: jetstream::Context,
    /// Whether the stream is known to exist (checked before the first batch, and again after a
    /// failed one).
    stream_ready: AtomicBool,
    published: AtomicU64,
    duplicates: AtomicU64,
}

impl Publisher {
    /// `<prefix>.<aggregate>.<tag>`, with the events table for an aggregate the registry does not
    /// know.
    fn subject(&self, event: &AnyEvent) -> String {
        let aggregate = self
            .aggregates
            .get(event.events_table.as_str())
            .copied()
            .unwrap_or(event.events_table.as_str());
        format!("{}.{aggregate}.{}", self.subject_prefix, event.event_type)
    }

    async fn ensure_stream(&self) -> Result<(), Error> {
        if self.stream_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let config = jetstream::stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            duplicate_window: self.duplicate_window,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        self.jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|source| broker(&self.stream, "create or find the stream", source))?;
        self.stream_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Sends every message of the batch, then awaits every acknowledgement.
    async fn publish(&self, events: &[(Position, &AnyEvent)]) -> Result<(), Error> {
        self.ensure_stream().await?;
        let mut acks = Vec::with_capacity(events.len());
        for (position, event) in events {
            let subject = self.subject(event);
            let (headers, payload) = message::encode(event, &position.to_string())
                .map_err(|source| self.publish_error(event, &subject, source))?;
            let ack = self
                .jetstream
                .publish_with_headers(subject.clone(), headers, payload)
                .await
                .map_err(|source| self.publish_error(event, &subject, source))?;
            acks.push((ack, *event, subject));
        }
        let (mut published, mut duplicates) = (0, 0);
        for (ack, event, subject) in acks {
            let ack = ack
                .await
                .map_err(|source| self.publish_error(event, &subject, source))?;
            if ack.duplicate {
                duplicates += 1;
            } else {
                published += 1;
            }
        }
        self.published.fetch_add(published, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        Ok(())
    }

    fn publish_error(
        &self,
        event: &AnyEvent,
        subject: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.stream_ready.store(false, Ordering::Relaxed);
        Error::Broker {
            stream: self.stream.clone(),
            subject: subject.to_owned(),
            what: format!(
                "publish event {} (`{}`) of {} {}",
                event.id, event.event_type, event.events_table, event.aggregate_id
            ),
            source: Box::new(source),
        }
    }
}

impl Sink for Publisher {
    fn deliver(&self, events: &[(Position, &AnyEvent)]) -> Result<(), Error> {
        self.runtime.block_on(self.publish(events))
    }
}

/// A runtime of one worker thread named `name`, and a JetStream context on it whose client
/// connects to `url` in the background (and keeps trying while the server is down), for stream
/// `stream`.
fn connect(
    name: &str,
    url: &str,
    stream: &str,
) -> Result<(tokio::runtime::Runtime, jetstream::Context), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|source| broker(stream, &format!("start the runtime of {name}"), source))?;
    let client = runtime
        .block_on(
            async_nats::ConnectOptions::new()
                .name(name)
                .retry_on_initial_connect()
                .connect(url),
        )
        .map_err(|source| broker(stream, &format!("connect to {url}"), source))?;
    // The context spawns on the runtime as it is made.
    let jetstream = runtime.block_on(async { jetstream::new(client) });
    Ok((runtime, jetstream))
}

/// An [`Error::Broker`] about the stream as a whole.
fn broker(
    stream: &str,
    what: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Broker {
        stream: stream.to_owned(),
        subject: String::new(),
        what: what.to_owned(),
        source: source.into(),
    }
}
