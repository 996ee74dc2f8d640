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
fn creating_over_a_live_history_is_a_conflict() {
    contract::creating_over_a_live_history_is_a_conflict(&mut InMemoryStore::new(), |store, id| {
        store.delete_row::<Task>(&id);
    });
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

/// A rebuild reports the version of the last event it applied (what replays count events by):
/// 0 before any, then each event's.
#[test]
fn a_rebuild_tracks_the_version_it_reached() {
    use es_core::{AppendOptions, EventStore, Rebuild};
    use es_tests::domain::{Completed, Created, TitleUpdated};
    let mut store = InMemoryStore::new();
    let by = AppendOptions::default();
    let title = "t".to_owned();
    store.append(&1, Created { title }, &by).unwrap();
    let title = "u".to_owned();
    store.append(&1, TitleUpdated { title }, &by).unwrap();
    store.append(&1, Completed {}, &by).unwrap();
    let history = EventStore::<Task>::history(&mut store, &1).unwrap();
    let mut rebuild = Rebuild::<Task>::new(1).unwrap();
    assert_eq!(rebuild.version(), 0);
    for (applied, record) in history.iter().enumerate() {
        rebuild.apply(record).unwrap();
        assert_eq!(rebuild.version(), applied as i64 + 1);
    }
    assert_eq!(rebuild.state().map(|task| task.title.as_str()), Some("u"));
}
