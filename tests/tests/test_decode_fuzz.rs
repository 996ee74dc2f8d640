//! Decoding is fuzzed on the stable toolchain, in `cargo test` (cargo-fuzz needs nightly): the
//! `data` of stored records through the registry, `metadata`, and whole rows through a real
//! SQLite database — arbitrary values of every SQLite type in every column, inserted with bound
//! parameters, read back through the store. Nothing panics, and every failure is a typed error
//! naming its row. (The SQLite `created_at` parser is fuzzed in es-diesel's own unit tests.)
//!
//! 10,000 cases for records and metadata; 1,000 databases of up to 6 rows for whole rows, each
//! a few inserts and four reads, which keeps this file to seconds on two cores.

use std::collections::BTreeMap;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Double, Text};
use diesel::sqlite::Sqlite;
use es_core::{
    Error, Event, EventFilter, EventStore, Metadata, OnBadHistory, Rebuild, RecordedEvent,
};
use es_diesel::DieselStore;
use es_tests::domain::{Completed, Created, Destroyed, DueDateSet, Task, TitleUpdated};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

const TAGS: [&str; 5] = [
    Created::TAG,
    TitleUpdated::TAG,
    DueDateSet::TAG,
    Completed::TAG,
    Destroyed::TAG,
];

/// Keys the decoders look for, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "title",
            "due_on",
            "actor_id",
            "request_id",
            "ip",
            "user_agent",
            "correlation_id",
            "causation_id",
        ])
        .prop_map(str::to_owned),
        ".{0,8}",
    ]
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        "[0-9a-f-]{36}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Text a JSON column may hold: JSON, JSON cut anywhere, or any text.
fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => json().prop_map(|value| value.to_string()),
        2 => (json(), any::<Index>()).prop_map(|(value, cut)| {
            let text = value.to_string();
            let ends: Vec<usize> = text.char_indices().map(|(at, _)| at).collect();
            text[..ends.get(cut.index(ends.len().max(1))).copied().unwrap_or(0)].to_owned()
        }),
        1 => any::<String>(),
    ]
}

/// A tag of the task, or any other.
fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(TAGS.to_vec()).prop_map(str::to_owned),
        1 => ".{0,16}",
    ]
}

/// One stored record of task 1 (its tag and data), as corrupt as it gets, at its place in the
/// history or not.
fn record() -> impl Strategy<Value = (String, String, Option<i64>)> {
    (
        tag(),
        json_text(),
        prop_oneof![4 => Just(None), 1 => any::<i64>().prop_map(Some)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any `data`, tag and version through the registry (`Rebuild::apply`) and a typed decode:
    /// applied, or a typed error naming the event.
    #[test]
    fn records_decode_or_fail_with_typed_errors(records in prop::collection::vec(record(), 1..5)) {
        let mut rebuild = Rebuild::<Task>::new(1).unwrap();
        for (position, (event_type, data, version)) in records.into_iter().enumerate() {
            let id = position as i64 + 1;
            let record = RecordedEvent {
                id,
                aggregate_id: 1,
                version: version.unwrap_or(rebuild.version().saturating_add(1)),
                event_type,
                data,
                metadata: Metadata::by_actor("ann").into(),
                created_at: chrono::DateTime::UNIX_EPOCH,
            };
            match TitleUpdated::decode(&record) {
                Ok(_) | Err(Error::UnexpectedEventType { .. } | Error::Decode { .. }) => {}
                Err(other) => prop_assert!(false, "decode: {other:?}"),
            }
            match rebuild.apply(&record) {
                Ok(()) => prop_assert_eq!(rebuild.version(), record.version),
                Err(error) => {
                    prop_assert!(matches!(
                        error,
                        Error::UnknownEventType { .. }
                            | Error::Decode { .. }
                            | Error::VersionGap { .. }
                            | Error::VersionOverflow { .. }
                    ), "{error:?}");
                    prop_assert!(error.to_string().contains("task_events"), "{error}");
                    break;
                }
            }
        }
    }

    /// Any `metadata` text: a `Metadata` whose JSON reads back with the same fields and keys
    /// (numbers may move in their last digit: serde_json does not promise to round-trip floats),
    /// or serde's error.
    #[test]
    fn metadata_decodes_and_round_trips_or_fails(text in json_text()) {
        if let Ok(metadata) = Metadata::from_json(&text) {
            let again = Metadata::from_json(&metadata.to_json().unwrap()).unwrap();
            prop_assert_eq!(&again.actor_id, &metadata.actor_id);
            prop_assert_eq!(&again.request_id, &metadata.request_id);
            prop_assert_eq!(&again.ip, &metadata.ip);
            prop_assert_eq!(&again.user_agent, &metadata.user_agent);
            prop_assert_eq!(again.correlation_id, metadata.correlation_id);
            prop_assert_eq!(again.causation_id, metadata.causation_id);
            prop_assert!(again.extra.keys().eq(metadata.extra.keys()));
        }
    }
}

/// A value of any SQLite type.
#[derive(Debug, Clone)]
enum Stored {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Stored {
    fn bind<'a>(
        self,
        query: diesel::query_builder::BoxedSqlQuery<'a, Sqlite, diesel::query_builder::SqlQuery>,
    ) -> diesel::query_builder::BoxedSqlQuery<'a, Sqlite, diesel::query_builder::SqlQuery> {
        match self {
            Stored::Integer(value) => query.bind::<BigInt, _>(value),
            Stored::Real(value) => query.bind::<Double, _>(value),
            Stored::Text(value) => query.bind::<Text, _>(value),
            Stored::Blob(value) => query.bind::<Binary, _>(value),
        }
    }
}

/// Mostly `good`, else a value of another type.
fn column(good: impl Strategy<Value = Stored> + 'static) -> BoxedStrategy<Stored> {
    prop_oneof![
        12 => good,
        1 => any::<i64>().prop_map(Stored::Integer),
        1 => any::<f64>().prop_map(Stored::Real),
        1 => ".{0,12}".prop_map(Stored::Text),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Stored::Blob),
    ]
    .boxed()
}

/// A `created_at`: as the store writes it, as SQLite writes it, or almost.
fn created_at() -> impl Strategy<Value = Stored> {
    prop_oneof![
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{6}Z",
        "[0-9+-]{4,7}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,9})?(Z|[+-][0-9]{2}:[0-9]{2})?",
    ]
    .prop_map(Stored::Text)
}

/// One row of `task_events` after its id: aggregate, version, type, data, metadata, created_at.
fn row() -> impl Strategy<Value = [Stored; 6]> {
    (
        column((1..4_i64).prop_map(Stored::Integer)),
        column(prop_oneof![4 => 1..4_i64, 1 => any::<i64>()].prop_map(Stored::Integer)),
        column(tag().prop_map(Stored::Text)),
        column(json_text().prop_map(Stored::Text)),
        column(json_text().prop_map(Stored::Text)),
        column(created_at()),
    )
        .prop_map(|(a, b, c, d, e, f)| [a, b, c, d, e, f])
}

/// What SQLite stored of a row: each column's type and text.
#[derive(QueryableByName, Debug)]
struct Kept {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    types: String,
    #[diesel(sql_type = Binary)]
    metadata: Vec<u8>,
    #[diesel(sql_type = Binary)]
    created_at: Vec<u8>,
}

impl Kept {
    /// Whether the store can read this row: integers where it stores integers, text elsewhere,
    /// metadata that decodes, a `created_at` that is a time (chrono's RFC 3339, or SQLite's own
    /// format in UTC).
    fn readable(&self) -> bool {
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap_or_default();
        let time = text(&self.created_at);
        let is_time = chrono::DateTime::parse_from_rfc3339(&time).is_ok()
            || chrono::NaiveDateTime::parse_from_str(&time, "%Y-%m-%d %H:%M:%S%.f").is_ok();
        self.types == "integer integer text text text text"
            && Metadata::from_json(&text(&self.metadata)).is_ok()
            && is_time
    }
}

fn sqlite() -> SqliteConnection {
    let mut conn = es_diesel::sqlite::establish(":memory:").unwrap();
    conn.batch_execute(
        "CREATE TABLE tasks (id BIGINT PRIMARY KEY NOT NULL, title TEXT NOT NULL, due_on TEXT, \
         completed_at TIMESTAMP, completed_by TEXT)",
    )
    .unwrap();
    es_diesel::create_tables::<_, Task>(&mut conn).unwrap();
    conn
}

thread_local! {
    static SQLITE: std::cell::RefCell<SqliteConnection> = std::cell::RefCell::new(sqlite());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whole rows of any values through the store: each reads as an event exactly when SQLite
    /// kept what the store writes, else it is an error in its place naming its event id; replay
    /// and verify skip its aggregate (or, when its aggregate id is not an integer, stop with an
    /// error naming the column). Nothing panics.
    #[test]
    fn whole_rows_read_or_fail_with_typed_errors(rows in prop::collection::vec(row(), 1..7)) {
        SQLITE.with_borrow_mut(|conn| -> Result<(), TestCaseError> {
            conn.batch_execute("DELETE FROM task_events; DELETE FROM tasks").unwrap();
            for (n, columns) in rows.into_iter().enumerate() {
                let mut insert = diesel::sql_query(
                    "INSERT INTO task_events (id, aggregate_id, version, type, data, metadata, \
                     created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .into_boxed()
                .bind::<BigInt, _>(n as i64 + 1);
                for value in columns {
                    insert = value.bind(insert);
                }
                // A (aggregate, version) pair the table already has is refused: fine.
                let _ = insert.execute(conn);
            }
            let kept: Vec<Kept> = diesel::sql_query(
                "SELECT id, typeof(aggregate_id) || ' ' || typeof(version) || ' ' || typeof(type) \
                 || ' ' || typeof(data) || ' ' || typeof(metadata) || ' ' || typeof(created_at) \
                 AS types, CAST(metadata AS BLOB) AS metadata, \
                 CAST(created_at AS BLOB) AS created_at FROM task_events ORDER BY id",
            )
            .load(conn)
            .unwrap();
            let readable: BTreeMap<i64, bool> =
                kept.iter().map(|row| (row.id, row.readable())).collect();

            let mut store = DieselStore::new(conn);
            let filter = EventFilter::default();
            let read: Vec<Result<RecordedEvent<i64>, Error>> =
                EventStore::<Task>::stream_events(&mut store, &filter).unwrap().collect();
            prop_assert_eq!(read.len(), kept.len());
            for (row, read) in kept.iter().zip(&read) {
                match read {
                    Ok(record) => {
                        prop_assert_eq!(record.id, row.id);
                        prop_assert!(readable[&row.id], "{:?} read as {:?}", row, record);
                    }
                    Err(error) => {
                        prop_assert!(
                            matches!(error, Error::BadColumn { .. } | Error::DecodeMetadata { .. }),
                            "{error:?}"
                        );
                        let named = format!("event {}", row.id);
                        prop_assert!(error.to_string().contains(&named), "{}", error);
                        prop_assert!(!readable[&row.id], "{:?}: {}", row, error);
                    }
                }
            }

            let integer_ids = kept.iter().all(|row| row.types.starts_with("integer "));
            let replayed = EventStore::<Task>::replay_all_with(&mut store, OnBadHistory::Skip, &mut |_| {});
            prop_assert_eq!(replayed.is_ok(), integer_ids, "{:?}", replayed);
            let verified = es_diesel::verify::<_, Task>(store.connection(), &mut |_| {}, &mut |_| {});
            prop_assert_eq!(verified.is_ok(), integer_ids, "{:?}", verified);
            if let Err(error) = replayed {
                prop_assert!(error.to_string().contains("column `aggregate_id`"), "{error}");
            }
            Ok(())
        })?;
    }
}
