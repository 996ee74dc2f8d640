//! A subscriber process for the kill tests: follows the subscription `seen` until it is killed.
//!
//! `test_subscriber LEASE_MS sqlite PATH | postgres URL SCHEMA | mysql URL DATABASE`.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use es_diesel::{Subscriber, SubscriberOptions};
use es_tests::backend::{OnTestDb, TestConnection, TestDb, on_test_db};

/// Follows `seen` with a lease this long.
struct Follow(Duration);

impl OnTestDb for Follow {
    fn run<D: TestDb>(self, db: &D) {
        let options = SubscriberOptions::default()
            .subscriber_id(format!("test-subscriber-{}", std::process::id()))
            .lease(self.0)
            .batch(50)
            .poll(Duration::from_millis(2));
        Subscriber::new(D::Conn::subscription_dispatcher(), "seen", options)
            .expect("the subscription `seen` is declared")
            .run(
                || Ok::<_, std::convert::Infallible>(db.connect()),
                &AtomicBool::new(false),
            )
            .expect("the subscriber runs until it is killed");
    }
}

fn main() {
    es_tests::exit_with_parent();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lease = Duration::from_millis(args[0].parse().expect("LEASE_MS"));
    on_test_db(&args[1..], Follow(lease));
}
