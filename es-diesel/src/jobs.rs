//! Durable jobs for async reactors, and the [`Worker`] that runs them.
//!
//! Each async reactor routed for an event becomes one row of `es_jobs`, inserted in the event's
//! write transaction: never before commit, never lost after it. Workers claim due jobs in a short
//! write transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL and MySQL, so that workers on several
//! machines never claim the same job; SQLite's write lock elsewhere), run them, and record the
//! outcome. A job whose worker died is claimed again once its lease expires, so delivery is at
//! least once; [`JobContext::idempotency_key`] lets a reactor deduplicate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use es_core::{Aggregate, AppendOptions, Committed, Error, IntoEvents, RecordedEvent};

use crate::database::{Database, Selection};
use crate::dispatch::{AnyEvent, Dispatch, ReactorError};
use crate::store::DieselStore;
use crate::table::AggregateTable;

/// A job claimed by a worker.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
#[non_exhaustive]
pub struct ClaimedJob {
    /// The job's id.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub id: i64,
    /// The events table of its event.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub events_table: String,
    /// Its event's id.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub event_id: i64,
    /// The async reactor to run.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub reactor: String,
    /// This attempt's number: 1 for the first run.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub attempts: i32,
}

/// A job that failed its last allowed attempt.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
#[non_exhaustive]
pub struct DeadJob {
    /// The job's id.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub id: i64,
    /// The events table of its event.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub events_table: String,
    /// Its event's id.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub event_id: i64,
    /// The async reactor.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub reactor: String,
    /// How many times it ran.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub attempts: i32,
    /// The error of its last attempt.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub last_error: Option<String>,
}

/// How a job attempt ended.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    Retry { at: DateTime<Utc>, error: String },
    Dead { error: String },
}

/// Jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCounts {
    /// Waiting to run (or to be retried).
    pub pending: i64,
    /// Claimed by a worker.
    pub running: i64,
    /// Completed.
    pub done: i64,
    /// Failed their last allowed attempt.
    pub dead: i64,
}

/// Counts the jobs in each state.
pub fn job_counts<C: Database>(conn: &mut C) -> Result<JobCounts, Error> {
    let mut counts = JobCounts::default();
    for (state, count) in conn.job_counts()? {
        match state.as_str() {
            "pending" => counts.pending = count,
            "running" => counts.running = count,
            "done" => counts.done = count,
            "dead" => counts.dead = count,
            _ => {}
        }
    }
    Ok(counts)
}

/// The dead jobs, oldest first, with their last error.
pub fn dead_jobs<C: Database>(conn: &mut C, limit: usize) -> Result<Vec<DeadJob>, Error> {
    conn.dead_jobs(limit)
}

/// Makes dead jobs pending again with fresh attempts: all of them, or the one with `id`.
/// Returns how many.
pub fn retry_dead_jobs<C: Database>(conn: &mut C, id: Option<i64>) -> Result<usize, Error> {
    conn.retry_dead_jobs(id, es_core::now())
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
        let mut options = options.clone();
        options.metadata.causation_id = Some(self.job.event_id);
        if let Some(correlation) = self.correlation_id {
            options.metadata.correlation_id = Some(correlation);
        }
        es_core::EventStore::append(
            &mut DieselStore::new(self.conn).with_dispatcher(self.dispatcher),
            id,
            events,
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
        let record = self
            .conn
            .select_events(A::EVENTS_TABLE, Selection::Id(self.job.event_id))?
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
        let event = self
            .conn
            .select_any_event(&self.job.events_table, self.job.event_id)?;
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

    /// The error of a job no route of the dispatcher handles (a reactor removed since).
    #[doc(hidden)]
    pub fn unrouted(&self) -> Error {
        Error::Storage {
            table: "es_jobs",
            source: format!(
                "no async reactor `{}` is routed for event {} of `{}`",
                self.job.reactor, self.job.event_id, self.job.events_table
            )
            .into(),
        }
    }
}

/// How long finished jobs may wait before their outcomes are recorded.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How a [`Worker`] claims and retries jobs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// The worker's name, recorded on the jobs it holds (host and process id by default).
    pub worker_id: String,
    /// How many jobs one claim takes.
    pub batch: usize,
    /// How long a claim holds its jobs; after that another worker may take them over.
    pub lease: Duration,
    /// Attempts before a job is dead.
    pub max_attempts: i32,
    /// The delay before the first retry; it doubles each attempt, with jitter.
    pub backoff_base: Duration,
    /// The longest delay between retries.
    pub backoff_max: Duration,
    /// How long an idle worker waits before looking for jobs again (a PostgreSQL notification
    /// wakes it sooner).
    pub idle_wait: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            worker_id: format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned()),
                std::process::id()
            ),
            batch: 16,
            lease: Duration::from_secs(300),
            max_attempts: 10,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(3600),
            idle_wait: Duration::from_secs(1),
        }
    }
}

impl WorkerOptions {
    /// Sets the worker's name.
    #[must_use]
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = worker_id.into();
        self
    }

    /// Sets how many jobs one claim takes (at least 1).
    #[must_use]
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Sets the lease of a claim.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the attempts before a job is dead (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets the retry delays: `base` doubled each attempt, at most `max`.
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// Sets how long an idle worker waits before looking again.
    #[must_use]
    pub fn idle_wait(mut self, idle_wait: Duration) -> Self {
        self.idle_wait = idle_wait;
        self
    }

    /// The delay before retrying after failed attempt `attempt` (1-based): exponential, capped,
    /// with "equal jitter" (between half and all of it) so that failing jobs spread out.
    pub fn retry_delay(&self, attempt: i32) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let delay = self
            .backoff_base
            .saturating_mul(1 << exponent)
            .min(self.backoff_max);
        delay / 2 + delay.mul_f64(fastrand::f64() / 2.0)
    }
}

/// What a worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Jobs completed.
    pub completed: u64,
    /// Attempts that failed and will be retried.
    pub retried: u64,
    /// Jobs that failed their last attempt.
    pub dead: u64,
}

/// Runs the jobs of async reactors routed by a dispatcher.
pub struct Worker<'d, C: Database> {
    dispatcher: &'d dyn Dispatch<C>,
    options: WorkerOptions,
}

impl<C: Database> std::fmt::Debug for Worker<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<'d, C: Database> Worker<'d, C> {
    /// A worker for the async reactors of `dispatcher`.
    pub fn new(dispatcher: &'d dyn Dispatch<C>, options: WorkerOptions) -> Self {
        Self {
            dispatcher,
            options,
        }
    }

    /// Claims one batch of due jobs and runs them; returns what happened (nothing if no job was
    /// due).
    pub fn run_once(&self, conn: &mut C) -> Result<WorkerStats, Error> {
        self.run_batch(conn, &AtomicBool::new(false))
    }

    /// Runs jobs until `stop` is set, waiting when idle. A job already started finishes; jobs
    /// claimed but not started are given back.
    pub fn run_until(&self, conn: &mut C, stop: &AtomicBool) -> Result<WorkerStats, Error> {
        conn.listen_for_jobs()?;
        let mut total = WorkerStats::default();
        while !stop.load(Ordering::Relaxed) {
            let stats = self.run_batch(conn, stop)?;
            let idle = stats == WorkerStats::default();
            total.completed += stats.completed;
            total.retried += stats.retried;
            total.dead += stats.dead;
            if idle {
                self.wait_idle(conn, stop);
            }
        }
        Ok(total)
    }

    /// Waits up to `idle_wait`, in short slices so that `stop` is noticed promptly, and returns
    /// early when PostgreSQL announces a new job.
    fn wait_idle(&self, conn: &mut C, stop: &AtomicBool) {
        const SLICE: Duration = Duration::from_millis(50);
        let deadline = std::time::Instant::now() + self.options.idle_wait;
        while !stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || conn.wait_for_jobs(left.min(SLICE)) {
                return;
            }
        }
    }

    fn run_batch(&self, conn: &mut C, stop: &AtomicBool) -> Result<WorkerStats, Error> {
        let now = es_core::now();
        let lease_until =
            now + chrono::Duration::from_std(self.options.lease).unwrap_or(chrono::Duration::MAX);
        let jobs = retry_collisions(|| {
            conn.claim_jobs(
                &self.options.worker_id,
                now,
                lease_until,
                self.options.batch,
            )
        })?;
        let mut stats = WorkerStats::default();
        let mut finished: Vec<(&ClaimedJob, JobOutcome)> = Vec::with_capacity(jobs.len());
        let mut last_flush = std::time::Instant::now();
        for (index, job) in jobs.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                let unstarted: Vec<i64> = jobs[index..].iter().map(|job| job.id).collect();
                retry_collisions(|| conn.release_jobs(&unstarted, &self.options.worker_id))?;
                break;
            }
            let outcome = self.attempt(conn, job);
            match &outcome {
                JobOutcome::Done => stats.completed += 1,
                JobOutcome::Retry { .. } => stats.retried += 1,
                JobOutcome::Dead { .. } => stats.dead += 1,
            }
            finished.push((job, outcome));
            if last_flush.elapsed() >= FLUSH_EVERY {
                self.record(conn, &mut finished)?;
                last_flush = std::time::Instant::now();
            }
        }
        self.record(conn, &mut finished)?;
        Ok(stats)
    }

    /// Records the outcomes of finished jobs in one transaction (one commit for the batch rather
    /// than one per job). A crash before it means those jobs run again: delivery is at least once.
    fn record(
        &self,
        conn: &mut C,
        finished: &mut Vec<(&ClaimedJob, JobOutcome)>,
    ) -> Result<(), Error> {
        if finished.is_empty() {
            return Ok(());
        }
        let now = es_core::now();
        let worker = &self.options.worker_id;
        let done: Vec<i64> = finished
            .iter()
            .filter(|(_, outcome)| *outcome == JobOutcome::Done)
            .map(|(job, _)| job.id)
            .collect();
        retry_collisions(|| {
            conn.write_transaction(|conn| {
                conn.complete_jobs(&done, worker, now)?;
                for (job, outcome) in finished.iter() {
                    if *outcome != JobOutcome::Done {
                        conn.finish_job(job, worker, outcome, now)?;
                    }
                }
                Ok(())
            })
        })?;
        finished.clear();
        Ok(())
    }

    fn attempt(&self, conn: &mut C, job: &ClaimedJob) -> JobOutcome {
        let span = tracing::info_span!(
            "job",
            job_id = job.id,
            reactor = %job.reactor,
            event_id = job.event_id,
            events_table = %job.events_table,
            attempt = job.attempts
        );
        let _entered = span.enter();
        let mut ctx = JobContext {
            conn,
            dispatcher: self.dispatcher,
            job,
            correlation_id: None,
        };
        match self.dispatcher.run_job(&mut ctx) {
            Ok(()) => JobOutcome::Done,
            Err(error) => {
                let error = error_chain(&error);
                tracing::warn!(%error, "job attempt failed");
                if job.attempts >= self.options.max_attempts {
                    JobOutcome::Dead { error }
                } else {
                    let delay = self.options.retry_delay(job.attempts);
                    let at = es_core::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                    JobOutcome::Retry { at, error }
                }
            }
        }
    }
}

/// Runs a bookkeeping statement of the worker again when the database aborted it to break a
/// deadlock with another worker or writer (it is safe to repeat).
fn retry_collisions<T>(mut operation: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        match operation() {
            Err(Error::Storage { source, .. })
                if attempt < ATTEMPTS
                    && matches!(
                        source.downcast_ref::<diesel::result::Error>(),
                        Some(diesel::result::Error::DatabaseError(
                            diesel::result::DatabaseErrorKind::SerializationFailure,
                            _
                        ))
                    ) =>
            {
                tracing::debug!(
                    attempt,
                    "job bookkeeping collided with another writer, retrying"
                );
                attempt += 1;
                std::thread::sleep(Duration::from_millis(fastrand::u64(1..20)));
            }
            other => return other,
        }
    }
}

/// An error with its sources, `: `-separated (sources already in the message are not repeated).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
