//! The events tables: every statement on them, written once over the backend's dialect — the
//! head of an aggregate, the `INSERT` of staged events, the reads by aggregate, filter and id,
//! the aggregate ids, the counts, and the erased reads of a job's or a projection's events. Their
//! rows and the decoding of them are `rows.rs`.
//!
//! Calls `events::rows`, `backend` (the dialect), `statement`, `id` and `errors`.

mod rows;

use es_core::{AsOf, Error, EventFilter, Registry, Staged};

pub use self::rows::{AnyEvent, EventCount};
pub(crate) use self::rows::{BadRow, Records};
use self::rows::{ErasedRow, EventRow, FeedRow, IdRow, LastEvent, MetadataCache, PositionRow};
use crate::backend::{Dialect, Number, SqlDialect};
use crate::errors::storage;
use crate::id::IdColumn;
use crate::statement::Statement;

/// Which events [`select_events`] reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Selection<'a, Id> {
    /// One aggregate's events in version order, up to `as_of`.
    Aggregate { id: &'a Id, as_of: Option<AsOf> },
    /// Several aggregates' events, by aggregate then version.
    Aggregates(&'a [Id]),
    /// Events of every aggregate matching a filter, in global order.
    Filter(&'a EventFilter),
    /// One event, by id.
    Id(i64),
}

/// The version and tag of the last event of one aggregate, if any.
pub(crate) fn last_event<C: Dialect, Id: IdColumn<C::Backend>>(
    conn: &mut C,
    table: &'static str,
    id: &Id,
) -> Result<Option<(i64, String)>, Error> {
    let query = Statement::new(format!(
        "SELECT id, version, type FROM {table} WHERE aggregate_id = "
    ))
    .bind_fragment(id.bind_value())
    .sql(" ORDER BY version DESC LIMIT 1");
    let last: Vec<LastEvent> = conn.load(query).map_err(storage(table))?;
    last.into_iter()
        .next()
        .map(|last| last.into_head(table, id))
        .transpose()
}

/// Inserts staged events with one multi-row `INSERT`, returning their ids in order, and runs
/// `save`, the upsert of the aggregate's row (its table, the statement), if any. Where the
/// events table numbers its rows itself (PostgreSQL's sequence) the `INSERT` returns the ids, and
/// the rows' transaction order and the upsert ride in it (`WITH es_order AS (...), es_saved AS
/// (upsert) INSERT ...`): one round trip; elsewhere the positions are reserved first and the
/// upsert follows.
pub(crate) fn insert_events<C: Dialect, Id: IdColumn<C::Backend>, A: es_core::Aggregate>(
    conn: &mut C,
    table: &'static str,
    id: &Id,
    staged: &Staged<A>,
    save: Option<(&'static str, Statement<'_, C::Backend>)>,
) -> Result<Vec<i64>, Error> {
    let count = i64::try_from(staged.events.len()).unwrap_or(i64::MAX);
    let first_version = staged.events.first().map_or(1, |event| event.version);
    let Some(last) = conn.reserve_positions(count)? else {
        let order = C::Backend::insert_order(table);
        let insert = insert_statement(table, id, staged, None, order.is_some())
            .sql(" RETURNING id AS value");
        let mut with = Vec::new();
        if let Some([before, after]) = order {
            with.push(
                Statement::new(before)
                    .bind_fragment(id.bind_value())
                    .sql(&after),
            );
        }
        let saved_table = save.map(|(saved_table, upsert)| {
            with.push(Statement::new("es_saved AS (").append(upsert).sql(")"));
            saved_table
        });
        let statement = match with
            .into_iter()
            .reduce(|all, query| all.sql(", ").append(query))
        {
            Some(queries) => Statement::new("WITH ")
                .append(queries)
                .sql(" ")
                .append(insert),
            None => insert,
        };
        let rows: Vec<Number> = conn.load(statement).map_err(|error| {
            // The error of the upsert names the aggregate's table, under whatever name diesel's
            // `table!` gave it: any table but the events table.
            let from_save = matches!(
                &error,
                diesel::result::Error::DatabaseError(_, info)
                    if info.table_name().is_some_and(|name| name != table)
            );
            match saved_table {
                Some(saved_table) if from_save => storage(saved_table)(error),
                _ => {
                    insert_error::<C::Backend, _>(table, (A::NAME, id), first_version, None)(error)
                }
            }
        })?;
        return Ok(rows.into_iter().map(|row| row.0).collect());
    };
    let first = last - count + 1;
    conn.execute(insert_statement(table, id, staged, Some(first), false))
        .map_err(insert_error::<C::Backend, _>(
            table,
            (A::NAME, id),
            first_version,
            Some((first, last)),
        ))?;
    if let Some((saved_table, upsert)) = save {
        conn.execute(upsert).map_err(storage(saved_table))?;
    }
    Ok((first..=last).collect())
}

/// The `INSERT` of staged events: `(aggregate_id, version, type, data, metadata, created_at)`
/// for each, preceded by an explicit `id` when `first_position` is given, followed by the
/// `tx_order` of the `WITH` query `es_order` when `ordered`.
fn insert_statement<'a, DB: SqlDialect, Id: IdColumn<DB>>(
    table: &str,
    id: &Id,
    staged: &Staged<impl Sized>,
    first_position: Option<i64>,
    ordered: bool,
) -> Statement<'a, DB> {
    let id_column = if first_position.is_some() { "id, " } else { "" };
    let order_column = if ordered { ", tx_order" } else { "" };
    let mut query = Statement::new(format!(
        "INSERT INTO {table} ({id_column}aggregate_id, version, type, data, metadata, \
         created_at{order_column}) VALUES "
    ));
    for (index, event) in staged.events.iter().enumerate() {
        query = query.sql(if index == 0 { "(" } else { ", (" });
        if let Some(first) = first_position {
            let position = first + i64::try_from(index).unwrap_or(i64::MAX);
            query = query.big_int(position).sql(", ");
        }
        query = query
            .bind_fragment(id.bind_value())
            .sql(", ")
            .big_int(event.version)
            .sql(", ")
            .text(event.tag)
            .sql(", ")
            .text(event.data.clone())
            .sql(DB::JSON_CAST)
            .sql(", ")
            .text(staged.metadata_json.clone())
            .sql(DB::JSON_CAST)
            .sql(", ");
        query = DB::bind_time(query, staged.created_at);
        if ordered {
            query = query.sql(", (SELECT tx_order FROM es_order)");
        }
        query = query.sql(")");
    }
    query
}

/// whose column default does).
fn insert_error<DB: SqlDialect, Id: std::fmt::Display>(
    table: &'static str,
    (aggregate, id): (&'static str, &Id),
    first_version: i64,
    allocated: Option<(i64, i64)>,
) -> impl FnOnce(diesel::result::Error) -> Error {
    move |error| match error {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            ref info,
        ) => {
            if DB::is_version_key(table, info.as_ref()) {
                Error::Conflict {
                    aggregate,
                    aggregate_id: id.to_string(),
                    expected: first_version - 1,
                    actual: first_version,
                }
            } else {
                Error::Storage {
                    table,
                    source: Box::new(PositionTaken {
                        table,
                        allocated: match allocated {
                            Some((first, last)) if first == last => format!("event id {first}"),
                            Some((first, last)) => format!("one of the event ids {first}..={last}"),
                            None => "the event id".to_owned(),
                        },
                        fix: DB::MOVE_POSITION,
                        source: error,
                    }),
                }
            }
        }
        other => storage(table)(other),
    }
}

/// The position (the id) the store allocated to an event is taken already in its events table, by
/// a row the store did not write: it took its id elsewhere than from the global position.
#[derive(Debug, thiserror::Error)]
#[error(
    "{allocated} the store allocated in `{table}` is taken already, by a row the store did not \
     write (inserted by hand?): move the position past the highest id of every events table \
     (`{fix}`), then write again ({source})"
)]
struct PositionTaken {
    table: &'static str,
    allocated: String,
    fix: &'static str,
    #[source]
    source: diesel::result::Error,
}

/// Reads events with one query, streamed: each row is read and decoded as the iterator reaches it
/// (errors come in event order), and the connection is busy until the iterator is dropped.
pub(crate) fn select_events<'c, C: Dialect, Id: IdColumn<C::Backend> + 'c>(
    conn: &'c mut C,
    table: &'static str,
    selection: Selection<'c, Id>,
) -> Result<Records<'c, Id>, Error> {
    let query = Statement::new(format!(
        "SELECT {} FROM {table} WHERE ",
        C::Backend::SELECT_COLUMNS
    ));
    let query = match selection {
        Selection::Aggregate { id, as_of } => {
            let query = query.sql("aggregate_id = ").bind_fragment(id.bind_value());
            let query = match as_of {
                None => query,
                Some(AsOf::Version(version)) => query.sql(" AND version <= ").big_int(version),
                Some(AsOf::Time(time)) => {
                    C::Backend::bind_time(query.sql(" AND created_at <= "), time)
                }
            };
            query.sql(" ORDER BY version")
        }
        Selection::Aggregates(ids) => query
            .sql("aggregate_id IN (")
            .bind_list(ids.iter().map(IdColumn::bind_value))
            .sql(") ORDER BY aggregate_id, version"),
        Selection::Id(event_id) => query.sql("id = ").big_int(event_id),
        Selection::Filter(filter) => filtered(query, filter),
    };
    let rows = conn.stream::<EventRow<Id>>(query).map_err(storage(table))?;
    Ok(Records::new(rows, table))
}

/// The conditions and order of a [`Selection::Filter`], after `WHERE `.
fn filtered<'a, DB: SqlDialect>(
    query: Statement<'a, DB>,
    filter: &EventFilter,
) -> Statement<'a, DB> {
    let mut query = query.sql("1 = 1");
    if !filter.tags.is_empty() {
        query = query
            .sql(" AND type IN (")
            .bind_list(filter.tags.iter().map(|tag| DB::text(tag.clone())))
            .sql(")");
    }
    if let Some(since) = filter.since {
        query = DB::bind_time(query.sql(" AND created_at >= "), since);
    }
    if let Some(until) = filter.until {
        query = DB::bind_time(query.sql(" AND created_at < "), until);
    }
    if let Some(after) = filter.after_id {
        query = query.sql(" AND id > ").big_int(after);
    }
    query = query.sql(" ORDER BY id");
    match filter.limit {
        Some(limit) => query
            .sql(" LIMIT ")
            .big_int(i64::try_from(limit).unwrap_or(i64::MAX)),
        None => query,
    }
}

/// The next `limit` aggregate ids that have events, after `after`, in order.
pub(crate) fn aggregate_ids<C: Dialect, Id: IdColumn<C::Backend>>(
    conn: &mut C,
    table: &'static str,
    after: Option<&Id>,
    limit: usize,
) -> Result<Vec<Id>, Error> {
    // A loose index scan: one index seek per id, whatever the planner's statistics say
    // (`SELECT DISTINCT ... LIMIT` scans the whole table on PostgreSQL when a bulk load has not
    // been analyzed yet: 6 s per batch of a 1,000,000-event table).
    let mut query = Statement::new(format!(
        "WITH RECURSIVE ids (aggregate_id, n) AS (SELECT (SELECT aggregate_id FROM {table}"
    ));
    if let Some(after) = after {
        query = query
            .sql(" WHERE aggregate_id > ")
            .bind_fragment(after.bind_value());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let query = query
        .sql(&format!(
            " ORDER BY aggregate_id LIMIT 1), 1 UNION ALL SELECT (SELECT aggregate_id \
             FROM {table} AS e WHERE e.aggregate_id > ids.aggregate_id \
             ORDER BY e.aggregate_id LIMIT 1), n + 1 FROM ids \
             WHERE ids.aggregate_id IS NOT NULL AND n < "
        ))
        .big_int(limit)
        .sql(") SELECT aggregate_id FROM ids WHERE aggregate_id IS NOT NULL");
    let rows: Vec<IdRow<Id>> = conn.load(query).map_err(storage(table))?;
    Ok(rows.into_iter().map(|row| row.0).collect())
}

/// How many events of each type an events table holds per day (UTC), by day then type.
pub(crate) fn event_counts<C: Dialect>(
    conn: &mut C,
    table: &'static str,
) -> Result<Vec<EventCount>, Error> {
    conn.load(Statement::new(format!(
        "SELECT {} AS day, type, COUNT(*) AS events FROM {table} \
         GROUP BY day, type ORDER BY day, type",
        C::Backend::DAY_OF_CREATED_AT
    )))
    .map_err(storage(table))
}

/// Reads one event, erased, from an events table named at run time (a job's): `None` if no event
/// of the program is stored in a table of that name (its name never reaches the SQL then) or the
/// event is not there.
pub(crate) fn select_any_event<C: Dialect>(
    conn: &mut C,
    table: &str,
    event_id: i64,
) -> Result<Option<AnyEvent>, Error> {
    let Some(table) = events_table_named(table)? else {
        return Ok(None);
    };
    let query = Statement::new(format!(
        "SELECT {} FROM {table} WHERE id = ",
        C::Backend::SELECT_ANY_COLUMNS
    ))
    .big_int(event_id);
    let rows: Vec<ErasedRow> = conn.load(query).map_err(storage(table))?;
    let Some(ErasedRow(row)) = rows.into_iter().next() else {
        return Ok(None);
    };
    let record = row
        .into_record(table, &mut MetadataCache::default())
        .map_err(|bad| bad.error)?;
    Ok(Some(AnyEvent::erased(table.to_owned(), record)))
}

/// At most `limit` events of events table `table`, erased, with an id greater than `after`, in id
/// order.
pub(crate) fn select_any_events_after<C: Dialect>(
    conn: &mut C,
    table: &'static str,
    after: i64,
    limit: usize,
) -> Result<Vec<AnyEvent>, Error> {
    let query = Statement::new(format!(
        "SELECT {} FROM {table} WHERE id > ",
        C::Backend::SELECT_ANY_COLUMNS
    ))
    .big_int(after)
    .sql(" ORDER BY id LIMIT ")
    .big_int(i64::try_from(limit).unwrap_or(i64::MAX));
    let rows: Vec<ErasedRow> = conn.load(query).map_err(storage(table))?;
    let mut cache = MetadataCache::default();
    rows.into_iter()
        .map(|ErasedRow(row)| {
            let record = row
                .into_record(table, &mut cache)
                .map_err(|bad| bad.error)?;
            Ok(AnyEvent::erased(table.to_owned(), record))
        })
        .collect()
}

/// A place in the subscription feed, the one total order of every event: every event up to and
/// including it is behind. Ordered as the feed is: by `tx_order`, then event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// The order of the event's writing transaction on PostgreSQL (see the `subscription`
    /// module); 0 on SQLite and MySQL, whose feed is in id order.
    pub tx_order: i64,
    /// The event's id.
    pub event_id: i64,
}

impl Position {
    /// Before every event.
    pub const START: Position = Position {
        tx_order: 0,
        event_id: 0,
    };
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tx_order == 0 {
            write!(f, "{}", self.event_id)
        } else {
            write!(f, "{}@{}", self.event_id, self.tx_order)
        }
    }
}

/// At most `limit` events of events table `table` after feed position `after` that a reader may
/// take now (below `horizon`), erased, in feed order, each with its position.
pub(crate) fn select_feed<C: Dialect>(
    conn: &mut C,
    table: &'static str,
    after: Position,
    horizon: Option<i64>,
    limit: usize,
) -> Result<Vec<(Position, AnyEvent)>, Error> {
    let query = Statement::new(format!(
        "SELECT {}, {} AS tx_order FROM {table} WHERE ",
        C::Backend::SELECT_ANY_COLUMNS,
        C::Backend::FEED_ORDER_COLUMN
    ));
    let query = C::Backend::feed_after(query, (after.tx_order, after.event_id), horizon)
        .sql(C::Backend::FEED_ORDER)
        .sql(" LIMIT ")
        .big_int(i64::try_from(limit).unwrap_or(i64::MAX));
    let rows = conn.stream::<FeedRow>(query).map_err(storage(table))?;
    let mut cache = MetadataCache::default();
    rows.map(|row| {
        let FeedRow { tx_order, row } = row.map_err(storage(table))?;
        let record = row
            .into_record(table, &mut cache)
            .map_err(|bad| bad.error)?;
        let position = Position {
            tx_order,
            event_id: record.id,
        };
        Ok((position, AnyEvent::erased(table.to_owned(), record)))
    })
    .collect()
}

/// How many events of events table `table` come after feed position `after`.
pub(crate) fn count_feed_after<C: Dialect>(
    conn: &mut C,
    table: &'static str,
    after: Position,
) -> Result<i64, Error> {
    let query = Statement::new(format!("SELECT COUNT(*) AS value FROM {table} WHERE "));
    let query = C::Backend::feed_after(query, (after.tx_order, after.event_id), None);
    let counts: Vec<Number> = conn.load(query).map_err(storage(table))?;
    Ok(counts.first().map_or(0, |count| count.0))
}

/// Which event of an events table [`feed_position`] finds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FeedEvent {
    /// The one with this id.
    Id(i64),
    /// The one with the highest id.
    Last,
    /// The first in feed order created at or after this time.
    FirstSince(chrono::DateTime<chrono::Utc>),
}

/// The feed position of one event of events table `table`, if it has one.
pub(crate) fn feed_position<C: Dialect>(
    conn: &mut C,
    table: &'static str,
    event: FeedEvent,
) -> Result<Option<Position>, Error> {
    let query = Statement::new(format!(
        "SELECT {} AS tx_order, id FROM {table} ",
        C::Backend::FEED_ORDER_COLUMN
    ));
    let query = match event {
        FeedEvent::Id(id) => query.sql("WHERE id = ").big_int(id),
        FeedEvent::Last => query.sql("ORDER BY id DESC LIMIT 1"),
        FeedEvent::FirstSince(time) => {
            C::Backend::bind_time(query.sql("WHERE created_at >= "), time)
                .sql(C::Backend::FEED_ORDER)
                .sql(" LIMIT 1")
        }
    };
    let rows: Vec<PositionRow> = conn.load(query).map_err(storage(table))?;
    Ok(rows.first().map(|row| row.0))
}

/// The events table of the program's own events (its name as the code writes it) that a name
/// read from the database (a job's) names, if any.
fn events_table_named(name: &str) -> Result<Option<&'static str>, Error> {
    Ok(Registry::global()?
        .events()
        .iter()
        .map(|event| event.events_table)
        .find(|table| *table == name))
}
