//! The NATS JetStream relay (`NATS_URL`, with JetStream), on SQLite (file, WAL) and on PostgreSQL
//! when `PG_DATABASE_URL` is set:
//!
//! - R1: the backfill of a new relay over `BENCH_RELAY_EVENTS` events (200,000 over 20,000 tasks
//!   by default) into a new stream, every message acknowledged, in batches of 1,000 (the
//!   default) and 5,000 (the goal: at least 30,000 events/s);
//! - R2: the live latency from a command's commit to a consumer (another process's view: a
//!   `Consumer` applying the stream to a SQLite warehouse) while one writer commits a command every
//!   2 ms (500 commands/s) for `BENCH_TAIL_SECONDS` (10), the relay polling every 20 ms: p50 and
//!   p99.
//!
//! The relay's cost on the write path is P1 of the `workloads` bench run again while a relay
//! follows (`P1+relay` there, with `NATS_URL` set).
//!
//! `cargo bench -p es-tests --bench relay`; `BENCH_ONLY=R1` or `R2` runs one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use es_core::{AppendOptions, EventStore};
use es_diesel::relay::{Consumer, ConsumerOptions, Relay, RelayOptions};
use es_diesel::{AggregateTable, Database, DieselStore, Start, SubscriberOptions};
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::bench::{env_number, latency_summary, selected, write_every_2_ms};
use es_tests::domain::{Created, Task, write_task_histories};
use es_tests::nats::{TestStream, nats_url};

fn relay_options(stream: &TestStream) -> RelayOptions {
    RelayOptions::new(stream.url(), stream.name()).tables(&["task_events"])
}

fn r1<C: Database>(conn: &mut C, url: &str, events: usize)
where
    Task: AggregateTable<C>,
{
    conn.batch_execute("DELETE FROM task_events; DELETE FROM tasks; DELETE FROM es_subscriptions")
        .expect("empty the tables");
    write_task_histories(&mut DieselStore::new(&mut *conn), (events / 10) as i64)
        .expect("R1 history");
    for batch in [1_000, 5_000] {
        let stream = TestStream::new(url, &format!("bench_backfill_{batch}"));
        let options = relay_options(&stream)
            .subscriber(SubscriberOptions::default().batch(batch))
            .ack_timeout(Duration::from_secs(30));
        let relay = Relay::new(options).expect("a relay");
        conn.batch_execute("DELETE FROM es_subscriptions")
            .expect("a new relay");
        let started = Instant::now();
        let stats = relay.catch_up(conn).expect("backfill");
        let rate = stats.handled as f64 / started.elapsed().as_secs_f64();
        assert_eq!(stats.handled as usize, events);
        assert_eq!(stream.messages() as usize, events);
        println!(
            "  R1  backfill of {events} events, batches of {batch:>5}, acknowledged  \
             {rate:>8.0} events/s"
        );
    }
}

fn r2<C: Database>(connect: &(dyn Fn() -> C + Sync), url: &str, seconds: usize)
where
    Task: AggregateTable<C>,
{
    let stream = TestStream::new(url, "bench_live");
    let mut conn = connect();
    let mut store = DieselStore::new(&mut conn);
    let created = Created {
        title: "tail".into(),
    };
    store
        .append(&0, created, &AppendOptions::default())
        .expect("the tail's task");
    let options = relay_options(&stream).subscriber(SubscriberOptions::default().start(Start::End));
    let relay = Relay::new(options).expect("a relay");
    let warehouse = SqliteDb::new();
    let consumer = Consumer::new(
        ConsumerOptions::new(url, stream.name(), "bench").wait(Duration::from_millis(50)),
    )
    .expect("a consumer");
    let applied_at: Mutex<HashMap<i64, Instant>> = Mutex::default();
    let stop = AtomicBool::new(false);
    let commands = seconds * 500;
    let committed: Vec<(i64, Instant)> = thread::scope(|scope| {
        let relaying = scope.spawn(|| {
            relay
                .run(|| Ok::<_, std::convert::Infallible>(connect()), &stop)
                .expect("the relay runs")
        });
        scope.spawn(|| {
            let mut conn = warehouse.connect();
            while !stop.load(Ordering::Relaxed) {
                let applied = consumer.apply(&mut conn, |_, event| {
                    let now = Instant::now();
                    applied_at.lock().expect("applied").insert(event.id, now);
                    Ok(())
                });
                // Until the relay's first batch the stream does not exist: try again.
                if applied.is_err() {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        // Let the relay claim its checkpoint and read to the end first.
        thread::sleep(Duration::from_millis(500));
        let (committed, rate) = write_every_2_ms(&mut store, commands);
        let deadline = Instant::now() + Duration::from_secs(30);
        while applied_at.lock().expect("applied").len() < commands && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        relaying.join().expect("the relay");
        println!("  R2  writer at {rate:.0} commands/s for {seconds} s");
        committed
    });
    let applied_at = applied_at.into_inner().expect("applied");
    println!(
        "  R2  commit -> consumer, relay polling every 20 ms: {}",
        latency_summary(&committed, &applied_at)
    );
}

fn report<C: Database>(label: &str, connect: &(dyn Fn() -> C + Sync), url: &str)
where
    Task: AggregateTable<C>,
{
    println!("{label}");
    if selected("R1") {
        r1(
            &mut connect(),
            url,
            env_number("BENCH_RELAY_EVENTS", 200_000),
        );
    }
    if selected("R2") {
        r2(connect, url, env_number("BENCH_TAIL_SECONDS", 10));
    }
}

fn main() {
    let Some(url) = nats_url() else {
        println!("relay: SKIPPED (set NATS_URL to a NATS server with JetStream)");
        return;
    };
    let sqlite = SqliteDb::new();
    report(
        "sqlite (file, WAL, synchronous=NORMAL)",
        &|| sqlite.connect(),
        &url,
    );
    match es_tests::backend::postgres_url() {
        Some(pg) => {
            let db = es_tests::backend::PgDb::new(&pg, "bench_relay");
            report(
                "postgres (TCP, synchronous_commit on)",
                &|| db.connect(),
                &url,
            );
        }
        None => println!("postgres: SKIPPED (set PG_DATABASE_URL to a PostgreSQL database)"),
    }
}
