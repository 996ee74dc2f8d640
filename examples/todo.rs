//! The to-do app of the talk "Event Sourcing made Simple", on the embedded SQLite default: tasks
//! are an ordinary diesel table changed only through events, each event applies itself to its
//! task, and every task keeps its history — "git log" for a record, and time travel.
//!
//! Run it with `cargo run --example todo`.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use es_core::{Aggregate, AppendOptions, Apply, AsOf, Event, EventContext, EventStore, Metadata};
use es_diesel::DieselStore;
use serde::{Deserialize, Serialize};

mod schema {
    diesel::table! {
        tasks (id) {
            id -> BigInt,
            title -> Text,
            due_on -> Nullable<Text>,
            completed_at -> Nullable<Timestamp>,
            completed_by -> Nullable<Text>,
        }
    }
}

/// A task: an ordinary diesel model, changed only by its events.
#[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]
#[aggregate(table = schema::tasks)]
#[diesel(table_name = schema::tasks)]
struct Task {
    id: i64,
    title: String,
    due_on: Option<String>,
    completed_at: Option<NaiveDateTime>,
    completed_by: Option<String>,
}

/// A task was created.
#[derive(Event, Serialize, Deserialize)]
#[aggregate(Task)]
#[event(creates)]
struct Created {
    /// What is to be done.
    #[data_attributes]
    title: String,
}

/// A due date was set.
#[derive(Event, Serialize, Deserialize)]
#[aggregate(Task)]
struct DueDateSet {
    /// The day the task is due.
    #[data_attributes]
    due_on: String,
}

/// A task was completed.
#[derive(Event, Serialize, Deserialize)]
#[aggregate(Task)]
struct Completed {}

impl Apply<Task> for Created {
    fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
        task.title.clone_from(&self.title);
    }
}

impl Apply<Task> for DueDateSet {
    fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
        task.due_on = Some(self.due_on.clone());
    }
}

impl Apply<Task> for Completed {
    fn apply(&self, task: &mut Task, event: &EventContext<'_>) {
        task.completed_at = Some(event.created_at.naive_utc()); // never the wall clock
        task.completed_by.clone_from(&event.metadata.actor_id);
    }
}

fn april(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, day, 9, 0, 0).unwrap()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = es_diesel::sqlite::establish(":memory:")?;
    conn.batch_execute(
        "CREATE TABLE tasks (id BIGINT PRIMARY KEY NOT NULL, title TEXT NOT NULL, due_on TEXT, \
         completed_at TIMESTAMP, completed_by TEXT)",
    )?;
    es_diesel::create_tables::<_, Task>(&mut conn)?;

    let mut store = DieselStore::new(&mut conn);
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

    store.connection().batch_execute("DELETE FROM tasks")?;
    let restored = EventStore::<Task>::replay_all(&mut store, &mut |_| {})?;
    let task_again: Option<Task> = store.load(&1)?;
    println!(
        "deleted every row, replayed {} events: task 1 restored = {}",
        restored.events,
        task_again.as_ref() == Some(&task)
    );
    Ok(())
}
