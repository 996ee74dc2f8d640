//! The to-do app of the talk "Event Sourcing made Simple": tasks change only through events,
//! each event applies itself to its task, and the history of every task is kept.
//!
//! Run it with `cargo run --example todo`.

use chrono::{DateTime, TimeZone, Utc};
use es_core::{
    Aggregate, AppendOptions, Apply, AsOf, Event, EventContext, EventStore, InMemoryStore, Metadata,
};
use serde::{Deserialize, Serialize};

/// A task: an ordinary struct, changed only by its events.
#[derive(Aggregate, Default, Clone, Debug, PartialEq)]
struct Task {
    id: i64,
    title: String,
    due_on: Option<String>,
    completed_at: Option<DateTime<Utc>>,
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
        task.completed_at = Some(event.created_at);
        task.completed_by.clone_from(&event.metadata.actor_id);
    }
}

fn april(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, day, 9, 0, 0).unwrap()
}

fn main() -> Result<(), es_core::Error> {
    let mut store = InMemoryStore::new();
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
    let task: Task = store.load(&1)?.expect("task 1 was created");
    println!("now: {task:?}");
    let on_april_20: Task = store
        .state_as_of(&1, AsOf::Time(april(20)))?
        .expect("created on the 10th");
    println!(
        "as of April 20th: due {:?}, completed {:?}",
        on_april_20.due_on, on_april_20.completed_at
    );
    Ok(())
}
