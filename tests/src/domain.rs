//! The to-do domain of the talk, shared by the behaviour suites: tasks and projects with their
//! events, as ordinary diesel models.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use es_core::{
    Aggregate, AppendOptions, Apply, Event, EventContext, EventStore, NewEvent, Transactional,
};
use es_diesel::{AggregateTable, Database, DieselStore, TextUuid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The diesel schema of the domain's tables.
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

    diesel::table! {
        /// Stored under a name of its own (`#[sql_name]`): every statement the store writes on it
        /// must name it as diesel does.
        #[sql_name = "project_rows"]
        projects (id) {
            id -> BigInt,
            name -> Text,
        }
    }

    diesel::table! {
        notes (id) {
            id -> Text,
            body -> Text,
        }
    }

    #[cfg(feature = "postgres")]
    diesel::table! {
        cards (id) {
            id -> Uuid,
            body -> Text,
        }
    }
}

/// A task of the to-do app.
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
    /// When the task is due.
    pub due_on: Option<String>,
    /// When the task was completed, in UTC (the event's `created_at`, never the clock).
    pub completed_at: Option<NaiveDateTime>,
    /// Who completed it (from the event's metadata).
    pub completed_by: Option<String>,
}

/// A task was created.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Task)]
#[event(creates)]
pub struct Created {
    /// What is to be done.
    #[data_attributes]
    pub title: String,
}

/// A task's title was changed.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Task)]
pub struct TitleUpdated {
    /// The new title.
    #[data_attributes]
    pub title: String,
}

/// A due date was set.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Task)]
pub struct DueDateSet {
    /// The day the task is due (ISO 8601).
    #[data_attributes]
    pub due_on: String,
}

/// A task was completed.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Task)]
pub struct Completed {}

/// A task was destroyed: its row is deleted, its events are kept.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Task)]
#[event(destroys)]
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

impl Apply<Task> for Completed {
    fn apply(&self, task: &mut Task, event: &EventContext<'_>) {
        task.completed_at = Some(event.created_at.naive_utc());
        task.completed_by.clone_from(&event.metadata.actor_id);
    }
}

impl Apply<Task> for Destroyed {
    fn apply(&self, _: &mut Task, _: &EventContext<'_>) {}
}

/// A project, the second aggregate of the domain.
#[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]
#[aggregate(table = schema::projects)]
#[diesel(table_name = schema::projects)]
pub struct Project {
    /// The project's id.
    pub id: i64,
    /// Its name.
    pub name: String,
}

/// A project was started.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Project)]
#[event(creates)]
pub struct ProjectStarted {
    /// The project's name.
    #[data_attributes]
    pub name: String,
}

impl Apply<Project> for ProjectStarted {
    fn apply(&self, project: &mut Project, _: &EventContext<'_>) {
        project.name.clone_from(&self.name);
    }
}

/// A note, keyed by a UUID stored as text: works on every backend.
#[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]
#[aggregate(table = schema::notes)]
#[diesel(table_name = schema::notes)]
pub struct Note {
    /// The note's id.
    pub id: TextUuid,
    /// What it says.
    pub body: String,
}

/// A note was written.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Note)]
#[event(creates)]
pub struct NoteWritten {
    /// What it says.
    #[data_attributes]
    pub body: String,
}

impl Apply<Note> for NoteWritten {
    fn apply(&self, note: &mut Note, _: &EventContext<'_>) {
        note.body.clone_from(&self.body);
    }
}

/// A card, keyed by PostgreSQL's native `uuid`: its table queries exist for PostgreSQL only.
#[cfg(feature = "postgres")]
#[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]
#[aggregate(table = schema::cards, backend = postgres)]
#[diesel(table_name = schema::cards)]
pub struct Card {
    /// The card's id.
    pub id: uuid::Uuid,
    /// What it says.
    pub body: String,
}

/// A card was written.
#[cfg(feature = "postgres")]
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Card)]
#[event(creates)]
pub struct CardWritten {
    /// What it says.
    #[data_attributes]
    pub body: String,
}

#[cfg(feature = "postgres")]
impl Apply<Card> for CardWritten {
    fn apply(&self, card: &mut Card, _: &EventContext<'_>) {
        card.body.clone_from(&self.body);
    }
}

/// Appends to tasks `1..=tasks` ten events each (created, then retitled nine times), 500 tasks a
/// transaction: the histories the replay and catch-up benchmarks read.
pub fn write_task_histories<C: Database>(
    store: &mut DieselStore<'_, C>,
    tasks: i64,
) -> Result<(), es_core::Error>
where
    Task: AggregateTable<C>,
{
    for chunk in (1..=tasks).collect::<Vec<_>>().chunks(500) {
        store.transaction(|store| {
            for &id in chunk {
                let mut history: Vec<NewEvent<Task>> = vec![Created { title: "h".into() }.into()];
                history.extend((1..10).map(|n| {
                    TitleUpdated {
                        title: format!("h{n}"),
                    }
                    .into()
                }));
                store.append(&id, history, &AppendOptions::default())?;
            }
            Ok::<_, es_core::Error>(())
        })?;
    }
    Ok(())
}
