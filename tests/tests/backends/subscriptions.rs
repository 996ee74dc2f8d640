//! Subscriptions: the feed never skips an event committed late, never shows one rolled back,
//! keeps each aggregate in version order, and a handler writing to the database writes once per
//! event — under 16 concurrent writers holding their transactions open, and with the subscriber
//! killed again and again; a failing handler holds the feed where it failed; leases move to
//! another subscriber; checkpoints start and reset where they are told.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use es_core::{Error, EventStore, Transactional};
use es_diesel::{
    AggregateTable, DieselStore, Dispatch, Position, Sink, Start, Subscriber, SubscriberOptions,
    held_events, reset_subscription, subscriptions,
};
use es_tests::backend::TestDb;
use es_tests::domain::{Created, Project, ProjectStarted, Task, TitleUpdated};
use es_tests::reactors::Pinged;
use es_tests::reactors::ReactorConnection;
use es_tests::subscriptions::{DOOMED, PANICKING, REFUSED, Seen, SubscriptionDispatcher};

use crate::{Check, KillOnDrop, StopOnDrop, by};

pub(crate) fn checks<D: TestDb>() -> Vec<(&'static str, Check<D>)>
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    vec![
        (
            "a_subscription_sees_every_committed_event_once_in_order_under_late_commits",
            a_subscription_sees_every_committed_event_once_in_order_under_late_commits::<D>,
        ),
        (
            "a_subscriber_killed_five_times_loses_and_duplicates_nothing",
            a_subscriber_killed_five_times_loses_and_duplicates_nothing::<D>,
        ),
        (
            "a_failing_handler_holds_the_feed_where_it_failed",
            a_failing_handler_holds_the_feed_where_it_failed::<D>,
        ),
        (
            "a_failing_aggregate_is_held_back_alone_and_retried_in_order",
            a_failing_aggregate_is_held_back_alone_and_retried_in_order::<D>,
        ),
        (
            "catch_up_then_switches_with_the_last_batch_or_not_at_all",
            catch_up_then_switches_with_the_last_batch_or_not_at_all::<D>,
        ),
        (
            "shards_split_the_feed_by_aggregate_and_move_when_their_holder_dies",
            shards_split_the_feed_by_aggregate_and_move_when_their_holder_dies::<D>,
        ),
        (
            "a_held_subscription_moves_once_its_lease_expires",
            a_held_subscription_moves_once_its_lease_expires::<D>,
        ),
        (
            "a_subscription_starts_and_resets_where_it_is_told",
            a_subscription_starts_and_resets_where_it_is_told::<D>,
        ),
        (
            "a_sink_gets_the_feed_in_order_and_a_failed_batch_again",
            a_sink_gets_the_feed_in_order_and_a_failed_batch_again::<D>,
        ),
    ]
}

/// Events the gap test appends (`ES_TESTS_GAP_EVENTS`, 50,000 by default).
fn gap_events() -> usize {
    es_tests::bench::env_number("ES_TESTS_GAP_EVENTS", 50_000)
}

/// The aggregates the writers share: tasks and projects `1..=AGGREGATES / 2` each.
const AGGREGATES: i64 = 500;

fn quick(lease: Duration) -> SubscriberOptions {
    SubscriberOptions::default()
        .lease(lease)
        .batch(100)
        .poll(Duration::from_millis(1))
}

/// Creates the writers' aggregates.
pub(crate) fn create_aggregates<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    for id in 1..=AGGREGATES / 2 {
        let title = format!("t{id}");
        store.append(&id, Created { title }, &by("ann")).unwrap();
        let name = format!("p{id}");
        store
            .append(&id, ProjectStarted { name }, &by("ann"))
            .unwrap();
    }
}

/// `writers` threads append at least `events` events between them (or until `stop` is set),
/// each transaction one to three
/// appends to random aggregates, held open a random while up to `hold` between them, one in
/// twenty rolled back on purpose (its tasks' titles say [`DOOMED`]); a transaction that collides
/// with another is rolled back too. Returns the transactions rolled back on purpose.
pub(crate) fn write_concurrently<D: TestDb>(
    db: &D,
    writers: usize,
    (events, stop): (usize, &AtomicBool),
    hold: Duration,
) -> u64
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    let committed = AtomicU64::new(0);
    let doomed = AtomicU64::new(0);
    let goal = u64::try_from(events).unwrap();
    thread::scope(|scope| {
        for _ in 0..writers {
            scope.spawn(|| {
                let mut conn = db.connect();
                let mut store = DieselStore::new(&mut conn);
                while committed.load(Ordering::Relaxed) < goal && !stop.load(Ordering::Relaxed) {
                    let rollback = fastrand::u32(..20) == 0;
                    let appends = fastrand::u64(1..=3);
                    let written = store.transaction(|store| {
                        for _ in 0..appends {
                            let id = fastrand::i64(1..=AGGREGATES / 2);
                            if fastrand::bool() {
                                let title = if rollback {
                                    format!("{DOOMED} {id}")
                                } else {
                                    format!("title {id}")
                                };
                                store.append(&id, TitleUpdated { title }, &by("w"))?;
                            } else {
                                let ping = Pinged {
                                    failures: 0,
                                    sleep_ms: 0,
                                };
                                store.append(&id, ping, &by("w"))?;
                            }
                            let hold = fastrand::u64(..=hold.as_micros() as u64);
                            thread::sleep(Duration::from_micros(hold));
                        }
                        if rollback {
                            return Err(Error::InvalidOption {
                                option: "test",
                                reason: "rolled back on purpose".to_owned(),
                            });
                        }
                        Ok(())
                    });
                    match written {
                        Ok(()) => {
                            committed.fetch_add(appends, Ordering::Relaxed);
                        }
                        Err(_) if rollback => {
                            doomed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) if es_core::Conflicted::is_conflict(&error) => {}
                        // SQLite's busy timeout ran out: its busy handler is not fair, and one
                        // of sixteen writers may wait longer than the 10 s it allows.
                        Err(error) if error.to_string().contains("database is locked") => {}
                        Err(error) => panic!("a writer failed: {error}"),
                    }
                }
            });
        }
    });
    doomed.into_inner()
}

/// Every committed event of the tasks and projects, by id: (tag, aggregate, version).
pub(crate) fn committed_events<D: TestDb>(db: &D) -> BTreeMap<i64, (String, i64, i64)>
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    let filter = es_core::EventFilter::default();
    let mut events = BTreeMap::new();
    for event in EventStore::<Task>::events(&mut store, &filter).unwrap() {
        events.insert(
            event.id,
            (event.event_type, event.aggregate_id, event.version),
        );
    }
    for event in EventStore::<Project>::events(&mut store, &filter).unwrap() {
        events.insert(
            event.id,
            (event.event_type, event.aggregate_id, event.version),
        );
    }
    events
}

/// What `seen` holds is every committed event exactly once, none rolled back, and each
/// aggregate's events in version order.
pub(crate) fn assert_seen_exactly_once_in_order(
    seen: &[Seen],
    committed: &BTreeMap<i64, (String, i64, i64)>,
) {
    assert!(
        seen.iter().all(|row| !row.doomed),
        "an event of a rolled-back transaction was handled"
    );
    let mut times: BTreeMap<i64, usize> = BTreeMap::new();
    for row in seen {
        *times.entry(row.event_id).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, times)| **times > 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    let skipped: Vec<_> = committed
        .keys()
        .filter(|id| !times.contains_key(id))
        .collect();
    assert!(
        skipped.is_empty(),
        "{} of {} committed events never handled (the first: {:?})",
        skipped.len(),
        committed.len(),
        &skipped[..skipped.len().min(5)]
    );
    assert_eq!(seen.len(), committed.len());
    let mut last_version: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for row in seen {
        let aggregate = row.tag.split('.').next().unwrap_or_default().to_owned();
        let last = last_version
            .entry((aggregate, row.aggregate_id))
            .or_default();
        assert_eq!(
            row.version,
            *last + 1,
            "event {} ({} {} v{}) came after v{last}",
            row.event_id,
            row.tag,
            row.aggregate_id,
            row.version
        );
        *last = row.version;
    }
}

/// Waits until `seen` holds as many rows as there are committed events (a subscriber is still
/// running), failing after a minute.
fn wait_for_seen<D: TestDb>(db: &D, expected: usize) {
    let mut conn = db.connect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = conn.seen().unwrap().len();
        if seen >= expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription is stuck at {seen} of {expected} events"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sixteen writers hold their transactions open so that commits interleave out of position
/// order while a subscriber tails the feed: it hands every committed event to its handler
/// exactly once (its rows are written in the subscriber's transactions), none of a rolled-back
/// transaction, each aggregate in version order. On PostgreSQL a reader of `id > checkpoint`
/// fails it: it moves past ids whose transactions commit later.
fn a_subscription_sees_every_committed_event_once_in_order_under_late_commits<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    create_aggregates(db);
    let stop = AtomicBool::new(false);
    let doomed = thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let subscriber = scope.spawn(|| {
            let subscriber = Subscriber::new(
                &SubscriptionDispatcher,
                "seen",
                quick(Duration::from_secs(30)),
            )
            .unwrap();
            subscriber
                .run(|| Ok::<_, std::convert::Infallible>(db.connect()), &stop)
                .unwrap()
        });
        // SQLite has one writer at a time, whose commits cannot interleave: holding its
        // transactions open would only starve the others.
        // MySQL's writers queue for `es_positions` until they commit: a shorter hold keeps the
        // test's time in bounds.
        let hold = match D::NAME {
            "sqlite" => Duration::ZERO,
            "mysql" => Duration::from_micros(500),
            _ => Duration::from_millis(2),
        };
        let doomed = write_concurrently(db, 16, (gap_events(), &AtomicBool::new(false)), hold);
        let committed = committed_events(db);
        wait_for_seen(db, committed.len());
        stop.store(true, Ordering::Relaxed);
        let stats = subscriber.join().unwrap();
        assert_eq!(stats.handled, committed.len() as u64, "{stats:?}");
        doomed
    });
    assert!(doomed > 0, "some transactions were rolled back on purpose");
    let committed = committed_events(db);
    assert!(committed.len() >= gap_events());
    assert_seen_exactly_once_in_order(&db.connect().seen().unwrap(), &committed);
}

/// A subscriber process SIGKILLed five times while four writers append, each after it took the
/// subscription over and handled events of its own: each time the next process (started at
/// once, waiting for the dead one's lease) takes over, and in the end `seen` holds every event
/// exactly once, in order — the rows of a batch commit with its checkpoint, or neither does.
fn a_subscriber_killed_five_times_loses_and_duplicates_nothing<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    create_aggregates(db);
    let lease_ms: u64 = 300;
    let spawn = || {
        KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_test_subscriber"))
                .arg(lease_ms.to_string())
                .args(db.worker_args())
                .spawn()
                .expect("start a subscriber process"),
        )
    };
    let stop = AtomicBool::new(false);
    let mut owners = Vec::new();
    thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let writers = scope
            .spawn(|| write_concurrently(db, 4, (usize::MAX, &stop), Duration::from_millis(1)));
        let mut conn = db.connect();
        let mut live = vec![spawn(), spawn()];
        for _ in 0..5 {
            // Wait until a live process holds the subscription and handled events of its own,
            // then kill it mid-flight and start another.
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut first_seen = None;
            let holder = loop {
                let seen = conn.seen().unwrap().len();
                let status = subscriptions(&mut conn, &SubscriptionDispatcher).unwrap();
                let owner = status[0].owner.clone().unwrap_or_default();
                let holder = live.iter().position(|process| {
                    owner.starts_with(&format!("test-subscriber-{}/", process.0.id()))
                });
                if let Some(holder) = holder {
                    let (first, _) = *first_seen.get_or_insert((seen, holder));
                    if seen >= first + 50 {
                        owners.push(owner);
                        break holder;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "no live process took over: {status:?}"
                );
                thread::sleep(Duration::from_millis(5));
            };
            let mut killed = live.swap_remove(holder);
            killed.0.kill().expect("SIGKILL the subscriber");
            killed.0.wait().expect("reap it");
            live.push(spawn());
        }
        stop.store(true, Ordering::Relaxed);
        writers.join().unwrap();
        let committed = committed_events(db);
        wait_for_seen(db, committed.len());
        drop(live);
    });
    assert_eq!(
        owners.len(),
        5,
        "five processes held it in turn: {owners:?}"
    );
    let committed = committed_events(db);
    assert_seen_exactly_once_in_order(&db.connect().seen().unwrap(), &committed);
}

/// A handler failing on an event holds the feed there: the events before it in its batch are
/// committed (once), its own row is rolled back, its error is recorded in the checkpoint, and
/// nothing after it is handled, on every try. A transient failure (its table renamed away) ends
/// once fixed; a permanent one (an error, a panic) until the operator moves the checkpoint past
/// it. Then the rest is handled in order.
fn a_failing_handler_holds_the_feed_where_it_failed<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    let mut append = |id: i64, title: &str| {
        let title = title.to_owned();
        store
            .append(&id, Created { title }, &by("ann"))
            .unwrap()
            .events[0]
            .id
    };
    append(1, "a");
    append(2, "b");
    let subscriber = Subscriber::new(
        &SubscriptionDispatcher,
        "seen",
        quick(Duration::from_secs(30)),
    )
    .unwrap();
    assert_eq!(subscriber.catch_up(&mut db.connect()).unwrap().handled, 2);
    let mut conn = db.connect();
    conn.batch_execute("ALTER TABLE seen RENAME TO seen_away")
        .unwrap();
    let third = {
        let mut store = DieselStore::new(&mut conn);
        store
            .append(&3, Created { title: "c".into() }, &by("ann"))
            .unwrap()
            .events[0]
            .id
    };
    for _ in 0..2 {
        let error = subscriber.catch_up(&mut db.connect()).unwrap_err();
        assert!(
            matches!(&error, Error::Reactor { event_id, .. } if *event_id == third),
            "{error}"
        );
    }
    let status = subscriptions(&mut conn, &SubscriptionDispatcher).unwrap();
    assert_eq!(status[0].behind, 1, "{status:?}");
    assert!(
        status[0]
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains(&format!("event {third}"))),
        "{status:?}"
    );
    conn.batch_execute("ALTER TABLE seen_away RENAME TO seen")
        .unwrap();
    conn.batch_execute("INSERT INTO refusals (aggregate_id) VALUES (5)")
        .unwrap();
    let mut store = DieselStore::new(&mut conn);
    let mut append = |id: i64, title: &str| {
        let title = title.to_owned();
        store
            .append(&id, Created { title }, &by("ann"))
            .unwrap()
            .events[0]
            .id
    };
    append(4, "d");
    let refused = append(5, REFUSED);
    let panicking = append(6, PANICKING);
    append(7, "g");
    for failing in [refused, panicking] {
        let error = subscriber.catch_up(&mut db.connect()).unwrap_err();
        assert!(
            matches!(&error, Error::Reactor { event_id, .. } if *event_id == failing),
            "{error}"
        );
        let status = subscriptions(&mut db.connect(), &SubscriptionDispatcher).unwrap();
        assert_eq!(status[0].position.unwrap().event_id, failing - 1);
        reset_subscription(
            &mut db.connect(),
            &SubscriptionDispatcher,
            "seen",
            Start::AfterEvent(failing),
        )
        .unwrap();
    }
    assert_eq!(subscriber.catch_up(&mut db.connect()).unwrap().handled, 1);
    let seen: Vec<i64> = db
        .connect()
        .seen()
        .unwrap()
        .iter()
        .map(|row| row.aggregate_id)
        .collect();
    assert_eq!(
        seen,
        [1, 2, 3, 4, 7],
        "the failing events' rows were rolled back"
    );
    let status = subscriptions(&mut db.connect(), &SubscriptionDispatcher).unwrap();
    assert_eq!(
        (status[0].behind, status[0].last_error.as_deref()),
        (0, None)
    );
}

/// With `hold_back`, a handler failing on an event of one aggregate sets that event and the
/// later events of its aggregate aside, in order, and the other aggregates go on; a retry while
/// the handler still fails keeps them all; once it is fixed, a retry handles them in version
/// order and lets them go.
fn a_failing_aggregate_is_held_back_alone_and_retried_in_order<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    conn.batch_execute("INSERT INTO refusals (aggregate_id) VALUES (1)")
        .unwrap();
    let mut store = DieselStore::new(&mut conn);
    let mut ids = Vec::new();
    for (id, title) in [
        (1, "a"),
        (2, "b"),
        (1, REFUSED),
        (2, "c"),
        (1, "d"),
        (2, "e"),
    ] {
        let title = title.to_owned();
        let event = if title == "a" || title == "b" {
            store.append(&id, Created { title }, &by("ann"))
        } else {
            store.append(&id, TitleUpdated { title }, &by("ann"))
        };
        ids.push(event.unwrap().events[0].id);
    }
    let options = quick(Duration::from_secs(30)).hold_back(true);
    let subscriber = Subscriber::new(&SubscriptionDispatcher, "seen", options).unwrap();
    assert_eq!(subscriber.catch_up(&mut conn).unwrap().handled, 6);
    let seen = |conn: &mut D::Conn| -> Vec<(i64, i64)> {
        conn.seen()
            .unwrap()
            .iter()
            .map(|row| (row.aggregate_id, row.version))
            .collect()
    };
    assert_eq!(seen(&mut conn), [(1, 1), (2, 1), (2, 2), (2, 3)]);
    let held = held_events(&mut conn, Some("seen")).unwrap();
    let held_ids: Vec<i64> = held.iter().map(|held| held.event_id).collect();
    assert_eq!(held_ids, [ids[2], ids[4]]);
    assert!(held[1].last_error.contains("held back behind"), "{held:?}");
    assert_eq!(subscriber.retry_held(&mut conn).unwrap(), (0, 2));
    assert_eq!(seen(&mut conn).len(), 4, "a failing retry writes nothing");
    conn.batch_execute("DELETE FROM refusals").unwrap();
    assert_eq!(subscriber.retry_held(&mut conn).unwrap(), (2, 0));
    assert_eq!(
        seen(&mut conn),
        [(1, 1), (2, 1), (2, 2), (2, 3), (1, 2), (1, 3)]
    );
    assert!(held_events(&mut conn, None).unwrap().is_empty());
}

/// `catch_up_then` runs its switch after every event is handled, in the transaction of the last
/// batch: a switch that fails rolls that batch back with what it wrote, and one that succeeds
/// commits with it.
fn catch_up_then_switches_with_the_last_batch_or_not_at_all<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    for id in 1..=3 {
        let title = format!("t{id}");
        store.append(&id, Created { title }, &by("ann")).unwrap();
    }
    let subscriber = Subscriber::new(
        &SubscriptionDispatcher,
        "seen",
        quick(Duration::from_secs(30)),
    )
    .unwrap();
    let switch = |conn: &mut D::Conn, fail: bool| -> Result<usize, es_diesel::ReactorError> {
        let handled = conn.seen()?.len();
        conn.batch_execute(
            "INSERT INTO seen (seq, event_id, tag, aggregate_id, version, doomed) \
             VALUES (1000, -1, 'switched', 0, 0, FALSE)",
        )?;
        if fail {
            return Err("the switch failed".into());
        }
        Ok(handled)
    };
    let switches = |conn: &mut D::Conn| {
        conn.seen()
            .unwrap()
            .iter()
            .filter(|row| row.event_id == -1)
            .count()
    };
    let error = subscriber
        .catch_up_then(&mut conn, |conn| switch(conn, true))
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Reactor {
                reactor: "then",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(switches(&mut conn), 0, "the failed switch wrote nothing");
    let (stats, handled) = subscriber
        .catch_up_then(&mut conn, |conn| switch(conn, false))
        .unwrap();
    assert_eq!(
        (stats.handled, handled),
        (0, 3),
        "caught up before the switch ran"
    );
    assert_eq!(switches(&mut conn), 1);
}

/// A subscription read in two shards: each shard handles the events of its aggregates only
/// (`shard_of`), together every event once, each aggregate in order, from checkpoints of their
/// own; a shard held by a dead process moves to another subscriber once its lease expires, while
/// the other shard goes on.
fn shards_split_the_feed_by_aggregate_and_move_when_their_holder_dies<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    for id in 1..=20 {
        let title = format!("t{id}");
        store.append(&id, Created { title }, &by("ann")).unwrap();
        let title = format!("u{id}");
        store
            .append(&id, TitleUpdated { title }, &by("ann"))
            .unwrap();
    }
    let lease = Duration::from_millis(400);
    let shard = |index| {
        Subscriber::new(&SubscriptionDispatcher, "seen", quick(lease))
            .unwrap()
            .shard(index, 2)
            .unwrap()
    };
    let handled = shard(0).catch_up(&mut conn).unwrap().handled;
    let in_first: Vec<i64> = (1..=20)
        .filter(|id| es_diesel::shard_of(&id.to_string(), 2) == 0)
        .collect();
    assert_eq!(handled, 2 * in_first.len() as u64);
    assert!(
        conn.seen()
            .unwrap()
            .iter()
            .all(|row| in_first.contains(&row.aggregate_id)),
        "shard 0 handled its aggregates only"
    );
    // Shard 1 was claimed by a process that died.
    shard(1).catch_up(&mut conn).unwrap();
    conn.batch_execute("DELETE FROM seen").unwrap();
    reset_subscription(&mut conn, &SubscriptionDispatcher, "seen", Start::Beginning).unwrap();
    let claimed_until = held_by_a_dead_process::<D>(&mut conn, "seen#1/2", lease);
    let error = shard(1).catch_up(&mut conn).unwrap_err();
    assert!(
        matches!(&error, Error::SubscriptionHeld { name, .. } if name == "seen#1/2"),
        "{error}"
    );
    shard(0).catch_up(&mut conn).unwrap();
    let names: Vec<String> = subscriptions(&mut conn, &SubscriptionDispatcher)
        .unwrap()
        .into_iter()
        .map(|status| status.name)
        .collect();
    assert_eq!(names, ["seen#0/2", "seen#1/2"]);
    thread::sleep(claimed_until.saturating_duration_since(Instant::now()) + lease / 2);
    shard(1).catch_up(&mut conn).unwrap();
    let committed = committed_events(db);
    assert_seen_exactly_once_in_order(&conn.seen().unwrap(), &committed);
    let last = committed.keys().max().copied().unwrap_or_default();
    assert!(
        es_diesel::has_handled(&mut conn, &SubscriptionDispatcher, "seen", last).unwrap(),
        "every shard is past the last event"
    );
}

/// Makes checkpoint `name` held by a process that died, `dead-process`, for `lease` from now
/// (as the database's clock writes times); returns when its lease expires.
fn held_by_a_dead_process<D: TestDb>(conn: &mut D::Conn, name: &str, lease: Duration) -> Instant {
    let expires = Instant::now() + lease;
    let until = chrono::Utc::now() + lease;
    let until = match D::NAME {
        "sqlite" => until.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        "postgres" => until.format("%Y-%m-%d %H:%M:%S%.6f+00"),
        _ => until.format("%Y-%m-%d %H:%M:%S%.6f"),
    };
    conn.batch_execute(&format!(
        "UPDATE es_subscriptions SET owner = 'dead-process', lease_until = '{until}' \
         WHERE name = '{name}'"
    ))
    .unwrap();
    expires
}

/// While another subscriber holds the lease, a second one is refused (`SubscriptionHeld`), and
/// takes the subscription over once the lease has expired without renewal.
fn a_held_subscription_moves_once_its_lease_expires<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    DieselStore::new(&mut conn)
        .append(&1, Created { title: "a".into() }, &by("ann"))
        .unwrap();
    let lease = Duration::from_millis(400);
    reset_subscription(&mut conn, &SubscriptionDispatcher, "seen", Start::Beginning).unwrap();
    let claimed_until = held_by_a_dead_process::<D>(&mut conn, "seen", lease);
    let second = Subscriber::new(&SubscriptionDispatcher, "seen", quick(lease)).unwrap();
    let error = second.catch_up(&mut conn).unwrap_err();
    assert!(
        matches!(&error, Error::SubscriptionHeld { owner, .. } if owner == "dead-process"),
        "{error}"
    );
    assert!(conn.seen().unwrap().is_empty());
    thread::sleep(claimed_until.saturating_duration_since(Instant::now()) + lease / 2);
    let stats = second.catch_up(&mut conn).unwrap();
    assert_eq!(stats.handled, 1);
}

/// A new subscription starts where its options say, `reset_subscription` moves it, and
/// `subscriptions` says how far behind it is.
fn a_subscription_starts_and_resets_where_it_is_told<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    let mut ids = Vec::new();
    for id in 1..=3 {
        let title = format!("t{id}");
        ids.push(
            store
                .append(&id, Created { title }, &by("ann"))
                .unwrap()
                .events[0]
                .id,
        );
    }
    let conn = store.connection();
    let status = subscriptions(conn, &SubscriptionDispatcher).unwrap();
    assert_eq!(
        (
            status[0].name.as_str(),
            status[0].position,
            status[0].behind
        ),
        ("seen", None, 3)
    );
    let from_end = quick(Duration::from_secs(30)).start(Start::End);
    let subscriber = Subscriber::new(&SubscriptionDispatcher, "seen", from_end).unwrap();
    let handled = subscriber.catch_up(conn).unwrap().handled;
    // On PostgreSQL the end is the horizon: events committed above it, while another test's
    // transaction was still running on the server, come again rather than risk a skip.
    if D::NAME == "postgres" {
        assert!(handled <= 3, "{handled}");
    } else {
        assert_eq!(handled, 0);
    }
    let at = reset_subscription(
        conn,
        &SubscriptionDispatcher,
        "seen",
        Start::AfterEvent(ids[0]),
    )
    .unwrap();
    assert_eq!(at.event_id, ids[0]);
    assert_eq!(subscriber.catch_up(conn).unwrap().handled, 2);
    let again =
        reset_subscription(conn, &SubscriptionDispatcher, "seen", Start::Beginning).unwrap();
    assert_eq!(again, Position::START);
    let status = subscriptions(conn, &SubscriptionDispatcher).unwrap();
    assert_eq!((status[0].behind, status[0].handled), (3, 0));
    assert!(status[0].behind_since.is_some());
    let missing = reset_subscription(conn, &SubscriptionDispatcher, "seen", Start::AfterEvent(-5));
    assert!(matches!(missing, Err(Error::InvalidOption { .. })));
    let unknown = Subscriber::new(
        &SubscriptionDispatcher,
        "nope",
        SubscriberOptions::default(),
    );
    assert!(matches!(unknown, Err(Error::UnknownSubscription { .. })));
}

/// A destination outside the database: the batches it was given, as event ids, in the order it
/// got them; its next `failures` deliveries fail after taking their events (a destination that
/// got a batch and then lost the connection).
struct Collected {
    batches: std::sync::Mutex<Vec<Vec<i64>>>,
    failures: AtomicU64,
}

impl Sink for Collected {
    fn deliver(&self, events: &[(Position, &es_diesel::AnyEvent)]) -> Result<(), Error> {
        let mut collected = self.batches.lock().unwrap();
        collected.push(events.iter().map(|(_, event)| event.id).collect());
        let failing = self.failures.load(Ordering::Relaxed);
        if failing > 0 {
            self.failures.store(failing - 1, Ordering::Relaxed);
            return Err(Error::InvalidOption {
                option: "test",
                reason: "the destination went away".to_owned(),
            });
        }
        Ok(())
    }
}

/// A subscriber delivering to a [`Sink`] gives it the feed of its tables in feed order, in
/// batches; a failed delivery holds the feed, is recorded, and the same batch is delivered again,
/// so the destination (dropping copies by id) ends with every event once, in order.
fn a_sink_gets_the_feed_in_order_and_a_failed_batch_again<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    create_aggregates(db);
    let committed: Vec<i64> = committed_events(db).into_keys().collect();
    let sink = Collected {
        batches: std::sync::Mutex::default(),
        failures: AtomicU64::new(1),
    };
    let tables = vec!["task_events", "project_events"];
    let options = SubscriberOptions::default().batch(300);
    let subscriber = Subscriber::to_sink("collected", tables, &sink, options);
    let mut conn = db.connect();
    let failed = subscriber.catch_up(&mut conn).unwrap_err();
    assert!(
        failed.to_string().contains("the destination went away"),
        "{failed}"
    );
    let status = subscriptions(&mut conn, &SubscriptionDispatcher).unwrap();
    let row = status.iter().find(|row| row.name == "collected").unwrap();
    assert_eq!((row.position, row.handled), (Some(Position::START), 0));
    assert!(row.last_error.as_deref().unwrap().contains("went away"));
    let stats = subscriber.catch_up(&mut conn).unwrap();
    assert_eq!(stats.handled as usize, committed.len());
    // The first batch is up to 300 events: fewer on PostgreSQL while another transaction on the
    // server holds the feed's horizon back.
    let batches = sink.batches.into_inner().unwrap();
    let failed = &batches[0];
    assert!(!failed.is_empty() && failed.len() <= 300, "{failed:?}");
    assert_eq!(failed[..], committed[..failed.len()], "the failed batch");
    let again: Vec<i64> = batches[1..].concat();
    assert_eq!(again, committed, "then every event, in order");
}
