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

/// The in-memory store numbers events 1, 2, 3… across aggregates and appends, without a gap (a
/// database's sequence may skip the ids of a rolled-back write), and says how far it has come in
/// its `Debug`.
#[test]
fn event_ids_count_from_one_without_gaps() {
    use es_core::{AppendOptions, EventStore, NewEvent};
    use es_tests::domain::{Completed, Created, TitleUpdated};
    let mut store = InMemoryStore::new();
    let by = AppendOptions::default();
    let mut ids = Vec::new();
    for task in 1..=3 {
        let title = format!("task {task}");
        let events: Vec<NewEvent<Task>> = vec![
            Created { title }.into(),
            TitleUpdated { title: "u".into() }.into(),
        ];
        let committed = store.append(&task, events, &by).unwrap();
        ids.extend(committed.events.iter().map(|event| event.id));
        let committed = store.append(&task, Completed {}, &by).unwrap();
        ids.extend(committed.events.iter().map(|event| event.id));
    }
    assert_eq!(ids, (1..=9).collect::<Vec<i64>>());
    assert_eq!(
        format!("{store:?}"),
        "InMemoryStore { aggregate_types: 1, last_position: 9 }"
    );
}

/// A gauge whose `Misread` event holds a level that its own deserialisation refuses (the check was
/// added to `Deserialize`, never to the constructor): a history the in-memory store holds and
/// cannot replay, as a bug in an event's serde would make.
#[derive(es_core::Aggregate, Default, Clone, Debug, PartialEq)]
struct Gauge {
    id: i64,
    level: i64,
}

/// A level of at most 5, when read back.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Clone, Copy)]
#[serde(try_from = "i64")]
struct Level(i64);

impl TryFrom<i64> for Level {
    type Error = String;
    fn try_from(level: i64) -> Result<Self, String> {
        if level <= 5 {
            Ok(Self(level))
        } else {
            Err(format!("level {level} is over 5"))
        }
    }
}

/// The gauge was read wrong.
#[derive(es_core::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[aggregate(Gauge)]
#[event(creates)]
struct Misread {
    #[data_attributes]
    level: Level,
}

/// The gauge was read.
#[derive(es_core::Event, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[aggregate(Gauge)]
#[event(creates)]
struct Read {
    #[data_attributes]
    level: i64,
}

impl es_core::Apply<Gauge> for Misread {
    fn apply(&self, gauge: &mut Gauge, _: &es_core::EventContext<'_>) {
        gauge.level = self.level.0;
    }
}

impl es_core::Apply<Gauge> for Read {
    fn apply(&self, gauge: &mut Gauge, _: &es_core::EventContext<'_>) {
        gauge.level = self.level;
    }
}

/// `replay_all_with(Skip)` skips an aggregate whose events cannot be replayed, reports it and
/// leaves its row as it was, and counts only what it rebuilt; `Stop` stops on it.
#[test]
fn replay_skips_and_reports_a_history_that_cannot_be_replayed() {
    use es_core::{AppendOptions, EventStore, OnBadHistory};
    let mut store = InMemoryStore::new();
    let by = AppendOptions::default();
    store.append(&1, Misread { level: Level(7) }, &by).unwrap();
    store.append(&2, Read { level: 5 }, &by).unwrap();
    store.append(&3, Read { level: 6 }, &by).unwrap();

    let stopped = EventStore::<Gauge>::replay_all(&mut store, &mut |_| {}).unwrap_err();
    assert!(stopped.to_string().contains("gauge.misread"), "{stopped}");

    let mut reported = Vec::new();
    let report = EventStore::<Gauge>::replay_all_with(&mut store, OnBadHistory::Skip, &mut |p| {
        reported.push((p.aggregates, p.events, p.skipped));
    })
    .unwrap();
    assert_eq!(
        (
            report.progress.aggregates,
            report.progress.events,
            report.progress.skipped
        ),
        (2, 2, 1)
    );
    assert_eq!(reported, [(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
    let skipped: Vec<&str> = report
        .skipped
        .iter()
        .map(|skipped| skipped.aggregate_id.as_str())
        .collect();
    assert_eq!(skipped, ["1"]);
    let gauge: Gauge = store.load(&1).unwrap().unwrap();
    assert_eq!(gauge.level, 7, "the skipped row is left as it was");
}
