//! Reliability: a hot aggregate hammered by threads, with pessimistic locking and with optimistic
//! expected versions retried on conflict — no event lost, no version duplicated or skipped, the
//! stored aggregate equal to the replay of its events; and hostile strings through every public
//! API that takes one, stored as data and never run as SQL.

use std::collections::HashMap;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use es_core::{
    AppendOptions, AsOf, CommandError, Error, EventFilter, EventStore, Metadata, NewEvent,
    OnBadHistory, Transactional, retry_on_conflict,
};
use es_diesel::{
    AggregateTable, DieselStore, Worker, WorkerOptions, job_counts, rebuild_projection, verify,
};
use es_tests::backend::{TestConnection, TestDb};
use es_tests::commands::{UpdatePost, WritePost};
use es_tests::domain::{Completed, Created, Project, ProjectStarted, Task, TitleUpdated};
use es_tests::generative;
use es_tests::reactors::{
    BOARD, Board, BoardOpened, ChaosAttempt, Pinned, Post, PostWritten, REFUSED_BY_THE_FEED,
    ReactorConnection, Shaken, clock_micros,
};

use crate::{Check, KillOnDrop, StopOnDrop, execute};

const THREADS: usize = 16;
const COMMANDS: usize = 500;
const OPTIMISTIC_COMMANDS: usize = 40;

fn by(thread: usize) -> AppendOptions {
    AppendOptions::with_metadata(Metadata::by_actor(format!("thread-{thread}")))
}

fn retitle(id: i64, thread: usize, command: usize) -> UpdatePost {
    UpdatePost {
        id,
        title: Some(format!("{thread}-{command}")),
        ..UpdatePost::default()
    }
}

/// Every command of every thread is one event; versions are 1..=n with no gap or duplicate; the
/// stored post, its replay and its time travel to the last version agree; each thread's titles
/// appear in its own order.
fn check_history<D: TestDb>(db: &D, id: i64, commands: usize)
where
    Post: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    let history = EventStore::<Post>::history(&mut store, &id).unwrap();
    let versions: Vec<i64> = history.iter().map(|event| event.version).collect();
    let expected: Vec<i64> = (1..=(1 + THREADS * commands) as i64).collect();
    assert_eq!(versions, expected, "versions of post {id}");
    for thread in 0..THREADS {
        let actor = format!("thread-{thread}");
        let titles: Vec<String> = history
            .iter()
            .filter(|event| event.metadata.actor_id.as_deref() == Some(&actor))
            .map(|event| {
                event.data_json().unwrap()["title"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let wanted: Vec<String> = (0..commands).map(|n| format!("{thread}-{n}")).collect();
        assert_eq!(titles, wanted, "the commands of {actor}, in order");
    }
    let stored: Option<Post> = store.load(&id).unwrap();
    let last = *expected.last().unwrap();
    assert_eq!(store.state_as_of(&id, AsOf::Version(last)).unwrap(), stored);
    assert_eq!(store.replay(&id).unwrap(), stored);
}

fn write_post<D: TestDb>(db: &D, id: i64)
where
    Post: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let title = "hot".to_owned();
    DieselStore::new(&mut conn)
        .execute(
            &WritePost { id, title },
            &AppendOptions::with_metadata(Metadata::by_actor("author")),
        )
        .unwrap();
}

/// 16 threads × 500 commands on one aggregate, each under the row lock.
fn a_hot_aggregate_loses_nothing<D: TestDb>(db: &D)
where
    Post: AggregateTable<D::Conn>,
{
    write_post(db, 1);
    thread::scope(|scope| {
        for thread in 0..THREADS {
            scope.spawn(move || {
                let mut conn = db.connect();
                let mut store = DieselStore::new(&mut conn);
                for command in 0..COMMANDS {
                    let done = store.execute(&retitle(1, thread, command), &by(thread));
                    assert_eq!(done.unwrap().events.len(), 1, "no retry under the row lock");
                }
            });
        }
    });
    check_history(db, 1, COMMANDS);
}

/// 16 threads on one aggregate with optimistic expected versions: every stale attempt is a
/// conflict, retried on the version read again, until each command lands exactly once; the
/// threads' first writes all expect the version they read before any of them wrote, so all but
/// one of them conflict.
fn optimistic_writers_retry_until_each_command_lands_once<D: TestDb>(db: &D)
where
    Post: AggregateTable<D::Conn>,
{
    write_post(db, 2);
    let all_have_read = Barrier::new(THREADS);
    let conflicts: usize = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let all_have_read = &all_have_read;
                scope.spawn(move || {
                    let mut conn = db.connect();
                    let mut store = DieselStore::new(&mut conn);
                    let mut conflicts = 0;
                    let mut first_attempt = true;
                    for command in 0..OPTIMISTIC_COMMANDS {
                        let done = retry_on_conflict(10_000, || {
                            let seen = EventStore::<Post>::version(&mut store, &2)?;
                            if std::mem::take(&mut first_attempt) {
                                // Every thread's first write expects the version all of them read.
                                all_have_read.wait();
                            }
                            let options = by(thread).expect_version(seen);
                            let result = store.execute(&retitle(2, thread, command), &options);
                            conflicts +=
                                usize::from(matches!(result, Err(CommandError::Conflict(_))));
                            result
                        });
                        assert_eq!(done.unwrap().events.len(), 1);
                    }
                    conflicts
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .sum()
    });
    check_history(db, 2, OPTIMISTIC_COMMANDS);
    assert!(
        conflicts >= THREADS - 1,
        "the first writes of all but one thread expected a stale version: {conflicts} conflicts"
    );
    eprintln!(
        "{}: {} optimistic commands landed after {conflicts} conflicts",
        D::NAME,
        THREADS * OPTIMISTIC_COMMANDS
    );
}

/// Strings an attacker controls: SQL quoting, comments, placeholders of every backend, escapes,
/// non-ASCII text, and a long run of quotes.
fn hostile_strings() -> Vec<String> {
    let mut strings: Vec<String> = [
        "'; DROP TABLE tasks; --",
        "\" OR 1=1 --",
        "') ; DELETE FROM task_events WHERE ('1'='1",
        "$1 ? :name @p1 %s",
        "\\'\\\"`",
        "/* */ UNION SELECT * FROM es_jobs --",
        "日本語 \u{202e} emoji 🎉",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    strings.push("'".repeat(250)); // within every backend's `tasks.title` column
    strings
}

/// Every public API that takes a string stores or uses it as data, never as SQL: titles (event
/// data), metadata (actor, request id, IP, user agent, free-form keys and values), tag filters,
/// worker ids, projection names. What goes in comes back unchanged, and every table survives.
fn hostile_strings_are_data_never_sql<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(D::Conn::dispatcher());
    for (n, hostile) in hostile_strings().into_iter().enumerate() {
        let id = 100 + n as i64;
        let metadata = Metadata::by_actor(hostile.clone())
            .with_request_id(hostile.clone())
            .with_ip(hostile.clone())
            .with_user_agent(hostile.clone())
            .with_extra(hostile.clone(), hostile.clone())
            .with_extra("pasted", hostile.repeat(60_000 / hostile.len().max(1)));
        let options = AppendOptions::with_metadata(metadata.clone());
        let title = hostile.clone();
        store.append(&id, Created { title }, &options).unwrap();
        let task: Task = store.load(&id).unwrap().unwrap();
        assert_eq!(task.title, hostile);
        // The tasks' feed (a projection) and the event bus (a job) write the actor as data too.
        store.append(&id, Completed {}, &options).unwrap();
        let line = format!("task {id} completed by {hostile}");
        assert!(
            store
                .connection()
                .feed()
                .iter()
                .any(|feed| feed.line == line),
            "{line}"
        );
        let history = EventStore::<Task>::history(&mut store, &id).unwrap();
        let stored = &history[0].metadata;
        let mut given = metadata.clone();
        given.correlation_id = stored.correlation_id;
        assert!(given.correlation_id.is_some(), "every write is correlated");
        assert_eq!(**stored, given, "every field reads back as written");

        let filter = EventFilter {
            tags: vec![hostile.clone()],
            ..EventFilter::default()
        };
        assert!(
            EventStore::<Task>::events(&mut store, &filter)
                .unwrap()
                .is_empty()
        );

        let error = rebuild_projection(store.connection(), D::Conn::dispatcher(), &hostile, |_| {
            panic!("an unknown projection is never reset")
        })
        .unwrap_err();
        assert!(matches!(error, Error::UnknownProjection { .. }), "{error}");

        let worker = Worker::new(
            D::Conn::dispatcher(),
            WorkerOptions::default().worker_id(hostile.clone()),
        );
        worker.run_once(store.connection()).unwrap();
    }
    let all = EventStore::<Task>::events(&mut store, &EventFilter::default()).unwrap();
    assert_eq!(all.len(), 2 * hostile_strings().len());
    assert!(job_counts(store.connection()).unwrap().done > 0);
}

/// A failing projection handler fails the write it runs in: no event, no aggregate change, no
/// job, no line of any read model — and the next write goes through.
fn a_failing_projection_leaves_nothing<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(D::Conn::dispatcher());
    let ann = AppendOptions::with_metadata(Metadata::by_actor("ann"));
    let title = "Slides".to_owned();
    store.append(&7, Created { title }, &ann).unwrap();
    let jobs = job_counts(store.connection()).unwrap();
    let refused = AppendOptions::with_metadata(Metadata::by_actor(REFUSED_BY_THE_FEED));
    let error = store.append(&7, Completed {}, &refused).unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Reactor {
                reactor: "task_feed",
                ..
            }
        ),
        "{error}"
    );
    let task: Task = store.load(&7).unwrap().unwrap();
    assert_eq!(task.completed_at, None);
    assert_eq!(
        EventStore::<Task>::history(&mut store, &7).unwrap().len(),
        1
    );
    assert_eq!(job_counts(store.connection()).unwrap(), jobs);
    assert!(store.connection().feed().is_empty());

    store.append(&7, Completed {}, &ann).unwrap();
    assert_eq!(store.connection().feed().len(), 1);
}

/// The stored row of aggregate `id` is the fold of its events (time travel to its last version).
fn assert_row_is_its_fold<C: es_diesel::Database, A>(store: &mut DieselStore<'_, C>, id: i64)
where
    A: AggregateTable<C, Id = i64> + PartialEq + std::fmt::Debug,
{
    let history = EventStore::<A>::history(store, &id).unwrap();
    let stored: Option<A> = store.load(&id).unwrap();
    let last = history.last().map_or(0, |event| event.version);
    let folded: Option<A> = store.state_as_of(&id, AsOf::Version(last)).unwrap();
    assert_eq!(
        folded,
        stored,
        "{} {id} and the fold of its events",
        A::NAME
    );
}

/// A writer process killed (SIGKILL) at random moments, 5 times over, then restarted: afterwards
/// every task, post and the board equal the fold of their events, every event has its event-bus
/// job, no job lacks its event, and exactly one post is pinned — the one the board says.
fn writers_killed_mid_write_lose_nothing<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    const KILLS: usize = 5;
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(D::Conn::dispatcher());
    let ann = AppendOptions::with_metadata(Metadata::by_actor("ann"));
    store.append(&BOARD, BoardOpened {}, &ann).unwrap();
    for post in 1..=3 {
        let title = format!("post {post}");
        store.append(&post, PostWritten { title }, &ann).unwrap();
    }
    let events = |store: &mut DieselStore<'_, D::Conn>| {
        store
            .connection()
            .count("SELECT COUNT(*) AS value FROM task_events")
    };
    let mut written = Vec::new();
    for _ in 0..KILLS {
        let before = events(&mut store);
        let mut writer = KillOnDrop(
            std::process::Command::new(env!("CARGO_BIN_EXE_test_writer"))
                .args(db.worker_args())
                .spawn()
                .expect("start the writer process"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while events(&mut store) < before + 20 {
            assert!(Instant::now() < deadline, "the writer wrote nothing");
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(fastrand::u64(0..200)));
        writer.0.kill().expect("kill the writer");
        writer.0.wait().expect("reap the writer");
        written.push(events(&mut store) - before);
    }

    for id in 1..=20 {
        assert_row_is_its_fold::<_, Task>(&mut store, id);
    }
    for id in 1..=3 {
        assert_row_is_its_fold::<_, Post>(&mut store, id);
    }
    assert_row_is_its_fold::<_, Board>(&mut store, BOARD);
    let conn = store.connection();
    for table in ["task_events", "post_events", "board_events"] {
        let without_job = conn.count(&format!(
            "SELECT COUNT(*) AS value FROM {table} AS e WHERE NOT EXISTS (SELECT 1 FROM es_jobs \
             AS j WHERE j.event_id = e.id AND j.reactor = 'forward_to_event_bus')"
        ));
        assert_eq!(without_job, 0, "events of {table} without their job");
    }
    let orphans = conn.count(
        "SELECT COUNT(*) AS value FROM es_jobs AS j WHERE NOT EXISTS (SELECT 1 FROM task_events \
         AS e WHERE e.id = j.event_id) AND NOT EXISTS (SELECT 1 FROM post_events AS e \
         WHERE e.id = j.event_id) AND NOT EXISTS (SELECT 1 FROM board_events AS e \
         WHERE e.id = j.event_id)",
    );
    assert_eq!(orphans, 0, "jobs without their event");
    let pinned: Vec<i64> = (1..=3)
        .filter(|post| {
            let post: Post = EventStore::<Post>::load(&mut store, post).unwrap().unwrap();
            post.pinned
        })
        .collect();
    let board: Board = store.load(&BOARD).unwrap().unwrap();
    assert_eq!(pinned.len(), 1, "exactly one pinned post: {pinned:?}");
    assert_eq!(board.pinned_post, Some(pinned[0]));
    eprintln!(
        "{}: writer killed {KILLS} times after {written:?} task events; nothing lost",
        D::NAME
    );
}

/// Bad stored rows — an unknown tag, a missing attribute, a mistyped one, a version gap — next to
/// good aggregates, one of them with a 4 MiB metadata payload: a replay stops at the first bad aggregate
/// with an error naming table, event id and tag, writing nothing of its batch; asked to skip, it
/// rebuilds every good aggregate, leaves the bad rows as they were, and reports each of them.
fn replay_stops_on_bad_data_or_skips_and_reports_it<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let big = "x".repeat(4 << 20);
    let mut store = DieselStore::new(&mut conn);
    let none = AppendOptions::default();
    for id in [1, 3, 5] {
        let title = format!("good {id}");
        let options = if id == 3 {
            let pasted = Metadata::by_actor("ann").with_extra("pasted", big.clone());
            AppendOptions::with_metadata(pasted)
        } else {
            none.clone()
        };
        store.append(&id, Created { title }, &options).unwrap();
    }
    for id in [2, 4, 6, 8] {
        let title = format!("bad {id}");
        store.append(&id, Created { title }, &none).unwrap();
    }
    let corrupt = [
        (2, 2, "task.archived", "{}"),
        (4, 2, "task.title_updated", "{}"),
        (6, 2, "task.title_updated", r#"{"title": 7}"#),
        (8, 3, "task.completed", "{}"),
    ];
    for (n, (aggregate, version, tag, data)) in corrupt.iter().enumerate() {
        execute::<D>(
            store.connection(),
            &format!(
                "INSERT INTO task_events (id, aggregate_id, version, type, data, metadata, \
                 created_at) VALUES ({}, {aggregate}, {version}, '{tag}', '{data}', '{{}}', {})",
                90_000 + n,
                D::TIMESTAMP_LITERAL
            ),
        );
    }
    execute::<D>(store.connection(), "UPDATE tasks SET title = 'stale'");

    let error = EventStore::<Task>::replay_all(&mut store, &mut |_| {}).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown event type `task.archived` in `task_events` (event id 90000)"
    );
    let untouched: Task = store.load(&1).unwrap().unwrap();
    assert_eq!(
        untouched.title, "stale",
        "nothing of the failed batch is written"
    );

    let report =
        EventStore::<Task>::replay_all_with(&mut store, OnBadHistory::Skip, &mut |_| {}).unwrap();
    assert_eq!(
        (report.progress.aggregates, report.progress.skipped),
        (3, 4)
    );
    let skipped: Vec<(&str, String)> = report
        .skipped
        .iter()
        .map(|skip| (skip.aggregate_id.as_str(), skip.error.to_string()))
        .collect();
    assert_eq!(skipped[0].0, "2");
    assert!(
        skipped[1]
            .1
            .contains("event 90001 (`task.title_updated`) in `task_events`"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].1.contains("missing field `title`"),
        "{skipped:?}"
    );
    assert!(
        skipped[2].1.contains("invalid type: integer `7`"),
        "{skipped:?}"
    );
    assert_eq!(
        skipped[3].1,
        "version gap in `task_events` for aggregate 8: expected version 2, found 3 (event id 90003)"
    );
    for id in [1, 3, 5] {
        let task: Task = store.load(&id).unwrap().unwrap();
        assert_ne!(task.title, "stale", "task {id} was rebuilt");
    }
    let large = EventStore::<Task>::history(&mut store, &3).unwrap();
    let pasted = large[0].metadata.extra["pasted"].as_str().map(str::len);
    assert_eq!(pasted, Some(big.len()));
    for id in [2, 4, 6, 8] {
        let task: Task = store.load(&id).unwrap().unwrap();
        assert_eq!(
            task.title, "stale",
            "task {id} was skipped and left as it was"
        );
    }
}

/// 10,000 jobs whose reactor fails one attempt in five (and always for 10 doomed events), run by
/// two worker processes of which one is killed (SIGKILL) and replaced at least 5 times, until a kill
/// has left claimed jobs behind: every job ends done
/// or dead after its last attempt, none is lost, every doomed job is dead after 10 failed
/// attempts, every done job's side effect is logged under its idempotency key — at least once, so
/// that the reactor can deduplicate by it — no two attempts of one job ever overlapped, and every
/// job a killed worker held was claimed again (or, held at its last attempt, is dead).
fn jobs_survive_failing_reactors_and_killed_workers<D: TestDb>(db: &D)
where
    Project: AggregateTable<D::Conn>,
{
    const EVENTS: usize = 10_000;
    const DOOMED_EVERY: usize = 1_000;
    const KILLS: usize = 5;
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(D::Conn::dispatcher());
    let ann = AppendOptions::with_metadata(Metadata::by_actor("ann"));
    store
        .append(
            &1,
            ProjectStarted {
                name: "chaos".into(),
            },
            &ann,
        )
        .unwrap();
    let mut doomed_ids = Vec::new();
    for batch in 0..EVENTS / 100 {
        let doomed = |n: usize| (batch * 100 + n) % DOOMED_EVERY == 0;
        let shaken: Vec<NewEvent<Project>> = (0..100)
            .map(|n| Shaken { doomed: doomed(n) }.into())
            .collect();
        let committed = store.append(&1, shaken, &ann).unwrap();
        let ids = committed.events.iter().map(|event| event.id);
        doomed_ids.extend(
            ids.enumerate()
                .filter(|(n, _)| doomed(*n))
                .map(|(_, id)| id),
        );
    }
    // SQLite's writers queue for one lock, fairly or not: under two busy workers a lease renewal
    // has waited 2.4 s, so there the lease outlasts the busy timeout, the longest a write waits.
    let lease_ms = if D::NAME == "sqlite" {
        es_diesel::sqlite::BUSY_TIMEOUT_MS + 2_000
    } else {
        500
    };
    let start = |db: &D| {
        KillOnDrop(
            std::process::Command::new(env!("CARGO_BIN_EXE_test_worker"))
                .env("TEST_WORKER_BACKOFF_MS", "5")
                .arg(lease_ms.to_string())
                .args(db.worker_args())
                .spawn()
                .expect("start a worker process"),
        )
    };
    let mut workers = [start(db), start(db)];
    let mut killed_at = HashMap::new();
    // Kills land at random times, and at least KILLS of them; the kills go on until one has left
    // claims behind (a worker starting under SQLite's busy lock may not have claimed anything yet).
    let mut orphaned = Vec::new();
    let mut kill = 0;
    while kill < KILLS || orphaned.is_empty() {
        assert!(
            kill < 50,
            "50 kills and none caught a worker holding a claim"
        );
        thread::sleep(Duration::from_millis(fastrand::u64(200..600)));
        let worker = &mut workers[kill % 2];
        worker.0.kill().expect("kill a worker");
        worker.0.wait().expect("reap a worker");
        let pid = worker.0.id();
        killed_at.insert(i64::from(pid), clock_micros());
        let conn = store.connection();
        for event_id in conn.values(&format!(
            "SELECT event_id AS value FROM es_jobs WHERE reactor = 'chaos' \
             AND state = 'running' AND locked_by LIKE 'test-worker-{pid}/%'"
        )) {
            orphaned.push((event_id, chaos_attempts_of(conn, event_id)));
        }
        *worker = start(db);
        kill += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let counts = job_counts(store.connection()).unwrap();
        if counts.pending == 0 && counts.running == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "jobs left: {counts:?}");
        thread::sleep(Duration::from_millis(50));
    }
    drop(workers);

    let conn = store.connection();
    let chaos_jobs = conn.count("SELECT COUNT(*) AS value FROM es_jobs WHERE reactor = 'chaos'");
    assert_eq!(
        chaos_jobs, EVENTS as i64,
        "one chaos job per event, none lost"
    );
    let done = conn
        .count("SELECT COUNT(*) AS value FROM es_jobs WHERE reactor = 'chaos' AND state = 'done'");
    let dead = conn.count(
        "SELECT COUNT(*) AS value FROM es_jobs WHERE reactor = 'chaos' AND state = 'dead' \
         AND attempts = 10",
    );
    assert_eq!(
        done + dead,
        EVENTS as i64,
        "every job is done, or dead after 10 attempts"
    );
    let doomed_dead = conn.count(&format!(
        "SELECT COUNT(*) AS value FROM es_jobs WHERE reactor = 'chaos' AND state = 'dead' \
         AND attempts = 10 AND event_id IN ({})",
        doomed_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    assert_eq!(
        (doomed_ids.len(), doomed_dead),
        (EVENTS / DOOMED_EVERY, (EVENTS / DOOMED_EVERY) as i64),
        "every doomed job is dead after 10 attempts"
    );
    let unlogged = conn.count(
        "SELECT COUNT(*) AS value FROM es_jobs AS j WHERE j.reactor = 'chaos' AND \
         j.state = 'done' AND NOT EXISTS (SELECT 1 FROM reactions AS r WHERE r.reactor = 'chaos' \
         AND r.idempotency_key = CONCAT(j.event_id, ':chaos'))",
    );
    assert_eq!(unlogged, 0, "every done job's side effect is logged");
    let logged = conn.count("SELECT COUNT(*) AS value FROM reactions WHERE reactor = 'chaos'");
    let distinct = conn.count(
        "SELECT COUNT(DISTINCT idempotency_key) AS value FROM reactions WHERE reactor = 'chaos'",
    );
    assert_eq!(
        distinct, done,
        "deduplicated by idempotency key, one side effect per done job"
    );
    let retried = conn
        .count("SELECT COUNT(*) AS value FROM es_jobs WHERE reactor = 'chaos' AND attempts > 1");
    assert!(
        retried > EVENTS as i64 / 10,
        "about a fifth of the jobs were retried: {retried}"
    );

    let attempts = conn.chaos_attempts().unwrap();
    check_attempts_never_overlap(&attempts, &killed_at);
    for &(event_id, held_at) in &orphaned {
        let attempts = chaos_attempts_of(conn, event_id);
        assert!(
            attempts > held_at || held_at == 10,
            "job {event_id}, held by a killed worker at attempt {held_at}, was never claimed again"
        );
    }
    eprintln!(
        "{}: {EVENTS} jobs, {kill} workers killed holding {} claimed jobs, all re-claimed, \
         {retried} retried; {done} done, {dead} dead, {logged} side effects logged for {distinct} \
         keys, {} attempts logged",
        D::NAME,
        orphaned.len(),
        attempts.len()
    );
}

/// The attempts of the `chaos` job of `event_id`.
fn chaos_attempts_of(conn: &mut impl TestConnection, event_id: i64) -> i32 {
    match conn.job_states("chaos", event_id).as_slice() {
        [job] => job.attempt,
        jobs => panic!("one chaos job for event {event_id}, not {jobs:?}"),
    }
}

/// Asserts that no two logged attempts of one job overlapped — an attempt that never ended lasted
/// until its worker was killed — and that no attempt number ran twice.
fn check_attempts_never_overlap(attempts: &[ChaosAttempt], killed_at: &HashMap<i64, i64>) {
    for job in attempts.chunk_by(|a, b| a.event_id == b.event_id) {
        for pair in job.windows(2) {
            let (earlier, later) = (pair[0], pair[1]);
            assert_ne!(
                earlier.attempt, later.attempt,
                "an attempt ran twice: {earlier:?} {later:?}"
            );
            let ended = earlier.ended.unwrap_or_else(|| {
                *killed_at.get(&earlier.worker).unwrap_or_else(|| {
                    panic!("an attempt of a live worker never ended: {earlier:?}")
                })
            });
            assert!(
                later.began >= ended,
                "two attempts of one job overlapped: {earlier:?} {later:?}"
            );
        }
    }
}

/// A writer pins posts 1, 2, 3 in a cycle — each pin's trigger then appends to the post pinned
/// before, locking the two posts in its own order — while `verify` and `replay_all` of the posts
/// run over and over, a replay locking each batch's rows in id order: the audit takes no lock and
/// never fails or sees drift, every replay succeeds (a batch that lost a deadlock is run again),
/// and every pin lands (a write that lost one is `Contention`, which `retry_on_conflict` retries).
fn audits_and_replays_survive_trigger_cascades<D: TestDb>(db: &D)
where
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
{
    const PINS: usize = 150;
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(D::Conn::dispatcher());
    store.append(&BOARD, BoardOpened {}, &by(0)).unwrap();
    for post in 1..=3 {
        let title = format!("post {post}");
        store.append(&post, PostWritten { title }, &by(0)).unwrap();
    }
    let done = AtomicBool::new(false);
    let (verified, replayed) = thread::scope(|scope| {
        scope.spawn(|| {
            let _done = StopOnDrop(&done);
            let mut conn = db.connect();
            let mut store = DieselStore::new(&mut conn).with_dispatcher(D::Conn::dispatcher());
            for pin in 0..PINS {
                let post = (pin % 3 + 1) as i64;
                retry_on_conflict(20, || store.append(&post, Pinned {}, &by(1)))
                    .unwrap_or_else(|error| panic!("pin {pin} of post {post}: {error}"));
            }
        });
        let auditor = scope.spawn(|| {
            let mut conn = db.connect();
            let mut runs = 0;
            while !done.load(Ordering::Relaxed) {
                let report = verify::<D::Conn, Post>(
                    &mut conn,
                    &mut |drift| panic!("verify saw drift: {drift:?}"),
                    &mut |_| {},
                )
                .unwrap_or_else(|error| panic!("verify run {runs}: {error}"));
                assert_eq!(report.aggregates, 3);
                runs += 1;
            }
            runs
        });
        let replayer = scope.spawn(|| {
            let mut conn = db.connect();
            let mut store = DieselStore::new(&mut conn);
            let mut runs = 0;
            while !done.load(Ordering::Relaxed) {
                EventStore::<Post>::replay_all(&mut store, &mut |_| {})
                    .unwrap_or_else(|error| panic!("replay run {runs}: {error}"));
                runs += 1;
                // Not a hot loop: SQLite's single write lock, retaken at once, would starve the
                // writer past its busy timeout.
                thread::sleep(Duration::from_millis(2));
            }
            runs
        });
        (auditor.join().unwrap(), replayer.join().unwrap())
    });
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    let pinned: Vec<bool> = (1..=3)
        .map(|post| {
            EventStore::<Post>::load(&mut store, &post)
                .unwrap()
                .unwrap()
                .pinned
        })
        .collect();
    assert_eq!(pinned, [false, false, true], "the last pin was of post 3");
    let board: Board = store.load(&BOARD).unwrap().unwrap();
    assert_eq!(board.pinned_post, Some(3));
    eprintln!(
        "{}: {PINS} pins during {verified} verify and {replayed} replay runs",
        D::NAME
    );
}

/// A replay killed (SIGKILL, as Ctrl-C would stop it) in the middle of its work loses at most the
/// batch in progress: the tasks rebuilt are exactly the first whole batches, in id order, at least
/// those it reported done, and the others are left as they were (a batch whose `COMMIT` the
/// process sent before it died may still land: whole, or not at all).
fn a_killed_replay_loses_at_most_its_batch_in_progress<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
{
    const TASKS: i64 = 2_000;
    const BATCH: i64 = 50;
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    for id in 1..=TASKS {
        let title = format!("task {id}");
        store.append(&id, Created { title }, &by(0)).unwrap();
    }
    execute::<D>(store.connection(), "UPDATE tasks SET title = 'damaged'");
    let (mut replayer, mut progress) = start_replayer(db, BATCH);
    let mut reported = 0;
    while reported < 3 * BATCH {
        reported = progress.next().expect("a progress line").aggregates;
    }
    thread::sleep(Duration::from_micros(fastrand::u64(0..20_000)));
    replayer.0.kill().expect("kill the replay");
    replayer.0.wait().expect("reap the replay");

    let conn = store.connection();
    let rebuilt = conn.count("SELECT COUNT(*) AS value FROM tasks WHERE title <> 'damaged'");
    assert!(
        rebuilt < TASKS,
        "the replay was killed before it ended ({rebuilt} rebuilt)"
    );
    assert_eq!(rebuilt % BATCH, 0, "whole batches only: {rebuilt} rebuilt");
    assert!(
        rebuilt >= reported,
        "{rebuilt} rebuilt, {reported} reported"
    );
    // One statement, one snapshot: the batch in flight when the process died may still commit
    // (its COMMIT was sent), after the count above.
    let out_of_order = conn.count(
        "SELECT COUNT(*) AS value FROM tasks WHERE title <> 'damaged' AND id > \
         (SELECT COUNT(*) FROM tasks WHERE title <> 'damaged')",
    );
    assert_eq!(out_of_order, 0, "the first tasks, in id order");
    eprintln!(
        "{}: killed after {reported} reported, {rebuilt} of {TASKS} rebuilt",
        D::NAME
    );
}

/// Replay's memory is flat (README, "Benchmarks"): a replay of 10,000 tasks of 4 events, 100 per
/// batch, holds at most 1.5× the heap that a replay of 1,000 of them holds, and at most 4 MiB more
/// resident memory (the C client libraries' buffers, SQLite's page cache) — what a replay keeps
/// grows with its batch, never with the table. The heap is counted by the replay process's
/// allocator, the resident set read from `/proc/self/status`.
fn replays_memory_is_flat<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
{
    const BATCH: i64 = 100;
    const SMALL: i64 = 1_000;
    const LARGE: i64 = 10_000;
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    let mut seed = |ids: std::ops::RangeInclusive<i64>| {
        for chunk in ids.collect::<Vec<_>>().chunks(500) {
            store
                .transaction(|store| {
                    for &id in chunk {
                        let title = format!("task {id}");
                        let mut history: Vec<NewEvent<Task>> = vec![Created { title }.into()];
                        history.extend((1..4).map(|n| {
                            let title = format!("task {id}, take {n}");
                            TitleUpdated { title }.into()
                        }));
                        store.append(&id, history, &by(0))?;
                    }
                    Ok::<_, Error>(())
                })
                .unwrap();
        }
    };
    seed(1..=SMALL);
    let small = peak_memory_of_replay(db, BATCH, SMALL);
    seed(SMALL + 1..=LARGE);
    let large = peak_memory_of_replay(db, BATCH, LARGE);
    eprintln!(
        "{}: replay's peak heap {} bytes over {SMALL} tasks, {} over {LARGE}; peak resident \
         set {} KiB, {} KiB",
        D::NAME,
        small.peak_heap,
        large.peak_heap,
        small.peak_rss_kib,
        large.peak_rss_kib
    );
    assert!(
        large.peak_heap * 2 <= small.peak_heap * 3,
        "replay's heap grew with the table: {} bytes over {SMALL} tasks, {} over {LARGE}",
        small.peak_heap,
        large.peak_heap
    );
    assert!(
        large.peak_rss_kib <= small.peak_rss_kib + 4 * 1024,
        "replay's resident memory grew with the table: {} KiB over {SMALL} tasks, {} over {LARGE}",
        small.peak_rss_kib,
        large.peak_rss_kib
    );
}

/// The last progress of a whole replay of `db`'s tasks, `batch` per transaction, which must
/// rebuild `tasks` aggregates: the most heap and resident memory the replay held.
fn peak_memory_of_replay<D: TestDb>(db: &D, batch: i64, tasks: i64) -> ReplayerProgress {
    let (mut replayer, progress) = start_replayer(db, batch);
    let last = progress.last().expect("a progress line");
    let status = replayer.0.wait().expect("reap the replay");
    assert!(status.success(), "the replay failed: {status}");
    assert_eq!(last.aggregates, tasks, "the replay rebuilt every task");
    last
}

/// A line of `test_replayer`'s output.
struct ReplayerProgress {
    /// Aggregates rebuilt so far.
    aggregates: i64,
    /// The most heap the replay has held so far, in bytes.
    peak_heap: usize,
    /// The process's peak resident set size so far, in KiB.
    peak_rss_kib: u64,
}

/// A `test_replayer` process replaying the tasks of `db`, `batch` per transaction, and its
/// progress, a line per batch.
fn start_replayer<D: TestDb>(
    db: &D,
    batch: i64,
) -> (KillOnDrop, impl Iterator<Item = ReplayerProgress>) {
    let mut replayer = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_test_replayer"))
            .arg(batch.to_string())
            .args(db.worker_args())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start a replay process"),
    );
    let stdout = replayer.0.stdout.take().expect("its stdout");
    let progress = std::io::BufRead::lines(std::io::BufReader::new(stdout)).map(|line| {
        let line = line.expect("UTF-8");
        let numbers: Vec<&str> = line.split(' ').collect();
        let [aggregates, peak_heap, peak_rss_kib] = numbers[..] else {
            panic!("a progress line is three numbers: {line}");
        };
        ReplayerProgress {
            aggregates: aggregates.parse().expect("aggregates done"),
            peak_heap: peak_heap.parse().expect("peak heap"),
            peak_rss_kib: peak_rss_kib.parse().expect("peak resident set"),
        }
    });
    (replayer, progress)
}

/// The generative test of `es_tests::generative` on this backend: 24 random histories (a fixed
/// seed, so that a failure reproduces), each on aggregates of its own, with every kind of step
/// accepted at least once.
fn random_histories_replay_to_what_was_stored<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
{
    let base = std::sync::atomic::AtomicI64::new(10_000);
    let accepted = generative::random_histories(24, |steps| {
        let step = generative::AGGREGATES as i64;
        let base = base.fetch_add(step, std::sync::atomic::Ordering::Relaxed);
        let mut conn = db.connect();
        generative::run_and_check(&mut DieselStore::new(&mut conn), base, steps)
    });
    let accepted = accepted.unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("{}: steps accepted by kind {accepted:?}", D::NAME);
}

pub(crate) fn checks<D: TestDb>() -> Vec<(&'static str, Check<D>)>
where
    Task: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    vec![
        (
            "random_histories_replay_to_what_was_stored",
            random_histories_replay_to_what_was_stored::<D>,
        ),
        (
            "jobs_survive_failing_reactors_and_killed_workers",
            jobs_survive_failing_reactors_and_killed_workers::<D>,
        ),
        (
            "a_killed_replay_loses_at_most_its_batch_in_progress",
            a_killed_replay_loses_at_most_its_batch_in_progress::<D>,
        ),
        ("replays_memory_is_flat", replays_memory_is_flat::<D>),
        (
            "audits_and_replays_survive_trigger_cascades",
            audits_and_replays_survive_trigger_cascades::<D>,
        ),
        (
            "replay_stops_on_bad_data_or_skips_and_reports_it",
            replay_stops_on_bad_data_or_skips_and_reports_it::<D>,
        ),
        (
            "writers_killed_mid_write_lose_nothing",
            writers_killed_mid_write_lose_nothing::<D>,
        ),
        (
            "a_failing_projection_leaves_nothing",
            a_failing_projection_leaves_nothing::<D>,
        ),
        (
            "hostile_strings_are_data_never_sql",
            hostile_strings_are_data_never_sql::<D>,
        ),
        (
            "a_hot_aggregate_loses_nothing",
            a_hot_aggregate_loses_nothing::<D>,
        ),
        (
            "optimistic_writers_retry_until_each_command_lands_once",
            optimistic_writers_retry_until_each_command_lands_once::<D>,
        ),
    ]
}
