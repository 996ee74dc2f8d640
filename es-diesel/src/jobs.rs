//! Durable jobs for async reactors, and the [`Worker`] that runs them.
//!
//! Each async reactor routed for an event becomes one row of `es_jobs`, inserted in the event's
//! write transaction: never before commit, never lost after it. Workers claim due jobs of the
//! reactors their dispatcher routes in a short write transaction (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL and MySQL, so that workers on several machines never claim the same job; SQLite's
//! write lock elsewhere), run them, and record the outcome.
//!
//! A claim holds its jobs for a lease, which the worker's heartbeat keeps extending while the
//! worker lives (from a thread and connection of its own), so a job is never run by two workers
//! at once while their workers are alive. A job whose worker died is claimed again once its
//! lease expires: delivery is at least once, and [`JobContext::idempotency_key`] lets a reactor
//! deduplicate. Every claim increments the job's attempt number, which fences its outcome: a
//! worker that lost its claim cannot overwrite the outcome of the attempt that replaced it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use diesel::connection::TransactionManager;
use es_core::{Aggregate, AppendOptions, Committed, Error, IntoEvents, RecordedEvent};

use crate::database::{Database, Selection, retry_contention};
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
    /// It succeeded.
    Done,
    /// It failed and runs again after `delay`.
    Retry { delay: TimeDelta, error: String },
    /// It failed its last allowed attempt.
    Dead { error: String },
}

/// What a worker asks of [`Database::claim_jobs`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct JobClaim<'a> {
    /// Who claims: recorded in `locked_by`.
    pub worker: &'a str,
    /// The async reactors the worker's dispatcher routes: the only jobs it takes.
    pub reactors: &'a [&'static str],
    /// How long the claim holds its jobs unless renewed.
    pub lease: TimeDelta,
    /// How many jobs at most.
    pub limit: usize,
    /// A job whose lease expired after this many attempts is dead, not claimed again.
    pub max_attempts: i32,
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

impl JobCounts {
    fn add(&mut self, state: &str, count: i64) {
        match state {
            "pending" => self.pending += count,
            "running" => self.running += count,
            "done" => self.done += count,
            "dead" => self.dead += count,
            _ => {}
        }
    }
}

/// Counts the jobs in each state.
pub fn job_counts<C: Database>(conn: &mut C) -> Result<JobCounts, Error> {
    let mut counts = JobCounts::default();
    for (_, state, count) in conn.job_counts(false)? {
        counts.add(&state, count);
    }
    Ok(counts)
}

/// Counts the jobs of each async reactor in each state, by reactor name. A reactor that no
/// running worker routes shows here with its jobs pending.
pub fn job_counts_by_reactor<C: Database>(conn: &mut C) -> Result<Vec<(String, JobCounts)>, Error> {
    let mut by_reactor: Vec<(String, JobCounts)> = Vec::new();
    for (reactor, state, count) in conn.job_counts(true)? {
        match by_reactor.last_mut() {
            Some((last, counts)) if *last == reactor => counts.add(&state, count),
            _ => {
                let mut counts = JobCounts::default();
                counts.add(&state, count);
                by_reactor.push((reactor, counts));
            }
        }
    }
    Ok(by_reactor)
}

/// The dead jobs, oldest first, with their last error.
pub fn dead_jobs<C: Database>(conn: &mut C, limit: usize) -> Result<Vec<DeadJob>, Error> {
    conn.dead_jobs(limit)
}

/// Makes dead jobs pending again with fresh attempts: all of them, or the one with `id`.
/// Returns how many.
pub fn retry_dead_jobs<C: Database>(conn: &mut C, id: Option<i64>) -> Result<usize, Error> {
    conn.retry_dead_jobs(id)
}

/// Deletes the done jobs that finished more than `older_than` ago (by the database's clock on
/// PostgreSQL and MySQL), in chunks of 1,000 rows so that no statement holds locks for long;
/// returns how many. Pending, running and dead jobs are kept. A worker does this on its own
/// with [`WorkerOptions::keep_done`].
pub fn prune_jobs<C: Database>(conn: &mut C, older_than: Duration) -> Result<usize, Error> {
    let older_than = checked_delta("prune_jobs older_than", older_than)?;
    let mut pruned = 0;
    loop {
        let deleted = conn.prune_jobs(older_than, PRUNE_CHUNK)?;
        pruned += deleted;
        if deleted < PRUNE_CHUNK {
            return Ok(pruned);
        }
    }
}

/// How many done jobs one pruning statement deletes at most.
const PRUNE_CHUNK: usize = 1_000;

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

    /// The error of a job no route of the dispatcher handles for its event (a route removed
    /// since the job was queued).
    #[doc(hidden)]
    pub fn unrouted(&self) -> Error {
        Error::UnroutedJob {
            job_id: self.job.id,
            reactor: self.job.reactor.clone(),
            event_id: self.job.event_id,
            table: self.job.events_table.clone(),
        }
    }
}

/// How many times a worker runs a bookkeeping transaction that collided with another writer
/// before it counts the error (it is safe to repeat).
const BOOKKEEPING_ATTEMPTS: u32 = 5;

/// How long finished jobs may wait before their outcomes are recorded together.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The longest duration any worker option may take: a century.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// How long a worker waits after an error of its own (not a job's) before trying again, at
/// first; it doubles up to [`MOST_TROUBLE_WAIT`] while the errors go on.
const FIRST_TROUBLE_WAIT: Duration = Duration::from_millis(50);

/// The longest wait between a worker's attempts to get past an error of its own.
const MOST_TROUBLE_WAIT: Duration = Duration::from_secs(5);

/// How a [`Worker`] claims and retries jobs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// The worker's name (host and process id by default). A claim records it with a suffix
    /// unique to each [`Worker`], so two workers given one name never share their claims.
    pub worker_id: String,
    /// How many jobs one claim takes.
    pub batch: usize,
    /// How long a claim holds its jobs unless renewed. The worker's heartbeat renews it every
    /// third of it while the worker lives; a job is claimed again only once its worker has been
    /// silent for this long.
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
    /// How long done jobs stay in `es_jobs` before a running worker deletes them (`None`:
    /// forever). Seven days by default. A worker prunes every `keep_done` or 10 minutes,
    /// whichever is shorter, the first time that long after it started. Dead jobs are always
    /// kept.
    pub keep_done: Option<Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME")
            .or_else(|_| std::env::var("COMPUTERNAME"))
            .unwrap_or_else(|_| "worker".to_owned());
        Self {
            worker_id: format!("{host}-{}", std::process::id()),
            batch: 16,
            lease: Duration::from_secs(300),
            max_attempts: 10,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(3600),
            idle_wait: Duration::from_secs(1),
            keep_done: Some(Duration::from_secs(7 * 24 * 60 * 60)),
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

    /// Sets the lease of a claim (from 1 ms to a century; the worker checks it when it starts).
    ///
    /// The heartbeat renews it every third of the lease; keep it well above the longest time the
    /// database may make a renewal wait, or a live worker's job may be claimed again. On SQLite
    /// writers queue for one lock, and a renewal can wait up to the busy timeout
    /// ([`crate::sqlite::BUSY_TIMEOUT_MS`], 10 s).
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

    /// Sets the retry delays: `base` doubled each attempt, at most `max` (each at most a
    /// century).
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// Sets how long an idle worker waits before looking again (at most a century).
    #[must_use]
    pub fn idle_wait(mut self, idle_wait: Duration) -> Self {
        self.idle_wait = idle_wait;
        self
    }

    /// Sets how long done jobs are kept (`None`: forever; at most a century).
    #[must_use]
    pub fn keep_done(mut self, keep_done: Option<Duration>) -> Self {
        self.keep_done = keep_done;
        self
    }

    /// Checks every option is within its range: [`Error::InvalidOption`] names the first that is
    /// not. Every run of a [`Worker`] checks its options first.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid =
            |option: &'static str, reason: String| Error::InvalidOption { option, reason };
        if self.batch == 0 {
            return Err(invalid(
                "WorkerOptions::batch",
                "must be at least 1".to_owned(),
            ));
        }
        if self.max_attempts < 1 {
            let reason = format!("must be at least 1, got {}", self.max_attempts);
            return Err(invalid("WorkerOptions::max_attempts", reason));
        }
        if self.lease < Duration::from_millis(1) {
            let reason = format!("must be at least 1 ms, got {:?}", self.lease);
            return Err(invalid("WorkerOptions::lease", reason));
        }
        let durations = [
            ("WorkerOptions::lease", Some(self.lease)),
            ("WorkerOptions::backoff base", Some(self.backoff_base)),
            ("WorkerOptions::backoff max", Some(self.backoff_max)),
            ("WorkerOptions::idle_wait", Some(self.idle_wait)),
            ("WorkerOptions::keep_done", self.keep_done),
        ];
        for (option, duration) in durations {
            if let Some(duration) = duration {
                checked_delta(option, duration)?;
            }
        }
        Ok(())
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

    /// How often the heartbeat renews the leases of held jobs: a third of the lease.
    fn heartbeat_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(1))
    }
}

/// `duration` as a signed time offset, if it is at most [`LONGEST`]; else the error naming
/// `option`.
fn checked_delta(option: &'static str, duration: Duration) -> Result<TimeDelta, Error> {
    TimeDelta::from_std(duration)
        .ok()
        .filter(|_| duration <= LONGEST)
        .ok_or_else(|| Error::InvalidOption {
            option,
            reason: format!("must be at most a century (100 × 365 days), got {duration:?}"),
        })
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
    /// Outcomes dropped because the job had been claimed again after this worker's lease
    /// expired (it was silent too long): the newer attempt's outcome stands.
    pub stale: u64,
    /// Errors of the worker's own (a lost connection, a busy database) it backed off from and
    /// carried on after.
    pub errors: u64,
}

impl WorkerStats {
    /// Adds the outcomes one flush recorded (a flush has no errors of the worker's own to add).
    fn add_outcomes(&mut self, recorded: WorkerStats) {
        self.completed += recorded.completed;
        self.retried += recorded.retried;
        self.dead += recorded.dead;
        self.stale += recorded.stale;
    }
}

/// Runs the jobs of async reactors routed by a dispatcher.
///
/// [`run`](Worker::run) is the long-running worker: it opens its own connections, keeps the
/// leases of the jobs it holds alive from a heartbeat thread, reconnects after losing its
/// connection, backs off from errors, and prunes done jobs. [`run_once`](Worker::run_once)
/// runs one batch on a connection you hold (scripts, tests, `jobs work --once`).
pub struct Worker<'d, C: Database> {
    dispatcher: &'d dyn Dispatch<C>,
    options: WorkerOptions,
    /// `locked_by` of this worker's claims: its name and a suffix of its own.
    owner: String,
    /// The async reactors the dispatcher routes: the only jobs this worker claims.
    reactors: Vec<&'static str>,
}

impl<C: Database> std::fmt::Debug for Worker<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("owner", &self.owner)
            .field("reactors", &self.reactors)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The claims a worker holds, `(job id, attempt)`, shared with its heartbeat.
#[derive(Debug, Default)]
struct Held(Mutex<Vec<(i64, i32)>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(i64, i32)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn snapshot(&self) -> Vec<(i64, i32)> {
        self.lock().clone()
    }

    fn add(&self, jobs: &[ClaimedJob]) {
        self.lock().extend(jobs.iter().map(claim_of));
    }

    fn remove(&self, claims: &[(i64, i32)]) {
        self.lock().retain(|claim| !claims.contains(claim));
    }
}

fn claim_of(job: &ClaimedJob) -> (i64, i32) {
    (job.id, job.attempts)
}

/// What a worker has in hand: jobs claimed but not started, and jobs run whose outcome is not
/// recorded yet. It survives the worker's own errors, so that a lost connection loses neither.
#[derive(Debug)]
struct Shift<'h> {
    held: &'h Held,
    queue: VecDeque<ClaimedJob>,
    finished: Vec<(ClaimedJob, JobOutcome)>,
    last_flush: Instant,
}

impl<'h> Shift<'h> {
    fn new(held: &'h Held) -> Self {
        Self {
            held,
            queue: VecDeque::new(),
            finished: Vec::new(),
            last_flush: Instant::now(),
        }
    }

    fn flush_due(&self) -> bool {
        !self.finished.is_empty()
            && (self.queue.is_empty() || self.last_flush.elapsed() >= FLUSH_EVERY)
    }
}

/// What one step of a worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Worked,
    Idle,
}

impl<'d, C: Database> Worker<'d, C> {
    /// A worker for the async reactors of `dispatcher`.
    pub fn new(dispatcher: &'d dyn Dispatch<C>, options: WorkerOptions) -> Self {
        let mut reactors: Vec<&'static str> = dispatcher
            .routes()
            .iter()
            .flat_map(|route| route.asyncs)
            .map(|reactor| reactor.name)
            .collect();
        reactors.sort_unstable();
        reactors.dedup();
        let owner = format!("{}/{:08x}", options.worker_id, fastrand::u32(..));
        Self {
            dispatcher,
            options,
            owner,
            reactors,
        }
    }

    /// The name this worker's claims record in `es_jobs.locked_by`: its
    /// [`worker_id`](WorkerOptions::worker_id) and a suffix of its own.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims one batch of due jobs on `conn` and runs them; returns what happened (nothing if no
    /// job was due). It renews the batch's lease between jobs, but has no heartbeat while a job
    /// runs: a job that outlives the lease here may be claimed by another worker, whose
    /// outcome then stands. Long jobs belong to [`run`](Worker::run).
    pub fn run_once(&self, conn: &mut C) -> Result<WorkerStats, Error> {
        self.options.validate()?;
        let held = Held::default();
        let mut shift = Shift::new(&held);
        let mut stats = WorkerStats::default();
        self.claim(conn, &mut shift)?;
        let mut last_renewal = Instant::now();
        while let Some(job) = shift.queue.pop_front() {
            if last_renewal.elapsed() >= self.options.heartbeat_every() {
                self.renew(conn, &held)?;
                last_renewal = Instant::now();
            }
            self.run_job(conn, job, &mut shift)?;
            if shift.flush_due() {
                self.flush(conn, &mut shift, &mut stats)?;
            }
        }
        self.flush(conn, &mut shift, &mut stats)?;
        Ok(stats)
    }

    /// Runs jobs until `stop` is set, on connections opened with `connect`: one for the jobs,
    /// one for the heartbeat that keeps the leases of the jobs it holds alive. Idle, it waits
    /// (a PostgreSQL notification wakes it at once). An error of its own — a busy database, a
    /// lost connection — is logged, waited out with a growing delay and counted in
    /// [`WorkerStats::errors`]; a lost connection is opened again with `connect`. Only invalid
    /// options or a first connection that cannot be opened make it return an error. On `stop`,
    /// the job running finishes, jobs claimed but not started are given back, and outcomes are
    /// recorded.
    pub fn run<F, E>(&self, connect: F, stop: &AtomicBool) -> Result<WorkerStats, Error>
    where
        F: Fn() -> Result<C, E> + Sync,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.options.validate()?;
        let connect = || {
            connect().map_err(|error| Error::Connect {
                source: error.into(),
            })
        };
        let mut conn = connect()?;
        conn.listen_for_jobs()?;
        let held = Held::default();
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let heartbeat = scope.spawn(|| self.heartbeat(&connect, &held, &done));
            let stats = self.work(conn, &connect, &held, stop);
            done.store(true, Ordering::Relaxed);
            heartbeat.thread().unpark();
            stats
        })
    }

    /// The loop of [`run`](Worker::run) on the jobs' connection.
    fn work(
        &self,
        conn: C,
        connect: &(dyn Fn() -> Result<C, Error> + Sync),
        held: &Held,
        stop: &AtomicBool,
    ) -> Result<WorkerStats, Error> {
        let mut conn = Some(conn);
        let mut shift = Shift::new(held);
        let mut stats = WorkerStats::default();
        let mut trouble = Trouble::default();
        // Pruning scans the done jobs: not at start, where it would delay the first claim.
        let mut last_prune = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let Some(current) = conn.as_mut() else {
                conn = self.reconnect(connect, &mut trouble, &mut stats, stop);
                continue;
            };
            let stepped = match self.step(current, &mut shift, &mut stats, &mut last_prune) {
                Ok(Step::Worked) => {
                    trouble = Trouble::default();
                    Ok(())
                }
                Ok(Step::Idle) => {
                    trouble = Trouble::default();
                    self.wait_idle(current, stop)
                }
                Err(error) => Err(error),
            };
            if let Err(error) = stepped {
                stats.errors += 1;
                tracing::error!(%error, worker = %self.owner, "worker error; backing off");
                trouble.wait(stop);
                if !healthy(current) {
                    conn = None;
                }
            }
        }
        if let Some(conn) = conn.as_mut() {
            let unstarted: Vec<(i64, i32)> =
                shift.queue.drain(..).map(|job| claim_of(&job)).collect();
            let given_back = retry_contention(BOOKKEEPING_ATTEMPTS, || {
                conn.release_jobs(&self.owner, &unstarted)
            });
            if let Err(error) = given_back.and_then(|_| self.flush(conn, &mut shift, &mut stats)) {
                tracing::warn!(%error, "stopping: outcomes not recorded; those jobs run again");
            }
        }
        Ok(stats)
    }

    /// Opens a new connection after the last was lost, waiting longer after each failure;
    /// `None` if `stop` was set meanwhile.
    fn reconnect(
        &self,
        connect: &(dyn Fn() -> Result<C, Error> + Sync),
        trouble: &mut Trouble,
        stats: &mut WorkerStats,
        stop: &AtomicBool,
    ) -> Option<C> {
        match connect().and_then(|mut conn| conn.listen_for_jobs().map(|()| conn)) {
            Ok(conn) => {
                tracing::info!(worker = %self.owner, "reconnected");
                Some(conn)
            }
            Err(error) => {
                stats.errors += 1;
                tracing::error!(%error, worker = %self.owner, "cannot reconnect; backing off");
                trouble.wait(stop);
                None
            }
        }
    }

    /// One thing at a time: record outcomes when due, else run the next claimed job, else prune
    /// when due and claim a batch.
    fn step(
        &self,
        conn: &mut C,
        shift: &mut Shift<'_>,
        stats: &mut WorkerStats,
        last_prune: &mut Instant,
    ) -> Result<Step, Error> {
        if shift.flush_due() {
            self.flush(conn, shift, stats)?;
            return Ok(Step::Worked);
        }
        if let Some(job) = shift.queue.pop_front() {
            self.run_job(conn, job, shift)?;
            return Ok(Step::Worked);
        }
        if let Some(keep) = self.options.keep_done {
            let every = keep.min(Duration::from_secs(600));
            if last_prune.elapsed() >= every {
                let pruned = prune_jobs(conn, keep)?;
                if pruned > 0 {
                    tracing::info!(pruned, "pruned done jobs");
                }
                *last_prune = Instant::now();
            }
        }
        Ok(if self.claim(conn, shift)? == 0 {
            Step::Idle
        } else {
            Step::Worked
        })
    }

    /// Claims a batch into the shift; returns how many jobs.
    fn claim(&self, conn: &mut C, shift: &mut Shift<'_>) -> Result<usize, Error> {
        let claim = JobClaim {
            worker: &self.owner,
            reactors: &self.reactors,
            lease: checked_delta("WorkerOptions::lease", self.options.lease)?,
            limit: self.options.batch,
            max_attempts: self.options.max_attempts,
        };
        let jobs = retry_contention(BOOKKEEPING_ATTEMPTS, || conn.claim_jobs(&claim))?;
        shift.held.add(&jobs);
        let claimed = jobs.len();
        shift.queue.extend(jobs);
        Ok(claimed)
    }

    /// Extends the leases of every claim this worker holds.
    fn renew(&self, conn: &mut C, held: &Held) -> Result<(), Error> {
        let lease = checked_delta("WorkerOptions::lease", self.options.lease)?;
        let claims = held.snapshot();
        let renewed = retry_contention(BOOKKEEPING_ATTEMPTS, || {
            conn.renew_jobs(&self.owner, &claims, lease)
        })?;
        if renewed < claims.len() {
            tracing::warn!(
                held = claims.len(),
                renewed,
                "some claims were taken over after their lease expired"
            );
        }
        Ok(())
    }

    /// Renews the leases of the held claims every third of the lease, on a connection of its
    /// own, until `done`. Its errors are logged and retried at the next beat (a lease outlives
    /// two missed beats).
    fn heartbeat(
        &self,
        connect: &(dyn Fn() -> Result<C, Error> + Sync),
        held: &Held,
        done: &AtomicBool,
    ) {
        let mut beats = Beats::starting(Instant::now(), self.options.heartbeat_every());
        let mut conn: Option<C> = None;
        while !done.load(Ordering::Relaxed) {
            if let Some(wait) = beats.wait(Instant::now()) {
                std::thread::park_timeout(wait);
                continue;
            }
            if held.lock().is_empty() {
                continue;
            }
            let beat = match conn.as_mut() {
                Some(conn) => Ok(conn),
                None => connect().map(|fresh| conn.insert(fresh)),
            }
            .and_then(|conn| self.renew(conn, held));
            if let Err(error) = beat {
                tracing::warn!(%error, worker = %self.owner, "heartbeat failed; retrying");
                conn = None;
            }
        }
    }

    /// Runs one claimed job and keeps its outcome for the next flush. A reactor that panicked
    /// is a failed attempt; if it left the connection unusable, that is the worker's error (the
    /// outcome is kept all the same).
    fn run_job(&self, conn: &mut C, job: ClaimedJob, shift: &mut Shift<'_>) -> Result<(), Error> {
        let (outcome, panicked) = self.attempt(conn, &job);
        shift.finished.push((job, outcome));
        if panicked {
            roll_back_open_transactions(conn)?;
        }
        Ok(())
    }

    /// Records the outcomes of finished jobs in one transaction (one commit for many jobs rather
    /// than one each), each only where its claim still holds. A crash before it means those jobs
    /// run again: delivery is at least once.
    fn flush(
        &self,
        conn: &mut C,
        shift: &mut Shift<'_>,
        stats: &mut WorkerStats,
    ) -> Result<(), Error> {
        shift.last_flush = Instant::now();
        if shift.finished.is_empty() {
            return Ok(());
        }
        let done: Vec<(i64, i32)> = shift
            .finished
            .iter()
            .filter(|(_, outcome)| *outcome == JobOutcome::Done)
            .map(|(job, _)| claim_of(job))
            .collect();
        let recorded = retry_contention(BOOKKEEPING_ATTEMPTS, || {
            conn.jobs_transaction(|conn| {
                let mut recorded = WorkerStats {
                    completed: conn.complete_jobs(&self.owner, &done)? as u64,
                    ..WorkerStats::default()
                };
                for (job, outcome) in &shift.finished {
                    let held =
                        *outcome != JobOutcome::Done && conn.fail_job(&self.owner, job, outcome)?;
                    match outcome {
                        JobOutcome::Retry { .. } if held => recorded.retried += 1,
                        JobOutcome::Dead { .. } if held => recorded.dead += 1,
                        _ => {}
                    }
                }
                Ok::<_, Error>(recorded)
            })
        })?;
        let mut recorded = recorded;
        let written = recorded.completed + recorded.retried + recorded.dead;
        recorded.stale = shift.finished.len() as u64 - written;
        if recorded.stale > 0 {
            tracing::warn!(
                stale = recorded.stale,
                worker = %self.owner,
                "outcomes dropped: their jobs were claimed again after this worker's lease expired"
            );
        }
        let claims: Vec<(i64, i32)> = shift
            .finished
            .iter()
            .map(|(job, _)| claim_of(job))
            .collect();
        shift.held.remove(&claims);
        shift.finished.clear();
        stats.add_outcomes(recorded);
        Ok(())
    }

    /// Waits up to `idle_wait`, in short slices so that `stop` is noticed promptly, and returns
    /// early when PostgreSQL announces a new job (or the connection is lost).
    fn wait_idle(&self, conn: &mut C, stop: &AtomicBool) -> Result<(), Error> {
        const SLICE: Duration = Duration::from_millis(50);
        let deadline = Instant::now() + self.options.idle_wait;
        while !stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || conn.wait_for_jobs(left.min(SLICE))? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Runs one attempt of `job`; returns its outcome and whether the reactor panicked.
    fn attempt(&self, conn: &mut C, job: &ClaimedJob) -> (JobOutcome, bool) {
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
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.dispatcher.run_job(&mut ctx)
        }));
        let (error, panicked) = match run {
            Ok(Ok(())) => return (JobOutcome::Done, false),
            Ok(Err(error)) => (error_chain(&error), false),
            Err(payload) => (
                format!("the reactor panicked: {}", panic_message(&*payload)),
                true,
            ),
        };
        tracing::warn!(%error, "job attempt failed");
        if job.attempts >= self.options.max_attempts {
            return (JobOutcome::Dead { error }, panicked);
        }
        let delay = self.options.retry_delay(job.attempts);
        // Within range: `validate` bounds both backoff options by a century.
        let delay = TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
        (JobOutcome::Retry { delay, error }, panicked)
    }
}

/// When a heartbeat beats: every `every`, the first time `every` after it starts.
#[derive(Debug)]
struct Beats {
    every: Duration,
    next: Instant,
}

impl Beats {
    fn starting(now: Instant, every: Duration) -> Self {
        Self {
            every,
            next: now + every,
        }
    }

    /// How long to wait until the next beat, or `None` if it is due; the beat after it is then
    /// `every` from `now`.
    fn wait(&mut self, now: Instant) -> Option<Duration> {
        if now < self.next {
            return Some(self.next - now);
        }
        self.next = now + self.every;
        None
    }
}

/// The growing wait of a worker that keeps hitting errors of its own.
#[derive(Debug, Default)]
struct Trouble {
    next: Option<Duration>,
}

impl Trouble {
    /// Waits, in slices so that `stop` is noticed, then doubles the next wait.
    fn wait(&mut self, stop: &AtomicBool) {
        let wait = self.next.unwrap_or(FIRST_TROUBLE_WAIT);
        self.next = Some((wait * 2).min(MOST_TROUBLE_WAIT));
        let deadline = Instant::now() + wait;
        while !stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

/// Whether a connection can go on serving the worker: its transaction manager is sound, no
/// transaction is left open, and the server answers.
fn healthy<C: Database>(conn: &mut C) -> bool {
    roll_back_open_transactions(conn).is_ok() && conn.batch_execute("SELECT 1").is_ok()
}

/// Rolls back whatever transactions a panicking reactor left open on `conn`, so that the next
/// job does not run inside them.
fn roll_back_open_transactions<C: Database>(conn: &mut C) -> Result<(), Error> {
    let transaction = |error| Error::Storage {
        table: "transaction",
        source: Box::new(error),
    };
    while C::TransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .map_err(transaction)?
        .is_some()
    {
        C::TransactionManager::rollback_transaction(conn).map_err(transaction)?;
    }
    Ok(())
}

/// The message of a panic's payload (a `&str` or a `String`, as `panic!` makes them).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use es_core::Error;

    use super::{Trouble, WorkerOptions, error_chain, panic_message};

    /// A claim of job `id` (of event `10 × id`) at attempt `attempts`.
    fn claimed(id: i64, attempts: i32) -> super::ClaimedJob {
        super::ClaimedJob {
            id,
            events_table: "task_events".to_owned(),
            event_id: id * 10,
            reactor: "notify".to_owned(),
            attempts,
        }
    }

    /// A dispatcher without routes.
    #[cfg(feature = "sqlite")]
    struct NoRoutes;

    #[cfg(feature = "sqlite")]
    impl crate::Dispatch<diesel::SqliteConnection> for NoRoutes {
        fn dispatch(
            &self,
            _: &mut crate::TriggerContext<'_, diesel::SqliteConnection>,
            _: &crate::dispatch::Dispatched<'_>,
        ) -> Result<(), Error> {
            Ok(())
        }

        fn project(
            &self,
            _: &mut diesel::SqliteConnection,
            _: &str,
            _: &crate::AnyEvent,
        ) -> Result<(), Error> {
            Ok(())
        }

        fn run_job(
            &self,
            ctx: &mut super::JobContext<'_, diesel::SqliteConnection>,
        ) -> Result<(), Error> {
            Err(ctx.unrouted())
        }

        fn routes(&self) -> &'static [crate::Route] {
            &[]
        }
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_job_context_shows_its_job() {
        use diesel::Connection;

        let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
        let job = claimed(7, 2);
        let ctx = super::JobContext {
            conn: &mut conn,
            dispatcher: &NoRoutes,
            job: &job,
            correlation_id: None,
        };
        assert_eq!(
            format!("{ctx:?}"),
            "JobContext { job: ClaimedJob { id: 7, events_table: \"task_events\", event_id: 70, \
             reactor: \"notify\", attempts: 2 }, .. }"
        );
        assert_eq!(
            (ctx.idempotency_key(), ctx.attempt()),
            ("70:notify".to_owned(), 2)
        );
    }

    #[test]
    fn the_heartbeat_beats_three_times_a_lease_and_at_most_each_millisecond() {
        let every = |lease| WorkerOptions::default().lease(lease).heartbeat_every();
        assert_eq!(every(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(every(Duration::from_millis(1)), Duration::from_millis(1));
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_worker_shows_its_owner_reactors_and_options() {
        let worker = super::Worker::<diesel::SqliteConnection>::new(
            &NoRoutes,
            WorkerOptions::default().worker_id("host-1"),
        );
        let shown = format!("{worker:?}");
        assert!(
            shown.starts_with(&format!(
                "Worker {{ owner: \"{}\", reactors: [], options: WorkerOptions {{ worker_id: \"host-1\"",
                worker.owner()
            )),
            "{shown}"
        );
        assert!(worker.owner().starts_with("host-1/"), "{}", worker.owner());
    }

    #[test]
    fn a_worker_holds_its_claims_until_their_outcomes_are_recorded() {
        let held = super::Held::default();
        held.add(&[claimed(1, 1), claimed(2, 3)]);
        held.add(&[claimed(3, 1)]);
        held.remove(&[(2, 3), (3, 2)]);
        assert_eq!(held.snapshot(), [(1, 1), (3, 1)]);
        held.remove(&[(1, 1), (3, 1)]);
        assert_eq!(held.snapshot(), []);
    }

    #[test]
    fn outcomes_are_flushed_once_the_queue_is_empty_or_a_second_has_passed() {
        let held = super::Held::default();
        let mut shift = super::Shift::new(&held);
        assert!(!shift.flush_due(), "nothing to flush");
        shift
            .finished
            .push((claimed(1, 1), super::JobOutcome::Done));
        assert!(shift.flush_due(), "nothing left to run");
        shift.queue.push_back(claimed(2, 1));
        assert!(!shift.flush_due(), "the next job runs first");
        shift.last_flush -= super::FLUSH_EVERY;
        assert!(shift.flush_due(), "a second has passed");
    }

    #[test]
    fn the_heartbeat_beats_every_period_from_its_start() {
        let ms = Duration::from_millis;
        let start = std::time::Instant::now();
        let mut beats = super::Beats::starting(start, ms(100));
        assert_eq!(beats.wait(start), Some(ms(100)));
        assert_eq!(beats.wait(start + ms(99)), Some(ms(1)));
        assert_eq!(beats.wait(start + ms(100)), None);
        assert_eq!(beats.wait(start + ms(100)), Some(ms(100)));
        assert_eq!(
            beats.wait(start + ms(250)),
            None,
            "a late beat is not skipped"
        );
        assert_eq!(
            beats.wait(start + ms(260)),
            Some(ms(90)),
            "the next is a period after it"
        );
    }

    fn assert_invalid_lease(validated: Result<(), Error>) {
        assert!(
            matches!(
                validated,
                Err(Error::InvalidOption {
                    option: "WorkerOptions::lease",
                    ..
                })
            ),
            "{validated:?}"
        );
    }

    #[test]
    fn a_lease_is_at_least_a_millisecond() {
        let lease = |lease| WorkerOptions::default().lease(lease).validate();
        assert!(lease(Duration::from_millis(1)).is_ok());
        assert_invalid_lease(lease(Duration::from_micros(999)));
    }

    #[test]
    fn every_duration_option_may_take_up_to_a_century() {
        let century = Duration::from_secs(100 * 365 * 24 * 60 * 60);
        let options = |duration| {
            WorkerOptions::default()
                .lease(duration)
                .backoff(duration, duration)
                .idle_wait(duration)
                .keep_done(Some(duration))
        };
        assert!(options(century).validate().is_ok());
        assert_invalid_lease(options(century + Duration::from_secs(1)).validate());
    }

    #[test]
    fn a_troubled_worker_waits_twice_as_long_each_time_up_to_the_most() {
        let stopped = AtomicBool::new(true);
        let mut trouble = Trouble::default();
        let mut waits = Vec::new();
        for _ in 0..9 {
            trouble.wait(&stopped);
            waits.push(trouble.next.expect("a next wait"));
        }
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000].map(ms)
        );
    }

    #[test]
    fn a_troubled_worker_sleeps_its_wait_unless_stopped() {
        let running = AtomicBool::new(false);
        let started = std::time::Instant::now();
        Trouble::default().wait(&running);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_failed_attempt_keeps_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer failed")]
        struct Outer(#[source] Middle);
        #[derive(Debug, thiserror::Error)]
        #[error("middle failed: the root")]
        struct Middle(#[source] Root);
        #[derive(Debug, thiserror::Error)]
        #[error("the root")]
        struct Root;
        assert_eq!(
            error_chain(&Outer(Middle(Root))),
            "outer failed: middle failed: the root"
        );
        assert_eq!(error_chain(&Root), "the root");
    }

    #[test]
    fn a_panic_is_told_by_its_message() {
        let message = |payload: Box<dyn std::any::Any + Send>| panic_message(&*payload);
        assert_eq!(message(Box::new("static")), "static");
        assert_eq!(message(Box::new(String::from("formatted"))), "formatted");
        assert_eq!(message(Box::new(7)), "(a panic without a message)");
    }

    #[test]
    fn retry_delays_double_with_each_attempt_up_to_the_maximum() {
        let options =
            WorkerOptions::default().backoff(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..100 {
            for (attempt, full) in [(1, 1), (2, 2), (3, 4), (4, 8), (6, 32), (7, 60), (40, 60)] {
                let delay = options.retry_delay(attempt);
                let full = Duration::from_secs(full);
                assert!(
                    delay >= full / 2 && delay <= full,
                    "attempt {attempt}: {delay:?} is not within [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
    }
}
