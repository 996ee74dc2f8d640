//! The catalog documents each data attribute under the key serde stores it by: renamed by the
//! struct's `rename_all`, the field's `rename`, or without the `r#` of a raw identifier.

use es_core::catalog::Catalog;
use es_core::{Aggregate, Apply, Event, EventContext, Registry};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Aggregate, Default)]
struct Shipment {
    id: i64,
    departure_day: String,
}

/// A shipment was booked.
#[derive(Event, Serialize, Deserialize, JsonSchema)]
#[aggregate(Shipment)]
#[event(creates)]
#[serde(rename_all = "camelCase")]
struct Booked {
    /// The day it leaves.
    #[data_attributes]
    departure_day: String,
    /// How it travels.
    #[data_attributes]
    r#type: String,
    /// Its carrier's code.
    #[data_attributes]
    #[serde(rename = "carrier", default)]
    carrier_code: Option<String>,
}

impl Apply<Shipment> for Booked {
    fn apply(&self, shipment: &mut Shipment, _: &EventContext<'_>) {
        shipment.departure_day.clone_from(&self.departure_day);
    }
}

#[test]
fn attributes_are_documented_under_their_stored_keys() {
    let catalog = Catalog::from_registry(Registry::global().unwrap(), &[]).unwrap();
    let booked = &catalog.aggregates[0].events[0];
    assert_eq!(booked.tag, Booked::TAG);
    let keys: Vec<(&str, bool)> = booked
        .attributes
        .iter()
        .map(|attribute| (&*attribute.name, attribute.required))
        .collect();
    assert_eq!(
        keys,
        [("departureDay", true), ("type", true), ("carrier", false)]
    );
    let stored = serde_json::to_value(Booked {
        departure_day: "2026-04-20".into(),
        r#type: "sea".into(),
        carrier_code: None,
    })
    .unwrap();
    let stored_keys: Vec<&String> = stored.as_object().unwrap().keys().collect();
    assert_eq!(stored_keys.len(), 3);
    for (key, _) in keys {
        assert!(stored.get(key).is_some(), "{key} not in {stored}");
    }
}
