//! Subscriptions, on SQLite (file, WAL) and on PostgreSQL when `PG_DATABASE_URL` is set:
//!
//! - S1: a new subscription catching up on `BENCH_FEED_EVENTS` events (1,000,000 over 100,000
//!   tasks by default) with a handler that does nothing, against `stream_events` of the same
//!   events in the same run (the goal: at least 0.8 times its rate);
//! - S2: the tail latency of a subscriber following the feed (its default 20 ms poll) while one
//!   writer commits a command every 2 ms (500 commands/s) for `BENCH_TAIL_SECONDS` (10): the time
//!   from the command's commit (its `execute` returned) to the handler seeing its event, p50 and
//!   p99 (the goal: p99 at most 50 ms).
//!
//! `cargo bench -p es-tests --bench subscriptions`; `BENCH_ONLY=S1` or `S2` runs one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use es_core::{AppendOptions, EventFilter, EventStore, RecordedEvent};
use es_diesel::{
    AggregateTable, Database, DieselStore, Dispatch, ReactorError, Start, Subscriber,
    SubscriberOptions, dispatcher,
};
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::bench::{env_number, latency_summary, selected, write_every_2_ms};
use es_tests::domain::{Created, Task, write_task_histories};

/// S1's handler: nothing, so that the subscription's own cost is measured.
fn count_event<C: Database>(_: &mut C, _: &RecordedEvent<i64>) -> Result<(), ReactorError> {
    Ok(())
}

/// When S2's handler saw each event, by id.
fn seen_at() -> &'static Mutex<HashMap<i64, Instant>> {
    static SEEN: OnceLock<Mutex<HashMap<i64, Instant>>> = OnceLock::new();
    SEEN.get_or_init(Mutex::default)
}

/// S2's handler: notes when it saw the event.
fn time_event<C: Database>(_: &mut C, event: &RecordedEvent<i64>) -> Result<(), ReactorError> {
    let now = Instant::now();
    seen_at()
        .lock()
        .map_err(|_| "a poisoned lock")?
        .insert(event.id, now);
    Ok(())
}

dispatcher! {
    /// The two benchmark subscriptions over the tasks' events.
    struct FeedBenchDispatcher;
    Task::* => subscribe: [count_event, time_event];
}

fn options() -> AppendOptions {
    AppendOptions::default()
}

fn s1<C: Database>(conn: &mut C, events: usize)
where
    Task: AggregateTable<C>,
    FeedBenchDispatcher: Dispatch<C>,
{
    conn.batch_execute("DELETE FROM task_events; DELETE FROM tasks; DELETE FROM es_subscriptions")
        .expect("empty the tables");
    let mut store = DieselStore::new(&mut *conn);
    write_task_histories(&mut store, (events / 10) as i64).expect("S1 history");
    let started = Instant::now();
    let mut streamed = 0;
    for event in EventStore::<Task>::stream_events(&mut store, &EventFilter::default())
        .expect("stream_events")
    {
        event.expect("an event");
        streamed += 1;
    }
    let stream_rate = streamed as f64 / started.elapsed().as_secs_f64();
    assert_eq!(streamed, events);
    for batch in [1_000, 10_000] {
        let conn = store.connection();
        conn.batch_execute("DELETE FROM es_subscriptions")
            .expect("a new subscription");
        let options = SubscriberOptions::default().batch(batch);
        let subscriber = Subscriber::new(&FeedBenchDispatcher, "count_event", options)
            .expect("the subscription is declared");
        let started = Instant::now();
        let stats = subscriber.catch_up(conn).expect("catch up");
        let rate = stats.handled as f64 / started.elapsed().as_secs_f64();
        assert_eq!(stats.handled as usize, events);
        println!(
            "  S1  catch-up of {events} events, batches of {batch:>6}  {rate:>10.0} events/s   \
             stream_events {stream_rate:>10.0} events/s   ratio {:.2}",
            rate / stream_rate
        );
    }
}

fn s2<C: Database>(connect: &(dyn Fn() -> C + Sync), seconds: usize)
where
    Task: AggregateTable<C>,
    FeedBenchDispatcher: Dispatch<C>,
{
    let mut conn = connect();
    let mut store = DieselStore::new(&mut conn);
    store
        .append(
            &0,
            Created {
                title: "tail".into(),
            },
            &options(),
        )
        .expect("the tail's task");
    let options = SubscriberOptions::default().start(Start::End);
    let subscriber =
        Subscriber::new(&FeedBenchDispatcher, "time_event", options).expect("declared");
    let stop = AtomicBool::new(false);
    let commands = seconds * 500;
    let committed: Vec<(i64, Instant)> = thread::scope(|scope| {
        let following = scope.spawn(|| {
            subscriber
                .run(|| Ok::<_, std::convert::Infallible>(connect()), &stop)
                .expect("the subscriber runs")
        });
        // Let the subscriber claim the subscription and read to the end first.
        thread::sleep(Duration::from_millis(500));
        let (committed, rate) = write_every_2_ms(&mut store, commands);
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen_at().lock().expect("seen").len() < commands && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        following.join().expect("the subscriber");
        println!("  S2  writer at {rate:.0} commands/s for {seconds} s");
        committed
    });
    let seen = seen_at().lock().expect("seen");
    println!(
        "  S2  commit -> handler, subscriber polling every 20 ms: {}",
        latency_summary(&committed, &seen)
    );
}

fn report<C: Database>(label: &str, connect: &(dyn Fn() -> C + Sync))
where
    Task: AggregateTable<C>,
    FeedBenchDispatcher: Dispatch<C>,
{
    println!("{label}");
    if selected("S1") {
        s1(&mut connect(), env_number("BENCH_FEED_EVENTS", 1_000_000));
    }
    if selected("S2") {
        seen_at().lock().expect("seen").clear();
        s2(connect, env_number("BENCH_TAIL_SECONDS", 10));
    }
}

fn main() {
    let sqlite = SqliteDb::new();
    report("sqlite (file, WAL, synchronous=NORMAL)", &|| {
        sqlite.connect()
    });
    match es_tests::backend::postgres_url() {
        Some(url) => {
            let db = es_tests::backend::PgDb::new(&url, "bench_subscriptions");
            report("postgres (TCP, synchronous_commit on)", &|| db.connect());
        }
        None => println!("postgres: SKIPPED (set PG_DATABASE_URL to a PostgreSQL database)"),
    }
}
