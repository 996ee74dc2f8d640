//! The job worker's promises under hostile timing: a job longer than its lease, a batch longer
//! than its lease, two workers sharing a name, a panicking reactor, a job whose worker died in its
//! last attempt, another app's jobs in the same table, a busy database and a lost connection.
//!
//! Every attempt of the reactors here logs when it began and ended (`attempt_log`, the process's
//! clock: all workers run in this process), so that the checks can prove that no two attempts of
//! one job ever overlapped, and count the attempts of each job.

use std::convert::Infallible;

use diesel::connection::SimpleConnection;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use es_core::{AppendOptions, Error, EventStore};
use es_diesel::{
    AggregateTable, Database, DieselStore, Dispatch, JobContext, ReactorError, Recorded, Worker,
    WorkerOptions, WorkerStats, dispatcher, job_counts, job_counts_by_reactor, prune_jobs,
};
use es_tests::backend::{TestConnection, TestDb};
use es_tests::domain::{Project, ProjectStarted};
use es_tests::reactors::Pinged;

use crate::{Check, StopOnDrop, by, execute};

/// The log of every attempt of the reactors of this module.
const ATTEMPT_LOG: &str = "CREATE TABLE attempt_log (event_id BIGINT NOT NULL, \
                           reactor VARCHAR(64) NOT NULL, attempt INTEGER NOT NULL, \
                           began BIGINT NOT NULL, ended BIGINT)";

fn clock_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Logs the start of an attempt of `reactor` on `ctx`'s job; returns when it began.
fn begin<C: Database>(ctx: &mut JobContext<'_, C>, reactor: &str) -> Result<i64, ReactorError> {
    let began = clock_micros();
    let (event_id, attempt) = (ctx.job().event_id, ctx.attempt());
    ctx.connection().batch_execute(&format!(
        "INSERT INTO attempt_log (event_id, reactor, attempt, began) \
         VALUES ({event_id}, '{reactor}', {attempt}, {began})"
    ))?;
    Ok(began)
}

/// Logs the end of the attempt that began at `began`.
fn end<C: Database>(ctx: &mut JobContext<'_, C>, began: i64) -> Result<(), ReactorError> {
    let (event_id, attempt) = (ctx.job().event_id, ctx.attempt());
    ctx.connection().batch_execute(&format!(
        "UPDATE attempt_log SET ended = {} WHERE event_id = {event_id} AND attempt = {attempt} \
         AND began = {began}",
        clock_micros()
    ))?;
    Ok(())
}

/// Sleeps `sleep_ms` between logging its start and its end, and fails while its attempt is
/// within the ping's `failures`.
fn timed_ping<C: Database>(
    ctx: &mut JobContext<'_, C>,
    pinged: Recorded<'_, Pinged>,
) -> Result<(), ReactorError> {
    let began = begin(ctx, "timed_ping")?;
    thread::sleep(Duration::from_millis(pinged.sleep_ms));
    end(ctx, began)?;
    if ctx.attempt() <= pinged.failures {
        return Err(format!("attempt {} failing on purpose", ctx.attempt()).into());
    }
    Ok(())
}

/// A reactor with a bug: it panics, every time.
fn panicking_ping<C: Database>(
    ctx: &mut JobContext<'_, C>,
    _: Recorded<'_, Pinged>,
) -> Result<(), ReactorError> {
    begin(ctx, "panicking_ping")?;
    panic!("a bug in the reactor");
}

/// The reactor of another app sharing the database.
fn other_app_ping<C: Database>(
    ctx: &mut JobContext<'_, C>,
    _: Recorded<'_, Pinged>,
) -> Result<(), ReactorError> {
    let began = begin(ctx, "other_app_ping")?;
    end(ctx, began)
}

dispatcher! {
    /// This app's routes.
    pub(crate) struct LeaseDispatcher;
    Pinged => async: [timed_ping];
}

dispatcher! {
    /// Another app's routes, on the same database.
    pub(crate) struct OtherAppDispatcher;
    Pinged => async: [other_app_ping];
}

dispatcher! {
    /// What both apps' writes enqueue.
    pub(crate) struct BothAppsDispatcher;
    Pinged => async: [timed_ping, other_app_ping];
}

dispatcher! {
    /// An app with a buggy reactor.
    pub(crate) struct PanicDispatcher;
    Pinged => async: [panicking_ping];
}

pub(crate) fn options(name: &str) -> WorkerOptions {
    WorkerOptions::default()
        .worker_id(name)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .idle_wait(Duration::from_millis(20))
}

/// A project whose pings are enqueued by `dispatcher`: returns their event ids.
pub(crate) fn ping<D: TestDb>(
    db: &D,
    dispatcher: &dyn Dispatch<D::Conn>,
    pings: &[Pinged],
) -> Vec<i64>
where
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    execute::<D>(&mut conn, ATTEMPT_LOG);
    let mut store = DieselStore::new(&mut conn).with_dispatcher(dispatcher);
    let started = store.append(&1, ProjectStarted { name: "p".into() }, &by("ann"));
    started.unwrap();
    pings
        .iter()
        .map(|ping| {
            let done = store.append(&1, ping.clone(), &AppendOptions::default());
            done.unwrap().events[0].id
        })
        .collect()
}

pub(crate) fn pinged(sleep_ms: u64, failures: i32) -> Pinged {
    Pinged { failures, sleep_ms }
}

/// Runs `workers` (each [`Worker::run`] on connections of `db`) until `done` holds or
/// `within` passes, then stops them; returns their stats. Fails if `done` never held.
fn run_workers<D: TestDb>(
    db: &D,
    workers: &[Worker<'_, D::Conn>],
    within: Duration,
    mut done: impl FnMut(&mut D::Conn) -> bool,
) -> Vec<WorkerStats> {
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let handles: Vec<_> = workers
            .iter()
            .map(|worker| {
                let stop = &stop;
                scope.spawn(move || worker.run(|| Ok::<_, Infallible>(db.connect()), stop))
            })
            .collect();
        let mut conn = db.connect();
        let deadline = Instant::now() + within;
        let finished = loop {
            if done(&mut conn) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            thread::sleep(Duration::from_millis(20));
        };
        stop.store(true, Ordering::Relaxed);
        let stats: Vec<WorkerStats> = handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .expect("a worker died")
                    .expect("the worker ran")
            })
            .collect();
        assert!(finished, "not done within {within:?}; workers: {stats:?}");
        stats
    })
}

fn no_job_left<C: TestConnection>(conn: &mut C) -> bool {
    let counts = job_counts(conn).unwrap();
    counts.pending == 0 && counts.running == 0
}

/// How many attempts of one job overlapped another of the same job (an attempt without an end
/// counts as never ending).
fn overlapping_attempts<C: TestConnection>(conn: &mut C) -> i64 {
    conn.count(
        "SELECT COUNT(*) AS value FROM attempt_log AS a JOIN attempt_log AS b \
         ON a.event_id = b.event_id AND a.reactor = b.reactor AND a.attempt < b.attempt \
         AND b.began < COALESCE(a.ended, 9223372036854775807)",
    )
}

fn attempts_of<C: TestConnection>(conn: &mut C, event_id: i64) -> i64 {
    conn.count(&format!(
        "SELECT COUNT(*) AS value FROM attempt_log WHERE event_id = {event_id}"
    ))
}

fn job_state<C: TestConnection>(conn: &mut C, event_id: i64, reactor: &str) -> (String, i32) {
    let jobs = conn.job_states(reactor, event_id);
    assert_eq!(jobs.len(), 1, "one {reactor} job for event {event_id}");
    (jobs[0].idempotency_key.clone(), jobs[0].attempt)
}

/// One job of 1 s, leases of 300 ms, two workers: the heartbeat keeps the lease alive, so the
/// job runs once (it ran 8 times, each attempt overlapping the next, before leases were renewed).
fn a_job_longer_than_its_lease_runs_once<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(db, &LeaseDispatcher, &[pinged(1_000, 0)]);
    let lease = |name| options(name).lease(Duration::from_millis(300));
    let workers = [
        Worker::new(&LeaseDispatcher, lease("one")),
        Worker::new(&LeaseDispatcher, lease("two")),
    ];
    let stats = run_workers(db, &workers, Duration::from_secs(20), no_job_left);
    let mut conn = db.connect();
    assert_eq!(attempts_of(&mut conn, ids[0]), 1, "{stats:?}");
    assert_eq!(overlapping_attempts(&mut conn), 0);
    assert_eq!(
        job_state(&mut conn, ids[0], "timed_ping"),
        ("done".into(), 1)
    );
}

/// A batch of 4 jobs of 400 ms under a 1 s lease, two workers: the jobs of the batch not started
/// yet are kept alive too, so each runs once and all are done (each ran 3–4 times before).
fn a_batch_longer_than_its_lease_runs_each_job_once<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(
        db,
        &LeaseDispatcher,
        &[
            pinged(400, 0),
            pinged(400, 0),
            pinged(400, 0),
            pinged(400, 0),
        ],
    );
    let batch = |name| options(name).lease(Duration::from_secs(1)).batch(4);
    let workers = [
        Worker::new(&LeaseDispatcher, batch("one")),
        Worker::new(&LeaseDispatcher, batch("two")),
    ];
    run_workers(db, &workers, Duration::from_secs(20), no_job_left);
    let mut conn = db.connect();
    for id in ids {
        assert_eq!(attempts_of(&mut conn, id), 1, "event {id}");
        assert_eq!(job_state(&mut conn, id, "timed_ping"), ("done".into(), 1));
    }
    assert_eq!(overlapping_attempts(&mut conn), 0);
}

/// `run_once` has no heartbeat but renews its batch's lease between jobs: a batch of 3 jobs of
/// 600 ms under a 1 s lease is never taken over by a worker running beside it (without the
/// renewals the third job's lease expires while the second runs, and the other worker takes it).
fn run_once_renews_its_batch_between_jobs<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(
        db,
        &LeaseDispatcher,
        &[pinged(600, 0), pinged(600, 0), pinged(600, 0)],
    );
    let lease = Duration::from_secs(1);
    let batch = Worker::new(&LeaseDispatcher, options("batch").lease(lease).batch(3));
    let other = Worker::new(&LeaseDispatcher, options("other").lease(lease));
    let stop = AtomicBool::new(false);
    let (ran, taken_over) = thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let ran = scope.spawn(|| batch.run_once(&mut db.connect()).unwrap());
        let mut conn = db.connect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while attempts_of(&mut conn, ids[0]) == 0 {
            assert!(Instant::now() < deadline, "the batch never began");
            thread::sleep(Duration::from_millis(5));
        }
        let taken_over = scope.spawn(|| {
            other
                .run(|| Ok::<_, Infallible>(db.connect()), &stop)
                .unwrap()
        });
        let ran = ran.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        (ran, taken_over.join().unwrap())
    });
    assert_eq!(
        (ran.completed, taken_over.completed),
        (3, 0),
        "{ran:?} {taken_over:?}"
    );
    let mut conn = db.connect();
    for id in ids {
        assert_eq!(attempts_of(&mut conn, id), 1, "event {id}");
    }
}

/// Two workers given one name, a job of 600 ms whose first attempt fails, leases of 200 ms: the
/// attempts never overlap, the failure is recorded on the attempt that failed only, and the job
/// ends done on its second attempt (before, one name fenced nothing: the first attempt's late
/// failure set the second one's claim back to pending).
fn workers_sharing_a_name_never_overlap<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(db, &LeaseDispatcher, &[pinged(600, 1)]);
    let twin = || options("twin").lease(Duration::from_millis(200));
    let workers = [
        Worker::new(&LeaseDispatcher, twin()),
        Worker::new(&LeaseDispatcher, twin()),
    ];
    assert_ne!(workers[0].owner(), workers[1].owner());
    run_workers(db, &workers, Duration::from_secs(20), no_job_left);
    let mut conn = db.connect();
    assert_eq!(overlapping_attempts(&mut conn), 0);
    assert_eq!(attempts_of(&mut conn, ids[0]), 2);
    assert_eq!(
        job_state(&mut conn, ids[0], "timed_ping"),
        ("done".into(), 2)
    );
}

/// A worker without a heartbeat (`run_once`) whose job outlives its lease: another worker takes
/// the job over, and the first worker's late outcome is dropped (counted as stale) instead of
/// overwriting the attempt that replaced it — even when both workers have one name.
fn a_late_outcome_never_overwrites_a_newer_attempt<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(db, &LeaseDispatcher, &[pinged(700, 1)]);
    let twin = || options("twin").lease(Duration::from_millis(100));
    let (first, second) = (
        Worker::new(&LeaseDispatcher, twin()),
        Worker::new(&LeaseDispatcher, twin()),
    );
    let stop = AtomicBool::new(false);
    let late = thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let late = scope.spawn(|| first.run_once(&mut db.connect()).unwrap());
        let mut conn = db.connect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while attempts_of(&mut conn, ids[0]) == 0 {
            assert!(Instant::now() < deadline, "the first attempt never began");
            thread::sleep(Duration::from_millis(5));
        }
        let counts = job_counts(&mut conn).unwrap();
        assert_eq!((counts.pending, counts.running), (0, 1), "{counts:?}");
        let takeover = scope.spawn(|| {
            second
                .run(|| Ok::<_, Infallible>(db.connect()), &stop)
                .unwrap()
        });
        let late = late.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !no_job_left(&mut conn) {
            assert!(Instant::now() < deadline, "{:?}", job_counts(&mut conn));
            thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        takeover.join().unwrap();
        late
    });
    let mut conn = db.connect();
    assert_eq!(late.stale, 1, "{late:?}");
    assert_eq!(
        late.retried, 0,
        "the late failure is not recorded: {late:?}"
    );
    assert_eq!(attempts_of(&mut conn, ids[0]), 2);
    assert_eq!(
        job_state(&mut conn, ids[0], "timed_ping"),
        ("done".into(), 2)
    );
}

/// A reactor that panics: each panic is a failed attempt with the panic's message, the job is
/// dead after `max_attempts`, never claimed again, and the worker goes on to the next job (a
/// panic used to kill every worker that claimed the job, leaving it running with attempts
/// beyond the maximum).
fn a_panicking_reactor_is_a_failed_attempt<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    PanicDispatcher: Dispatch<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let buggy = ping(db, &PanicDispatcher, &[pinged(0, 0)]);
    let worker = Worker::new(&PanicDispatcher, options("buggy").max_attempts(3));
    let stats = run_workers(
        db,
        std::slice::from_ref(&worker),
        Duration::from_secs(20),
        |conn| job_counts(conn).unwrap().dead == 1,
    );
    assert_eq!(stats[0].dead, 1, "{stats:?}");
    assert_eq!(stats[0].retried, 2, "{stats:?}");
    let mut conn = db.connect();
    assert_eq!(
        job_state(&mut conn, buggy[0], "panicking_ping"),
        ("dead".into(), 3)
    );
    let dead = es_diesel::dead_jobs(&mut conn, 10).unwrap();
    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("panicked: a bug in the reactor"), "{error}");
    assert_eq!(attempts_of(&mut conn, buggy[0]), 3);

    let mut store = DieselStore::new(&mut conn).with_dispatcher(&LeaseDispatcher);
    let next = store
        .append(&1, pinged(0, 0), &AppendOptions::default())
        .unwrap();
    let next = next.events[0].id;
    let sane = Worker::new(&LeaseDispatcher, options("sane"));
    let mut conn = db.connect();
    assert_eq!(sane.run_once(&mut conn).unwrap().completed, 1);
    assert_eq!(job_state(&mut conn, next, "timed_ping"), ("done".into(), 1));
    assert_eq!(
        job_state(&mut conn, buggy[0], "panicking_ping"),
        ("dead".into(), 3)
    );
}

/// A reactor that panics inside a transaction of its own leaves no transaction open: the next
/// job of the same worker commits.
fn a_panic_inside_a_transaction_is_rolled_back<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    InTransactionDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(db, &InTransactionDispatcher, &[pinged(0, 1), pinged(0, 0)]);
    let worker = Worker::new(&InTransactionDispatcher, options("tx").max_attempts(1));
    let mut conn = db.connect();
    let stats = worker.run_once(&mut conn).unwrap();
    assert_eq!((stats.dead, stats.completed), (1, 1), "{stats:?}");
    let logged = conn.count("SELECT COUNT(*) AS value FROM attempt_log");
    assert_eq!(logged, 1, "the panicking attempt's insert is rolled back");
    assert_eq!(
        job_state(&mut conn, ids[1], "panic_in_transaction").0,
        "done"
    );
}

/// Panics inside a transaction it opened when the ping asks for a failure; else logs and commits.
fn panic_in_transaction<C: Database>(
    ctx: &mut JobContext<'_, C>,
    pinged: Recorded<'_, Pinged>,
) -> Result<(), ReactorError> {
    let event_id = ctx.job().event_id;
    ctx.connection()
        .transaction::<_, diesel::result::Error, _>(|conn| {
            conn.batch_execute(&format!(
                "INSERT INTO attempt_log (event_id, reactor, attempt, began) \
                 VALUES ({event_id}, 'panic_in_transaction', 1, 0)"
            ))?;
            if pinged.failures > 0 {
                panic!("a bug while a transaction is open");
            }
            Ok(())
        })?;
    Ok(())
}

dispatcher! {
    /// A reactor that panics inside its own transaction.
    pub(crate) struct InTransactionDispatcher;
    Pinged => async: [panic_in_transaction];
}

/// Two apps share one database: each worker claims only the jobs of the reactors its dispatcher
/// routes; the other app's jobs wait, pending and untouched, for a worker of their own (before,
/// a worker ran them as "unrouted" errors until they were dead).
fn workers_claim_only_the_reactors_they_route<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    BothAppsDispatcher: Dispatch<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
    OtherAppDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(
        db,
        &BothAppsDispatcher,
        &[pinged(0, 0), pinged(0, 0), pinged(0, 0)],
    );
    let mut conn = db.connect();
    let one_at_a_time = Worker::new(&LeaseDispatcher, options("mine").batch(1));
    assert_eq!(one_at_a_time.run_once(&mut conn).unwrap().completed, 1);
    let counts: Vec<(String, [i64; 4])> = job_counts_by_reactor(&mut conn)
        .unwrap()
        .into_iter()
        .map(|(reactor, c)| (reactor, [c.pending, c.running, c.done, c.dead]))
        .collect();
    assert_eq!(
        counts,
        [
            ("other_app_ping".to_owned(), [3, 0, 0, 0]),
            ("timed_ping".to_owned(), [2, 0, 1, 0]),
        ],
        "one entry per reactor, its states added up"
    );
    let mine = Worker::new(&LeaseDispatcher, options("mine"));
    let drained = mine.drain(&mut conn).unwrap();
    assert_eq!(
        (drained.completed, drained.not_due),
        (2, 0),
        "the other app's jobs are neither run nor counted: {drained:?}"
    );
    let counts = job_counts_by_reactor(&mut conn).unwrap();
    let other = counts
        .iter()
        .find(|(reactor, _)| reactor == "other_app_ping");
    let other = other.expect("the other app's jobs are listed").1;
    assert_eq!(
        (other.pending, other.running, other.done, other.dead),
        (3, 0, 0, 0)
    );
    for &id in &ids {
        assert_eq!(
            job_state(&mut conn, id, "other_app_ping"),
            ("pending".into(), 0)
        );
    }

    let theirs = Worker::new(&OtherAppDispatcher, options("theirs"));
    assert_eq!(theirs.run_once(&mut conn).unwrap().completed, 3);
    for &id in &ids {
        assert_eq!(
            job_state(&mut conn, id, "other_app_ping"),
            ("done".into(), 1)
        );
    }
}

/// A worker whose last allowed attempt outlives its lease: another worker finds the lease
/// expired and the job dead, and the late failure is a stale outcome, not a second death.
fn a_late_last_attempt_is_stale<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(db, &LeaseDispatcher, &[pinged(1_500, 1)]);
    let last = || {
        options("last")
            .lease(Duration::from_millis(100))
            .max_attempts(1)
    };
    let (first, finder) = (
        Worker::new(&LeaseDispatcher, last()),
        Worker::new(&LeaseDispatcher, last()),
    );
    let mut conn = db.connect();
    let late = thread::scope(|scope| {
        let late = scope.spawn(|| first.run_once(&mut db.connect()).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while attempts_of(&mut conn, ids[0]) == 0 {
            assert!(Instant::now() < deadline, "the attempt never began");
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(300));
        assert_eq!(finder.run_once(&mut conn).unwrap(), WorkerStats::default());
        late.join().unwrap()
    });
    assert_eq!((late.dead, late.stale), (0, 1), "{late:?}");
    assert_eq!(
        job_state(&mut conn, ids[0], "timed_ping"),
        ("dead".into(), 1)
    );
}

/// A job whose worker died during its last allowed attempt is dead once the lease expires,
/// with an error that says so: never run a fourth time.
fn an_unfinished_last_attempt_is_dead<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(db, &LeaseDispatcher, &[pinged(0, 0)]);
    let mut conn = db.connect();
    execute::<D>(
        &mut conn,
        &format!(
            "UPDATE es_jobs SET state = 'running', attempts = 3, locked_by = 'ghost', \
             locked_until = {} WHERE event_id = {}",
            D::TIMESTAMP_LITERAL,
            ids[0]
        ),
    );
    let worker = Worker::new(&LeaseDispatcher, options("heir").max_attempts(3));
    assert_eq!(worker.run_once(&mut conn).unwrap(), WorkerStats::default());
    assert_eq!(
        job_state(&mut conn, ids[0], "timed_ping"),
        ("dead".into(), 3)
    );
    assert_eq!(attempts_of(&mut conn, ids[0]), 0);
    let dead = es_diesel::dead_jobs(&mut conn, 10).unwrap();
    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("attempt 3 of 3 did not finish"), "{error}");
}

/// The statement that makes the database refuse the worker at once while another session holds
/// `es_jobs`, and the statements with which that session holds and releases it.
fn lock_statements(backend: &str) -> (&'static str, &'static str, &'static str) {
    match backend {
        "sqlite" => ("PRAGMA busy_timeout = 20", "BEGIN IMMEDIATE", "COMMIT"),
        "postgres" => (
            "SET lock_timeout = '20ms'",
            "BEGIN; LOCK TABLE es_jobs IN ACCESS EXCLUSIVE MODE",
            "COMMIT",
        ),
        _ => (
            "SET SESSION lock_wait_timeout = 1",
            "LOCK TABLES es_jobs WRITE",
            "UNLOCK TABLES",
        ),
    }
}

/// The database refuses the worker for a while (SQLite busy past its timeout, a lock timeout on
/// PostgreSQL and MySQL): the worker logs, backs off and carries on, and runs the job once the
/// database is free again (any such error used to end `run_until`).
fn a_worker_carries_on_after_errors<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(db, &LeaseDispatcher, &[pinged(0, 0)]);
    let (impatient, hold, release) = lock_statements(D::NAME);
    let connect = || {
        let mut conn = db.connect();
        conn.batch_execute(impatient)?;
        Ok::<_, diesel::result::Error>(conn)
    };
    let mut holder = db.connect();
    execute::<D>(&mut holder, hold);
    let stop = AtomicBool::new(false);
    let worker = Worker::new(&LeaseDispatcher, options("patient"));
    let stats = thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let running = scope.spawn(|| worker.run(connect, &stop));
        // Longer than the worker's retries of a claim that waits for the lock: 5 waits of 20 ms,
        // or of 1 s on MySQL (its shortest lock wait).
        let hold = if D::NAME == "mysql" { 7_000 } else { 2_500 };
        thread::sleep(Duration::from_millis(hold));
        execute::<D>(&mut holder, release);
        let mut conn = db.connect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !no_job_left(&mut conn) {
            assert!(Instant::now() < deadline, "the job never ran");
            thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        running.join().unwrap()
    });
    let stats = stats.expect("the worker carries on after errors");
    assert!(stats.errors >= 1, "{stats:?}");
    assert_eq!(stats.completed, 1, "{stats:?}");
    let mut conn = db.connect();
    assert_eq!(
        job_state(&mut conn, ids[0], "timed_ping"),
        ("done".into(), 1)
    );
}

/// The server ends every session of the worker (`pg_terminate_backend`, MySQL's `KILL`): the
/// worker opens new connections and runs the next job.
fn a_worker_reconnects_after_losing_its_connection<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let (own_id, kill) = match D::NAME {
        "postgres" => (
            "SELECT CAST(pg_backend_pid() AS BIGINT) AS value",
            "SELECT pg_terminate_backend",
        ),
        _ => ("SELECT CAST(CONNECTION_ID() AS SIGNED) AS value", "KILL"),
    };
    ping(db, &LeaseDispatcher, &[]);
    let sessions = Mutex::new(Vec::new());
    let connect = || {
        let mut conn = db.connect();
        sessions.lock().unwrap().push(conn.count(own_id));
        Ok::<_, Infallible>(conn)
    };
    let stop = AtomicBool::new(false);
    let worker = Worker::new(&LeaseDispatcher, options("phoenix"));
    let stats = thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let running = scope.spawn(|| worker.run(connect, &stop));
        thread::sleep(Duration::from_millis(300));
        let mut admin = db.connect();
        for session in sessions.lock().unwrap().drain(..) {
            let statement = if D::NAME == "postgres" {
                format!("{kill}({session})")
            } else {
                format!("{kill} {session}")
            };
            execute::<D>(&mut admin, &statement);
        }
        thread::sleep(Duration::from_millis(300));
        let mut store = DieselStore::new(&mut admin).with_dispatcher(&LeaseDispatcher);
        store
            .append(&1, pinged(0, 0), &AppendOptions::default())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !no_job_left(store.connection()) {
            assert!(Instant::now() < deadline, "the job never ran");
            thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        running.join().unwrap()
    });
    let stats = stats.expect("the worker survives losing its connection");
    assert!(stats.errors >= 1, "{stats:?}");
    assert_eq!(stats.completed, 1, "{stats:?}");
    assert!(!sessions.lock().unwrap().is_empty(), "it connected again");
}

/// Marks the job of `event_id` finished long ago.
fn finished_long_ago<D: TestDb>(conn: &mut D::Conn, event_id: i64) {
    execute::<D>(
        conn,
        &format!(
            "UPDATE es_jobs SET finished_at = {} WHERE event_id = {event_id}",
            D::TIMESTAMP_LITERAL
        ),
    );
}

/// Pings project 1, then runs a worker keeping done jobs for `keep_done` until `done` holds.
fn ping_and_work<D: TestDb>(
    db: &D,
    conn: &mut D::Conn,
    name: &str,
    keep_done: Duration,
    done: impl FnMut(&mut D::Conn) -> bool,
) where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    DieselStore::new(conn)
        .with_dispatcher(&LeaseDispatcher)
        .append(&1, pinged(0, 0), &AppendOptions::default())
        .unwrap();
    let worker = Worker::new(&LeaseDispatcher, options(name).keep_done(Some(keep_done)));
    run_workers(
        db,
        std::slice::from_ref(&worker),
        Duration::from_secs(20),
        done,
    );
}

/// Done jobs are deleted once older than the retention, by `prune_jobs` and by a running worker
/// (`WorkerOptions::keep_done`); pending and dead jobs are kept.
fn done_jobs_are_pruned<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let ids = ping(
        db,
        &LeaseDispatcher,
        &[pinged(0, 0), pinged(0, 0), pinged(0, 5)],
    );
    let mut conn = db.connect();
    let worker = Worker::new(&LeaseDispatcher, options("pruner").max_attempts(1));
    let stats = worker.run_once(&mut conn).unwrap();
    assert_eq!(
        (stats.completed, stats.retried, stats.dead, stats.stale),
        (2, 0, 1, 0),
        "{stats:?}"
    );
    assert_eq!(job_counts(&mut conn).unwrap().done, 2);
    assert_eq!(prune_jobs(&mut conn, Duration::from_secs(3600)).unwrap(), 0);
    finished_long_ago::<D>(&mut conn, ids[0]);
    assert_eq!(
        prune_jobs(&mut conn, Duration::from_secs(86_400)).unwrap(),
        1
    );
    let counts = job_counts(&mut conn).unwrap();
    assert_eq!((counts.done, counts.dead), (1, 1), "{counts:?}");

    // A worker prunes first a while after it starts (10 minutes here), never at once.
    finished_long_ago::<D>(&mut conn, ids[1]);
    ping_and_work(
        db,
        &mut conn,
        "starter",
        Duration::from_secs(86_400),
        no_job_left,
    );
    let counts = job_counts(&mut conn).unwrap();
    assert_eq!((counts.done, counts.dead), (2, 1), "{counts:?}");

    ping_and_work(
        db,
        &mut conn,
        "keeper",
        Duration::from_millis(100),
        |conn| {
            let counts = job_counts(conn).unwrap();
            counts.pending == 0 && counts.done == 0
        },
    );
    let counts = job_counts(&mut conn).unwrap();
    assert_eq!(
        (counts.pending, counts.done, counts.dead),
        (0, 0, 1),
        "{counts:?}"
    );

    // More done jobs than one pruning statement deletes: pruning goes on until none is left.
    let at = D::TIMESTAMP_LITERAL;
    let old_done: Vec<String> = (1_000_001..=1_001_500)
        .map(|n| format!("('tasks_events', {n}, 'timed_ping', 'done', 1, {at}, {at}, {at})"))
        .collect();
    execute::<D>(
        &mut conn,
        &format!(
            "INSERT INTO es_jobs \
             (events_table, event_id, reactor, state, attempts, run_at, created_at, finished_at) \
             VALUES {}",
            old_done.join(", ")
        ),
    );
    assert_eq!(
        prune_jobs(&mut conn, Duration::from_secs(86_400)).unwrap(),
        1_500
    );
    assert_eq!(job_counts(&mut conn).unwrap().done, 0);
}

/// Options out of range are a clear error when a worker starts, never a panic deep in time
/// arithmetic.
fn options_out_of_range_are_errors<D: TestDb>(db: &D)
where
    LeaseDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    let cases = [
        ("WorkerOptions::lease", options("x").lease(Duration::MAX)),
        ("WorkerOptions::lease", options("x").lease(Duration::ZERO)),
        (
            "WorkerOptions::backoff max",
            options("x").backoff(Duration::from_secs(1), Duration::MAX),
        ),
        (
            "WorkerOptions::idle_wait",
            options("x").idle_wait(Duration::MAX),
        ),
        (
            "WorkerOptions::keep_done",
            options("x").keep_done(Some(Duration::MAX)),
        ),
    ];
    for (option, options) in cases {
        let worker = Worker::new(&LeaseDispatcher, options);
        let error = worker.run_once(&mut conn).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidOption { option: named, .. } if *named == option),
            "{error}"
        );
        let stop = AtomicBool::new(false);
        let error = worker
            .run(|| Ok::<_, Infallible>(db.connect()), &stop)
            .unwrap_err();
        assert!(matches!(error, Error::InvalidOption { .. }), "{error}");
    }
    let error = prune_jobs(&mut conn, Duration::MAX).unwrap_err();
    assert!(matches!(error, Error::InvalidOption { .. }), "{error}");
}

pub(crate) fn checks<D: TestDb>() -> Vec<(&'static str, Check<D>)>
where
    Project: AggregateTable<D::Conn>,
    LeaseDispatcher: Dispatch<D::Conn>,
    OtherAppDispatcher: Dispatch<D::Conn>,
    BothAppsDispatcher: Dispatch<D::Conn>,
    PanicDispatcher: Dispatch<D::Conn>,
    InTransactionDispatcher: Dispatch<D::Conn>,
{
    let mut checks: Vec<(&'static str, Check<D>)> = vec![
        (
            "a_job_longer_than_its_lease_runs_once",
            a_job_longer_than_its_lease_runs_once::<D>,
        ),
        (
            "a_batch_longer_than_its_lease_runs_each_job_once",
            a_batch_longer_than_its_lease_runs_each_job_once::<D>,
        ),
        (
            "a_late_last_attempt_is_stale",
            a_late_last_attempt_is_stale::<D>,
        ),
        (
            "run_once_renews_its_batch_between_jobs",
            run_once_renews_its_batch_between_jobs::<D>,
        ),
        (
            "workers_sharing_a_name_never_overlap",
            workers_sharing_a_name_never_overlap::<D>,
        ),
        (
            "a_late_outcome_never_overwrites_a_newer_attempt",
            a_late_outcome_never_overwrites_a_newer_attempt::<D>,
        ),
        (
            "a_panicking_reactor_is_a_failed_attempt",
            a_panicking_reactor_is_a_failed_attempt::<D>,
        ),
        (
            "a_panic_inside_a_transaction_is_rolled_back",
            a_panic_inside_a_transaction_is_rolled_back::<D>,
        ),
        (
            "workers_claim_only_the_reactors_they_route",
            workers_claim_only_the_reactors_they_route::<D>,
        ),
        (
            "an_unfinished_last_attempt_is_dead",
            an_unfinished_last_attempt_is_dead::<D>,
        ),
        (
            "a_worker_carries_on_after_errors",
            a_worker_carries_on_after_errors::<D>,
        ),
        ("done_jobs_are_pruned", done_jobs_are_pruned::<D>),
        (
            "options_out_of_range_are_errors",
            options_out_of_range_are_errors::<D>,
        ),
    ];
    if D::NAME != "sqlite" {
        checks.push((
            "a_worker_reconnects_after_losing_its_connection",
            a_worker_reconnects_after_losing_its_connection::<D>,
        ));
    }
    checks
}
