//! An `AggregateTable` written by hand, as the docs described it before `Stores`: it still
//! compiles beside the blanket impl the store derives from `Stores<A>` (code generic over the
//! backend bounds on `Stores`, which a hand-written impl of the connection's trait gives).
use diesel::prelude::*;
use diesel::SqliteConnection;
use es_core::{AppendOptions, Apply, Event, EventContext, EventStore};
use es_diesel::{AggregateTable, DieselStore, Locked};
use serde::{Deserialize, Serialize};

diesel::table! {
    tasks (id) {
        id -> BigInt,
    }
}

#[derive(es_core::Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug)]
#[diesel(table_name = tasks)]
struct Task {
    id: i64,
}

/// A task was created.
#[derive(Event, Serialize, Deserialize, schemars::JsonSchema)]
#[aggregate(Task)]
#[event(creates)]
struct Created {}

impl Apply<Task> for Created {
    fn apply(&self, _: &mut Task, _: &EventContext<'_>) {}
}

impl AggregateTable<SqliteConnection> for Task {
    const TABLE: &'static str = "tasks";
    const ID_COLUMN: &'static str = "id";

    fn load(conn: &mut SqliteConnection, id: &i64) -> QueryResult<Option<Self>> {
        tasks::table.find(*id).first(conn).optional()
    }

    fn load_many(conn: &mut SqliteConnection, ids: &[i64]) -> QueryResult<Vec<Self>> {
        tasks::table.filter(tasks::id.eq_any(ids)).load(conn)
    }

    fn lock(conn: &mut SqliteConnection, id: &i64) -> QueryResult<Locked<Self>> {
        Self::load(conn, id).map(Locked::Row)
    }

    fn lock_many(_: &mut SqliteConnection, _: &[i64]) -> QueryResult<()> {
        Ok(())
    }

    fn save(conn: &mut SqliteConnection, tasks: &[Self]) -> QueryResult<()> {
        diesel::replace_into(tasks::table).values(tasks).execute(conn).map(drop)
    }

    fn delete(conn: &mut SqliteConnection, ids: &[i64]) -> QueryResult<()> {
        diesel::delete(tasks::table.filter(tasks::id.eq_any(ids))).execute(conn).map(drop)
    }
}

fn main() {
    let mut conn = es_diesel::sqlite::establish(":memory:").unwrap();
    diesel::sql_query("CREATE TABLE tasks (id BIGINT PRIMARY KEY NOT NULL)")
        .execute(&mut conn)
        .unwrap();
    es_diesel::create_tables::<_, Task>(&mut conn).unwrap();
    let mut store = DieselStore::new(&mut conn);
    store.append(&7, Created {}, &AppendOptions::default()).unwrap();
    let task: Option<Task> = store.load(&7).unwrap();
    assert_eq!(task.map(|task| task.id), Some(7));
}
