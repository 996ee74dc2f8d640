//! How a [`Worker`](crate::Worker) claims, retries and keeps jobs ([`WorkerOptions`]), and what
//! it did ([`WorkerStats`]).
//!
//! Calls `jobs::queue` (the bound on durations).

use std::time::Duration;

use es_core::Error;

use crate::jobs::queue::checked_delta;

/// How a [`Worker`](crate::Worker) claims and retries jobs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// The worker's name (host and process id by default). A claim records it with a suffix
    /// unique to each [`Worker`](crate::Worker), so two workers given one name never share their claims.
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

/// This process's name on the machine: `{host}-{process id}`, `{fallback}-{process id}` where
/// the environment names no host.
pub(crate) fn process_name(fallback: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .unwrap_or_else(|_| fallback.to_owned());
    format!("{host}-{}", std::process::id())
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            worker_id: process_name("worker"),
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
    /// not. Every run of a [`Worker`](crate::Worker) checks its options first.
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
    pub(crate) fn heartbeat_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(1))
    }
}

impl WorkerStats {
    /// Adds the outcomes one flush recorded (a flush has no errors of the worker's own to add).
    pub(crate) fn add_outcomes(&mut self, recorded: WorkerStats) {
        self.completed += recorded.completed;
        self.retried += recorded.retried;
        self.dead += recorded.dead;
        self.stale += recorded.stale;
    }

    /// Adds what one batch of [`Worker::drain`](crate::Worker::drain) did.
    pub(crate) fn add(&mut self, batch: WorkerStats) {
        self.add_outcomes(batch);
        self.errors += batch.errors;
        self.not_due += batch.not_due;
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
    /// Outcomes dropped because the job had been claimed again after this worker's lease
    /// expired (it was silent too long): the newer attempt's outcome stands.
    pub stale: u64,
    /// Errors of the worker's own (a lost connection, a busy database) it backed off from and
    /// carried on after.
    pub errors: u64,
    /// Set by [`Worker::drain`](crate::Worker::drain) only: the jobs of the worker's reactors
    /// still pending or running when it returned, none of them due — retries waiting out their
    /// backoff, jobs held by other workers under a live lease. 0 elsewhere.
    pub not_due: u64,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use es_core::Error;

    use super::WorkerOptions;

    #[test]
    fn the_heartbeat_beats_three_times_a_lease_and_at_most_each_millisecond() {
        let every = |lease| WorkerOptions::default().lease(lease).heartbeat_every();
        assert_eq!(every(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(every(Duration::from_millis(1)), Duration::from_millis(1));
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
