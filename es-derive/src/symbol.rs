//! The names of every attribute and key the derives accept, in one place.

pub(crate) const AGGREGATE: &str = "aggregate";
pub(crate) const EVENT: &str = "event";
pub(crate) const DATA_ATTRIBUTES: &str = "data_attributes";

pub(crate) const TAG: &str = "tag";
pub(crate) const ALIAS: &str = "alias";
pub(crate) const CREATES: &str = "creates";
pub(crate) const DESTROYS: &str = "destroys";
pub(crate) const METADATA: &str = "metadata";
pub(crate) const EVENT_KEYS: &[&str] = &[TAG, ALIAS, CREATES, DESTROYS, METADATA];

pub(crate) const NAME: &str = "name";
pub(crate) const EVENTS_TABLE: &str = "events_table";
pub(crate) const TABLE: &str = "table";
pub(crate) const ID: &str = "id";
pub(crate) const BACKEND: &str = "backend";
pub(crate) const BACKENDS: &[&str] = &["sqlite", "postgres", "mysql"];
pub(crate) const AGGREGATE_KEYS: &[&str] = &[NAME, EVENTS_TABLE, TABLE, BACKEND];

pub(crate) const DIESEL: &str = "diesel";
pub(crate) const COLUMN_NAME: &str = "column_name";

pub(crate) const TRIGGER: &str = "trigger";
pub(crate) const ASYNC: &str = "async";
pub(crate) const PROJECT: &str = "project";
pub(crate) const SUBSCRIBE: &str = "subscribe";
