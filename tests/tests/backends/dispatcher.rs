//! The dispatcher: trigger cascades and their atomicity, cycles, jobs enqueued on commit, retries
//! with backoff, dead jobs, a killed worker, concurrent workers, causation chains, projections.

use std::convert::Infallible;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use es_core::{Error, EventStore, RecordedEvent};
use es_diesel::{
    AggregateTable, DieselStore, Dispatch, EventRef, Pattern, Reactor, ReactorError, Recorded,
    TriggerContext, Worker, WorkerOptions, dead_jobs, dispatcher, job_counts, rebuild_projection,
    retry_dead_jobs,
};
use es_tests::backend::{Reaction, TestConnection, TestDb};
use es_tests::domain::{Completed, Created, Note, Project, ProjectStarted, Task};
use es_tests::reactors::{
    BOARD, Board, BoardOpened, Looped, Pinged, Pinned, Post, PostWritten, ReactorConnection,
    TitleChanged, every_event, forward_to_event_bus, project_feed, take_every_event_arrivals,
    take_feed_arrivals, task_feed,
};

use crate::{Check, KillOnDrop, by, execute, newcomer};

fn store<C: TestConnection>(conn: &mut C) -> DieselStore<'_, C> {
    DieselStore::new(conn).with_dispatcher(C::dispatcher())
}

fn quick_worker<C: TestConnection>(max_attempts: i32) -> Worker<'static, C> {
    Worker::new(
        C::dispatcher(),
        WorkerOptions::default()
            .worker_id(format!("in-test-{:?}", thread::current().id()))
            .max_attempts(max_attempts)
            .backoff(Duration::from_millis(5), Duration::from_millis(20))
            .idle_wait(Duration::from_millis(20)),
    )
}

/// Drains the queue, and again once the retries it left are due, until no job is pending or
/// running (bounded, so a bug fails instead of hanging).
fn drain<C: TestConnection>(conn: &mut C, worker: &Worker<'_, C>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        worker.drain(conn).unwrap();
        let counts = job_counts(conn).unwrap();
        if counts.pending == 0 && counts.running == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "jobs left: {counts:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

fn open_board_and_posts<C: TestConnection>(store: &mut DieselStore<'_, C>, posts: i64)
where
    Post: AggregateTable<C>,
    Board: AggregateTable<C>,
{
    store.append(&BOARD, BoardOpened {}, &by("ann")).unwrap();
    for post in 1..=posts {
        let title = format!("post {post}");
        store
            .append(&post, PostWritten { title }, &by("ann"))
            .unwrap();
    }
}

/// Pinning a post unpins the previous one in the same transaction; the events created by the
/// trigger carry the pin as causation and its correlation id.
fn triggers_create_events_atomically<D: TestDb>(db: &D)
where
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = store(&mut conn);
    open_board_and_posts(&mut store, 2);
    store.append(&1, Pinned {}, &by("ann")).unwrap();
    let pin = store.append(&2, Pinned {}, &by("bob")).unwrap();
    let first: Post = store.load(&1).unwrap().unwrap();
    let second: Post = store.load(&2).unwrap().unwrap();
    assert!(!first.pinned && second.pinned);
    let board: Board = store.load(&BOARD).unwrap().unwrap();
    assert_eq!(board.pinned_post, Some(2));

    let unpinned = EventStore::<Post>::history(&mut store, &1)
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(unpinned.event_type, "post.unpinned");
    let cause = &pin.events[0];
    assert_eq!(unpinned.metadata.causation_id, Some(cause.id));
    assert!(cause.metadata.correlation_id.is_some());
    assert_eq!(
        unpinned.metadata.correlation_id,
        cause.metadata.correlation_id
    );
    let moved = EventStore::<Board>::history(&mut store, &BOARD)
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(moved.metadata.causation_id, Some(cause.id));
    assert!(unpinned.id > cause.id && moved.id > unpinned.id);
}

/// A failing trigger rolls back the event that triggered it, and every job.
fn a_failing_trigger_rolls_back_everything<D: TestDb>(db: &D)
where
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = store(&mut conn);
    let error = store
        .append(
            &9,
            PostWritten {
                title: "boom".into(),
            },
            &by("ann"),
        )
        .unwrap_err();
    let Error::Reactor { reactor, tag, .. } = &error else {
        panic!("expected a reactor error, got {error}");
    };
    assert_eq!(
        (*reactor, tag.as_str()),
        ("refuse_boom", "post.post_written")
    );
    assert!(error.to_string().contains("boom refused"), "{error}");
    assert_eq!(EventStore::<Post>::load(&mut store, &9).unwrap(), None);
    assert!(
        EventStore::<Post>::history(&mut store, &9)
            .unwrap()
            .is_empty()
    );
    assert_eq!(job_counts(store.connection()).unwrap().pending, 0);
}

/// The ids of stored events.
fn ids<Id>(events: &[RecordedEvent<Id>]) -> Vec<i64> {
    events.iter().map(|event| event.id).collect()
}

/// The reactors a write ran or queued, in order.
fn reactors(reactions: &[es_core::Reaction]) -> Vec<&'static str> {
    reactions.iter().map(|reaction| reaction.reactor).collect()
}

/// A trigger that handles the failure of its `ctx.append` keeps nothing of that append, whatever
/// it does next: an append refused by the database (the tasks' `CHECK`) or by its own events'
/// trigger (after they were stored and their job queued) leaves no event, row, job or reaction,
/// while the write that ran the trigger commits with what the trigger did after. A trigger that
/// ignores the failure of a statement of its own never makes a write report events it did not
/// store: PostgreSQL aborted the transaction, so the write fails; SQLite and MySQL rolled back that
/// statement only, so the write commits, as reported.
fn a_failed_nested_append_leaves_nothing<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(D::Conn::forgiving_dispatcher());
    for (id, title) in [(1, ""), (2, "boom")] {
        let title = title.to_owned();
        let written = store
            .append(&id, PostWritten { title }, &by("ann"))
            .unwrap();
        let stored = EventStore::<Post>::history(&mut store, &id).unwrap();
        assert_eq!(ids(&stored), ids(&written.events), "post {id} as reported");
        assert_eq!(reactors(&written.reactions), ["open_task_for_post"]);
        assert!(
            EventStore::<Task>::history(&mut store, &id)
                .unwrap()
                .is_empty(),
            "no event of task {id}"
        );
        assert_eq!(EventStore::<Task>::load(&mut store, &id).unwrap(), None);
    }
    assert_eq!(job_counts(store.connection()).unwrap().pending, 0);
    assert_eq!(store.connection().reactions("open_task_for_post").len(), 1);

    let written = store
        .append(
            &3,
            PostWritten {
                title: "fine".into(),
            },
            &by("ann"),
        )
        .unwrap();
    assert_eq!(
        reactors(&written.reactions),
        ["open_task_for_post", "welcome_task", "refuse_boom_task"]
    );
    let task: Task = store.load(&3).unwrap().unwrap();
    assert_eq!(task.title, "fine");
    assert_eq!(job_counts(store.connection()).unwrap().pending, 1);

    let title = "renamed".to_owned();
    let renamed = store.append(&3, TitleChanged { title }, &by("ann"));
    let stored = EventStore::<Post>::history(&mut store, &3).unwrap();
    let post: Post = store.load(&3).unwrap().unwrap();
    if D::FAILED_STATEMENT_ABORTS_TRANSACTION {
        let error = renamed.unwrap_err();
        assert!(matches!(error, Error::Storage { .. }), "{error}");
        assert!(error.to_string().contains("aborted"), "{error}");
        assert_eq!(stored.len(), 1);
        assert_eq!(post.title, "fine");
    } else {
        let renamed = renamed.unwrap();
        assert_eq!(ids(&stored[1..]), ids(&renamed.events));
        assert_eq!(post.title, "renamed");
    }
}

/// A trigger that keeps creating events that trigger it is stopped with a clear error, and
/// nothing of the cascade persists.
fn a_trigger_cycle_is_a_clear_error<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = store(&mut conn);
    store
        .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
        .unwrap();
    let error = store.append(&1, Looped {}, &by("ann")).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::CascadeTooDeep { limit: 32, .. }),
        "{message}"
    );
    assert!(
        message.contains("project.looped -> project.looped"),
        "{message}"
    );
    assert_eq!(
        EventStore::<Project>::history(&mut store, &1)
            .unwrap()
            .len(),
        1
    );
}

/// Jobs are written with their events: none when the caller's transaction rolls back.
fn jobs_are_enqueued_only_on_commit<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let rolled_back =
        diesel::Connection::transaction::<(), diesel::result::Error, _>(&mut conn, |conn| {
            let mut store = store(&mut *conn);
            store
                .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
                .unwrap();
            store
                .append(
                    &1,
                    Pinged {
                        failures: 0,
                        sleep_ms: 0,
                    },
                    &by("ann"),
                )
                .unwrap();
            Err(diesel::result::Error::RollbackTransaction)
        });
    assert!(rolled_back.is_err());
    assert_eq!(job_counts(&mut conn).unwrap().pending, 0);

    let mut store = store(&mut conn);
    store
        .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
        .unwrap();
    store
        .append(
            &1,
            Pinged {
                failures: 0,
                sleep_ms: 0,
            },
            &by("ann"),
        )
        .unwrap();
    // The ping's `flaky` and `pong`, and `forward_to_event_bus` for both events.
    assert_eq!(job_counts(store.connection()).unwrap().pending, 4);
}

/// A reactor failing twice is retried with backoff and completes on its third attempt; one that
/// keeps failing ends dead with its error, and can be retried.
fn retries_back_off_and_dead_jobs_can_be_retried<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = store(&mut conn);
    store
        .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
        .unwrap();
    let ping = store
        .append(
            &1,
            Pinged {
                failures: 2,
                sleep_ms: 0,
            },
            &by("ann"),
        )
        .unwrap();
    store
        .append(&2, ProjectStarted { name: "q".into() }, &by("ann"))
        .unwrap();
    let doomed = store
        .append(
            &2,
            Pinged {
                failures: 100,
                sleep_ms: 0,
            },
            &by("ann"),
        )
        .unwrap();

    let slow_retries = Worker::new(
        D::Conn::dispatcher(),
        WorkerOptions::default()
            .worker_id("slow")
            .max_attempts(3)
            .backoff(Duration::from_secs(3600), Duration::from_secs(3600)),
    );
    slow_retries.run_once(store.connection()).unwrap();
    slow_retries.run_once(store.connection()).unwrap();
    let attempts = store.connection().reactions("flaky");
    assert_eq!(
        attempts.len(),
        2,
        "one attempt each, the retries are an hour away: {attempts:?}"
    );

    execute::<D>(store.connection(), "UPDATE es_jobs SET run_at = created_at");
    drain(store.connection(), &quick_worker(3));
    let ping_key = format!("{}:flaky", ping.events[0].id);
    let doomed_key = format!("{}:flaky", doomed.events[0].id);
    let attempts_of = |rows: &[Reaction], key: &str| -> Vec<i32> {
        rows.iter()
            .filter(|row| row.idempotency_key == key)
            .map(|row| row.attempt)
            .collect()
    };
    let rows = store.connection().reactions("flaky");
    assert_eq!(attempts_of(&rows, &ping_key), [1, 2, 3]);
    assert_eq!(attempts_of(&rows, &doomed_key), [1, 2, 3]);

    let dead = dead_jobs(store.connection(), 10).unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].event_id, dead[0].reactor.as_str()),
        (doomed.events[0].id, "flaky")
    );
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("attempt 3 of 100 failing on purpose"),
        "{:?}",
        dead[0].last_error
    );
    assert_eq!(
        retry_dead_jobs(store.connection(), Some(dead[0].id)).unwrap(),
        1
    );
    assert_eq!(job_counts(store.connection()).unwrap().dead, 0);
    drain(store.connection(), &quick_worker(3));
    let rows = store.connection().reactions("flaky");
    assert_eq!(attempts_of(&rows, &doomed_key), [1, 1, 2, 2, 3, 3]);
    assert_eq!(job_counts(store.connection()).unwrap().dead, 1);
}

/// Events created by an async reactor are caused by the job's event and share its correlation.
fn async_reactors_create_caused_events<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = store(&mut conn);
    store
        .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
        .unwrap();
    let ping = store
        .append(
            &1,
            Pinged {
                failures: 0,
                sleep_ms: 0,
            },
            &by("ann"),
        )
        .unwrap();
    drain(store.connection(), &quick_worker(3));
    let pong: RecordedEvent<i64> = EventStore::<Project>::history(&mut store, &1)
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(pong.event_type, "project.ponged");
    assert_eq!(pong.metadata.causation_id, Some(ping.events[0].id));
    assert_eq!(
        pong.metadata.correlation_id,
        ping.events[0].metadata.correlation_id
    );
    let counts = job_counts(store.connection()).unwrap();
    assert_eq!((counts.done, counts.dead), (5, 0), "{counts:?}");
}

/// Two workers drain the same queue: every job runs exactly once (no failure, no crash).
fn two_workers_never_run_the_same_job<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    const PINGS: i64 = 40;
    let mut conn = db.connect();
    let mut store = store(&mut conn);
    store
        .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
        .unwrap();
    for _ in 0..PINGS {
        store
            .append(
                &1,
                Pinged {
                    failures: 0,
                    sleep_ms: 1,
                },
                &by("ann"),
            )
            .unwrap();
    }
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        for worker in ["one", "two"] {
            let stop = &stop;
            scope.spawn(move || {
                let options = WorkerOptions::default()
                    .worker_id(worker)
                    .batch(4)
                    .idle_wait(Duration::from_millis(10));
                Worker::new(D::Conn::dispatcher(), options)
                    .run(|| Ok::<_, Infallible>(db.connect()), stop)
                    .unwrap();
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut conn = db.connect();
        loop {
            let counts = job_counts(&mut conn).unwrap();
            if counts.pending == 0 && counts.running == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{counts:?}");
            thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let flaky = store.connection().reactions("flaky");
    assert_eq!(flaky.len(), PINGS as usize);
    let mut keys: Vec<&str> = flaky
        .iter()
        .map(|row| row.idempotency_key.as_str())
        .collect();
    keys.dedup();
    assert_eq!(keys.len(), PINGS as usize, "a job ran twice");
    // The start's bus job; per ping: flaky, pong, and the bus jobs of the ping and of its pong.
    let counts = job_counts(store.connection()).unwrap();
    assert_eq!(counts.done, 1 + 4 * PINGS, "{counts:?}");
}

/// A job locked by another claim is skipped, never waited for (`FOR UPDATE SKIP LOCKED`): while
/// another session holds the lock of the first due job, a worker claims and runs the others and
/// returns, leaving that one alone. Without `SKIP LOCKED` the claim would wait for the lock (here,
/// until the check gives up after 10 s and releases it).
fn a_locked_job_is_skipped_not_waited_for<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = store(&mut conn);
    store
        .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
        .unwrap();
    let first = store
        .connection()
        .count("SELECT MIN(id) AS value FROM es_jobs");
    let mut holder = db.connect();
    let (begin, end) = if D::NAME == "postgres" {
        ("BEGIN", "COMMIT")
    } else {
        ("START TRANSACTION", "COMMIT")
    };
    execute::<D>(&mut holder, begin);
    execute::<D>(
        &mut holder,
        &format!("SELECT id FROM es_jobs WHERE id = {first} FOR UPDATE"),
    );
    for _ in 0..3 {
        store
            .append(
                &1,
                Pinged {
                    failures: 0,
                    sleep_ms: 0,
                },
                &by("ann"),
            )
            .unwrap();
    }
    let (stats, in_time) = thread::scope(|scope| {
        let worker = scope.spawn(|| quick_worker::<D::Conn>(1).run_once(&mut db.connect()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !worker.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let in_time = worker.is_finished();
        execute::<D>(&mut holder, end);
        (worker.join().unwrap(), in_time)
    });
    assert!(in_time, "the claim waited for the locked job");
    let stats = stats.unwrap();
    assert_eq!(
        stats.completed, 9,
        "three pings: flaky, pong, the bus: {stats:?}"
    );
    let untouched = store.connection().count(&format!(
        "SELECT COUNT(*) AS value FROM es_jobs WHERE id = {first} AND state = 'pending' \
         AND attempts = 0"
    ));
    assert_eq!(untouched, 1, "the locked job was left alone");
}

/// A worker process killed in the middle of a job: once its lease expires, another worker claims
/// the job and completes it.
fn a_killed_workers_job_is_completed_by_another<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = store(&mut conn);
    store
        .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
        .unwrap();
    let ping = store
        .append(
            &1,
            Pinged {
                failures: 0,
                sleep_ms: 3_000,
            },
            &by("ann"),
        )
        .unwrap();
    let lease_ms = 1_000;
    let mut worker = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_test_worker"))
            .arg(lease_ms.to_string())
            .args(db.worker_args())
            .spawn()
            .expect("start the worker process"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = store.connection().job_states("flaky", ping.events[0].id);
        if jobs.iter().any(|job| job.idempotency_key == "running") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never started the job"
        );
        thread::sleep(Duration::from_millis(20));
    }
    worker.0.kill().expect("kill the worker");
    worker.0.wait().expect("reap the worker");
    assert!(
        store.connection().reactions("flaky").is_empty(),
        "killed before logging"
    );

    thread::sleep(Duration::from_millis(lease_ms + 200));
    drain(store.connection(), &quick_worker(5));
    let flaky = store.connection().reactions("flaky");
    assert_eq!(flaky.len(), 1, "{flaky:?}");
    assert_eq!(flaky[0].attempt, 2, "the killed attempt counts");
}

/// Logs each project start in the reactions log: a trigger that a rebuild reading project events
/// would reach if it ran triggers.
fn log_project_start<C: ReactorConnection>(
    ctx: &mut TriggerContext<'_, C>,
    started: Recorded<'_, ProjectStarted>,
) -> Result<(), ReactorError> {
    let key = started.id().to_string();
    Ok(ctx
        .connection()
        .log_reaction(&key, "log_project_start", 1)?)
}

dispatcher! {
    /// The feed projections, a trigger on an event they read, and async jobs of every event.
    pub(crate) struct FeedDispatcher;
    ProjectStarted => trigger: [log_project_start];
    Completed => project: [task_feed];
    Project::* => project: [project_feed];
    * => async: [forward_to_event_bus], project: [every_event];
}

/// A projection rebuilt from the events equals the one maintained live, is fed every event in the
/// order it was written (interleaving the projects' events), and the rebuild fires no trigger
/// (one is routed on an event it reads) and enqueues no job.
fn projection_rebuild_equals_live_and_fires_nothing<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
    FeedDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(&FeedDispatcher);
    take_feed_arrivals(); // what earlier tests on this thread fed
    for round in 0..3 {
        for id in 1..=5 {
            if round == 0 {
                let name = format!("p{id}");
                store
                    .append(&id, ProjectStarted { name }, &by("ann"))
                    .unwrap();
                let title = format!("t{id}");
                store.append(&id, Created { title }, &by("ann")).unwrap();
            }
            let ping = Pinged {
                failures: 0,
                sleep_ms: 0,
            };
            store.append(&id, ping, &by("ann")).unwrap();
            if round == 1 && id % 2 == 0 {
                store.append(&id, Completed {}, &by("bob")).unwrap();
            }
        }
    }
    let live = store.connection().feed();
    assert_eq!(live.len(), 5 * 4 + 2);
    let live_arrivals = take_feed_arrivals();
    assert!(
        live_arrivals.is_sorted(),
        "written in order: {live_arrivals:?}"
    );
    let jobs = job_counts(store.connection()).unwrap();
    let triggered = store.connection().reactions("log_project_start");
    assert_eq!(triggered.len(), 5);
    for (projection, filter) in [("project_feed", "%of project%"), ("task_feed", "task %")] {
        let read = rebuild_projection(store.connection(), &FeedDispatcher, projection, |conn| {
            conn.batch_execute(&format!("DELETE FROM feed WHERE line LIKE '{filter}'"))?;
            Ok(())
        })
        .unwrap();
        assert!(read > 0);
        let fed = take_feed_arrivals();
        let written: Vec<i64> = live_arrivals
            .iter()
            .copied()
            .filter(|id| fed.contains(id))
            .collect();
        assert_eq!(fed, written, "{projection} is fed in the order of writing");
    }
    let live_everything = take_every_event_arrivals();
    // A `*` projection reads every events table of the program's aggregates on this backend: the
    // newcomer's too, which only its own check creates.
    let sticky_events = <newcomer::Sticky as es_core::Aggregate>::EVENTS_TABLE;
    let ddl = <D::Conn as es_diesel::Database>::events_table_ddl(sticky_events, "BIGINT");
    store.connection().batch_execute(&ddl.join(";")).unwrap();
    let read = rebuild_projection(store.connection(), &FeedDispatcher, "every_event", |_| {
        Ok(())
    });
    let everything = take_every_event_arrivals();
    assert_eq!(read.unwrap(), everything.len() as u64);
    assert!(
        everything.windows(2).all(|pair| pair[0] < pair[1]),
        "the events of all tables come once each, in the order of writing"
    );
    assert!(live_everything.iter().all(|id| everything.contains(id)));
    assert_eq!(store.connection().feed(), live);
    assert_eq!(job_counts(store.connection()).unwrap(), jobs);
    assert_eq!(
        store.connection().reactions("log_project_start"),
        triggered,
        "the rebuild ran no trigger"
    );
}

/// A job's events table is read from `es_jobs`, which anyone with the database can write: a name
/// that is not the events table of an event of the program — another table of the app, or SQL —
/// never reaches a statement. Such a job is unrouted (dead after its attempts, the table intact),
/// while a job of a real events table is run.
fn a_tampered_jobs_table_never_reaches_the_sql<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
    FeedDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(&FeedDispatcher);
    let mut events = Vec::new();
    for id in 1..=3 {
        let title = format!("t{id}");
        let committed = store.append(&id, Created { title }, &by("ann")).unwrap();
        events.push(committed.events[0].id);
    }
    take_feed_arrivals();
    let conn = store.connection();
    let tampered = ["tasks", "task_events; DROP TABLE tasks"];
    for (event_id, table) in events.iter().zip(tampered) {
        conn.batch_execute(&format!(
            "UPDATE es_jobs SET events_table = '{}' WHERE event_id = {event_id}",
            table.replace('\'', "''")
        ))
        .unwrap();
    }
    let worker = Worker::new(
        &FeedDispatcher,
        WorkerOptions::default()
            .worker_id(format!("tamper-{:?}", thread::current().id()))
            .max_attempts(1),
    );
    let stats = worker.run_once(conn).unwrap();
    assert_eq!((stats.completed, stats.dead), (1, 2), "{stats:?}");
    let dead = dead_jobs(conn, 10).unwrap();
    let mut tables: Vec<&str> = dead.iter().map(|job| job.events_table.as_str()).collect();
    tables.sort_unstable();
    assert_eq!(tables, ["task_events; DROP TABLE tasks", "tasks"]);
    for job in &dead {
        let error = job.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("is routed for event"), "{error}");
    }
    assert_eq!(
        Task::load_many(conn, &[1, 2, 3]).unwrap().len(),
        3,
        "the tasks table is intact"
    );
}

/// Replaying aggregates through a store with a dispatcher runs no reactor: no trigger creates
/// events, no job is enqueued, no projection line is written.
fn replay_fires_no_reactor<D: TestDb>(db: &D)
where
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = store(&mut conn);
    open_board_and_posts(&mut store, 3);
    store.append(&1, Pinned {}, &by("ann")).unwrap();
    store.append(&2, Pinned {}, &by("ann")).unwrap();
    store
        .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
        .unwrap();
    let jobs = job_counts(store.connection()).unwrap();
    let feed = store.connection().feed();
    let post_events = EventStore::<Post>::events(&mut store, &Default::default()).unwrap();

    execute::<D>(store.connection(), "DELETE FROM posts");
    EventStore::<Post>::replay_all(&mut store, &mut |_| {}).unwrap();
    EventStore::<Board>::replay_all(&mut store, &mut |_| {}).unwrap();
    EventStore::<Project>::replay_all(&mut store, &mut |_| {}).unwrap();

    assert_eq!(job_counts(store.connection()).unwrap(), jobs);
    assert_eq!(store.connection().feed(), feed);
    assert_eq!(
        EventStore::<Post>::events(&mut store, &Default::default()).unwrap(),
        post_events
    );
    let pinned: Vec<bool> = (1..=3)
        .map(|id| {
            EventStore::<Post>::load(&mut store, &id)
                .unwrap()
                .unwrap()
                .pinned
        })
        .collect();
    assert_eq!(pinned, [false, true, false]);
}

/// The dispatcher describes its routes.
fn routes_are_described<D: TestDb>(_: &D) {
    let routes = D::Conn::dispatcher().routes();
    assert_eq!(routes.len(), 8);
    assert_eq!(
        routes[0].pattern,
        Pattern::Event {
            tag: "post.pinned",
            events_table: "post_events"
        }
    );
    assert_eq!(
        routes[0].triggers,
        [Reactor {
            name: "unpin_other_post",
            creates: &[
                EventRef {
                    aggregate: "post",
                    tag: "post.unpinned"
                },
                EventRef {
                    aggregate: "board",
                    tag: "board.pin_moved"
                },
            ],
        }]
    );
    let asyncs: Vec<(&str, usize)> = routes[3]
        .asyncs
        .iter()
        .map(|reactor| (reactor.name, reactor.creates.len()))
        .collect();
    assert_eq!(asyncs, [("flaky", 0), ("pong", 1)]);
    assert_eq!(
        routes[6].pattern,
        Pattern::Aggregate {
            name: "project",
            events_table: "project_events"
        }
    );
    assert_eq!(routes[7].pattern, Pattern::All);
    // Every route, as `dispatcher!` declares it in `es_tests::reactors`.
    let declared = [
        "post.pinned => trigger: [unpin_other_post -> [post.unpinned, board.pin_moved]]",
        "post.post_written => trigger: [refuse_boom]",
        "project.looped => trigger: [loop_again -> [project.looped]]",
        "project.pinged => async: [flaky, pong -> [project.ponged]]",
        "project.shaken => async: [chaos]",
        "task.completed => project: [task_feed]",
        "project::* => project: [project_feed]",
        "* => async: [forward_to_event_bus]",
    ];
    let described: Vec<String> = routes.iter().map(describe).collect();
    assert_eq!(described, declared);
}

/// A route in the words of its `dispatcher!` declaration.
fn describe(route: &es_diesel::Route) -> String {
    let reactors = |reactors: &[Reactor]| {
        let named: Vec<String> = reactors
            .iter()
            .map(|reactor| match reactor.creates {
                [] => reactor.name.to_owned(),
                creates => {
                    let tags: Vec<&str> = creates.iter().map(|event| event.tag).collect();
                    format!("{} -> [{}]", reactor.name, tags.join(", "))
                }
            })
            .collect();
        named.join(", ")
    };
    let pattern = match route.pattern {
        Pattern::Event { tag, .. } => tag.to_owned(),
        Pattern::Aggregate { name, .. } => format!("{name}::*"),
        Pattern::All => "*".to_owned(),
    };
    let mut kinds = Vec::new();
    if !route.asyncs.is_empty() {
        kinds.push(format!("async: [{}]", reactors(route.asyncs)));
    }
    if !route.triggers.is_empty() {
        kinds.push(format!("trigger: [{}]", reactors(route.triggers)));
    }
    if !route.projections.is_empty() {
        kinds.push(format!("project: [{}]", route.projections.join(", ")));
    }
    format!("{pattern} => {}", kinds.join(", "))
}

/// On PostgreSQL, a new job wakes an idle worker by notification, long before its idle wait ends:
/// once the worker has been idle (its session waiting, after a claim that found nothing) the job
/// of a new event runs within seconds, with an idle wait of ten minutes.
#[cfg(feature = "postgres")]
pub(crate) fn notifications_wake_idle_workers(db: &es_tests::backend::PgDb) {
    let stop = AtomicBool::new(false);
    let sessions = std::sync::Mutex::new(Vec::new());
    let connect = || {
        let mut conn = db.connect();
        let pid = conn.count("SELECT CAST(pg_backend_pid() AS BIGINT) AS value");
        sessions.lock().unwrap().push(pid);
        Ok::<_, Infallible>(conn)
    };
    thread::scope(|scope| {
        let _stop = crate::StopOnDrop(&stop);
        let stop = &stop;
        scope.spawn(move || {
            let options = WorkerOptions::default()
                .worker_id("listener")
                .idle_wait(Duration::from_secs(600));
            Worker::new(diesel::PgConnection::dispatcher(), options)
                .run(connect, stop)
                .unwrap();
        });
        let mut conn = db.connect();
        let mut store = store(&mut conn);
        store
            .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let worker = sessions.lock().unwrap().first().copied();
            let idle = worker.is_some_and(|pid| {
                store.connection().count(&format!(
                    "SELECT COUNT(*) AS value FROM pg_stat_activity WHERE pid = {pid} \
                     AND state = 'idle' AND clock_timestamp() - state_change > INTERVAL '200 ms'"
                )) == 1
            });
            if idle && job_counts(store.connection()).unwrap().done == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the worker never went idle");
            thread::sleep(Duration::from_millis(20));
        }
        store
            .append(
                &1,
                Pinged {
                    failures: 0,
                    sleep_ms: 0,
                },
                &by("ann"),
            )
            .unwrap();
        let committed = Instant::now();
        let deadline = committed + Duration::from_secs(60);
        while store.connection().reactions("flaky").is_empty() {
            assert!(Instant::now() < deadline, "the idle worker was not woken");
            thread::sleep(Duration::from_millis(5));
        }
        let woken = committed.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert!(
            woken < Duration::from_secs(10),
            "the idle worker waited {woken:?} for a notified job (its idle wait is 600 s)"
        );
    });
}

/// The checks of this module.
pub(crate) fn checks<D: TestDb>() -> Vec<(&'static str, Check<D>)>
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
    FeedDispatcher: Dispatch<D::Conn>,
{
    let mut checks: Vec<(&'static str, Check<D>)> = vec![
        (
            "triggers_create_events_atomically",
            triggers_create_events_atomically::<D>,
        ),
        (
            "a_failing_trigger_rolls_back_everything",
            a_failing_trigger_rolls_back_everything::<D>,
        ),
        (
            "a_trigger_cycle_is_a_clear_error",
            a_trigger_cycle_is_a_clear_error::<D>,
        ),
        (
            "a_failed_nested_append_leaves_nothing",
            a_failed_nested_append_leaves_nothing::<D>,
        ),
        (
            "jobs_are_enqueued_only_on_commit",
            jobs_are_enqueued_only_on_commit::<D>,
        ),
        (
            "retries_back_off_and_dead_jobs_can_be_retried",
            retries_back_off_and_dead_jobs_can_be_retried::<D>,
        ),
        (
            "async_reactors_create_caused_events",
            async_reactors_create_caused_events::<D>,
        ),
        (
            "two_workers_never_run_the_same_job",
            two_workers_never_run_the_same_job::<D>,
        ),
        (
            "a_killed_workers_job_is_completed_by_another",
            a_killed_workers_job_is_completed_by_another::<D>,
        ),
        (
            "projection_rebuild_equals_live_and_fires_nothing",
            projection_rebuild_equals_live_and_fires_nothing::<D>,
        ),
        (
            "a_tampered_jobs_table_never_reaches_the_sql",
            a_tampered_jobs_table_never_reaches_the_sql::<D>,
        ),
        ("replay_fires_no_reactor", replay_fires_no_reactor::<D>),
        ("routes_are_described", routes_are_described::<D>),
    ];
    if D::NAME != "sqlite" {
        checks.push((
            "a_locked_job_is_skipped_not_waited_for",
            a_locked_job_is_skipped_not_waited_for::<D>,
        ));
    }
    checks
}
