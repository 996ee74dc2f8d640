//! What `generate` prints (`es_diesel::cli`), compiled and run here on SQLite;
//! `examples/tests/cli.rs` checks that the generator prints each section between
//! `// >>> generate ...` and `// <<<`, and the migration below, exactly.
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use es_core::{Aggregate, AppendOptions, Apply, Event, EventContext, EventStore};
use es_diesel::{Database, DieselStore, UtcDateTime};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// >>> generate aggregate TaskList name:String due_on:Option<UtcDateTime>
// Aggregate `task_list`: its diesel schema, its model, and the migration of its tables.
diesel::table! {
    use diesel::sql_types::*;
    use es_diesel::sql_types::UtcTime;

    task_lists (id) {
        id -> BigInt,
        name -> Text,
        due_on -> Nullable<UtcTime>,
    }
}

/// A task list.
#[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]
#[aggregate(table = task_lists)]
#[diesel(table_name = task_lists)]
pub struct TaskList {
    /// Its id.
    pub id: i64,
    /// Its `name`.
    pub name: String,
    /// Its `due_on`.
    pub due_on: Option<UtcDateTime>,
}
// <<<

// >>> generate event TaskList ListOpened name:String --creates
// Event `task_list.list_opened`; after adding it, `docs` refreshes the catalog.
/// Task list: list opened.
#[derive(Event, Serialize, Deserialize, JsonSchema)]
#[aggregate(TaskList)]
#[event(creates)]
pub struct ListOpened {
    /// Its `name`.
    #[data_attributes]
    pub name: String,
}

impl Apply<TaskList> for ListOpened {
    fn apply(&self, task_list: &mut TaskList, _event: &EventContext<'_>) {
        task_list.name.clone_from(&self.name);
    }
}
// <<<

// >>> generate event TaskList ListRenamed name:String
// Event `task_list.list_renamed`; after adding it, `docs` refreshes the catalog.
/// Task list: list renamed.
#[derive(Event, Serialize, Deserialize, JsonSchema)]
#[aggregate(TaskList)]
pub struct ListRenamed {
    /// Its `name`.
    #[data_attributes]
    pub name: String,
}

impl Apply<TaskList> for ListRenamed {
    fn apply(&self, task_list: &mut TaskList, _event: &EventContext<'_>) {
        task_list.name.clone_from(&self.name);
    }
}
// <<<

/// The migration `generate aggregate` printed on SQLite (its `up.sql`).
const UP_SQL: &str = r"
CREATE TABLE task_lists (id BIGINT PRIMARY KEY NOT NULL, name TEXT NOT NULL, due_on TEXT);
CREATE TABLE IF NOT EXISTS task_list_events (id INTEGER PRIMARY KEY NOT NULL, aggregate_id BIGINT NOT NULL, version BIGINT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL, CONSTRAINT task_list_events_aggregate_version UNIQUE (aggregate_id, version));
CREATE INDEX IF NOT EXISTS task_list_events_type_created_at ON task_list_events (type, created_at);
CREATE INDEX IF NOT EXISTS task_list_events_created_at ON task_list_events (created_at);
";

fn main() {
    let mut conn = es_diesel::sqlite::establish(":memory:").unwrap();
    conn.batch_execute(UP_SQL).unwrap();
    conn.batch_execute(&SqliteConnection::framework_ddl().join(";"))
        .unwrap();
    let mut store = DieselStore::new(&mut conn);
    let none = AppendOptions::default();
    let name = "errands".to_owned();
    store.append(&1, ListOpened { name }, &none).unwrap();
    let name = "chores".to_owned();
    store.append(&1, ListRenamed { name }, &none).unwrap();
    let list: TaskList = store.load(&1).unwrap().unwrap();
    assert_eq!((list.name.as_str(), list.due_on), ("chores", None));
    assert_eq!(ListRenamed::TAG, "task_list.list_renamed");
    assert_eq!(TaskList::EVENTS_TABLE, "task_list_events");
}
