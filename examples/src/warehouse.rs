//! The warehouse of "Event Sourcing made Simple": "forward these events to your data warehouse
//! ... we replayed all historical events". The to-do app's events leave its database through
//! NATS JetStream: a relay publishes the history already written (the backfill), then follows
//! the app live; on the other side a consumer reads the stream through a durable consumer and
//! rebuilds the tasks in a database of its own, decoding each event with the app's own
//! `#[derive(Event)]` types through the registry, and counts the events of each kind (a fact
//! table). In the end the warehouse's tasks are the app's, field for field.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use es_core::{AppendOptions, EventStore, Metadata, RecordedEvent, Registry};
use es_diesel::cli::Cli;
use es_diesel::relay::{Consumer, ConsumerOptions, Relay, RelayOptions, relay_status};
use es_diesel::{AggregateTable, Database, DieselStore, ReactorError, Stores, dispatcher};
use serde::Serialize;

use crate::todo::schema::tasks;
use crate::todo::{Assigned, Completed, Created, Task, TitleUpdated};

/// The warehouse's tables: the tasks as the app has them, and the events of each type.
pub const WAREHOUSE_TABLES: &[&str] = &[
    "CREATE TABLE tasks (id BIGINT PRIMARY KEY NOT NULL, title TEXT NOT NULL, due_on TEXT, \
     assignee TEXT, completed_at TIMESTAMP, completed_by TEXT, deleted_at TIMESTAMP)",
    "CREATE TABLE event_facts (tag TEXT PRIMARY KEY NOT NULL, events BIGINT NOT NULL)",
];

dispatcher! {
    /// The warehouse's side: every task event the consumer reads goes to `warehouse`.
    pub struct WarehouseDispatcher for sqlite;
    Task::* => subscribe: [warehouse];
}

/// Applies one relayed task event to the warehouse: the task's row, loaded (or new), the event
/// decoded by its tag into the app's event type and applied as the app applies it, saved; and
/// one more event of its type in `event_facts`.
pub fn warehouse(
    conn: &mut SqliteConnection,
    event: &RecordedEvent<i64>,
) -> Result<(), ReactorError> {
    let mut task = tasks::table
        .find(event.aggregate_id)
        .select(Task::as_select())
        .first(conn)
        .optional()?
        .unwrap_or_else(|| Task {
            id: event.aggregate_id,
            ..Task::default()
        });
    Registry::global()?.apply::<Task>(&mut task, event)?;
    diesel::replace_into(tasks::table)
        .values(&task)
        .execute(conn)?;
    diesel::sql_query(
        "INSERT INTO event_facts (tag, events) VALUES (?, 1) \
         ON CONFLICT (tag) DO UPDATE SET events = events + 1",
    )
    .bind::<Text, _>(&event.event_type)
    .execute(conn)?;
    Ok(())
}

/// A row of `event_facts`.
#[derive(QueryableByName, Debug)]
struct Fact {
    #[diesel(sql_type = Text)]
    tag: String,
    #[diesel(sql_type = BigInt)]
    events: i64,
}

/// Where the story's events travel: NATS at `url`, stream `stream` (deleted first if it
/// exists).
#[derive(Debug, Clone, Copy)]
pub struct Nats<'a> {
    /// The server.
    pub url: &'a str,
    /// The stream.
    pub stream: &'a str,
}

/// The story, printed to `out`: the app on `app` (more connections from `connect`, for the
/// relay), the warehouse on `warehouse_db`, the events through `nats`.
pub fn run<C, E>(
    app: &mut C,
    connect: &(dyn Fn() -> Result<C, E> + Sync),
    warehouse_db: &mut SqliteConnection,
    Nats {
        url: nats_url,
        stream,
    }: Nats<'_>,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>>
where
    C: Database + Stores<Task>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    es_diesel::create_tables::<_, Task>(app)?;
    crate::create_tables(app, &crate::todo::TABLES[..1])?;
    crate::create_tables(warehouse_db, WAREHOUSE_TABLES)?;
    es_diesel::create_tables::<_, Task>(warehouse_db)?;

    writeln!(out, "The app writes its history before any relay exists:")?;
    let mut store = DieselStore::new(&mut *app);
    let by = |actor: &str| AppendOptions::with_metadata(Metadata::by_actor(actor));
    for id in 1..=3_i64 {
        let title = format!("task {id}");
        store.append(&id, Created { title }, &by("ann"))?;
    }
    let title = "buy milk".to_owned();
    store.append(&1, TitleUpdated { title }, &by("ann"))?;
    let assignee = "bob".to_owned();
    store.append(&2, Assigned { assignee }, &by("ann"))?;
    store.append(&2, Completed {}, &by("bob"))?;
    writeln!(out, "  6 events on 3 tasks")?;

    let options = relay_options(Nats {
        url: nats_url,
        stream,
    });
    let relay = Relay::new(options.clone())?;
    if relay.delete_stream()? {
        eprintln!("stream {stream} of an earlier run deleted");
    }
    let backfill = relay.catch_up(store.connection())?;
    writeln!(
        out,
        "The relay backfills the history into the stream: {} events published",
        backfill.handled
    )?;

    let consumer = Consumer::new(
        ConsumerOptions::new(nats_url, stream, "warehouse").wait(Duration::from_millis(500)),
    )?;
    let applied = drain(&consumer, warehouse_db)?;
    writeln!(out, "The warehouse's consumer applies {applied} events")?;

    writeln!(out, "Then the relay follows the app live:")?;
    let stop = AtomicBool::new(false);
    let live = std::thread::scope(|scope| -> Result<usize, Box<dyn std::error::Error>> {
        let running = scope.spawn(|| relay.run(connect, &stop));
        let committed = Instant::now();
        store.append(&3, Completed {}, &by("cid"))?;
        let title = "buy oat milk".to_owned();
        store.append(&1, TitleUpdated { title }, &by("ann"))?;
        let mut applied = 0;
        while applied < 2 {
            applied += consumer.project(warehouse_db, &WarehouseDispatcher, "warehouse")?;
        }
        eprintln!("commit to warehouse: {:?}", committed.elapsed());
        stop.store(true, Ordering::Relaxed);
        running.join().map_err(|_| "the relay panicked")??;
        Ok(applied)
    })?;
    writeln!(
        out,
        "  2 more events committed by the app; the warehouse applies {live}"
    )?;

    let status = relay_status(store.connection(), &options)?;
    writeln!(
        out,
        "The relay's checkpoint: {} events published, {} behind",
        status.handled, status.behind
    )?;
    writeln!(out, "The warehouse's tasks:")?;
    let in_warehouse: Vec<Task> = tasks::table
        .order(tasks::id)
        .select(Task::as_select())
        .load(warehouse_db)?;
    for task in &in_warehouse {
        writeln!(
            out,
            "  task {} {:?}: assignee {:?}, completed by {:?}",
            task.id, task.title, task.assignee, task.completed_by
        )?;
    }
    let mut in_app = Vec::new();
    for id in 1..=3_i64 {
        in_app.extend(store.load::<Task>(&id)?);
    }
    writeln!(
        out,
        "They equal the app's, field for field: {}",
        in_app == in_warehouse
    )?;
    writeln!(out, "Events by type in the warehouse:")?;
    let facts: Vec<Fact> =
        diesel::sql_query("SELECT tag, events FROM event_facts ORDER BY tag").load(warehouse_db)?;
    for fact in facts {
        writeln!(out, "  {:<20} {}", fact.tag, fact.events)?;
    }
    Ok(())
}

/// The app's relay: its tasks' events to `nats`.
pub fn relay_options(nats: Nats<'_>) -> RelayOptions {
    RelayOptions::new(nats.url, nats.stream).tables(&["task_events"])
}

/// The app's operator command line, with its relay to `nats` (`relay`, `relay reset`, `relay
/// run`).
pub fn cli<C: Database + Stores<Task>>(nats: Nats<'_>) -> Cli<'static, C>
where
    Task: AggregateTable<C> + Serialize,
{
    Cli::new("warehouse")
        .aggregate::<Task>()
        .relay(relay_options(nats))
}

/// Applies what the stream holds until a read brings nothing more.
fn drain(
    consumer: &Consumer,
    warehouse_db: &mut SqliteConnection,
) -> Result<usize, es_core::Error> {
    let mut applied = 0;
    loop {
        match consumer.project(warehouse_db, &WarehouseDispatcher, "warehouse")? {
            0 => return Ok(applied),
            more => applied += more,
        }
    }
}
