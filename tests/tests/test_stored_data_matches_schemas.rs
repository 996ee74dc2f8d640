//! The committed JSON Schemas of the to-do example (`examples/catalog/todo/schemas/`) validate
//! what the example really stores: each row's `data` against the schema of its tag, and its
//! `metadata` against the metadata schema; a mistyped attribute does not validate.

use std::path::Path;

use chrono::{TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use es_core::catalog::{metadata_schema_path, schema_path};
use es_core::{AppendOptions, EventStore, Metadata};
use es_diesel::DieselStore;
use es_examples::todo::{CATALOG, Completed, Created, DueDateSet, TABLES, Task, TodoDispatcher};
use serde_json::{Value, json};

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "type")]
    event_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    data: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    metadata: String,
}

fn validator(relative: &Path) -> jsonschema::Validator {
    let path = Path::new(CATALOG).join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|error| panic!("{} is not a valid JSON Schema: {error}", path.display()))
}

/// The rows the to-do app stores for one task's life.
fn stored_rows() -> Vec<Row> {
    let mut conn = es_diesel::sqlite::establish(":memory:").unwrap();
    conn.batch_execute(TABLES).unwrap();
    es_diesel::create_tables::<_, Task>(&mut conn).unwrap();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(&TodoDispatcher);
    let metadata = Metadata::by_actor("ann")
        .with_ip("203.0.113.7")
        .with_request_id("req-1")
        .with_extra("notification_id", 33456);
    let options = AppendOptions::with_metadata(metadata)
        .at(Utc.with_ymd_and_hms(2026, 4, 10, 9, 0, 0).unwrap());
    let title = "Prepare slides".to_owned();
    store.append(&1, Created { title }, &options).unwrap();
    let due_on = "2026-04-20".to_owned();
    store.append(&1, DueDateSet { due_on }, &options).unwrap();
    store
        .append(&1, Completed {}, &AppendOptions::default())
        .unwrap();
    assert_eq!(
        EventStore::<Task>::history(&mut store, &1).unwrap().len(),
        3
    );
    diesel::sql_query("SELECT type, data, metadata FROM task_events ORDER BY id")
        .load(store.connection())
        .unwrap()
}

#[test]
fn stored_data_and_metadata_validate_against_the_committed_schemas() {
    let rows = stored_rows();
    let tags: Vec<&str> = rows.iter().map(|row| &*row.event_type).collect();
    assert_eq!(
        tags,
        ["task.created", "task.due_date_set", "task.completed"]
    );
    let metadata = validator(&metadata_schema_path());
    for row in &rows {
        let data: Value = serde_json::from_str(&row.data).unwrap();
        let schema = validator(&schema_path("task", &row.event_type));
        if let Err(error) = schema.validate(&data) {
            panic!("{} data {data} does not validate: {error}", row.event_type);
        }
        let stored: Value = serde_json::from_str(&row.metadata).unwrap();
        if let Err(error) = metadata.validate(&stored) {
            panic!("metadata {stored} does not validate: {error}");
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&rows[0].metadata).unwrap()["notification_id"],
        33456
    );
}

#[test]
fn a_mistyped_or_missing_attribute_does_not_validate() {
    let created = validator(&schema_path("task", "task.created"));
    assert!(created.is_valid(&json!({ "title": "Prepare slides" })));
    assert!(!created.is_valid(&json!({ "title": 42 })));
    assert!(!created.is_valid(&json!({})));
    let metadata = validator(&metadata_schema_path());
    assert!(!metadata.is_valid(&json!({ "actor_id": 7 })));
    assert!(!metadata.is_valid(&json!({ "causation_id": "not a number" })));
}
