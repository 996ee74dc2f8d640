//! The generative tests of [`es_tests::generative`] on the in-memory store and on SQLite.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};

use es_core::InMemoryStore;
use es_diesel::DieselStore;
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::generative::{AGGREGATES, run_and_check, step};
use proptest::prelude::*;

static SQLITE: LazyLock<SqliteDb> = LazyLock::new(SqliteDb::new);
static NEXT_BASE: AtomicI64 = AtomicI64::new(1_000);

proptest! {
    #[test]
    fn stored_equals_replay_equals_time_travel_in_memory(steps in prop::collection::vec(step(), 0..40)) {
        run_and_check(&mut InMemoryStore::new(), 0, &steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn stored_equals_replay_equals_time_travel_on_sqlite(steps in prop::collection::vec(step(), 0..40)) {
        let base = NEXT_BASE.fetch_add(AGGREGATES as i64, Ordering::Relaxed);
        let mut conn = SQLITE.connect();
        run_and_check(&mut DieselStore::new(&mut conn), base, &steps)?;
    }
}
