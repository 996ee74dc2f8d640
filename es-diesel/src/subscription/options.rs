//! How a [`Subscriber`](super::Subscriber) reads its feed ([`SubscriberOptions`]), and what it
//! did ([`SubscriberStats`]).
//!
//! Calls `subscription` (`Start`) and `jobs` (the process's name, the bound on durations).

use std::time::Duration;

use chrono::TimeDelta;
use es_core::Error;

use super::Start;
use crate::jobs::options::process_name;
use crate::jobs::queue::checked_delta;

/// How a [`Subscriber`](super::Subscriber) reads its feed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscriberOptions {
    /// The subscriber's name (host and process id by default). Its lease records it with a
    /// suffix unique to each [`Subscriber`](super::Subscriber).
    pub subscriber_id: String,
    /// How many events one batch (one transaction) handles at most.
    pub batch: usize,
    /// How long a caught-up subscriber waits before it reads the feed again.
    pub poll: Duration,
    /// How long a subscriber holds its subscription unless it renews its lease (each batch, and
    /// every third of the lease while idle); another subscriber takes it over once the holder
    /// has been silent that long. A batch must take less.
    pub lease: Duration,
    /// Where a subscription without a checkpoint starts.
    pub start: Start,
    /// What a handler's failure holds back: `false` (the default), the whole feed — the event
    /// is retried until it succeeds; `true`, its aggregate only — the event and every later
    /// event of its aggregate are set aside in feed order ([`held_events`](super::held_events)),
    /// the other aggregates go on, and [`Subscriber::retry_held`](super::Subscriber::retry_held) handles them, in order, once
    /// the handler is fixed. Each event then runs in a savepoint of its own.
    pub hold_back: bool,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        Self {
            subscriber_id: process_name("subscriber"),
            batch: 1_000,
            poll: Duration::from_millis(20),
            lease: Duration::from_secs(30),
            start: Start::Beginning,
            hold_back: false,
        }
    }
}

impl SubscriberOptions {
    /// Sets the subscriber's name.
    #[must_use]
    pub fn subscriber_id(mut self, subscriber_id: impl Into<String>) -> Self {
        self.subscriber_id = subscriber_id.into();
        self
    }

    /// Sets how many events one batch handles at most (at least 1).
    #[must_use]
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Sets how long a caught-up subscriber waits before reading the feed again.
    #[must_use]
    pub fn poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Sets the lease (from 1 ms to a century).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets where a subscription without a checkpoint starts.
    #[must_use]
    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    /// Sets whether a handler's failure holds back its aggregate only (see
    /// [`hold_back`](Self::hold_back)).
    #[must_use]
    pub fn hold_back(mut self, hold_back: bool) -> Self {
        self.hold_back = hold_back;
        self
    }

    /// Checks every option is within its range: [`Error::InvalidOption`] names the first that is
    /// not.
    pub fn validate(&self) -> Result<(), Error> {
        let lease = checked_delta("SubscriberOptions::lease", self.lease)?;
        if lease < TimeDelta::milliseconds(1) {
            return Err(Error::InvalidOption {
                option: "SubscriberOptions::lease",
                reason: format!("must be at least 1 ms, got {:?}", self.lease),
            });
        }
        checked_delta("SubscriberOptions::poll", self.poll)?;
        Ok(())
    }
}

/// What a [`Subscriber`](super::Subscriber) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberStats {
    /// Events handled (their batches committed).
    pub handled: u64,
    /// Batches committed.
    pub batches: u64,
    /// Batches that failed: a handler's error or panic, or the subscriber's own (a lost
    /// connection), each waited out and retried.
    pub errors: u64,
}

impl SubscriberStats {
    pub(super) fn count(&mut self, handled: usize) {
        self.handled += u64::try_from(handled).unwrap_or(u64::MAX);
        self.batches += 1;
    }
}
