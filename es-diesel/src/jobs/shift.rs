//! What a worker keeps in memory between its statements, and its pace: the claims it holds
//! (shared with its heartbeat), the jobs in hand and the outcomes waiting to be recorded, when its
//! heartbeat beats, and how long it waits after errors of its own.
//!
//! Calls `jobs::queue` (the claims).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::jobs::queue::{ClaimedJob, JobOutcome};

/// How long finished jobs may wait before their outcomes are recorded together.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How long a worker waits after an error of its own (not a job's) before trying again, at
/// first; it doubles up to [`MOST_TROUBLE_WAIT`] while the errors go on.
pub(crate) const FIRST_TROUBLE_WAIT: Duration = Duration::from_millis(50);

/// The longest wait between a worker's attempts to get past an error of its own.
pub(crate) const MOST_TROUBLE_WAIT: Duration = Duration::from_secs(5);

/// The claims a worker holds, `(job id, attempt)`, shared with its heartbeat.
#[derive(Debug, Default)]
pub(crate) struct Held(Mutex<Vec<(i64, i32)>>);

impl Held {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(i64, i32)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self) -> Vec<(i64, i32)> {
        self.lock().clone()
    }

    pub(crate) fn add(&self, jobs: &[ClaimedJob]) {
        self.lock().extend(jobs.iter().map(claim_of));
    }

    pub(crate) fn remove(&self, claims: &[(i64, i32)]) {
        self.lock().retain(|claim| !claims.contains(claim));
    }
}

pub(crate) fn claim_of(job: &ClaimedJob) -> (i64, i32) {
    (job.id, job.attempts)
}

/// What a worker has in hand: jobs claimed but not started, and jobs run whose outcome is not
/// recorded yet. It survives the worker's own errors, so that a lost connection loses neither.
#[derive(Debug)]
pub(crate) struct Shift<'h> {
    pub(crate) held: &'h Held,
    pub(crate) queue: VecDeque<ClaimedJob>,
    pub(crate) finished: Vec<(ClaimedJob, JobOutcome)>,
    pub(crate) last_flush: Instant,
}

impl<'h> Shift<'h> {
    pub(crate) fn new(held: &'h Held) -> Self {
        Self {
            held,
            queue: VecDeque::new(),
            finished: Vec::new(),
            last_flush: Instant::now(),
        }
    }

    pub(crate) fn flush_due(&self) -> bool {
        !self.finished.is_empty()
            && (self.queue.is_empty() || self.last_flush.elapsed() >= FLUSH_EVERY)
    }
}

/// When a heartbeat beats: every `every`, the first time `every` after it starts.
#[derive(Debug)]
pub(crate) struct Beats {
    every: Duration,
    next: Instant,
}

impl Beats {
    pub(crate) fn starting(now: Instant, every: Duration) -> Self {
        Self {
            every,
            next: now + every,
        }
    }

    /// How long to wait until the next beat, or `None` if it is due; the beat after it is then
    /// `every` from `now`.
    pub(crate) fn wait(&mut self, now: Instant) -> Option<Duration> {
        if now < self.next {
            return Some(self.next - now);
        }
        self.next = now + self.every;
        None
    }
}

/// The growing wait of a worker that keeps hitting errors of its own.
#[derive(Debug, Default)]
pub(crate) struct Trouble {
    next: Option<Duration>,
}

impl Trouble {
    /// Waits, in slices so that `stop` is noticed, then doubles the next wait.
    pub(crate) fn wait(&mut self, stop: &AtomicBool) {
        let wait = self.next.unwrap_or(FIRST_TROUBLE_WAIT);
        self.next = Some((wait * 2).min(MOST_TROUBLE_WAIT));
        sleep_unless_stopped(wait, stop);
    }
}

/// Sleeps `duration`, in slices of 50 ms so that `stop` is noticed.
pub(crate) fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let deadline = Instant::now() + duration;
    while !stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_holds_its_claims_until_their_outcomes_are_recorded() {
        let held = super::Held::default();
        held.add(&[ClaimedJob::claimed(1, 1), ClaimedJob::claimed(2, 3)]);
        held.add(&[ClaimedJob::claimed(3, 1)]);
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
            .push((ClaimedJob::claimed(1, 1), JobOutcome::Done));
        assert!(shift.flush_due(), "nothing left to run");
        shift.queue.push_back(ClaimedJob::claimed(2, 1));
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
}
