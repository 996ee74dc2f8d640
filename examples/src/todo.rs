//! The to-do app of the talk "Event Sourcing made Simple": tasks are an ordinary diesel table
//! changed only through events; reactors notify, forward every event to an event bus, and keep an
//! activity feed.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use es_core::{Aggregate, Apply, Event, EventContext};
use es_diesel::{AnyEvent, Database, JobContext, ReactorError, Recorded, dispatcher};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The diesel schema of the app.
#[allow(missing_docs)]
pub mod schema {
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

/// Where the app's event catalog is committed (`es_core::catalog`): the reference the data team
/// reads, written at boot by `es_core::catalog::write_catalog` and checked by the tests.
pub const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/todo");

/// The app's own tables (the framework creates its own with `es_diesel::create_tables`).
pub const TABLES: &str = "
    CREATE TABLE IF NOT EXISTS tasks (id BIGINT PRIMARY KEY NOT NULL, title TEXT NOT NULL,
        due_on TEXT, completed_at TIMESTAMP, completed_by TEXT);
    CREATE TABLE IF NOT EXISTS activities (event_id BIGINT PRIMARY KEY NOT NULL,
        line TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS outbox (idempotency_key VARCHAR(255) PRIMARY KEY NOT NULL,
        message TEXT NOT NULL);
";

/// A task: an ordinary diesel model, changed only by its events.
#[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]
#[aggregate(table = schema::tasks)]
#[diesel(table_name = schema::tasks)]
pub struct Task {
    /// The task's id.
    pub id: i64,
    /// What is to be done.
    pub title: String,
    /// The day it is due.
    pub due_on: Option<String>,
    /// When it was completed (UTC).
    pub completed_at: Option<NaiveDateTime>,
    /// Who completed it.
    pub completed_by: Option<String>,
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

/// A due date was set.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Task)]
pub struct DueDateSet {
    /// The day the task is due.
    #[data_attributes]
    pub due_on: String,
}

/// A task was completed.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Task)]
pub struct Completed {}

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

/// The activity feed, a projection: one line per task event, written in the event's transaction
/// and rebuilt from the events by `es_diesel::rebuild_projection`.
pub fn activity_feed<C: Database>(
    conn: &mut C,
    event: &es_core::RecordedEvent<i64>,
) -> Result<(), ReactorError> {
    let who = event.metadata.actor_id.as_deref().unwrap_or("someone");
    conn.batch_execute(&format!(
        "INSERT INTO activities (event_id, line) VALUES ({}, '{} on task {} by {}')",
        event.id,
        event.event_type,
        event.aggregate_id,
        who.replace('\'', "''")
    ))?;
    Ok(())
}

/// Tells the task's creator it was completed: an async reactor, run by a worker after commit. The
/// outbox row stands in for the email; its key makes a retried delivery harmless.
pub fn notify_creator<C: Database>(
    ctx: &mut JobContext<'_, C>,
    completed: Recorded<'_, Completed>,
) -> Result<(), ReactorError> {
    let key = ctx.idempotency_key();
    let message = format!(
        "email: task {} was completed by {}",
        completed.aggregate_id(),
        completed
            .metadata()
            .actor_id
            .as_deref()
            .unwrap_or("someone")
    );
    record_in_outbox(ctx.connection(), &key, &message)
}

/// Forwards every event to the event bus (the outbox here).
pub fn forward_to_event_bus<C: Database>(
    ctx: &mut JobContext<'_, C>,
    event: &AnyEvent,
) -> Result<(), ReactorError> {
    let key = ctx.idempotency_key();
    let message = format!(
        "bus: {} {} {}",
        event.event_type, event.aggregate_id, event.data
    );
    record_in_outbox(ctx.connection(), &key, &message)
}

fn record_in_outbox<C: Database>(
    conn: &mut C,
    key: &str,
    message: &str,
) -> Result<(), ReactorError> {
    let message = message.replace('\'', "''");
    conn.batch_execute(&format!(
        "INSERT INTO outbox (idempotency_key, message) SELECT '{key}', '{message}' \
         WHERE NOT EXISTS (SELECT 1 FROM outbox WHERE idempotency_key = '{key}')"
    ))?;
    Ok(())
}

dispatcher! {
    /// The to-do app's routes: the talk's dispatcher.
    pub struct TodoDispatcher;
    Completed => async: [notify_creator];
    Task::* => project: [activity_feed];
    * => async: [forward_to_event_bus];
}
