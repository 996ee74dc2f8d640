//! The committed JSON Schemas of each example (`catalog/<example>/schemas/`) validate what the
//! example really stores: every row of its events tables, after its story ran on SQLite — each
//! `data` against the schema of its tag, each `metadata` against the metadata schema. A mistyped
//! or missing attribute does not validate.

use std::path::Path;

use diesel::prelude::*;
use es_core::catalog::{Catalog, metadata_schema_path, schema_path};
use es_core::{Registry, Route};
use es_examples::db::fresh_sqlite;
use es_examples::{crm, drip, meetings, todo};
use serde_json::{Value, json};

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "type")]
    event_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    data: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    metadata: String,
}

fn validator(catalog: &str, relative: &Path) -> jsonschema::Validator {
    let path = Path::new(catalog).join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|error| panic!("{} is not a valid JSON Schema: {error}", path.display()))
}

type Story = fn(&mut SqliteConnection, &mut Vec<u8>) -> Result<(), Box<dyn std::error::Error>>;

/// Runs an example's story, then validates every stored row against its committed catalog;
/// returns how many rows were checked.
fn check(catalog_dir: &str, aggregates: &[&str], routes: &[Route], story: Story) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = fresh_sqlite(dir.path().join("app.db").to_str().unwrap()).unwrap();
    story(&mut conn, &mut Vec::new()).unwrap();
    let catalog = Catalog::of_aggregates(Registry::global().unwrap(), aggregates, routes).unwrap();
    let metadata = validator(catalog_dir, &metadata_schema_path());
    let mut checked = 0;
    for aggregate in &catalog.aggregates {
        let rows: Vec<Row> = diesel::sql_query(format!(
            "SELECT id, type, data, metadata FROM {} ORDER BY id",
            aggregate.events_table
        ))
        .load(&mut conn)
        .unwrap();
        for row in rows {
            let schema = validator(catalog_dir, &schema_path(&aggregate.name, &row.event_type));
            let data: Value = serde_json::from_str(&row.data).unwrap();
            if let Err(error) = schema.validate(&data) {
                panic!("event {} ({}) data {data}: {error}", row.id, row.event_type);
            }
            let stored: Value = serde_json::from_str(&row.metadata).unwrap();
            if let Err(error) = metadata.validate(&stored) {
                panic!("event {} metadata {stored}: {error}", row.id);
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn the_todo_examples_stored_events_match_its_schemas() {
    let rows = check(
        todo::CATALOG,
        todo::AGGREGATES,
        todo::TodoDispatcher::ROUTES,
        todo::run,
    );
    assert_eq!(rows, 10);
}

#[test]
fn the_drip_examples_stored_events_match_its_schemas() {
    let rows = check(
        drip::CATALOG,
        drip::AGGREGATES,
        drip::DripDispatcher::ROUTES,
        drip::run,
    );
    assert_eq!(rows, 11);
}

#[test]
fn the_meetings_examples_stored_events_match_its_schemas() {
    let rows = check(meetings::CATALOG, meetings::AGGREGATES, &[], |c, o| {
        meetings::run(c, o)
    });
    assert_eq!(rows, 6);
}

#[test]
fn the_crm_examples_stored_events_match_its_schemas() {
    let rows = check(
        crm::CATALOG,
        crm::AGGREGATES,
        crm::CrmDispatcher::ROUTES,
        crm::run,
    );
    assert_eq!(rows, 6);
}

#[test]
fn a_mistyped_or_missing_attribute_does_not_validate() {
    let created = validator(todo::CATALOG, &schema_path("task", "task.created"));
    assert!(created.is_valid(&json!({ "title": "Prepare slides" })));
    assert!(!created.is_valid(&json!({ "title": 42 })));
    assert!(!created.is_valid(&json!({})));
    let activated = validator(
        drip::CATALOG,
        &schema_path("subscription", "subscription.created"),
    );
    let old = json!({ "user_id": "supporter-7", "reward": "monthly-comic" });
    assert!(
        activated.is_valid(&old),
        "the currency is defaulted for old events"
    );
    assert!(!activated.is_valid(&json!({ "user_id": "supporter-7", "reward": 3 })));
    let metadata = validator(todo::CATALOG, &metadata_schema_path());
    assert!(!metadata.is_valid(&json!({ "actor_id": 7 })));
    assert!(!metadata.is_valid(&json!({ "causation_id": "not a number" })));
}
