//! A store on pooled connections (r2d2, through diesel): threads sharing a pool of SQLite
//! connections, each with the store's settings, write one aggregate without losing a version.

use std::thread;

use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sqlite::SqliteConnection;
use es_core::{AppendOptions, AsOf, EventStore};
use es_diesel::DieselStore;
use es_tests::backend::SqliteDb;
use es_tests::domain::{Created, Task, TitleUpdated};

const THREADS: usize = 4;
const APPENDS: usize = 25;

#[test]
fn threads_share_a_pool_of_configured_connections() {
    let db = SqliteDb::new();
    let pool = Pool::builder()
        .max_size(THREADS as u32)
        .connection_customizer(Box::new(es_diesel::sqlite::Settings))
        .build(ConnectionManager::<SqliteConnection>::new(db.path()))
        .unwrap();
    let none = AppendOptions::default();
    let mut conn = pool.get().unwrap();
    let title = "pooled".to_owned();
    DieselStore::new(&mut *conn)
        .append(&1, Created { title }, &none)
        .unwrap();
    drop(conn);

    thread::scope(|scope| {
        for thread in 0..THREADS {
            let pool = &pool;
            let none = &none;
            scope.spawn(move || {
                for append in 0..APPENDS {
                    let mut conn = pool.get().unwrap();
                    let title = format!("{thread}-{append}");
                    DieselStore::new(&mut *conn)
                        .append(&1, TitleUpdated { title }, none)
                        .unwrap();
                }
            });
        }
    });

    let mut conn = pool.get().unwrap();
    let mut store = DieselStore::new(&mut *conn);
    let versions: Vec<i64> = EventStore::<Task>::history(&mut store, &1)
        .unwrap()
        .iter()
        .map(|event| event.version)
        .collect();
    let expected: Vec<i64> = (1..=(1 + THREADS * APPENDS) as i64).collect();
    assert_eq!(versions, expected);
    let stored: Task = store.load(&1).unwrap().unwrap();
    let last = *expected.last().unwrap();
    let replayed: Option<Task> = store.state_as_of(&1, AsOf::Version(last)).unwrap();
    assert_eq!(replayed, Some(stored));
}
