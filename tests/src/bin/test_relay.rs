//! A relay process for the kill tests: relays the tasks' and projects' events to a stream until
//! it is killed.
//!
//! `test_relay NATS_URL STREAM LEASE_MS sqlite PATH | postgres URL SCHEMA | mysql URL DATABASE`.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use es_diesel::SubscriberOptions;
use es_diesel::relay::{Relay, RelayOptions};
use es_tests::backend::{OnTestDb, TestDb, on_test_db};

/// Relays to a stream with a lease this long.
struct Follow {
    options: RelayOptions,
}

impl OnTestDb for Follow {
    fn run<D: TestDb>(self, db: &D) {
        Relay::new(self.options)
            .expect("a relay")
            .run(
                || Ok::<_, std::convert::Infallible>(db.connect()),
                &AtomicBool::new(false),
            )
            .expect("the relay runs until it is killed");
    }
}

fn main() {
    es_tests::exit_with_parent();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lease = Duration::from_millis(args[2].parse().expect("LEASE_MS"));
    let subscriber = SubscriberOptions::default()
        .subscriber_id(format!("test-relay-{}", std::process::id()))
        .lease(lease)
        .poll(Duration::from_millis(2));
    let options = RelayOptions::new(&args[0], &args[1])
        .tables(es_tests::nats::RELAYED_TABLES)
        .subscriber(subscriber);
    on_test_db(&args[3..], Follow { options });
}
