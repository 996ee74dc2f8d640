//! The to-do app of the talk "Event Sourcing made Simple": tasks are an ordinary diesel table
//! changed only through events; reactors notify the creator and forward every event to an event
//! bus (after commit, by a worker) and keep an activity feed (in the write transaction). The story
//! of [`run`] is the talk's: a `completed` flag became `completed_at` and `completed_by`, and a
//! destroyed task became a soft-deleted one — and a replay backfilled both.

use std::io::Write;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use diesel::prelude::*;
use es_core::{
    Aggregate, AppendOptions, Apply, AsOf, Command, Event, EventContext, EventStore, Metadata,
    NewEvent, Rejection,
};
use es_diesel::cli::Cli;
use es_diesel::{
    AnyEvent, Database, DieselStore, Dispatches, DriftKind, JobContext, ReactorError, Recorded,
    Stores, Worker, WorkerOptions, dispatcher, job_counts,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::db::{
    ACTIVITIES_TABLE, OUTBOX_TABLE, activities, clear_activities, outbox, record_activity,
    record_in_outbox,
};
use crate::print_history;

/// Where the app's event catalog is committed (`es_core::catalog`): the reference the data team
/// reads, written at boot by the example and checked by the tests.
pub const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/todo");

/// The app's aggregates, whose events its catalog lists.
pub const AGGREGATES: &[&str] = &[<Task as Aggregate>::NAME];

/// The diesel schema of the app.
#[allow(missing_docs)]
pub mod schema {
    diesel::table! {
        tasks (id) {
            id -> BigInt,
            title -> Text,
            due_on -> Nullable<Text>,
            assignee -> Nullable<Text>,
            completed_at -> Nullable<Timestamp>,
            completed_by -> Nullable<Text>,
            deleted_at -> Nullable<Timestamp>,
        }
    }
}

/// The app's own tables, one statement each (the framework creates its own).
pub const TABLES: &[&str] = &[
    "CREATE TABLE tasks (id BIGINT PRIMARY KEY NOT NULL, title TEXT NOT NULL, due_on TEXT, \
     assignee TEXT, completed_at TIMESTAMP, completed_by TEXT, deleted_at TIMESTAMP)",
    ACTIVITIES_TABLE,
    OUTBOX_TABLE,
];

/// A task: an ordinary diesel model, changed only by its events.
#[derive(
    Aggregate, Queryable, Selectable, Insertable, Serialize, Default, Clone, Debug, PartialEq,
)]
#[aggregate(table = schema::tasks)]
#[diesel(table_name = schema::tasks)]
pub struct Task {
    /// The task's id.
    pub id: i64,
    /// What is to be done.
    pub title: String,
    /// The day it is due.
    pub due_on: Option<String>,
    /// Who does it.
    pub assignee: Option<String>,
    /// When it was completed (UTC): the `task.completed` event's time.
    pub completed_at: Option<NaiveDateTime>,
    /// Who completed it: the actor of the `task.completed` event.
    pub completed_by: Option<String>,
    /// When it was deleted (a soft delete: the row stays).
    pub deleted_at: Option<NaiveDateTime>,
}

/// A task was created.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Task)]
#[event(creates)]
pub struct Created {
    /// What is to be done.
    #[data_attributes]
    pub title: String,
}

/// A task's title was changed.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Task)]
pub struct TitleUpdated {
    /// The new title.
    #[data_attributes]
    pub title: String,
}

/// A due date was set.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Task)]
pub struct DueDateSet {
    /// The day the task is due (`YYYY-MM-DD`).
    #[data_attributes]
    pub due_on: String,
}

/// A task was assigned to someone.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Task)]
pub struct Assigned {
    /// Who does it.
    #[data_attributes]
    pub assignee: String,
}

/// A task was completed.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Task)]
pub struct Completed {}

/// A task was deleted. It used to delete the row (`#[event(destroys)]`); it is a soft delete now,
/// and a replay brought the deleted rows back.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Task)]
pub struct Destroyed {}

impl Apply<Task> for Created {
    fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
        task.title.clone_from(&self.title);
    }
}

impl Apply<Task> for TitleUpdated {
    fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
        task.title.clone_from(&self.title);
    }
}

impl Apply<Task> for DueDateSet {
    fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
        task.due_on = Some(self.due_on.clone());
    }
}

impl Apply<Task> for Assigned {
    fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
        task.assignee = Some(self.assignee.clone());
    }
}

impl Apply<Task> for Completed {
    fn apply(&self, task: &mut Task, event: &EventContext<'_>) {
        task.completed_at = Some(event.created_at.naive_utc()); // never the wall clock
        task.completed_by.clone_from(&event.metadata.actor_id);
    }
}

impl Apply<Task> for Destroyed {
    fn apply(&self, task: &mut Task, event: &EventContext<'_>) {
        task.deleted_at = Some(event.created_at.naive_utc());
    }
}

/// Completes a task (nothing to do if it is completed already).
#[derive(Validate, Debug)]
pub struct Complete {
    /// The task.
    pub task: i64,
}

impl Command for Complete {
    type Aggregate = Task;

    fn aggregate_id(&self) -> i64 {
        self.task
    }

    fn decide(&self, current: Option<&Task>) -> Result<Vec<NewEvent<Task>>, Rejection> {
        let task = current.ok_or(Rejection::NotFound)?;
        if task.deleted_at.is_some() {
            return Err(Rejection::not_allowed("it was deleted"));
        }
        Ok(if task.completed_at.is_some() {
            Vec::new()
        } else {
            vec![Completed {}.into()]
        })
    }
}

/// The activity feed, a projection: one line per task event, written in the event's transaction
/// and rebuilt from the events by `es_diesel::rebuild_projection`.
pub fn activity_feed<C: Database>(
    conn: &mut C,
    event: &es_core::RecordedEvent<i64>,
) -> Result<(), ReactorError> {
    let who = event.metadata.actor_id.as_deref().unwrap_or("someone");
    let line = format!(
        "{} on task {} by {who}",
        event.event_type, event.aggregate_id
    );
    record_activity(conn, event.id, &line)?;
    Ok(())
}

/// Tells the task's creator it was completed: an async reactor, run by a worker after commit. The
/// outbox row stands in for the email; its key makes a retried delivery harmless.
pub fn notify_creator<C: Database>(
    job: &mut JobContext<'_, C>,
    completed: Recorded<'_, Completed>,
) -> Result<(), ReactorError> {
    let key = job.idempotency_key();
    let by = completed
        .metadata()
        .actor_id
        .as_deref()
        .unwrap_or("someone");
    let text = format!(
        "email: task {} was completed by {by}",
        completed.aggregate_id()
    );
    record_in_outbox(job.connection(), &key, &text)?;
    Ok(())
}

/// Forwards every event to the event bus (the outbox stands in for it).
pub fn forward_to_event_bus<C: Database>(
    job: &mut JobContext<'_, C>,
    event: &AnyEvent,
) -> Result<(), ReactorError> {
    let key = job.idempotency_key();
    let text = format!("bus: {} {}", event.event_type, event.aggregate_id);
    record_in_outbox(job.connection(), &key, &text)?;
    Ok(())
}

/// A database the to-do app runs on, whichever backend it is: the one bound of the app's code,
/// which implies everything the store needs for its aggregates and its dispatcher.
pub trait TodoDatabase: Database + Stores<Task> + Dispatches<TodoDispatcher> {}

impl<C: Database + Stores<Task> + Dispatches<TodoDispatcher>> TodoDatabase for C {}

dispatcher! {
    /// The to-do app's routes: the talk's dispatcher.
    pub struct TodoDispatcher for sqlite, postgres;
    Completed => async: [notify_creator];
    Task::* => project: [activity_feed];
    * => async: [forward_to_event_bus];
}

/// April 2026, at 9:00 UTC: when the talk's events happen.
pub fn april(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, day, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

fn print_tasks<C: TodoDatabase>(
    store: &mut DieselStore<'_, C>,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    for id in 1..=3 {
        match store.load::<Task>(&id)? {
            Some(task) => writeln!(
                out,
                "  task {id} {:?}: completed_at {:?}, completed_by {:?}, deleted_at {:?}",
                task.title,
                task.completed_at.map(|at| at.to_string()),
                task.completed_by,
                task.deleted_at.map(|at| at.to_string()),
            )?,
            None => writeln!(out, "  task {id}: no row")?,
        }
    }
    Ok(())
}

/// The operator command line of the to-do app (`es_diesel::cli`): `cargo run --example todo --
/// log task 1`, `show task 1 --as-of 2026-04-20`, `replay task`, `verify task`, ...
pub fn cli<C: TodoDatabase>() -> Cli<'static, C> {
    Cli::new("todo")
        .aggregate::<Task>()
        .dispatcher(&TodoDispatcher)
        .projection("activity_feed", |conn: &mut C| Ok(clear_activities(conn)?))
        .catalog(CATALOG)
}

/// The talk's story, printed to `out`: on any connection of the app.
pub fn run<C: TodoDatabase>(
    conn: &mut C,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    crate::create_tables(conn, TABLES)?;
    es_diesel::create_tables::<_, Task>(conn)?;
    let mut store = DieselStore::new(&mut *conn).with_dispatcher(&TodoDispatcher);
    let philippe = Metadata::by_actor("philippe").with_ip("203.0.113.7");
    let by = |who: &Metadata, day| AppendOptions::with_metadata(who.clone()).at(april(day));
    let ann = Metadata::by_actor("ann").with_ip("198.51.100.4");

    writeln!(out, "== Prepare the slides")?;
    let title = "Prepare slide".to_owned();
    store.append(&1, Created { title }, &by(&philippe, 10))?;
    store.append(
        &1,
        DueDateSet {
            due_on: "2026-04-20".into(),
        },
        &by(&philippe, 11),
    )?;
    let title = "Prepare slides".to_owned();
    store.append(&1, TitleUpdated { title }, &by(&philippe, 12))?;
    let assignee = "philippe".to_owned();
    store.append(&1, Assigned { assignee }, &by(&philippe, 12))?;
    store.append(
        &1,
        DueDateSet {
            due_on: "2026-04-24".into(),
        },
        &by(&philippe, 21),
    )?;
    store.execute(&Complete { task: 1 }, &by(&philippe, 23))?;
    let again = store.execute(&Complete { task: 1 }, &by(&philippe, 23))?;
    writeln!(
        out,
        "completing it twice: the second time is a no-op = {}",
        again.is_noop()
    )?;
    let title = "Book the venue".to_owned();
    store.append(&2, Created { title }, &by(&ann, 13))?;
    store.execute(&Complete { task: 2 }, &by(&ann, 14))?;
    let title = "Print flyers".to_owned();
    store.append(&3, Created { title }, &by(&ann, 15))?;
    store.append(&3, Destroyed {}, &by(&ann, 16))?;
    writeln!(out, "history of task 1, its git log:")?;
    print_history(out, &store.history::<Task>(&1)?)?;

    writeln!(out, "== Time travel: task 1 on April 20th")?;
    let then: Task = store
        .state_as_of(&1, AsOf::Time(april(20)))?
        .ok_or("task 1 existed on April 20th")?;
    writeln!(
        out,
        "title {:?}, due {:?}, completed {:?}",
        then.title, then.due_on, then.completed_at
    )?;
    let first: Task = store
        .state_as_of(&1, AsOf::Version(1))?
        .ok_or("version 1")?;
    writeln!(out, "as of version 1: title {:?}", first.title)?;

    writeln!(out, "== Last year's app")?;
    // Last year the calculator of `task.completed` only set a `completed` flag, and
    // `task.destroyed` deleted the row: this is what the tasks table held after adding the new
    // columns, before any replay.
    store.connection().batch_execute(
        "UPDATE tasks SET completed_at = NULL, completed_by = NULL; DELETE FROM tasks WHERE id = 3",
    )?;
    print_tasks(&mut store, out)?;
    audit(&mut store, out)?;
    let replayed = store.replay_all::<Task>(&mut |_| {})?;
    writeln!(
        out,
        "replayed {} events of {} tasks with today's calculators (no reactor ran):",
        replayed.events, replayed.aggregates
    )?;
    print_tasks(&mut store, out)?;
    audit(&mut store, out)?;

    writeln!(out, "== Reactors")?;
    let feed = activities(store.connection())?;
    writeln!(
        out,
        "activity feed (a projection, written with each event): {} lines",
        feed.len()
    )?;
    for line in feed.iter().take(3) {
        writeln!(out, "  {line}")?;
    }
    let queued = job_counts(store.connection())?.pending;
    writeln!(out, "jobs queued for the worker: {queued}")?;
    let worker = Worker::new(&TodoDispatcher, WorkerOptions::default().worker_id("todo"));
    let ran = worker.drain(store.connection())?.completed;
    writeln!(out, "a worker ran {ran} job(s); the emails in the outbox:")?;
    for message in outbox(store.connection())?
        .iter()
        .filter(|m| m.starts_with("email"))
    {
        writeln!(out, "  {message}")?;
    }
    writeln!(
        out,
        "== Operate it like git: cargo run --example todo -- log task 1 | show task 1 --as-of \
         2026-04-20 | replay task | verify task | stats task | jobs | --help"
    )?;
    Ok(())
}

/// Prints which stored tasks are not what their events build (`es_diesel::verify`, the audit
/// behind `todo verify task`), and on which fields.
fn audit<C: TodoDatabase>(
    store: &mut DieselStore<'_, C>,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut drifts = Vec::new();
    let report = es_diesel::verify::<C, Task>(
        store.connection(),
        &mut |drift| drifts.push(drift.clone()),
        &mut |_| {},
    )?;
    writeln!(
        out,
        "verify: {} of {} tasks are not what their events build",
        report.drifted, report.aggregates
    )?;
    for drift in drifts {
        let id = drift.aggregate_id;
        match drift.kind {
            DriftKind::Fields(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|field| format!("{} {} -> {}", field.field, field.stored, field.replayed))
                    .collect();
                writeln!(out, "  task {id}: {}", fields.join(", "))?;
            }
            DriftKind::MissingRow => writeln!(out, "  task {id}: its row is missing")?,
            other => writeln!(out, "  task {id}: {other:?}")?,
        }
    }
    Ok(())
}
