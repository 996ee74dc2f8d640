//! The event catalog: the reference the data team reads, generated from the code.
//!
//! Every event linked into the program (the [`Registry`](crate::Registry)) and the routes of its
//! dispatcher become one [`Catalog`], written as three kinds of files under one directory:
//!
//! - `catalog.yaml`: per aggregate, its events table and every event with its tag, aliases, doc
//!   comment, data attributes (key, Rust type, JSON type, required or defaulted with the default,
//!   doc comment), the reactors and projections it is routed to and the events they create; and
//!   the metadata fields available when an event is created;
//! - `schemas/<aggregate>/<tag>.schema.json` and `schemas/metadata.schema.json`: the JSON Schemas
//!   (draft 2020-12) of each event's `data` and of the `metadata`, derived by schemars from the
//!   Rust types, serde's attributes included;
//! - `catalog.md`: the same for people, with a Mermaid diagram of the flows event → reactor →
//!   events it creates.
//!
//! The output is deterministic (aggregates by name, events by tag, JSON keys sorted), so that a
//! change of an event's shape is a diff of the committed catalog in review. Regenerate it at boot
//! with [`write_catalog`], and keep the committed copy fresh with [`assert_catalog_fresh`] in a
//! test: it rewrites the files, and under `CI=true` fails when they are stale.
//!
//! ```
//! use es_core::{Aggregate, Apply, Event, EventContext, catalog::Catalog, Registry};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Aggregate, Default)]
//! pub struct Subscription { pub id: i64, pub currency: String }
//!
//! /// A subscription was created.
//! #[derive(Event, Serialize, Deserialize, JsonSchema)]
//! #[aggregate(Subscription)]
//! #[event(creates)]
//! pub struct Created {
//!     /// Old events have no currency: they were all in US dollars.
//!     #[data_attributes]
//!     #[serde(default = "usd")]
//!     pub currency: String,
//! }
//! fn usd() -> String { "USD".into() }
//! # impl Apply<Subscription> for Created {
//! #     fn apply(&self, s: &mut Subscription, _: &EventContext<'_>) { s.currency = self.currency.clone() }
//! # }
//!
//! let catalog = Catalog::from_registry(Registry::global()?, &[])?;
//! let yaml = catalog.to_yaml()?;
//! assert!(yaml.contains("tag: subscription.created"));
//! assert!(yaml.contains("required: false\n      default: USD"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The rooms in layer order (each calls only those above it), which is also the order of
// `Catalog`'s methods in the documentation: building it, writing it out, the disk.
mod model;
mod schema;

mod render;

mod disk;

#[cfg(test)]
mod fixtures;

pub use disk::{assert_catalog_fresh, refresh_catalog, write_catalog};
pub use model::{
    AggregateDoc, AppMetadataDoc, Catalog, CatalogError, CatalogFile, EventDoc, FieldDoc,
    MARKDOWN_FILE, MetadataDoc, ReactorDoc, ReactorKind, SCHEMAS_DIR, YAML_FILE,
    app_metadata_schema_path, metadata_schema_path, schema_path,
};
