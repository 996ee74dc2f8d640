//! The [`Worker`]: claims due jobs in batches, runs each async reactor (a panic is a failed
//! attempt), records the outcomes together, keeps the leases of the jobs it holds alive from a
//! heartbeat thread, reconnects after losing its connection, backs off from its own errors, and
//! prunes done jobs; or runs one batch ([`Worker::run_once`]), or batches until none is due
//! ([`Worker::drain`]), on a connection it is given.
//!
//! Calls `jobs::queue` (the statements on `es_jobs`), `jobs::options`, `dispatch` (the reactors
//! and their context), `database` and `errors`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use diesel::connection::TransactionManager;
use es_core::Error;

use crate::database::Database;
use crate::dispatch::{Dispatch, JobContext};
use crate::errors::{error_chain, panic_message, retry_contention};
use crate::jobs::admin::prune_jobs;
use crate::jobs::options::{WorkerOptions, WorkerStats};
use crate::jobs::queue::{
    ClaimedJob, JobClaim, JobOutcome, checked_delta, claim_jobs, complete_jobs, count_unfinished,
    fail_job, release_jobs, renew_jobs,
};
use crate::jobs::shift::{Beats, Held, Shift, Trouble, claim_of};

/// How many times a worker runs a bookkeeping transaction that collided with another writer
/// before it counts the error (it is safe to repeat).
const BOOKKEEPING_ATTEMPTS: u32 = 5;

/// Runs the jobs of async reactors routed by a dispatcher.
///
/// [`run`](Worker::run) is the long-running worker: it opens its own connections, keeps the
/// leases of the jobs it holds alive from a heartbeat thread, reconnects after losing its
/// connection, backs off from errors, and prunes done jobs. [`run_once`](Worker::run_once)
/// runs one batch on a connection you hold (scripts, tests, `jobs work --once`), and
/// [`drain`](Worker::drain) runs batches there until no job is due.
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
        self.batch(conn).map(|(stats, _)| stats)
    }

    /// Runs batches of due jobs on `conn`, as [`run_once`](Worker::run_once) does, until a claim
    /// finds no job due now; returns what all the batches did. Scripts and tests call it to run
    /// "everything there is to run now"; it never sleeps, polls or prunes.
    ///
    /// It leaves jobs that are not due, and counts them in [`WorkerStats::not_due`]:
    ///
    /// - a failed attempt's retry waits out its backoff ([`WorkerOptions::backoff`]) pending,
    ///   not due until its `run_at`: `drain` returns without waiting for it. A retry with no
    ///   delay is due at once, and runs again in the same `drain` until it succeeds or is dead;
    /// - a job another worker holds under a live lease is not due (one whose lease expired is,
    ///   and is claimed again).
    ///
    /// So `not_due == 0` means no job of this worker's reactors is pending or running any
    /// more (unless another writer enqueued one since). To wait for retries too, sleep and call
    /// `drain` again, or run [`run`](Worker::run).
    ///
    /// Jobs of reactors the dispatcher does not route are never claimed nor counted: they stay
    /// pending for a worker that knows them ([`job_counts_by_reactor`](crate::job_counts_by_reactor)
    /// shows them).
    ///
    /// Jobs that reactors enqueue while it runs (an async reactor's events routed to async
    /// reactors) are due at once and run by the same `drain`. A cascade that never ends — a
    /// reactor whose events always enqueue it again — makes `drain` run forever, as it would keep
    /// [`run`](Worker::run) busy; bound such a loop yourself with [`run_once`](Worker::run_once).
    /// An error ends it at once: the outcomes of the batch in progress may be lost (its jobs run
    /// again once their lease expires), and the stats of the batches before it too.
    pub fn drain(&self, conn: &mut C) -> Result<WorkerStats, Error> {
        self.options.validate()?;
        let mut stats = WorkerStats::default();
        loop {
            let (batch, found) = self.batch(conn)?;
            stats.add(batch);
            if found == 0 {
                stats.not_due = count_unfinished(conn, &self.reactors)?;
                return Ok(stats);
            }
        }
    }

    /// Claims one batch and runs it; returns what happened and how many due jobs the claim
    /// found (claimed, or made dead because their worker died during their last attempt).
    fn batch(&self, conn: &mut C) -> Result<(WorkerStats, usize), Error> {
        let held = Held::default();
        let mut shift = Shift::new(&held);
        let mut stats = WorkerStats::default();
        let found = self.claim(conn, &mut shift)?;
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
        Ok((stats, found))
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
                release_jobs(conn, &self.owner, &unstarted)
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

    /// Claims a batch into the shift; returns how many due jobs it found: those it claimed and
    /// those it made dead (their worker died during their last allowed attempt).
    fn claim(&self, conn: &mut C, shift: &mut Shift<'_>) -> Result<usize, Error> {
        let claim = JobClaim {
            worker: &self.owner,
            reactors: &self.reactors,
            lease: checked_delta("WorkerOptions::lease", self.options.lease)?,
            limit: self.options.batch,
            max_attempts: self.options.max_attempts,
        };
        let claimed = retry_contention(BOOKKEEPING_ATTEMPTS, || claim_jobs(conn, &claim))?;
        let found = claimed.found();
        shift.held.add(&claimed.jobs);
        shift.queue.extend(claimed.jobs);
        Ok(found)
    }

    /// Extends the leases of every claim this worker holds.
    fn renew(&self, conn: &mut C, held: &Held) -> Result<(), Error> {
        let lease = checked_delta("WorkerOptions::lease", self.options.lease)?;
        let claims = held.snapshot();
        let renewed = retry_contention(BOOKKEEPING_ATTEMPTS, || {
            renew_jobs(conn, &self.owner, &claims, lease)
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
                    completed: complete_jobs(conn, &self.owner, &done)? as u64,
                    ..WorkerStats::default()
                };
                for (job, outcome) in &shift.finished {
                    let held =
                        *outcome != JobOutcome::Done && fail_job(conn, &self.owner, job, outcome)?;
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
        let mut ctx = JobContext::new(conn, self.dispatcher, job);
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

/// Whether a connection can go on serving the worker: its transaction manager is sound, no
/// transaction is left open, and the server answers.
pub(crate) fn healthy<C: Database>(conn: &mut C) -> bool {
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

#[cfg(test)]
mod tests {
    use es_core::Error;

    use super::WorkerOptions;

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
        let job = super::ClaimedJob::claimed(7, 2);
        let ctx = super::JobContext::new(&mut conn, &NoRoutes, &job);
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
}
