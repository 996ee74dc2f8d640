//! A subscriber process for the kill tests: follows the subscription `seen` until it is killed.
//!
//! `test_subscriber LEASE_MS sqlite PATH | postgres URL SCHEMA | mysql URL DATABASE`.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use es_diesel::{Dispatch, Subscriber, SubscriberOptions};
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::subscriptions::SubscriptionDispatcher;

fn run<D: TestDb>(db: &D, lease: Duration)
where
    SubscriptionDispatcher: Dispatch<D::Conn>,
{
    let options = SubscriberOptions::default()
        .subscriber_id(format!("test-subscriber-{}", std::process::id()))
        .lease(lease)
        .batch(50)
        .poll(Duration::from_millis(2));
    Subscriber::new(&SubscriptionDispatcher, "seen", options)
        .expect("the subscription `seen` is declared")
        .run(
            || Ok::<_, std::convert::Infallible>(db.connect()),
            &AtomicBool::new(false),
        )
        .expect("the subscriber runs until it is killed");
}

fn main() {
    es_tests::exit_with_parent();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lease = Duration::from_millis(args[0].parse().expect("LEASE_MS"));
    match args[1].as_str() {
        "sqlite" => run(&SqliteDb::open(&args[2]), lease),
        #[cfg(feature = "postgres")]
        "postgres" => run(&es_tests::backend::PgDb::open(&args[2], &args[3]), lease),
        #[cfg(feature = "mysql")]
        "mysql" => run(&es_tests::backend::MysqlDb::open(&args[2], &args[3]), lease),
        other => panic!("unknown backend {other}"),
    }
}
