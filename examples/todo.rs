//! The to-do app of the talk "Event Sourcing made Simple", on the embedded SQLite default: tasks
//! are an ordinary diesel table changed only through events, each event applies itself to its
//! task, and every task keeps its history — "git log" for a record, and time travel. Reactors keep
//! an activity feed (in the write transaction) and notify and forward events (as jobs a worker
//! runs after commit).
//!
//! Run it with `cargo run --example todo`; it writes `todo.db` in the current directory, which
//! `cargo run --example worker` can then work on. At boot it regenerates the app's event catalog
//! in `examples/catalog/todo/` (`es_core::catalog::write_catalog`).

use chrono::{DateTime, TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use es_core::{AppendOptions, AsOf, EventStore, Metadata};
use es_diesel::{DieselStore, Worker, WorkerOptions, job_counts};
use es_examples::todo::{
    CATALOG, Completed, Created, DueDateSet, TABLES, Task, TodoDispatcher, schema,
};

fn april(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, day, 9, 0, 0).unwrap()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // At boot: regenerate the event catalog the data team reads (YAML, JSON Schemas, Markdown).
    let catalog = es_core::catalog::write_catalog(CATALOG, TodoDispatcher::ROUTES)?;
    println!(
        "event catalog of {} aggregate(s) written to {CATALOG}",
        catalog.aggregates.len()
    );

    let path = "todo.db";
    let _ = std::fs::remove_file(path);
    let mut conn = es_diesel::sqlite::establish(path)?;
    conn.batch_execute(TABLES)?;
    es_diesel::create_tables::<_, Task>(&mut conn)?;

    let mut store = DieselStore::new(&mut conn).with_dispatcher(&TodoDispatcher);
    let philippe = Metadata::by_actor("philippe").with_ip("203.0.113.7");
    let at = |day| AppendOptions::with_metadata(philippe.clone()).at(april(day));
    store.append(
        &1,
        Created {
            title: "Prepare slides".into(),
        },
        &at(10),
    )?;
    store.append(
        &1,
        DueDateSet {
            due_on: "2026-04-20".into(),
        },
        &at(11),
    )?;
    store.append(
        &1,
        DueDateSet {
            due_on: "2026-04-24".into(),
        },
        &at(21),
    )?;
    store.append(&1, Completed {}, &at(23))?;

    println!("history of task 1 (its git log):");
    for event in EventStore::<Task>::history(&mut store, &1)? {
        println!(
            "  v{} {} {:<18} {} by {}",
            event.version,
            event.created_at.format("%Y-%m-%d"),
            event.event_type,
            event.data,
            event.metadata.actor_id.as_deref().unwrap_or("?"),
        );
    }

    // Reading is plain diesel.
    let task: Task = schema::tasks::table
        .find(1)
        .select(Task::as_select())
        .first(store.connection())?;
    println!("now: {task:?}");

    let on_april_20: Option<Task> = store.state_as_of(&1, AsOf::Time(april(20)))?;
    let on_april_20 = on_april_20.ok_or("task 1 existed on April 20th")?;
    println!(
        "as of April 20th: due {:?}, completed {:?}",
        on_april_20.due_on, on_april_20.completed_at
    );

    let activities: Vec<String> =
        diesel::sql_query("SELECT line FROM activities ORDER BY event_id")
            .load::<Line>(store.connection())?
            .into_iter()
            .map(|row| row.line)
            .collect();
    println!("activity feed (a projection, written with each event): {activities:?}");

    let queued = job_counts(store.connection())?;
    println!("jobs queued for the worker: {}", queued.pending);
    let worker = Worker::new(&TodoDispatcher, WorkerOptions::default().worker_id("todo"));
    let ran = worker.run_once(store.connection())?;
    println!("a worker ran {} jobs; the outbox now holds:", ran.completed);
    let outbox: Vec<Line> =
        diesel::sql_query("SELECT message AS line FROM outbox ORDER BY message")
            .load(store.connection())?;
    for row in outbox {
        println!("  {}", row.line);
    }

    store.connection().batch_execute("DELETE FROM tasks")?;
    let restored = EventStore::<Task>::replay_all(&mut store, &mut |_| {})?;
    let task_again: Option<Task> = store.load(&1)?;
    println!(
        "deleted every row, replayed {} events (no reactor ran): task 1 restored = {}",
        restored.events,
        task_again.as_ref() == Some(&task)
    );
    Ok(())
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = diesel::sql_types::Text)]
    line: String,
}
