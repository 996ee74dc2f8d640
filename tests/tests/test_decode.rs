//! Stored records find their event type by tag, decode through serde defaults and tag aliases,
//! and apply to their aggregate; bad records give typed errors naming table, event id and tag.

use chrono::{DateTime, TimeZone, Utc};
use es_core::{
    Aggregate, AppendOptions, Apply, AsOf, Error, Event, EventContext, Head, Metadata, NewEvent,
    Rebuild, RecordedEvent, Registry, rebuild, stage,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Default, Clone, Debug, PartialEq)]
struct Task {
    id: i64,
    title: String,
    completed_at: Option<DateTime<Utc>>,
    completed_by: Option<String>,
}

/// A task was created.
#[derive(Event, Serialize, Deserialize, JsonSchema)]
#[aggregate(Task)]
#[event(creates)]
struct Created {
    /// What is to be done.
    #[data_attributes]
    title: String,
}

/// A task was completed (it was called `task.finished` before a rename).
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Task)]
#[event(alias = "task.finished")]
struct Completed {}

impl Apply<Task> for Created {
    fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
        task.title.clone_from(&self.title);
    }
}

impl Apply<Task> for Completed {
    fn apply(&self, task: &mut Task, event: &EventContext<'_>) {
        task.completed_at = Some(event.created_at);
        task.completed_by.clone_from(&event.metadata.actor_id);
    }
}

#[derive(Aggregate, Default, Clone, Debug, PartialEq)]
#[aggregate(events_table = "billing_subscription_events")]
struct Subscription {
    #[aggregate(id)]
    key: uuid::Uuid,
    amount_cents: i64,
    currency: String,
}

/// A supporter subscribed.
#[derive(Event, Serialize, Deserialize, JsonSchema)]
#[aggregate(Subscription)]
#[event(creates, tag = "subscription.created")]
struct SubscriptionCreated {
    #[data_attributes]
    amount_cents: i64,
    /// Added later: every older subscription was in US dollars.
    #[data_attributes]
    #[serde(default = "usd")]
    currency: String,
}

fn usd() -> String {
    "USD".to_owned()
}

impl Apply<Subscription> for SubscriptionCreated {
    fn apply(&self, subscription: &mut Subscription, _: &EventContext<'_>) {
        subscription.amount_cents = self.amount_cents;
        subscription.currency.clone_from(&self.currency);
    }
}

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, day, 9, 30, 0).unwrap()
}

fn record<Id>(id: i64, aggregate_id: Id, version: i64, tag: &str, data: &str) -> RecordedEvent<Id> {
    RecordedEvent {
        id,
        aggregate_id,
        version,
        event_type: tag.to_owned(),
        data: data.to_owned(),
        metadata: Metadata::by_actor("ann").into(),
        created_at: at(u32::try_from(version).unwrap() + 10),
    }
}

#[test]
fn records_of_two_aggregates_decode_through_aliases_and_defaults_and_apply() {
    let task_records = vec![
        record(1, 7_i64, 1, "task.created", r#"{"title":"Slides"}"#),
        record(3, 7_i64, 2, "task.finished", "{}"),
    ];
    let task: Task = rebuild(7, task_records.into_iter().map(Ok), None)
        .unwrap()
        .unwrap();
    assert_eq!(
        task,
        Task {
            id: 7,
            title: "Slides".to_owned(),
            completed_at: Some(at(12)),
            completed_by: Some("ann".to_owned()),
        }
    );

    let key = uuid::Uuid::from_u128(42);
    let old = record(2, key, 1, "subscription.created", r#"{"amount_cents":500}"#);
    let subscription: Subscription = rebuild(key, [Ok(old)], None).unwrap().unwrap();
    assert_eq!(subscription.currency, "USD");
    assert_eq!(subscription.amount_cents, 500);
    assert_eq!(subscription.key, key);

    let new = record(
        4,
        key,
        1,
        "subscription.created",
        r#"{"amount_cents":500,"currency":"EUR"}"#,
    );
    let decoded = SubscriptionCreated::decode(&new).unwrap();
    assert_eq!(decoded.currency, "EUR");
}

#[test]
fn time_travel_stops_at_a_version_or_a_time() {
    let records = || {
        [
            record(1, 7_i64, 1, "task.created", r#"{"title":"Slides"}"#),
            record(2, 7_i64, 2, "task.completed", "{}"),
        ]
        .map(Ok)
    };
    let by_version: Task = rebuild(7, records(), Some(AsOf::Version(1)))
        .unwrap()
        .unwrap();
    assert_eq!(by_version.completed_at, None);
    let by_time: Task = rebuild(7, records(), Some(AsOf::Time(at(11))))
        .unwrap()
        .unwrap();
    assert_eq!(by_time.completed_at, None);
    let later: Task = rebuild(7, records(), Some(AsOf::Time(at(12))))
        .unwrap()
        .unwrap();
    assert_eq!(later.completed_at, Some(at(12)));
    let before: Option<Task> = rebuild(7, records(), Some(AsOf::Version(0))).unwrap();
    assert_eq!(before, None);
}

#[test]
fn the_registry_lists_every_event_of_an_aggregate_with_its_attributes() {
    let registry = Registry::global().unwrap();
    let tags: Vec<&str> = registry
        .events_of::<Task>()
        .map(|event| event.tag)
        .collect();
    assert_eq!(tags, ["task.completed", "task.created"]);
    let created = registry
        .lookup::<Subscription>("subscription.created")
        .unwrap();
    assert_eq!(created.events_table, "billing_subscription_events");
    assert!(created.creates);
    let currency = &created.attributes[1];
    assert_eq!((currency.name, currency.rust_type), ("currency", "String"));
    assert_eq!(
        currency.doc,
        "Added later: every older subscription was in US dollars."
    );
    assert_eq!(
        registry.lookup::<Task>("task.finished").unwrap().rust_name,
        "Completed"
    );
    assert!(registry.lookup::<Subscription>("task.created").is_none());
}

fn replay_error(records: Vec<RecordedEvent<i64>>) -> Error {
    rebuild::<Task>(7, records.into_iter().map(Ok), None).unwrap_err()
}

#[test]
fn an_unknown_tag_is_a_typed_error_naming_table_id_and_tag() {
    let error = replay_error(vec![record(9, 7, 1, "task.archived", "{}")]);
    assert!(matches!(
        &error,
        Error::UnknownEventType { event_id: 9, .. }
    ));
    assert_eq!(
        error.to_string(),
        "unknown event type `task.archived` in `task_events` (event id 9)"
    );
}

#[test]
fn malformed_json_missing_and_mistyped_attributes_are_decode_errors() {
    for (data, reason) in [
        (r#"{"title": "#, "EOF while parsing"),
        ("{}", "missing field `title`"),
        (
            r#"{"title": 3}"#,
            "invalid type: integer `3`, expected a string",
        ),
    ] {
        let error = replay_error(vec![record(11, 7, 1, "task.created", data)]);
        let Error::Decode {
            table,
            event_id,
            tag,
            ..
        } = &error
        else {
            panic!("expected a decode error, got {error:?}");
        };
        assert_eq!(
            (*table, *event_id, tag.as_str()),
            ("task_events", 11, "task.created")
        );
        let message = error.to_string();
        assert!(
            message.starts_with(
                "cannot decode the data of event 11 (`task.created`) in `task_events`: "
            ) && message.contains(reason),
            "{message}"
        );
    }
}

#[test]
fn a_version_gap_is_reported_with_the_event_that_skips() {
    let error = replay_error(vec![
        record(1, 7, 1, "task.created", r#"{"title":"x"}"#),
        record(5, 7, 3, "task.completed", "{}"),
    ]);
    assert_eq!(
        error.to_string(),
        "version gap in `task_events` for aggregate 7: expected version 2, found 3 (event id 5)"
    );
}

#[test]
fn no_event_follows_the_largest_version() {
    let head = Head {
        version: i64::MAX - 1,
        destroyed: false,
    };
    let task = || {
        Some(Task {
            id: 7,
            ..Task::default()
        })
    };
    let options = AppendOptions::default();
    let one: Vec<NewEvent<Task>> = vec![Completed {}.into()];
    let staged = stage(&7, task(), head, &one, &options).unwrap();
    assert_eq!(staged.events[0].version, i64::MAX);
    let two: Vec<NewEvent<Task>> = vec![Completed {}.into(), Completed {}.into()];
    let error = stage(&7, task(), head, &two, &options).unwrap_err();
    assert_eq!(
        error.to_string(),
        "task 7 in `task_events` is at version 9223372036854775807: no version can follow it"
    );
}

#[test]
fn decoding_a_record_as_the_wrong_event_type_is_refused() {
    let error = Completed::decode(&record(1, 7, 1, "task.created", "{}")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "event 1 in `task_events` has type `task.created`, not `task.completed`"
    );
}

#[test]
fn rebuild_exposes_the_state_step_by_step() {
    let mut rebuild = Rebuild::<Task>::new(7).unwrap();
    assert_eq!(rebuild.state(), None);
    rebuild
        .apply(&record(1, 7, 1, "task.created", r#"{"title":"x"}"#))
        .unwrap();
    assert_eq!(rebuild.version(), 1);
    assert_eq!(rebuild.state().unwrap().title, "x");
}
