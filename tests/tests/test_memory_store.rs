//! The store contract on the in-memory store.

use es_core::InMemoryStore;
use es_tests::contract;
use es_tests::domain::Task;

#[test]
fn append_applies_saves_and_records() {
    contract::append_applies_saves_and_records(&mut InMemoryStore::new());
}

#[test]
fn several_events_are_stored_in_order() {
    contract::several_events_are_stored_in_order(&mut InMemoryStore::new());
}

#[test]
fn a_failing_append_leaves_nothing() {
    contract::a_failing_append_leaves_nothing(&mut InMemoryStore::new());
}

#[test]
fn optimistic_concurrency_conflicts() {
    contract::optimistic_concurrency_conflicts(&mut InMemoryStore::new());
}

#[test]
fn time_travel_by_version_and_time() {
    contract::time_travel_by_version_and_time(&mut InMemoryStore::new());
}

#[test]
fn destroy_and_restore_by_replay() {
    contract::destroy_and_restore_by_replay(&mut InMemoryStore::new(), |store, id| {
        store.delete_row::<Task>(&id);
    });
}

#[test]
fn replay_all_reproduces_every_aggregate() {
    contract::replay_all_reproduces_every_aggregate(&mut InMemoryStore::new(), |store, id| {
        store.delete_row::<Task>(&id);
    });
}
