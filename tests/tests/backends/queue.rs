//! The job queue from outside a worker: [`Worker::drain`] runs every job due now — the jobs
//! reactors enqueue meanwhile and retries due at once included — and leaves the retries waiting
//! out their backoff, the jobs other workers hold and the jobs of reactors it does not route;
//! [`jobs`] lists the rows of `es_jobs` by state, reactor and page.
//!
//! A drain runs on a thread of its own with a deadline (`drain_within`), so that a drain that
//! never returns fails its check instead of hanging the run.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use es_core::{Error, EventStore};
use es_diesel::{
    AggregateTable, DieselStore, Dispatch, Job, JobFilter, JobState, Worker, WorkerOptions,
    WorkerStats, job_counts, jobs,
};
use es_tests::backend::{TestConnection, TestDb};
use es_tests::domain::{Project, ProjectStarted};
use es_tests::reactors::Pinged;

use crate::leases::{BothAppsDispatcher, LeaseDispatcher, options, ping, pinged};
use crate::{Check, by, execute};

/// How long a drain of the few jobs here may take before it counts as never returning.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// A lease that outlives every check: `locked_until` of a job "another worker" holds.
const FAR_FUTURE: &str = "'9999-06-01 00:00:00'";

/// Marks the `timed_ping` job of event `event_id` as running under another worker's live lease.
fn held_elsewhere<D: TestDb>(conn: &mut D::Conn, event_id: i64) {
    execute::<D>(
        conn,
        &format!(
            "UPDATE es_jobs SET state = 'running', attempts = 1, locked_by = 'elsewhere', \
             locked_until = {FAR_FUTURE} WHERE reactor = 'timed_ping' AND event_id = {event_id}"
        ),
    );
}

/// Runs `worker.drain` on `conn` on a thread of its own; fails if it has not returned within
/// [`DRAIN_DEADLINE`] (the thread is left behind: the run ends with the failure).
fn drain_within<C: TestConnection>(mut conn: C, worker: Worker<'static, C>) -> (C, WorkerStats) {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let stats = worker.drain(&mut conn);
        let _ = sender.send((conn, stats));
    });
    let (conn, stats) = receiver
        .recv_timeout(DRAIN_DEADLINE)
        .unwrap_or_else(|_| panic!("drain did not return within {DRAIN_DEADLINE:?}: it loops"));
    (conn, stats.expect("the drain ran"))
}

/// A worker of the test dispatcher taking one job a claim (so that a drain takes many batches),
/// retrying after `backoff`.
fn test_worker<C: TestConnection>(backoff: Duration, max_attempts: i32) -> Worker<'static, C> {
    Worker::new(
        C::dispatcher(),
        WorkerOptions::default()
            .worker_id(format!("drain-{:?}", thread::current().id()))
            .batch(1)
            .max_attempts(max_attempts)
            .backoff(backoff, backoff),
    )
}

/// A project of the test dispatcher and the pings `sent` to it; returns their event ids.
fn pings<D: TestDb>(db: &D, sent: &[Pinged]) -> Vec<i64>
where
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(D::Conn::dispatcher());
    store
        .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
        .unwrap();
    sent.iter()
        .map(|ping| store.append(&1, ping.clone(), &by("ann")).unwrap().events[0].id)
        .collect()
}

fn stats(completed: u64, retried: u64, dead: u64, not_due: u64) -> WorkerStats {
    let mut stats = WorkerStats::default();
    (stats.completed, stats.retried, stats.dead, stats.not_due) =
        (completed, retried, dead, not_due);
    stats
}

/// One job a batch: a drain runs every job, and the jobs those enqueue (each ping's `pong`
/// appends a `Ponged`, whose job forwards it to the bus), in one call; a second drain finds
/// nothing. 1 job for the project's start, 4 per ping.
fn a_drain_runs_every_due_job_and_the_jobs_they_enqueue<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    pings(db, &[pinged(0, 0), pinged(0, 0), pinged(0, 0)]);
    let worker = || test_worker::<D::Conn>(Duration::from_secs(3600), 3);
    let (conn, drained) = drain_within(db.connect(), worker());
    assert_eq!(drained, stats(13, 0, 0, 0));
    let (mut conn, again) = drain_within(conn, worker());
    assert_eq!(again, WorkerStats::default(), "nothing left to run");
    let counts = job_counts(&mut conn).unwrap();
    assert_eq!(
        (counts.pending, counts.running, counts.done, counts.dead),
        (0, 0, 13, 0)
    );
    let mut store = DieselStore::new(&mut conn);
    let history = EventStore::<Project>::history(&mut store, &1).unwrap();
    let ponged = history.iter().filter(|e| e.event_type == "project.ponged");
    assert_eq!(ponged.count(), 3, "each pong ran once");
}

/// A failed attempt whose retry is an hour away is left pending, counted in `not_due`, and not
/// run again; once due (its `run_at` moved back), the next drain runs it.
fn a_drain_leaves_retries_that_are_not_due<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    let [event] = pings(db, &[pinged(0, 1)])[..] else {
        unreachable!()
    };
    let hourly = || test_worker::<D::Conn>(Duration::from_secs(3600), 3);
    let (mut conn, drained) = drain_within(db.connect(), hourly());
    assert_eq!(
        drained,
        stats(3, 1, 0, 1),
        "flaky failed once, its retry waits"
    );
    assert_eq!(conn.reactions("flaky").len(), 1, "run once, not again");
    let waiting = jobs(
        &mut conn,
        &JobFilter::default().state(JobState::Pending),
        10,
    )
    .unwrap();
    let [job] = &waiting[..] else {
        panic!("one job waits: {waiting:?}")
    };
    assert_eq!(
        (job.reactor.as_str(), job.event_id, job.attempts),
        ("flaky", event, 1)
    );
    assert!(
        job.run_at - job.created_at >= chrono::TimeDelta::minutes(30),
        "its retry is half an hour to an hour away: {job:?}"
    );
    let error = job.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("failing on purpose"), "{error}");
    assert_eq!((&job.locked_by, job.locked_until), (&None, None));

    execute::<D>(&mut conn, "UPDATE es_jobs SET run_at = created_at");
    let (mut conn, drained) = drain_within(conn, hourly());
    assert_eq!(drained, stats(1, 0, 0, 0));
    assert_eq!(job_counts(&mut conn).unwrap().done, 4);
}

/// Retries with no backoff are due at once: one drain runs them until the job completes (or is
/// dead), never stopping after the first failure.
fn a_drain_runs_retries_that_are_due_at_once<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    pings(db, &[pinged(0, 2), pinged(0, 100)]);
    let at_once = test_worker::<D::Conn>(Duration::ZERO, 4);
    let (mut conn, drained) = drain_within(db.connect(), at_once);
    // 1 + 3 jobs per ping; the first flaky job fails twice, the second four times (dead).
    assert_eq!(drained, stats(6, 2 + 3, 1, 0));
    let attempts = conn.reactions("flaky");
    assert_eq!(attempts.len(), 3 + 4, "{attempts:?}");
    let counts = job_counts(&mut conn).unwrap();
    assert_eq!((counts.pending, counts.done, counts.dead), (0, 6, 1));
}

/// A job whose worker died during its last allowed attempt is made dead by the claim that finds
/// it, which claims nothing else (one job a batch): the drain goes on to the jobs after it.
fn a_drain_goes_on_past_a_job_made_dead_by_its_claim<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    pings(db, &[pinged(0, 0)]);
    let mut conn = db.connect();
    execute::<D>(
        &mut conn,
        "UPDATE es_jobs SET state = 'running', attempts = 1, locked_by = 'died', \
         locked_until = '2000-01-01 00:00:00', run_at = '2000-01-01 00:00:00' \
         WHERE id = (SELECT MIN(id) FROM (SELECT id FROM es_jobs) AS jobs)",
    );
    let (mut conn, drained) = drain_within(conn, test_worker(Duration::from_secs(3600), 1));
    assert_eq!(drained, stats(4, 0, 0, 0));
    let counts = job_counts(&mut conn).unwrap();
    assert_eq!((counts.pending, counts.done, counts.dead), (0, 4, 1));
}

/// A drain claims only the jobs of the reactors its dispatcher routes (another app's stay
/// pending, untouched, uncounted), and leaves a job another worker holds under a live lease,
/// counted in `not_due`.
fn a_drain_leaves_unrouted_jobs_and_live_claims<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    BothAppsDispatcher: Dispatch<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(
        db,
        &BothAppsDispatcher,
        &[pinged(0, 0), pinged(0, 0), pinged(0, 0)],
    );
    let mut conn = db.connect();
    held_elsewhere::<D>(&mut conn, ids[2]);
    let mine = Worker::new(&LeaseDispatcher, options("mine").batch(1));
    let drained = mine.drain(&mut conn).unwrap();
    assert_eq!(drained, stats(2, 0, 0, 1));
    let theirs = jobs(
        &mut conn,
        &JobFilter::default().reactor("other_app_ping"),
        10,
    )
    .unwrap();
    let untouched: Vec<(i64, JobState, i32)> = theirs
        .iter()
        .map(|job| (job.event_id, job.state, job.attempts))
        .collect();
    assert_eq!(
        untouched,
        ids.iter()
            .map(|&id| (id, JobState::Pending, 0))
            .collect::<Vec<_>>()
    );
    let held = jobs(
        &mut conn,
        &JobFilter::default().state(JobState::Running),
        10,
    )
    .unwrap();
    assert_eq!(
        held.iter()
            .map(|job| (job.event_id, job.locked_by.as_deref()))
            .collect::<Vec<_>>(),
        [(ids[2], Some("elsewhere"))]
    );
}

/// Every state, two reactors: the listing returns the rows of each state and reactor, every
/// column read back, in id order, page by page; its counts agree with `job_counts`. A state
/// written by hand that is not one is an error, not a guess.
fn jobs_are_listed_by_state_and_reactor<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    BothAppsDispatcher: Dispatch<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    // timed_ping: dead (ids[0]), done (ids[1]), running elsewhere (ids[2]); other_app_ping:
    // pending (all three).
    let ids = ping(
        db,
        &BothAppsDispatcher,
        &[pinged(0, 5), pinged(0, 0), pinged(0, 0)],
    );
    let mut conn = db.connect();
    held_elsewhere::<D>(&mut conn, ids[2]);
    let mine = Worker::new(&LeaseDispatcher, options("mine").max_attempts(1));
    assert_eq!(mine.drain(&mut conn).unwrap(), stats(1, 0, 1, 1));

    let list = |conn: &mut D::Conn, filter: JobFilter| jobs(conn, &filter, 100).unwrap();
    let all = list(&mut conn, JobFilter::default());
    assert_eq!(all.len(), 6);
    assert!(
        all.windows(2).all(|pair| pair[0].id < pair[1].id),
        "in id order: {all:?}"
    );
    let counts = job_counts(&mut conn).unwrap();
    for (state, count) in [
        (JobState::Pending, counts.pending),
        (JobState::Running, counts.running),
        (JobState::Done, counts.done),
        (JobState::Dead, counts.dead),
    ] {
        let listed = list(&mut conn, JobFilter::default().state(state));
        assert_eq!(listed.len() as i64, count, "{state}: {listed:?}");
        assert!(listed.iter().all(|job| job.state == state), "{listed:?}");
    }

    let one = |conn: &mut D::Conn, state| {
        let listed = list(
            conn,
            JobFilter::default().state(state).reactor("timed_ping"),
        );
        let [job] = &listed[..] else {
            panic!("one timed_ping job {state}: {listed:?}")
        };
        job.clone()
    };
    let dead: Job = one(&mut conn, JobState::Dead);
    assert_eq!((dead.event_id, dead.attempts), (ids[0], 1));
    assert!(
        dead.finished_at.is_some() && dead.locked_by.is_none(),
        "{dead:?}"
    );
    let error = dead.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("failing on purpose"), "{error}");
    let done = one(&mut conn, JobState::Done);
    assert_eq!((done.event_id, done.attempts), (ids[1], 1));
    assert_eq!((&done.last_error, &done.locked_by), (&None, &None));
    let finished = done.finished_at.expect("a done job's finish time");
    assert!(done.created_at <= finished, "{done:?}");
    let running = one(&mut conn, JobState::Running);
    assert_eq!(
        (
            running.event_id,
            running.locked_by.as_deref(),
            running.finished_at
        ),
        (ids[2], Some("elsewhere"), None)
    );
    let until = running.locked_until.expect("a running job's lease");
    assert_eq!(chrono::Datelike::year(&until), 9999);
    for job in list(&mut conn, JobFilter::default().state(JobState::Pending)) {
        assert_eq!(job.reactor, "other_app_ping");
        assert_eq!(job.attempts, 0, "{job:?}");
        assert_eq!(
            (
                job.locked_by,
                job.locked_until,
                job.last_error,
                job.finished_at
            ),
            (None, None, None, None)
        );
        assert_eq!(job.events_table, "project_events");
    }
    let mine = list(&mut conn, JobFilter::default().reactor("timed_ping"));
    assert_eq!(mine.iter().map(|job| job.event_id).collect::<Vec<_>>(), ids);
    let none = JobFilter::default()
        .reactor("other_app_ping")
        .state(JobState::Running);
    assert_eq!(list(&mut conn, none), []);

    let first = jobs(&mut conn, &JobFilter::default(), 4).unwrap();
    let rest = list(&mut conn, JobFilter::default().after_id(first[3].id));
    assert_eq!([first, rest].concat(), all, "two pages make the whole");
    assert_eq!(jobs(&mut conn, &JobFilter::default(), 0).unwrap(), []);

    execute::<D>(
        &mut conn,
        &format!(
            "UPDATE es_jobs SET state = 'paused' WHERE id = {}",
            all[0].id
        ),
    );
    let error = jobs(&mut conn, &JobFilter::default(), 10).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Storage {
                table: "es_jobs",
                ..
            }
        ),
        "{error:?}"
    );
    let chain = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains("\"paused\" is not a job state"), "{chain}");
}

pub(crate) fn checks<D: TestDb>() -> Vec<(&'static str, Check<D>)>
where
    Project: AggregateTable<D::Conn>,
    BothAppsDispatcher: Dispatch<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    vec![
        (
            "a_drain_runs_every_due_job_and_the_jobs_they_enqueue",
            a_drain_runs_every_due_job_and_the_jobs_they_enqueue::<D>,
        ),
        (
            "a_drain_leaves_retries_that_are_not_due",
            a_drain_leaves_retries_that_are_not_due::<D>,
        ),
        (
            "a_drain_runs_retries_that_are_due_at_once",
            a_drain_runs_retries_that_are_due_at_once::<D>,
        ),
        (
            "a_drain_goes_on_past_a_job_made_dead_by_its_claim",
            a_drain_goes_on_past_a_job_made_dead_by_its_claim::<D>,
        ),
        (
            "a_drain_leaves_unrouted_jobs_and_live_claims",
            a_drain_leaves_unrouted_jobs_and_live_claims::<D>,
        ),
        (
            "jobs_are_listed_by_state_and_reactor",
            jobs_are_listed_by_state_and_reactor::<D>,
        ),
    ]
}
