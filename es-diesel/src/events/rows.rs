//! The rows of the events tables and their decoding: an event row read column by column (a bad
//! column is an error naming it, and the rows after it are read), metadata decoded once per run
//! of equal JSON, typed records streamed in constant memory, erased events for jobs and
//! projections, and the small rows of the store's other reads.
//!
//! Calls `backend` (how a backend reads a column), `id` and `errors`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, QueryableByName};
use diesel::row::NamedRow;
use es_core::{Aggregate, Error, Metadata, RecordedEvent};

use crate::backend::SqlDialect;
use crate::errors::storage;
use crate::id::IdColumn;

/// Any stored event, as a reactor routed with `*` receives it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AnyEvent {
    /// The events table it is stored in (names its aggregate).
    pub events_table: String,
    /// The aggregate id, as text.
    pub aggregate_id: String,
    /// The event's id (its global position).
    pub id: i64,
    /// Its version within its aggregate.
    pub version: i64,
    /// Its type tag.
    pub event_type: String,
    /// Its data attributes, as JSON text.
    pub data: String,
    /// Who created it and from where.
    pub metadata: Arc<Metadata>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl AnyEvent {
    /// The event of a record of events table `events_table`, its aggregate id as text.
    pub(crate) fn erased(events_table: String, record: RecordedEvent<String>) -> Self {
        Self {
            events_table,
            aggregate_id: record.aggregate_id,
            id: record.id,
            version: record.version,
            event_type: record.event_type,
            data: record.data,
            metadata: record.metadata,
            created_at: record.created_at,
        }
    }

    /// The typed record, if this event belongs to aggregate `A` and its id parses.
    pub fn record_of<A: Aggregate>(&self) -> Option<RecordedEvent<A::Id>> {
        if self.events_table != A::EVENTS_TABLE {
            return None;
        }
        Some(RecordedEvent {
            id: self.id,
            aggregate_id: self.aggregate_id.parse().ok()?,
            version: self.version,
            event_type: self.event_type.clone(),
            data: self.data.clone(),
            metadata: self.metadata.clone(),
            created_at: self.created_at,
        })
    }

    /// The erased form of a record of aggregate `A`.
    pub fn of<A: Aggregate>(record: &RecordedEvent<A::Id>) -> Self {
        Self {
            events_table: A::EVENTS_TABLE.to_owned(),
            aggregate_id: record.aggregate_id.to_string(),
            id: record.id,
            version: record.version,
            event_type: record.event_type.clone(),
            data: record.data.clone(),
            metadata: record.metadata.clone(),
            created_at: record.created_at,
        }
    }
}

/// Events read from an events table as the rows arrive, decoded one by one: each row is dropped
/// before the next is read, so a scan of any length runs in constant memory. A row that cannot be
/// read is an error in its place, and the rows after it are read as usual.
pub(crate) struct Records<'c, Id> {
    rows: Box<dyn Iterator<Item = diesel::QueryResult<EventRow<Id>>> + 'c>,
    table: &'static str,
    metadata: MetadataCache,
}

impl<'c, Id> Records<'c, Id> {
    /// The records of `rows`, read from events table `table`.
    pub(crate) fn new(
        rows: Box<dyn Iterator<Item = diesel::QueryResult<EventRow<Id>>> + 'c>,
        table: &'static str,
    ) -> Self {
        Self {
            rows,
            table,
            metadata: MetadataCache::default(),
        }
    }
}

impl<Id> std::fmt::Debug for Records<'_, Id> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl<Id: es_core::AggregateId> Records<'_, Id> {
    /// The next event, or the error of a row that cannot be read with its aggregate when that
    /// column could be read: what a replay needs to skip that aggregate and go on.
    pub(crate) fn next_row(&mut self) -> Option<Result<RecordedEvent<Id>, BadRow<Id>>> {
        let row = self.rows.next()?;
        Some(match row {
            Ok(row) => row.into_record(self.table, &mut self.metadata),
            Err(error) => Err(BadRow {
                aggregate_id: None,
                error: storage(self.table)(error),
            }),
        })
    }
}

impl<Id: es_core::AggregateId> Iterator for Records<'_, Id> {
    type Item = Result<RecordedEvent<Id>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().map(|row| row.map_err(|bad| bad.error))
    }
}

/// A row of an events table that cannot be read, and its aggregate if that column could be.
#[derive(Debug)]
pub(crate) struct BadRow<Id> {
    /// The aggregate the row belongs to, if its `aggregate_id` column could be read.
    pub(crate) aggregate_id: Option<Id>,
    /// What is wrong, naming the table, event id, tag and column.
    pub(crate) error: Error,
}

/// What a column's reader failed with (diesel's deserialization error).
type ColumnError = Box<dyn std::error::Error + Send + Sync>;

/// One row of an events table as read from the database: its event id (the primary key, always
/// readable), then its other columns, or the first of them that cannot be read.
#[derive(Debug)]
pub(crate) struct EventRow<Id> {
    id: i64,
    columns: Result<Columns<Id>, BadColumn<Id>>,
}

/// The columns of an event row after its id.
#[derive(Debug)]
struct Columns<Id> {
    aggregate_id: Id,
    version: i64,
    event_type: String,
    data: String,
    metadata: String,
    created_at: DateTime<Utc>,
}

/// The first column of an event row that cannot be read, with what could be read of the row's
/// aggregate and tag.
#[derive(Debug)]
struct BadColumn<Id> {
    aggregate_id: Option<Id>,
    tag: Option<String>,
    column: &'static str,
    source: ColumnError,
}

impl<Id> EventRow<Id> {
    /// A row from what each column's reader returned, in the order of `SELECT_COLUMNS`.
    fn new(
        id: i64,
        aggregate_id: Result<Id, ColumnError>,
        version: Result<i64, ColumnError>,
        event_type: Result<String, ColumnError>,
        data: Result<String, ColumnError>,
        metadata: Result<String, ColumnError>,
        created_at: Result<DateTime<Utc>, ColumnError>,
    ) -> Self {
        let columns = match (aggregate_id, event_type) {
            (Err(source), tag) => Err(BadColumn {
                aggregate_id: None,
                tag: tag.ok(),
                column: "aggregate_id",
                source,
            }),
            (Ok(aggregate_id), Err(source)) => Err(BadColumn {
                aggregate_id: Some(aggregate_id),
                tag: None,
                column: "type",
                source,
            }),
            (Ok(aggregate_id), Ok(event_type)) => {
                let at = |column: &'static str| move |source| (column, source);
                let rest = version.map_err(at("version")).and_then(|version| {
                    let data = data.map_err(at("data"))?;
                    let metadata = metadata.map_err(at("metadata"))?;
                    Ok((
                        version,
                        data,
                        metadata,
                        created_at.map_err(at("created_at"))?,
                    ))
                });
                match rest {
                    Ok((version, data, metadata, created_at)) => Ok(Columns {
                        aggregate_id,
                        version,
                        event_type,
                        data,
                        metadata,
                        created_at,
                    }),
                    Err((column, source)) => Err(BadColumn {
                        aggregate_id: Some(aggregate_id),
                        tag: Some(event_type),
                        column,
                        source,
                    }),
                }
            }
        };
        Self { id, columns }
    }
}

/// The last `metadata` decoded, with its JSON: the events of one append share their metadata, so
/// a run of rows with the same JSON is decoded once and shared.
#[derive(Debug, Default)]
pub(crate) struct MetadataCache(Option<(String, Arc<Metadata>)>);

impl MetadataCache {
    fn decode(
        &mut self,
        json: String,
        table: &'static str,
        event_id: i64,
        tag: &str,
    ) -> Result<Arc<Metadata>, Error> {
        if let Some((_, metadata)) = self.0.as_ref().filter(|(last, _)| *last == json) {
            return Ok(Arc::clone(metadata));
        }
        let metadata = Metadata::from_json(&json).map_err(|source| Error::DecodeMetadata {
            table,
            event_id,
            tag: tag.to_owned(),
            source,
        })?;
        let metadata = Arc::new(metadata);
        self.0 = Some((json, Arc::clone(&metadata)));
        Ok(metadata)
    }
}

impl<Id: es_core::AggregateId> EventRow<Id> {
    pub(crate) fn into_record(
        self,
        table: &'static str,
        cache: &mut MetadataCache,
    ) -> Result<RecordedEvent<Id>, BadRow<Id>> {
        let event_id = self.id;
        let columns = self.columns.map_err(|bad| BadRow {
            error: Error::BadColumn {
                table,
                event_id,
                aggregate_id: bad.aggregate_id.as_ref().map(ToString::to_string),
                tag: bad.tag,
                column: bad.column,
                source: bad.source,
            },
            aggregate_id: bad.aggregate_id,
        })?;
        let metadata = match cache.decode(columns.metadata, table, event_id, &columns.event_type) {
            Ok(metadata) => metadata,
            Err(error) => {
                return Err(BadRow {
                    aggregate_id: Some(columns.aggregate_id),
                    error,
                });
            }
        };
        Ok(RecordedEvent {
            id: event_id,
            aggregate_id: columns.aggregate_id,
            version: columns.version,
            event_type: columns.event_type,
            data: columns.data,
            metadata,
            created_at: columns.created_at,
        })
    }
}

/// How many events of one type were created on one day: a line of
/// [`event_counts`](crate::event_counts).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventCount {
    /// The day, in UTC (`2026-04-20`).
    pub day: String,
    /// The type tag (`task.completed`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// How many events.
    pub events: i64,
}

/// The last event of one aggregate: its id, version and tag (`SELECT id, version, type`).
pub(crate) struct LastEvent {
    id: i64,
    version: Result<i64, ColumnError>,
    event_type: Result<String, ColumnError>,
}

impl LastEvent {
    /// Its version and tag, or the first of them that cannot be read.
    pub(crate) fn into_head<Id: std::fmt::Display>(
        self,
        table: &'static str,
        aggregate_id: &Id,
    ) -> Result<(i64, String), Error> {
        let bad = |tag: Option<String>, column, source| Error::BadColumn {
            table,
            event_id: self.id,
            aggregate_id: Some(aggregate_id.to_string()),
            tag,
            column,
            source,
        };
        match (self.version, self.event_type) {
            (Ok(version), Ok(tag)) => Ok((version, tag)),
            (Err(source), tag) => Err(bad(tag.ok(), "version", source)),
            (Ok(_), Err(source)) => Err(bad(None, "type", source)),
        }
    }
}

impl<Id> EventRow<Id> {
    /// Reads a row of `SELECT_COLUMNS` whose aggregate id `aggregate_id` was read already. By
    /// position (diesel finds a column by name by comparing every column's name, and in
    /// row-by-row mode it first rebuilds the names for every row). Only the id fails the row: any
    /// other column that cannot be read is reported with it, and the rows after it are read.
    fn read<'a, DB: SqlDialect>(
        row: &impl NamedRow<'a, DB>,
        aggregate_id: deserialize::Result<Id>,
    ) -> deserialize::Result<Self> {
        Ok(EventRow::new(
            DB::get_big_int(row, 0)?,
            aggregate_id,
            DB::read_integer(row, 2),
            DB::read_text(row, 3),
            DB::read_text(row, 4),
            DB::read_text(row, 5),
            DB::read_time(row, 6),
        ))
    }
}

impl<DB: SqlDialect, Id: IdColumn<DB>> QueryableByName<DB> for EventRow<Id> {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        EventRow::read(row, Id::read(row, 1))
    }
}

/// An event row of any events table (`SELECT_ANY_COLUMNS`): its aggregate id as text.
pub(crate) struct ErasedRow(pub(crate) EventRow<String>);

impl<DB: SqlDialect> QueryableByName<DB> for ErasedRow {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        EventRow::read(row, DB::get_text(row, 1)).map(ErasedRow)
    }
}

/// A row of the subscription feed: the event, erased, and the first half of its feed position
/// (`tx_order`), read after the event's columns.
pub(crate) struct FeedRow {
    pub(crate) tx_order: i64,
    pub(crate) row: EventRow<String>,
}

impl<DB: SqlDialect> QueryableByName<DB> for FeedRow {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        Ok(Self {
            tx_order: DB::get_big_int(row, 7)?,
            row: EventRow::read(row, DB::get_text(row, 1))?,
        })
    }
}

/// A feed position: `tx_order`, then the event id.
pub(crate) struct PositionRow(pub(crate) super::Position);

impl<DB: SqlDialect> QueryableByName<DB> for PositionRow {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        Ok(Self(super::Position {
            tx_order: DB::get_big_int(row, 0)?,
            event_id: DB::get_big_int(row, 1)?,
        }))
    }
}

impl<DB: SqlDialect> QueryableByName<DB> for LastEvent {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        Ok(Self {
            id: DB::get_big_int(row, 0)?,
            version: DB::read_integer(row, 1),
            event_type: DB::read_text(row, 2),
        })
    }
}

impl<DB: SqlDialect> QueryableByName<DB> for EventCount {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        Ok(Self {
            day: DB::get_text(row, 0)?,
            event_type: DB::get_text(row, 1)?,
            events: DB::get_big_int(row, 2)?,
        })
    }
}

/// An aggregate id alone (`SELECT aggregate_id`).
pub(crate) struct IdRow<Id>(pub(crate) Id);

impl<DB: SqlDialect, Id: IdColumn<DB>> QueryableByName<DB> for IdRow<Id> {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        Id::read(row, 0)
            .map(IdRow)
            .map_err(|source| format!("column `aggregate_id`: {source}").into())
    }
}
