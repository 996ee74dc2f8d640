//! The catalog's model: what a catalog is ([`Catalog`] and the docs of its aggregates, events,
//! attributes, reactors and metadata), where its files go in the catalog directory, and why it
//! can fail ([`CatalogError`]). Plain data, filled by `schema`, written by `render` and `disk`: it
//! calls nothing of theirs.

use std::path::{Path, PathBuf};

use schemars::Schema;
use serde::Serialize;
use serde_json::Value;

use crate::route::{EventRef, Route};

/// The YAML catalog's file name, in the catalog directory.
pub const YAML_FILE: &str = "catalog.yaml";
/// The Markdown page's file name, in the catalog directory.
pub const MARKDOWN_FILE: &str = "catalog.md";
/// The directory of the JSON Schemas, in the catalog directory.
pub const SCHEMAS_DIR: &str = "schemas";

/// The path, relative to the catalog directory, of the JSON Schema of event `tag`'s `data`.
pub fn schema_path(aggregate: &str, tag: &str) -> PathBuf {
    Path::new(SCHEMAS_DIR)
        .join(aggregate)
        .join(format!("{tag}.schema.json"))
}

/// The path, relative to the catalog directory, of the JSON Schema of the application metadata
/// of event `tag` of `aggregate`.
pub fn app_metadata_schema_path(aggregate: &str, tag: &str) -> PathBuf {
    Path::new(SCHEMAS_DIR)
        .join(aggregate)
        .join(format!("{tag}.metadata.schema.json"))
}

/// The path, relative to the catalog directory, of the JSON Schema of the `metadata`.
pub fn metadata_schema_path() -> PathBuf {
    Path::new(SCHEMAS_DIR).join("metadata.schema.json")
}

/// Why a catalog could not be built, written or checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The registry could not be built (two events share a tag).
    #[error(transparent)]
    Registry(#[from] crate::Error),

    /// A data attribute has no property in its event's JSON Schema (a struct-level
    /// `#[serde(rename_all)]`, or a `#[serde(flatten)]` attribute).
    #[error(
        "data attribute `{attribute}` of event `{event}` has no key `{key}` in the event's JSON \
         Schema; rename the field itself with `#[serde(rename = \"...\")]`"
    )]
    AttributeNotInSchema {
        /// The event's Rust name.
        event: &'static str,
        /// The field.
        attribute: &'static str,
        /// The key it was looked up by.
        key: &'static str,
    },

    /// An aggregate named for the catalog has no event in the program.
    #[error("no event of the program belongs to an aggregate named `{name}`")]
    UnknownAggregate {
        /// The name asked for.
        name: String,
    },

    /// The catalog could not be encoded as YAML.
    #[error("cannot encode the event catalog as YAML: {0}")]
    Yaml(#[source] serde_norway::Error),

    /// A JSON Schema could not be encoded.
    #[error("cannot encode `{path}`: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },

    /// A catalog file could not be read, written or removed.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// `read`, `write` or `remove`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A committed catalog file is not what the code generates.
    #[error(
        "the event catalog is stale: `{path}` {reason}; regenerate it by running `{refresh}` \
         without `CI=true`, and commit the result"
    )]
    Stale {
        /// The stale file.
        path: PathBuf,
        /// How it differs.
        reason: &'static str,
        /// The command that regenerates it.
        refresh: String,
    },
}

/// The catalog of every event of a program: see the [module documentation](super).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Catalog {
    /// The aggregates, sorted by name.
    pub aggregates: Vec<AggregateDoc>,
    /// The metadata fields available when an event is created.
    pub metadata: MetadataDoc,
    /// The routes of the dispatcher.
    #[serde(skip)]
    pub routes: Vec<Route>,
}

/// One aggregate of the catalog.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AggregateDoc {
    /// Its name.
    pub name: String,
    /// Its events table.
    pub events_table: String,
    /// Its events, sorted by tag.
    pub events: Vec<EventDoc>,
}

/// One event of the catalog.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EventDoc {
    /// The stored type tag.
    pub tag: String,
    /// Former tags that still decode to this event.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The Rust type.
    pub rust_name: String,
    /// The doc comment of the event struct.
    pub doc: String,
    /// Whether the event creates its aggregate.
    #[serde(skip_serializing_if = "is_false")]
    pub creates: bool,
    /// Whether the event destroys its aggregate.
    #[serde(skip_serializing_if = "is_false")]
    pub destroys: bool,
    /// The data attributes, in declaration order.
    pub attributes: Vec<FieldDoc>,
    /// The application metadata the event's `metadata` carries (`#[event(metadata = Type)]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_metadata: Option<AppMetadataDoc>,
    /// The reactors and projections the dispatcher routes the event to, in the order they run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reactors: Vec<ReactorDoc>,
    /// The JSON Schema of the event's `data`.
    #[serde(skip)]
    pub data_schema: Schema,
}

/// The application metadata of an event: its Rust type, its keys and their JSON Schema.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AppMetadataDoc {
    /// The Rust type as written.
    pub rust_type: String,
    /// Its keys in the `metadata` JSON, sorted by name.
    pub fields: Vec<FieldDoc>,
    /// Its JSON Schema.
    #[serde(skip)]
    pub schema: Schema,
}

/// A data attribute of an event, or a metadata field.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FieldDoc {
    /// Its key in the JSON.
    pub name: String,
    /// Its Rust type as written (data attributes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rust_type: Option<String>,
    /// Its JSON type, from the JSON Schema (`string`, `integer (int64)`, `string | null`).
    pub json_type: String,
    /// Whether every stored JSON has it.
    pub required: bool,
    /// The value an absent key decodes to, when serde gives it one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Its doc comment.
    pub doc: String,
}

/// A reactor or projection an event is routed to.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ReactorDoc {
    /// The reactor's path as written in the dispatcher.
    pub name: String,
    /// How it runs.
    pub kind: ReactorKind,
    /// Whether it runs in the write transaction (`trigger`, `project`) rather than after commit
    /// (`async`, `subscribe`).
    pub sync: bool,
    /// The route that sends the event there: a tag, `{aggregate}.*` or `*`.
    pub route: String,
    /// The events it may create, as declared in the dispatcher.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub creates: Vec<EventRef>,
}

/// How a reactor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ReactorKind {
    /// In the write transaction; may create events.
    Trigger,
    /// As a job, after commit; may create events.
    Async,
    /// A projection handler, in the write transaction and on rebuilds.
    Project,
    /// A subscription handler, after commit, in the order of the subscription's feed.
    Subscribe,
}

/// The metadata of the catalog: what is known of an event's creation.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MetadataDoc {
    /// The named fields, sorted by name; none is required.
    pub fields: Vec<FieldDoc>,
    /// Whether other keys are kept too (free-form context).
    pub other_keys: bool,
    /// The JSON Schema of the `metadata`.
    #[serde(skip)]
    pub schema: Schema,
}

/// A file of the catalog: its path relative to the catalog directory, and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogFile {
    /// The path, relative to the catalog directory.
    pub path: PathBuf,
    /// The contents.
    pub contents: String,
}

fn is_false(value: &bool) -> bool {
    !*value
}
