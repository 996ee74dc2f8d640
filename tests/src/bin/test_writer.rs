//! A writer process for the crash test: appends through the test dispatcher until it is killed —
//! task events on 20 tasks (each queuing its event-bus job), and pins of 3 posts (each a trigger
//! cascade unpinning the previous post and moving the board's pin).
//!
//! `test_writer sqlite PATH | postgres URL SCHEMA | mysql URL DATABASE`

use es_core::{AppendOptions, Error, EventStore, Metadata};
use es_diesel::{AggregateTable, DieselStore};
use es_tests::backend::{SqliteDb, TestConnection, TestDb};
use es_tests::domain::{Created, Task, TitleUpdated};
use es_tests::reactors::{Pinned, Post};

fn run<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(D::Conn::dispatcher());
    let options = AppendOptions::with_metadata(Metadata::by_actor("writer"));
    for n in 0u64.. {
        let id = (n % 20) as i64 + 1;
        let title = format!("w{n}");
        match store.append(
            &id,
            TitleUpdated {
                title: title.clone(),
            },
            &options,
        ) {
            Err(Error::NotFound { .. }) => {
                store
                    .append(&id, Created { title }, &options)
                    .expect("create a task");
            }
            written => {
                written.expect("append to a task");
            }
        }
        if n % 5 == 0 {
            let post = (n / 5 % 3) as i64 + 1;
            let pinned: Option<Post> = store.load(&post).expect("load a post");
            if pinned.is_some_and(|post| !post.pinned) {
                store
                    .append(&post, Pinned {}, &options)
                    .expect("pin a post");
            }
        }
    }
}

fn main() {
    es_tests::exit_with_parent();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args[0].as_str() {
        "sqlite" => run(&SqliteDb::open(&args[1])),
        #[cfg(feature = "postgres")]
        "postgres" => run(&es_tests::backend::PgDb::open(&args[1], &args[2])),
        #[cfg(feature = "mysql")]
        "mysql" => run(&es_tests::backend::MysqlDb::open(&args[1], &args[2])),
        other => panic!("unknown backend {other}"),
    }
}
