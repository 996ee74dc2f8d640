//! Building the model from the code: each registered event's doc, data attributes and schemars
//! JSON Schema, the metadata's schema, and the reactors the dispatcher's routes send each event
//! to. Fills the model (`super::model`); calls nothing else of the catalog (its tests use
//! `fixtures`). Its [`sorted`] (JSON keys in order) is also what `render` writes the schemas with.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::model::{
    AggregateDoc, AppMetadataDoc, Catalog, CatalogError, EventDoc, FieldDoc, MetadataDoc,
    ReactorDoc, ReactorKind,
};
use crate::metadata::Metadata;
use crate::registry::{EventDescriptor, Registry};
use crate::route::{EventRef, Pattern, Route};

impl Catalog {
    /// The catalog of every event of `registry`, with the reactors of `routes` (a dispatcher's
    /// `ROUTES`, or `&[]`).
    pub fn from_registry(registry: &Registry, routes: &[Route]) -> Result<Self, CatalogError> {
        Self::build(registry.events().iter().copied(), routes)
    }

    /// The catalog of the events of the aggregates named `aggregates` (their
    /// [`Aggregate::NAME`](crate::Aggregate::NAME)s): one app's, when the program links the
    /// events of several (a test binary, a workspace of examples).
    pub fn of_aggregates(
        registry: &Registry,
        aggregates: &[&str],
        routes: &[Route],
    ) -> Result<Self, CatalogError> {
        let known: BTreeSet<&str> = registry.events().iter().map(|e| e.aggregate).collect();
        if let Some(unknown) = aggregates.iter().find(|name| !known.contains(**name)) {
            return Err(CatalogError::UnknownAggregate {
                name: (*unknown).to_owned(),
            });
        }
        let events = registry.events().iter().copied();
        Self::build(
            events.filter(|event| aggregates.contains(&event.aggregate)),
            routes,
        )
    }

    fn build(
        events: impl Iterator<Item = &'static EventDescriptor>,
        routes: &[Route],
    ) -> Result<Self, CatalogError> {
        let mut aggregates: Vec<AggregateDoc> = Vec::new();
        for event in events {
            let doc = event_doc(event, routes)?;
            match aggregates.last_mut() {
                Some(aggregate) if aggregate.name == event.aggregate => aggregate.events.push(doc),
                _ => aggregates.push(AggregateDoc {
                    name: event.aggregate.to_owned(),
                    events_table: event.events_table.to_owned(),
                    events: vec![doc],
                }),
            }
        }
        let schema = Metadata::json_schema();
        let root = schema.as_value();
        let mut fields: Vec<FieldDoc> = properties(root)
            .map(|(name, property)| field_doc(name, None, property, root, ""))
            .collect();
        fields.sort_by(|a, b| a.name.cmp(&b.name));
        let other_keys = root.get("additionalProperties") != Some(&Value::Bool(false));
        Ok(Self {
            aggregates,
            metadata: MetadataDoc {
                fields,
                other_keys,
                schema,
            },
            routes: routes.to_vec(),
        })
    }
}

fn event_doc(event: &'static EventDescriptor, routes: &[Route]) -> Result<EventDoc, CatalogError> {
    let data_schema = event.data_schema();
    let root = data_schema.as_value();
    let mut attributes = Vec::with_capacity(event.attributes.len());
    for attribute in event.attributes {
        let property = root
            .get("properties")
            .and_then(|properties| properties.get(attribute.key))
            .ok_or(CatalogError::AttributeNotInSchema {
                event: event.rust_name,
                attribute: attribute.name,
                key: attribute.key,
            })?;
        attributes.push(field_doc(
            attribute.key,
            Some(attribute.rust_type),
            property,
            root,
            attribute.doc,
        ));
    }
    Ok(EventDoc {
        tag: event.tag.to_owned(),
        aliases: event
            .aliases
            .iter()
            .map(|alias| (*alias).to_owned())
            .collect(),
        rust_name: event.rust_name.to_owned(),
        doc: event.doc.to_owned(),
        creates: event.creates,
        destroys: event.destroys,
        attributes,
        app_metadata: event.app_metadata.map(|app| {
            let schema = app.schema();
            let root = schema.as_value();
            let mut fields: Vec<FieldDoc> = properties(root)
                .map(|(name, property)| field_doc(name, None, property, root, ""))
                .collect();
            fields.sort_by(|a, b| a.name.cmp(&b.name));
            AppMetadataDoc {
                rust_type: app.rust_type.to_owned(),
                fields,
                schema,
            }
        }),
        reactors: reactors_of(event, routes),
        data_schema,
    })
}

/// The reactors `routes` send `event` to, in the order they run.
fn reactors_of(event: &EventDescriptor, routes: &[Route]) -> Vec<ReactorDoc> {
    let mut reactors = Vec::new();
    for route in routes
        .iter()
        .filter(|route| route.pattern.matches(event.events_table, event.tag))
    {
        let via = route_label(&route.pattern);
        let doc = |name: &str, kind: ReactorKind, creates: &[EventRef]| ReactorDoc {
            name: name.to_owned(),
            kind,
            sync: matches!(kind, ReactorKind::Trigger | ReactorKind::Project),
            route: via.clone(),
            creates: creates.to_vec(),
        };
        reactors.extend(
            route
                .triggers
                .iter()
                .map(|reactor| doc(reactor.name, ReactorKind::Trigger, reactor.creates)),
        );
        reactors.extend(
            route
                .projections
                .iter()
                .map(|name| doc(name, ReactorKind::Project, &[])),
        );
        reactors.extend(
            route
                .subscriptions
                .iter()
                .map(|name| doc(name, ReactorKind::Subscribe, &[])),
        );
        reactors.extend(
            route
                .asyncs
                .iter()
                .map(|reactor| doc(reactor.name, ReactorKind::Async, reactor.creates)),
        );
    }
    reactors
}

/// A route's pattern for readers: the tag, `{aggregate}.*`, or `*`.
fn route_label(pattern: &Pattern) -> String {
    match pattern {
        Pattern::Event { tag, .. } => (*tag).to_owned(),
        Pattern::Aggregate { name, .. } => format!("{name}.*"),
        Pattern::All => "*".to_owned(),
    }
}

fn properties(schema: &Value) -> impl Iterator<Item = (&str, &Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|properties| properties.iter().map(|(key, value)| (key.as_str(), value)))
}

fn field_doc(
    name: &str,
    rust_type: Option<&str>,
    property: &Value,
    root: &Value,
    doc: &str,
) -> FieldDoc {
    let required = root
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|required| required.iter().any(|key| key == name));
    let doc = if doc.is_empty() {
        property
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
    } else {
        doc
    };
    FieldDoc {
        name: name.to_owned(),
        rust_type: rust_type.map(str::to_owned),
        json_type: json_type(property, root),
        required,
        default: property.get("default").map(sorted),
        doc: doc.to_owned(),
    }
}

/// A schema's type for readers: `string`, `integer (int64)`, `array of string`, `string | null`,
/// `Money (object)` for a definition.
fn json_type(schema: &Value, root: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return match reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
        {
            Some(definition) => format!("{name} ({})", json_type(definition, root)),
            None => name.to_owned(),
        };
    }
    let with_format = |kind: &str| -> String {
        let format = schema.get("format").and_then(Value::as_str);
        match (kind, format, schema.get("items")) {
            ("array", _, Some(items)) => format!("array of {}", json_type(items, root)),
            (kind, Some(format), _) => format!("{kind} ({format})"),
            (kind, None, _) => kind.to_owned(),
        }
    };
    match schema.get("type") {
        Some(Value::String(kind)) => with_format(kind),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .map(|kind| match kind {
                "null" => kind.to_owned(),
                kind => with_format(kind),
            })
            .collect::<Vec<_>>()
            .join(" | "),
        _ => match schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            Some(alternatives) => alternatives
                .iter()
                .map(|alternative| json_type(alternative, root))
                .collect::<Vec<_>>()
                .join(" | "),
            None if schema.get("enum").is_some() => "enum".to_owned(),
            None => "any".to_owned(),
        },
    }
}

/// `value` with the keys of every object sorted, whatever the order of `serde_json`'s maps.
pub(super) fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&object[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::catalog::fixtures::{CANCEL, RENAMED, catalog};

    #[test]
    fn attributes_come_from_the_json_schema() {
        let catalog = catalog();
        let created = &catalog.aggregates[0].events[1];
        assert_eq!(created.tag, "subscription.created");
        let shapes: Vec<(&str, &str, bool, Option<&Value>)> = created
            .attributes
            .iter()
            .map(|a| (&*a.name, &*a.json_type, a.required, a.default.as_ref()))
            .collect();
        assert_eq!(
            shapes,
            [
                ("plan", "string", true, None),
                ("currency", "string", false, Some(&json!("USD"))),
                ("notes", "array of string | null", false, None),
            ]
        );
    }

    #[test]
    fn each_event_lists_the_reactors_routed_to_it() {
        let catalog = catalog();
        let [cancelled, created] = &catalog.aggregates[0].events[..] else {
            panic!("two events");
        };
        let routed = |event: &EventDoc| -> Vec<(String, ReactorKind, String)> {
            event
                .reactors
                .iter()
                .map(|r| (r.name.clone(), r.kind, r.route.clone()))
                .collect()
        };
        assert_eq!(
            routed(created),
            [
                (
                    "check_fraud".into(),
                    ReactorKind::Trigger,
                    "subscription.created".into()
                ),
                (
                    "revenue".into(),
                    ReactorKind::Project,
                    "subscription.*".into()
                ),
                (
                    "search_index".into(),
                    ReactorKind::Subscribe,
                    "subscription.*".into()
                ),
                ("forward".into(), ReactorKind::Async, "*".into()),
            ]
        );
        assert_eq!(created.reactors[0].creates, [CANCEL]);
        let sync: Vec<bool> = created.reactors.iter().map(|r| r.sync).collect();
        assert_eq!(sync, [true, true, false, false]);
        assert_eq!(routed(cancelled).len(), 3);
    }

    #[test]
    fn an_attribute_missing_from_the_schema_is_an_error() {
        let registry = Registry::build([&RENAMED]).unwrap();
        let error = Catalog::from_registry(&registry, &[]).unwrap_err();
        assert!(
            matches!(
                error,
                CatalogError::AttributeNotInSchema {
                    attribute: "plan",
                    key: "plan_name",
                    ..
                }
            ),
            "{error}"
        );
    }
}
