//! The behaviour every [`EventStore`] must have, written once and run against each store: the
//! in-memory one and the diesel one on every backend.

use chrono::{TimeZone, Utc};
use es_core::{
    AppendOptions, AsOf, Error, EventFilter, EventStore, Metadata, NewEvent, RecordedEvent,
    ReplayProgress,
};
use serde_json::json;

use crate::domain::{Completed, Created, Destroyed, DueDateSet, Task, TitleUpdated};

fn by(actor: &str) -> AppendOptions {
    AppendOptions::with_metadata(Metadata::by_actor(actor))
}

/// Appending applies the events, saves the aggregate and stores contiguous versions with
/// increasing global positions; the aggregate's version is its last event's.
pub fn append_applies_saves_and_records<S: EventStore<Task>>(store: &mut S) {
    assert_eq!(store.version(&1).unwrap(), 0, "no event, version 0");
    let created = store
        .append(
            &1,
            Created {
                title: "Slides".into(),
            },
            &by("ann"),
        )
        .unwrap();
    assert_eq!(created.events[0].version, 1);
    let completed = store.append(&1, Completed {}, &by("bob")).unwrap();
    let task = completed.state.unwrap();
    assert_eq!(task.completed_by.as_deref(), Some("bob"));
    assert_eq!(
        task.completed_at,
        Some(completed.events[0].created_at.naive_utc())
    );
    assert_eq!(store.load(&1).unwrap(), Some(task));
    assert_eq!(
        store.version(&1).unwrap(),
        2,
        "the version of the last event"
    );

    let history = store.history(&1).unwrap();
    let versions: Vec<i64> = history.iter().map(|event| event.version).collect();
    assert_eq!(versions, [1, 2]);
    assert!(history[0].id < history[1].id);
    assert_eq!(history[1].event_type, "task.completed");
    assert_eq!(history[1].metadata.actor_id.as_deref(), Some("bob"));
    assert_eq!(history[0].data_json().unwrap(), json!({"title": "Slides"}));
}

/// Several events of one command are stored together, in order.
pub fn several_events_are_stored_in_order<S: EventStore<Task>>(store: &mut S) {
    let events: Vec<NewEvent<Task>> = vec![
        Created {
            title: "Draft".into(),
        }
        .into(),
        TitleUpdated {
            title: "Slides".into(),
        }
        .into(),
        DueDateSet {
            due_on: "2026-04-20".into(),
        }
        .into(),
    ];
    let committed = store.append(&2, events, &by("ann")).unwrap();
    let versions: Vec<i64> = committed.events.iter().map(|event| event.version).collect();
    assert_eq!(versions, [1, 2, 3]);
    let task = store.load(&2).unwrap().unwrap();
    assert_eq!(
        (task.title.as_str(), task.due_on.as_deref()),
        ("Slides", Some("2026-04-20"))
    );
}

/// A failing append leaves nothing behind: no event, no aggregate change.
pub fn a_failing_append_leaves_nothing<S: EventStore<Task>>(store: &mut S) {
    store
        .append(
            &3,
            Created {
                title: "Keep".into(),
            },
            &by("ann"),
        )
        .unwrap();
    let failing: Vec<NewEvent<Task>> = vec![
        TitleUpdated {
            title: "Lost".into(),
        }
        .into(),
        Created {
            title: "Twice".into(),
        }
        .into(),
    ];
    let error = store.append(&3, failing, &by("ann")).unwrap_err();
    assert!(matches!(error, Error::AlreadyExists { .. }), "{error}");
    assert_eq!(store.load(&3).unwrap().unwrap().title, "Keep");
    assert_eq!(store.history(&3).unwrap().len(), 1);

    let error = store.append(&404, Completed {}, &by("ann")).unwrap_err();
    assert_eq!(error.to_string(), "task 404 not found");
    assert!(store.history(&404).unwrap().is_empty());
}

/// An expected version that is not the current one is a typed conflict, and writes nothing.
pub fn optimistic_concurrency_conflicts<S: EventStore<Task>>(store: &mut S) {
    store
        .append(
            &4,
            Created { title: "v1".into() },
            &by("ann").expect_version(0),
        )
        .unwrap();
    let stale = by("bob").expect_version(0);
    let error = store
        .append(&4, TitleUpdated { title: "v2".into() }, &stale)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "concurrency conflict on task 4: expected version 0, found 1"
    );
    store
        .append(
            &4,
            TitleUpdated { title: "v2".into() },
            &by("bob").expect_version(1),
        )
        .unwrap();
    assert_eq!(store.load(&4).unwrap().unwrap().title, "v2");
}

/// The events `filter` selects, read at once and streamed, which must agree.
fn events_matching<S: EventStore<Task>>(
    store: &mut S,
    filter: &EventFilter,
) -> Vec<RecordedEvent<i64>> {
    let found = store.events(filter).unwrap();
    let streamed: Vec<_> = store
        .stream_events(filter)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(streamed, found, "stream_events and events agree");
    found
}

/// Time travel computes the state as of a version or a time, and writes nothing.
pub fn time_travel_by_version_and_time<S: EventStore<Task>>(store: &mut S) {
    let april = |day| Utc.with_ymd_and_hms(2026, 4, day, 12, 0, 0).unwrap();
    store
        .append(
            &5,
            Created {
                title: "Slides".into(),
            },
            &by("ann").at(april(10)),
        )
        .unwrap();
    store
        .append(
            &5,
            DueDateSet {
                due_on: "2026-04-20".into(),
            },
            &by("ann").at(april(15)),
        )
        .unwrap();
    store
        .append(
            &5,
            DueDateSet {
                due_on: "2026-04-24".into(),
            },
            &by("ann").at(april(22)),
        )
        .unwrap();

    let on_april_20 = store
        .state_as_of(&5, AsOf::Time(april(20)))
        .unwrap()
        .unwrap();
    assert_eq!(on_april_20.due_on.as_deref(), Some("2026-04-20"));
    let at_v1 = store.state_as_of(&5, AsOf::Version(1)).unwrap().unwrap();
    assert_eq!(at_v1.due_on, None);
    assert_eq!(store.state_as_of(&5, AsOf::Time(april(1))).unwrap(), None);
    assert_eq!(
        store.load(&5).unwrap().unwrap().due_on.as_deref(),
        Some("2026-04-24")
    );

    let due_dates = EventFilter {
        tags: vec!["task.due_date_set".into()],
        since: Some(april(12)),
        until: Some(april(21)),
        ..EventFilter::default()
    };
    let found = events_matching(store, &due_dates);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].data_json().unwrap(),
        json!({"due_on": "2026-04-20"})
    );

    // The bounds: `since` takes the event of its instant, `until` leaves it, `after_id` leaves the
    // event of that id.
    let history: Vec<i64> = store.history(&5).unwrap().iter().map(|e| e.id).collect();
    let mut ids_of = |filter: EventFilter| -> Vec<i64> {
        events_matching(store, &filter)
            .iter()
            .filter(|event| event.aggregate_id == 5)
            .map(|event| event.id)
            .collect()
    };
    let between = EventFilter {
        since: Some(april(15)),
        until: Some(april(22)),
        ..EventFilter::default()
    };
    assert_eq!(ids_of(between), [history[1]]);
    let after_first = EventFilter {
        after_id: Some(history[0]),
        ..EventFilter::default()
    };
    assert_eq!(ids_of(after_first), history[1..]);
}

/// A destroying event deletes the row; replay of a row deleted by hand restores it; replay of a
/// destroyed aggregate keeps it deleted.
pub fn destroy_and_restore_by_replay<S: EventStore<Task>>(
    store: &mut S,
    delete_row: impl FnOnce(&mut S, i64),
) {
    store
        .append(
            &6,
            Created {
                title: "Gone".into(),
            },
            &by("ann"),
        )
        .unwrap();
    let committed = store.append(&6, Destroyed {}, &by("ann")).unwrap();
    assert!(committed.state.is_none());
    assert_eq!(store.load(&6).unwrap(), None);
    assert_eq!(store.replay(&6).unwrap(), None);

    store
        .append(
            &7,
            Created {
                title: "Back".into(),
            },
            &by("ann"),
        )
        .unwrap();
    store.append(&7, Completed {}, &by("bob")).unwrap();
    let before = store.load(&7).unwrap();
    delete_row(store, 7);
    assert_eq!(store.load(&7).unwrap(), None);
    assert_eq!(store.replay(&7).unwrap(), before);
    assert_eq!(store.load(&7).unwrap(), before);
}

/// A creation event needs an absent aggregate whose history, if any, ends with a destroying
/// event: creating again after `delete_row` removed the row of a live history (as a concurrent
/// creator's lost race or a hand-made delete leaves it) is a conflict at the history's version and
/// writes nothing; creating again after a destroying event starts the aggregate anew.
pub fn creating_over_a_live_history_is_a_conflict<S: EventStore<Task>>(
    store: &mut S,
    delete_row: impl FnOnce(&mut S, i64),
) {
    let created = |title: &str| Created {
        title: title.to_owned(),
    };
    store.append(&20, created("first"), &by("ann")).unwrap();
    delete_row(store, 20);
    let error = store.append(&20, created("again"), &by("bob")).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(store.version(&20).unwrap(), 1, "nothing was written");

    store.append(&21, created("first"), &by("ann")).unwrap();
    store.append(&21, Destroyed {}, &by("ann")).unwrap();
    let reborn = store.append(&21, created("reborn"), &by("bob")).unwrap();
    assert_eq!(reborn.events[0].version, 3);
    assert_eq!(
        reborn.state.map(|task| task.title).as_deref(),
        Some("reborn")
    );
}

/// Replaying every aggregate reports progress and rebuilds the stored state of every aggregate
/// from its events, after `damage` spoiled the rows of all of them (deleting or changing them).
pub fn replay_all_reproduces_every_aggregate<S: EventStore<Task>>(
    store: &mut S,
    mut damage: impl FnMut(&mut S, i64),
) {
    for id in 100..110 {
        store
            .append(
                &id,
                Created {
                    title: format!("t{id}"),
                },
                &by("ann"),
            )
            .unwrap();
        store.append(&id, Completed {}, &by("bob")).unwrap();
    }
    let before: Vec<Option<Task>> = (100..110).map(|id| store.load(&id).unwrap()).collect();
    for id in 100..110 {
        damage(store, id);
        assert_ne!(store.load(&id).unwrap(), before[(id - 100) as usize]);
    }
    let mut reports = Vec::new();
    let done = store
        .replay_all(&mut |progress| reports.push(*progress))
        .unwrap();
    assert!(done.aggregates >= 10 && done.events >= 20, "{done:?}");
    assert_eq!(reports.last(), Some(&done));
    assert!(
        reports
            .windows(2)
            .all(|pair| pair[0].events <= pair[1].events)
    );
    let after: Vec<Option<Task>> = (100..110).map(|id| store.load(&id).unwrap()).collect();
    assert_eq!(before, after);
    assert_ne!(done, ReplayProgress::default());
}
