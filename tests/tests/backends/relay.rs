//! The NATS JetStream relay, on every backend, against the NATS server of `NATS_URL` (and a
//! `nats-server` of the restart test's own): a relay SIGKILLed five times under sixteen writers
//! leaves the stream with every event once, each aggregate in order; a relay created on a
//! database with history backfills it, then follows; a NATS server killed and restarted mid-run
//! loses and duplicates nothing. Each time the consumer applies the stream to a warehouse
//! database of its own, and its read model must equal the one built straight from the database.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use es_core::{AppendOptions, EventStore};
use es_diesel::relay::{Consumer, ConsumerOptions, Relay, RelayOptions, relay_status};
use es_diesel::{
    AggregateTable, DieselStore, Dispatch, Subscriber, SubscriberOptions, SubscriberStats,
};
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::domain::{Project, Task, TitleUpdated, write_task_histories};
use es_tests::nats::{NatsServer, RELAYED_TABLES, TestStream, nats_url};
use es_tests::reactors::ReactorConnection;
use es_tests::subscriptions::{Seen, SubscriptionDispatcher};

use crate::subscriptions::{
    assert_seen_exactly_once_in_order, committed_events, create_aggregates, write_concurrently,
};
use crate::{Check, KillOnDrop, StopOnDrop, execute};

pub(crate) fn checks<D: TestDb>() -> Vec<(&'static str, Check<D>)>
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    vec![
        (
            "a_relay_killed_five_times_publishes_every_event_once_in_order",
            a_relay_killed_five_times_publishes_every_event_once_in_order::<D>,
        ),
        (
            "a_relay_created_after_history_backfills_it_then_follows_live",
            a_relay_created_after_history_backfills_it_then_follows_live::<D>,
        ),
        (
            "a_nats_restart_mid_run_loses_and_duplicates_nothing",
            a_nats_restart_mid_run_loses_and_duplicates_nothing::<D>,
        ),
        (
            "a_relay_whose_database_connections_close_reconnects_and_resumes",
            a_relay_whose_database_connections_close_reconnects_and_resumes::<D>,
        ),
    ]
}

/// Events the kill and backfill tests write (`ES_TESTS_RELAY_EVENTS`, 100,000 by default).
fn relay_events() -> usize {
    es_tests::bench::env_number("ES_TESTS_RELAY_EVENTS", 100_000)
}

/// This run's stream for `test` on backend `D`, on server `url`.
fn stream_for<D: TestDb>(url: &str, test: &str) -> TestStream {
    TestStream::new(url, &format!("{}_{test}", D::NAME))
}

/// A relay of the tasks and projects to `stream`, polling every 2 ms.
fn relay_options(stream: &TestStream) -> RelayOptions {
    RelayOptions::new(stream.url(), stream.name())
        .tables(RELAYED_TABLES)
        .subscriber(SubscriberOptions::default().poll(Duration::from_millis(2)))
}

/// Waits until the relay of `options` has published every committed event (nothing behind its
/// checkpoint), failing after two minutes.
fn wait_until_relayed<D: TestDb>(db: &D, options: &RelayOptions) {
    let mut conn = db.connect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = relay_status(&mut conn, options).unwrap();
        if status.position.is_some() && status.behind == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the relay is stuck: {status:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `relay` on `db` in a thread of its own while `body` runs, then stops it (also when `body`
/// fails): what `body` returned, and the relay's stats.
fn while_relaying<D: TestDb, T>(
    db: &D,
    relay: &Relay,
    body: impl FnOnce() -> T,
) -> (T, SubscriberStats) {
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let running = scope.spawn(|| {
            relay
                .run(|| Ok::<_, std::convert::Infallible>(db.connect()), &stop)
                .unwrap()
        });
        let value = body();
        stop.store(true, Ordering::Relaxed);
        (value, running.join().unwrap())
    })
}

/// Waits until `relay` has published `count` events since it was created, failing with `stuck`
/// at `deadline`.
fn wait_for_published(relay: &Relay, count: u64, deadline: Instant, stuck: &str) {
    while relay.stats().published < count {
        assert!(Instant::now() < deadline, "{stuck}: {:?}", relay.stats());
        thread::sleep(Duration::from_millis(5));
    }
}

/// The stream applied by the consumer to a warehouse database of its own (SQLite) through the
/// subscription `seen`, once it holds `expected` rows and one more read brings nothing: its
/// `seen` rows, in the order the stream gave them.
fn warehouse(stream: &TestStream, expected: usize) -> Vec<Seen> {
    let warehouse = SqliteDb::new();
    let mut conn = warehouse.connect();
    let options = ConsumerOptions::new(stream.url(), stream.name(), "warehouse")
        .wait(Duration::from_millis(200));
    let consumer = Consumer::new(options).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut applied = 0;
    while applied < expected {
        applied += consumer
            .project(&mut conn, &SubscriptionDispatcher, "seen")
            .unwrap();
        assert!(
            Instant::now() < deadline,
            "the consumer is stuck at {applied} of {expected} events"
        );
    }
    let more = consumer
        .project(&mut conn, &SubscriptionDispatcher, "seen")
        .unwrap();
    assert_eq!(more, 0, "the stream holds more events than were committed");
    conn.seen().unwrap()
}

/// The read model `seen` built straight from `db`'s events, by a subscription of its own.
fn built_from_the_database<D: TestDb>(db: &D) -> Vec<Seen>
where
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let mut conn = db.connect();
    Subscriber::new(
        &SubscriptionDispatcher,
        "seen",
        SubscriberOptions::default(),
    )
    .unwrap()
    .catch_up(&mut conn)
    .unwrap();
    conn.seen().unwrap()
}

/// What every relay test ends with: the stream holds each committed event once (count), the
/// consumer's read model has each once, in each aggregate's order, and equals the one built
/// straight from the database, row for row.
fn assert_relayed_exactly<D: TestDb>(db: &D, stream: &TestStream)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let committed = committed_events(db);
    assert_eq!(
        stream.messages(),
        committed.len() as u64,
        "the stream holds one message per committed event"
    );
    let relayed = warehouse(stream, committed.len());
    assert_seen_exactly_once_in_order(&relayed, &committed);
    assert!(
        relayed == built_from_the_database(db),
        "the warehouse's read model differs from the one built from the database"
    );
}

/// Makes each move of a relay's checkpoint (a `relay:` row of `es_subscriptions`) sleep 20 ms in
/// its transaction, after its batch is acknowledged and before the commit: most of a relay's time
/// is then spent in the window where a kill leaves a batch published whose checkpoint never
/// moved, which the next relay publishes again.
fn slow_down_relay_checkpoints<D: TestDb>(db: &D) {
    let statements: &[&str] = match D::NAME {
        "sqlite" => &[
            "CREATE TRIGGER slow_relay_checkpoints AFTER UPDATE OF event_id ON es_subscriptions \
             WHEN NEW.name LIKE 'relay:%' BEGIN SELECT es_test_sleep(20); END",
        ],
        "postgres" => &[
            "CREATE FUNCTION slow_relay_checkpoints() RETURNS trigger AS \
             $$ BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER slow_relay_checkpoints BEFORE UPDATE ON es_subscriptions \
             FOR EACH ROW WHEN (NEW.name LIKE 'relay:%' AND NEW.event_id <> OLD.event_id) \
             EXECUTE FUNCTION slow_relay_checkpoints()",
        ],
        _ => &[
            "CREATE TRIGGER slow_relay_checkpoints BEFORE UPDATE ON es_subscriptions \
             FOR EACH ROW BEGIN IF NEW.name LIKE 'relay:%' AND NEW.event_id <> OLD.event_id \
             THEN DO SLEEP(0.02); END IF; END",
        ],
    };
    let mut conn = db.connect();
    for statement in statements {
        execute::<D>(&mut conn, statement);
    }
}

/// A relay process SIGKILLed five times while sixteen writers append, each time after it took
/// the relay over and published events of its own: three times while the stream holds more
/// than its checkpoint says (a batch acknowledged, its checkpoint not moved yet: a window
/// [`slow_down_relay_checkpoints`] widens), twice at a random moment. The next one (started at
/// once, waiting for the dead one's lease) publishes that batch again, and JetStream drops the
/// copies by message id. Without `Nats-Msg-Id` the stream ends with more messages than events.
fn a_relay_killed_five_times_publishes_every_event_once_in_order<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let url = nats_url().expect("NATS_URL");
    let stream = stream_for::<D>(&url, "killed");
    let options = relay_options(&stream);
    create_aggregates(db);
    slow_down_relay_checkpoints(db);
    let spawn = || {
        KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_test_relay"))
                .args([&url, stream.name(), "300"])
                .args(db.worker_args())
                .spawn()
                .expect("start a relay process"),
        )
    };
    let stop = AtomicBool::new(false);
    let mut owners = Vec::new();
    thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let writers = scope.spawn(|| {
            write_concurrently(db, 16, (relay_events(), &stop), Duration::from_micros(500))
        });
        let mut conn = db.connect();
        let mut live = vec![spawn(), spawn()];
        for kill in 0..5 {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut first_handled = None;
            let holder = loop {
                let status = relay_status(&mut conn, &options).unwrap();
                let owner = status.owner.clone().unwrap_or_default();
                let holder = live.iter().position(|process| {
                    owner.starts_with(&format!("test-relay-{}/", process.0.id()))
                });
                if let Some(holder) = holder {
                    let (first, _) = *first_handled.get_or_insert((status.handled, holder));
                    if status.handled >= first + 100 {
                        owners.push(owner);
                        break holder;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "no live relay took over: {status:?}"
                );
                thread::sleep(Duration::from_millis(5));
            };
            if kill % 2 == 0 {
                // In the window: a batch acknowledged, its checkpoint not moved yet.
                let deadline = Instant::now() + Duration::from_secs(10);
                while stream.messages() <= relay_status(&mut conn, &options).unwrap().handled as u64
                {
                    assert!(Instant::now() < deadline, "the relay never published ahead");
                    thread::sleep(Duration::from_millis(1));
                }
            } else {
                thread::sleep(Duration::from_millis(fastrand::u64(..30)));
            }
            let mut killed = live.swap_remove(holder);
            killed.0.kill().expect("SIGKILL the relay");
            killed.0.wait().expect("reap it");
            live.push(spawn());
        }
        writers.join().unwrap();
        wait_until_relayed(db, &options);
        drop(live);
    });
    assert_eq!(owners.len(), 5, "five relays held it in turn: {owners:?}");
    assert_relayed_exactly(db, &stream);
}

/// A relay created on a database with history publishes all of it, then the events appended
/// while it runs.
fn a_relay_created_after_history_backfills_it_then_follows_live<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let url = nats_url().expect("NATS_URL");
    let stream = stream_for::<D>(&url, "backfill");
    let tasks = i64::try_from(relay_events() / 10).unwrap();
    let mut conn = db.connect();
    write_task_histories(&mut DieselStore::new(&mut conn), tasks).unwrap();
    let relay = Relay::new(relay_options(&stream)).unwrap();
    while_relaying(db, &relay, || {
        let history = u64::try_from(tasks * 10).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        wait_for_published(&relay, history, deadline, "backfill stuck");
        assert_eq!(relay.stats().published, history, "nothing live yet");
        let mut store = DieselStore::new(&mut conn);
        for id in 1..=50 {
            let title = format!("live {id}");
            EventStore::<Task>::append(
                &mut store,
                &id,
                vec![TitleUpdated { title }.into()],
                &AppendOptions::default(),
            )
            .unwrap();
        }
        wait_for_published(&relay, history + 50, deadline, "live events stuck");
    });
    assert_eq!(relay.stats().duplicates, 0);
    assert_relayed_exactly(db, &stream);
}

/// The relay's NATS server (one of the test's own) killed while four writers append and the
/// relay publishes, then started again on the same store: a batch whose acknowledgements time out
/// is published again once it is back, one whose sends wait in the client for the reconnection
/// goes on (both happen, by timing), and the stream holds each event once.
fn a_nats_restart_mid_run_loses_and_duplicates_nothing<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let mut server = NatsServer::start();
    let stream = stream_for::<D>(&server.url(), "restart");
    let options = relay_options(&stream).ack_timeout(Duration::from_millis(500));
    create_aggregates(db);
    let relay = Relay::new(options.clone()).unwrap();
    while_relaying(db, &relay, || {
        let writing = AtomicBool::new(false);
        thread::scope(|scope| {
            let _writing = StopOnDrop(&writing);
            let writers = scope.spawn(|| {
                write_concurrently(db, 4, (usize::MAX, &writing), Duration::from_micros(200))
            });
            let deadline = Instant::now() + Duration::from_secs(60);
            wait_for_published(&relay, 2_000, deadline, "relay stuck");
            server.kill();
            thread::sleep(Duration::from_secs(1));
            server.restart();
            let restarted = relay.stats().published;
            wait_for_published(
                &relay,
                restarted + 2_000,
                deadline,
                "the relay did not resume",
            );
            writing.store(true, Ordering::Relaxed);
            writers.join().unwrap();
        });
        wait_until_relayed(db, &options);
    });
    assert_relayed_exactly(db, &stream);
}

/// The relay's database connections closed by the server mid-run (a database restart, as the
/// relay sees it: PostgreSQL and MySQL; SQLite has no server) while a writer appends: its batch
/// fails, it opens a new connection after a short wait, and resumes from its checkpoint —
/// nothing lost, nothing duplicated.
fn a_relay_whose_database_connections_close_reconnects_and_resumes<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let url = nats_url().expect("NATS_URL");
    let stream = stream_for::<D>(&url, "db_restart");
    let options = relay_options(&stream);
    create_aggregates(db);
    let relay = Relay::new(options.clone()).unwrap();
    let mut conn = db.connect();
    let ((), stats) = while_relaying(db, &relay, || {
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..3 {
            let published = relay.stats().published;
            let writing = AtomicBool::new(false);
            thread::scope(|scope| {
                let _writing = StopOnDrop(&writing);
                let writer = scope
                    .spawn(|| write_concurrently(db, 1, (usize::MAX, &writing), Duration::ZERO));
                wait_for_published(&relay, published + 300, deadline, "relay stuck");
                writing.store(true, Ordering::Relaxed);
                writer.join().unwrap();
            });
            assert!(
                db.close_other_connections(&mut conn) > 0,
                "the relay's connection was closed"
            );
        }
        wait_until_relayed(db, &options);
    });
    assert!(
        stats.errors > 0,
        "a closed connection failed a batch: {stats:?}"
    );
    assert_relayed_exactly(db, &stream);
}
