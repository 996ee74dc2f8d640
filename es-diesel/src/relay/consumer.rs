//! The other side of the relay: a [`Consumer`] reads a stream the relay fills, through a durable
//! JetStream consumer, decodes each message back into an [`AnyEvent`] and applies the events to
//! a database of its own — a read model, a warehouse — each batch in one transaction with the
//! stream sequence it reached, so that each event is applied once.
//!
//! Calls `subscription` (checkpoints, `Position`), `database`, `dispatch`, `events` and
//! `relay::message` (the decoding).

use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use chrono::TimeDelta;
use es_core::Error;
use futures_util::{FutureExt, StreamExt};

use super::{broker, connect, message};
use crate::database::Database;
use crate::dispatch::Dispatch;
use crate::events::AnyEvent;
use crate::subscription::Position;
use crate::subscription::checkpoint;

/// Where and how a [`Consumer`] reads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// The NATS server (`nats://127.0.0.1:4222`).
    pub url: String,
    /// The stream the relay publishes to.
    pub stream: String,
    /// The durable consumer's name on the server; the consumer's checkpoint in its database is
    /// `nats:<stream>/<durable>`.
    pub durable: String,
    /// How many events one transaction applies at most.
    pub batch: usize,
    /// How long [`Consumer::apply`] waits for a first message before it returns 0.
    pub wait: Duration,
}

impl ConsumerOptions {
    /// A consumer named `durable` of `url`'s stream `stream`, in batches of 1,000, waiting up to
    /// a second for a message.
    pub fn new(
        url: impl Into<String>,
        stream: impl Into<String>,
        durable: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            stream: stream.into(),
            durable: durable.into(),
            batch: 1_000,
            wait: Duration::from_secs(1),
        }
    }

    /// Sets how many events one transaction applies at most.
    #[must_use]
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Sets how long [`Consumer::apply`] waits for a first message.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The name of the consumer's checkpoint in its database: `nats:<stream>/<durable>`.
    pub fn checkpoint(&self) -> String {
        format!("nats:{}/{}", self.stream, self.durable)
    }
}

/// A reader of a relayed stream that applies its events to a database, each batch in one
/// transaction with the stream sequence it reached (see the [relay module](crate::relay)).
///
/// The database, not the server, says how far it got: its checkpoint holds the stream sequence
/// of the last event applied, committed with what the events wrote; a message at or below it
/// (delivered again after a crash, before its acknowledgement) is skipped. The server-side
/// consumer (`AckPolicy::All`, acknowledged after each commit) is opened from that checkpoint,
/// and opened again from it after a failed batch, so that the failing event comes first again.
pub struct Consumer {
    options: ConsumerOptions,
    runtime: tokio::runtime::Runtime,
    jetstream: jetstream::Context,
    /// The message stream of the server-side consumer, once opened.
    messages: Mutex<Option<pull::Stream>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // The client's message stream spawns on the runtime when it is dropped.
        let _runtime = self.runtime.enter();
        self.messages
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

impl Consumer {
    /// A consumer with `options`: starts its runtime and its connection to NATS, which it keeps
    /// trying in the background while the server is down.
    pub fn new(options: ConsumerOptions) -> Result<Self, Error> {
        if options.batch == 0 {
            return Err(Error::InvalidOption {
                option: "ConsumerOptions::batch",
                reason: "a batch applies at least one event".to_owned(),
            });
        }
        let (runtime, jetstream) = connect("es-consumer", &options.url, &options.stream)?;
        Ok(Self {
            options,
            runtime,
            jetstream,
            messages: Mutex::new(None),
        })
    }

    /// Applies the next events of the stream to `conn` with `apply`, in one write transaction
    /// with the consumer's checkpoint: waits up to [`wait`](ConsumerOptions::wait) for the first,
    /// takes those already delivered after it, up to [`batch`](ConsumerOptions::batch). Returns
    /// how many it applied (0 when none came). An error — `apply`'s, a message that is not a
    /// relayed event ([`Error::BadMessage`]), the server's ([`Error::Broker`]) — rolls the batch
    /// back; the next call reads again from the checkpoint.
    pub fn apply<C: Database>(
        &self,
        conn: &mut C,
        mut apply: impl FnMut(&mut C, &AnyEvent) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        // The client's message stream spawns on the runtime when it is dropped (here on a failure).
        let _runtime = self.runtime.enter();
        let name = self.options.checkpoint();
        let mut guard = self
            .messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            checkpoint::create(conn, &name, Position::START)?;
            let applied = checkpoint::read(conn, &name)?.map_or(0, |row| row.position.event_id);
            *guard = Some(self.runtime.block_on(self.open(applied))?);
        }
        let Some(messages) = guard.as_mut() else {
            return Ok(0);
        };
        let batch = self.runtime.block_on(self.next_batch(messages));
        let applied = batch.and_then(|batch| {
            if batch.is_empty() {
                return Ok(0);
            }
            let mut events = Vec::with_capacity(batch.len());
            for message in &batch {
                let sequence = message
                    .info()
                    .map_err(|source| {
                        broker(&self.options.stream, "read a message's info", source)
                    })?
                    .stream_sequence;
                let event = message::decode(
                    &self.options.stream,
                    sequence,
                    message.headers.as_ref(),
                    &message.payload,
                )?;
                events.push((sequence, event));
            }
            let applied = conn.write_transaction(|conn| {
                let Some(row) = checkpoint::lock(conn, &name)? else {
                    return Err(Error::InvalidOption {
                        option: "Consumer::apply",
                        reason: format!("checkpoint {name} was deleted while it ran"),
                    });
                };
                let mut last = row.position.event_id;
                let mut applied = 0;
                for (sequence, event) in &events {
                    let sequence = i64::try_from(*sequence).unwrap_or(i64::MAX);
                    if sequence <= last {
                        continue;
                    }
                    apply(conn, event)?;
                    last = sequence;
                    applied += 1;
                }
                let position = Position {
                    tx_order: 0,
                    event_id: last,
                };
                checkpoint::advance(conn, &name, position, applied, TimeDelta::zero())?;
                Ok(applied)
            })?;
            if let Some(last) = batch.last() {
                self.runtime
                    .block_on(last.ack())
                    .map_err(|source| broker(&self.options.stream, "acknowledge", source))?;
            }
            Ok(applied)
        });
        if applied.is_err() {
            *guard = None;
        }
        applied
    }

    /// Applies the next events as [`apply`](Self::apply) does, each through the handlers of
    /// subscription `name` of `dispatcher`: the same `subscribe` routes, with the same
    /// `#[derive(Event)]` types decoded through the registry, as a subscription of the database
    /// the events come from.
    pub fn project<C: Database>(
        &self,
        conn: &mut C,
        dispatcher: &dyn Dispatch<C>,
        name: &str,
    ) -> Result<usize, Error> {
        self.apply(conn, |conn, event| dispatcher.project(conn, name, event))
    }

    /// The server-side consumer, positioned just after stream sequence `applied`: created there,
    /// or created again there when it exists elsewhere (its acknowledgements ahead of the
    /// database, which was rebuilt; or behind, after a failed batch), so that nothing is skipped
    /// and the order stays the stream's.
    async fn open(&self, applied: i64) -> Result<pull::Stream, Error> {
        let stream_name = &self.options.stream;
        let stream = self
            .jetstream
            .get_stream(stream_name)
            .await
            .map_err(|source| broker(stream_name, "find the stream", source))?;
        let durable = &self.options.durable;
        if let Ok(mut existing) = stream.get_consumer::<pull::Config>(durable).await {
            let info = existing
                .info()
                .await
                .map_err(|source| broker(stream_name, "read the consumer", source))?;
            let floor = i64::try_from(info.ack_floor.stream_sequence).unwrap_or(i64::MAX);
            if floor != applied || info.num_ack_pending > 0 {
                stream
                    .delete_consumer(durable)
                    .await
                    .map_err(|source| broker(stream_name, "reposition the consumer", source))?;
            }
        }
        let start = u64::try_from(applied).unwrap_or_default() + 1;
        let consumer = stream
            .get_or_create_consumer(
                durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::All,
                    deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    max_ack_pending: i64::try_from(self.options.batch * 4).unwrap_or(i64::MAX),
                    ..Default::default()
                },
            )
            .await
            .map_err(|source| broker(stream_name, "create the consumer", source))?;
        consumer
            .messages()
            .await
            .map_err(|source| broker(stream_name, "read the consumer", source))
    }

    /// The first message within the wait, then those already delivered, up to a batch.
    async fn next_batch(
        &self,
        messages: &mut pull::Stream,
    ) -> Result<Vec<jetstream::Message>, Error> {
        let stream = &self.options.stream;
        let failed = |source| broker(stream, "read the consumer", source);
        let mut batch = Vec::new();
        match tokio::time::timeout(self.options.wait, messages.next()).await {
            Err(_elapsed) => return Ok(batch),
            Ok(None) => {
                return Err(Error::Broker {
                    stream: stream.clone(),
                    subject: String::new(),
                    what: "read the consumer".to_owned(),
                    source: "the consumer's message stream ended".into(),
                });
            }
            Ok(Some(message)) => batch.push(message.map_err(failed)?),
        }
        while batch.len() < self.options.batch {
            match messages.next().now_or_never() {
                Some(Some(message)) => batch.push(message.map_err(failed)?),
                Some(None) | None => break,
            }
        }
        Ok(batch)
    }
}
