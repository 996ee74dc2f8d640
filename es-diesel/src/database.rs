//! The database-specific half of the store: write transactions, the events tables, the DDL.
//!
//! Everything here is written once and instantiated per connection type by `database!`, so that
//! each backend keeps its own SQL types, placeholders and locking while sharing the logic.

use chrono::{DateTime, Utc};
use diesel::connection::Connection;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use es_core::{AsOf, Error, EventFilter, Metadata, RecordedEvent, Staged};

use crate::id::IdColumn;

/// A diesel connection the store can use: `SqliteConnection` (feature `sqlite`), `PgConnection`
/// (feature `postgres`), `MysqlConnection` (feature `mysql`). Sealed.
pub trait Database: Connection + Sized + 'static + sealed::Sealed {
    /// Runs `f` in a transaction that holds the write lock: `BEGIN IMMEDIATE` on SQLite, an
    /// ordinary transaction elsewhere (rows are locked with `SELECT ... FOR UPDATE`). Inside an
    /// enclosing transaction, a savepoint.
    #[doc(hidden)]
    fn write_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error>;

    /// The version and tag of the last event of one aggregate, if any.
    #[doc(hidden)]
    fn last_event<Id: IdColumn<Self::Backend>>(
        &mut self,
        table: &'static str,
        id: &Id,
    ) -> Result<Option<(i64, String)>, Error>;

    /// Inserts staged events with one multi-row `INSERT`, returning their ids in order.
    #[doc(hidden)]
    fn insert_events<Id: IdColumn<Self::Backend>, A: es_core::Aggregate>(
        &mut self,
        table: &'static str,
        id: &Id,
        staged: &Staged<A>,
    ) -> Result<Vec<i64>, Error>;

    /// Reads events; each is decoded as the iterator reaches it, so errors come in event order.
    #[doc(hidden)]
    fn select_events<Id: IdColumn<Self::Backend>>(
        &mut self,
        table: &'static str,
        selection: Selection<'_, Id>,
    ) -> Result<Records<Id>, Error>;

    /// The next `limit` aggregate ids that have events, after `after`, in order.
    #[doc(hidden)]
    fn aggregate_ids<Id: IdColumn<Self::Backend>>(
        &mut self,
        table: &'static str,
        after: Option<&Id>,
        limit: usize,
    ) -> Result<Vec<Id>, Error>;

    /// The statements creating the framework's own tables (the global event position).
    fn framework_ddl() -> Vec<String>;

    /// The statements creating one events table whose `aggregate_id` column has type `id_type`.
    fn events_table_ddl(table: &str, id_type: &str) -> Vec<String>;
}

mod sealed {
    pub trait Sealed {}
}

/// Which events [`Database::select_events`] reads.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a, Id> {
    /// One aggregate's events in version order, up to `as_of`.
    Aggregate { id: &'a Id, as_of: Option<AsOf> },
    /// Several aggregates' events, by aggregate then version.
    Aggregates(&'a [Id]),
    /// Events of every aggregate matching a filter, in global order.
    Filter(&'a EventFilter),
}

pub(crate) fn storage(table: &'static str) -> impl FnOnce(diesel::result::Error) -> Error {
    move |source| Error::Storage {
        table,
        source: Box::new(source),
    }
}

/// A raw SQL query whose placeholders are numbered as the backend wants (`?` or `$1`).
struct Query<'a, DB: diesel::backend::Backend> {
    query: BoxedSqlQuery<'a, DB, SqlQuery>,
    binds: usize,
    numbered: bool,
}

impl<'a, DB: diesel::backend::Backend> Query<'a, DB> {
    fn new(sql: impl Into<String>, numbered: bool) -> Self {
        Self {
            query: diesel::sql_query(sql).into_boxed(),
            binds: 0,
            numbered,
        }
    }

    fn sql(mut self, sql: &str) -> Self {
        self.query = self.query.sql(sql);
        self
    }

    fn placeholder(mut self) -> Self {
        self.binds += 1;
        self.query = if self.numbered {
            self.query.sql(format!("${}", self.binds))
        } else {
            self.query.sql("?")
        };
        self
    }

    fn bind<ST, V>(self, value: V) -> Self
    where
        DB: diesel::sql_types::HasSqlType<ST>,
        ST: Send + 'a,
        V: diesel::serialize::ToSql<ST, DB> + Send + 'a,
    {
        let mut this = self.placeholder();
        this.query = this.query.bind::<ST, V>(value);
        this
    }

    fn bind_id<Id: IdColumn<DB>>(self, id: &Id) -> Self {
        let mut this = self.placeholder();
        this.query = id.bind(this.query);
        this
    }
}

/// Events read from an events table, decoded one by one.
#[doc(hidden)]
#[derive(Debug)]
pub struct Records<Id> {
    rows: std::vec::IntoIter<EventRow<Id>>,
    table: &'static str,
}

impl<Id> Iterator for Records<Id> {
    type Item = Result<RecordedEvent<Id>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rows.next().map(|row| row.into_record(self.table))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rows.size_hint()
    }
}

impl<Id> ExactSizeIterator for Records<Id> {}

/// One row of an events table as read from the database.
#[derive(Debug)]
struct EventRow<Id> {
    id: i64,
    aggregate_id: Id,
    version: i64,
    event_type: String,
    data: String,
    metadata: String,
    created_at: DateTime<Utc>,
}

impl<Id> EventRow<Id> {
    fn into_record(self, table: &'static str) -> Result<RecordedEvent<Id>, Error> {
        let metadata =
            Metadata::from_json(&self.metadata).map_err(|source| Error::DecodeMetadata {
                table,
                event_id: self.id,
                source,
            })?;
        Ok(RecordedEvent {
            id: self.id,
            aggregate_id: self.aggregate_id,
            version: self.version,
            event_type: self.event_type,
            data: self.data,
            metadata,
            created_at: self.created_at,
        })
    }
}

#[derive(diesel::QueryableByName)]
struct LastEvent {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    version: i64,
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "type")]
    event_type: String,
}

#[derive(diesel::QueryableByName)]
struct Number {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    value: i64,
}

/// Implements [`Database`] for one connection type. `$dialect` is a module providing the
/// backend's differences: `NUMBERED`, `SELECT_COLUMNS`, `JSON_PLACEHOLDER_SUFFIX`,
/// `bind_created_at`, `read_created_at`, `write_transaction`, `insert_events`, `framework_ddl`,
/// `events_table_ddl`.
macro_rules! database {
    ($conn:ty, $db:ty, $dialect:ident) => {
        impl sealed::Sealed for $conn {}

        impl<Id: IdColumn<$db>> diesel::deserialize::QueryableByName<$db> for EventRow<Id> {
            fn build<'a>(
                row: &impl diesel::row::NamedRow<'a, $db>,
            ) -> diesel::deserialize::Result<Self> {
                use diesel::row::NamedRow;
                use diesel::sql_types::{BigInt, Text};
                Ok(Self {
                    id: NamedRow::get::<BigInt, i64>(row, "id")?,
                    aggregate_id: Id::read(row, "aggregate_id")?,
                    version: NamedRow::get::<BigInt, i64>(row, "version")?,
                    event_type: NamedRow::get::<Text, String>(row, "type")?,
                    data: NamedRow::get::<Text, String>(row, "data")?,
                    metadata: NamedRow::get::<Text, String>(row, "metadata")?,
                    created_at: $dialect::read_created_at(row)?,
                })
            }
        }

        impl Database for $conn {
            fn write_transaction<T>(
                &mut self,
                f: impl FnOnce(&mut Self) -> Result<T, Error>,
            ) -> Result<T, Error> {
                $dialect::write_transaction(self, f)
            }

            fn last_event<Id: IdColumn<$db>>(
                &mut self,
                table: &'static str,
                id: &Id,
            ) -> Result<Option<(i64, String)>, Error> {
                use diesel::{OptionalExtension, RunQueryDsl};
                let query = Query::<$db>::new(
                    format!("SELECT version, type FROM {table} WHERE aggregate_id = "),
                    $dialect::NUMBERED,
                )
                .bind_id(id)
                .sql(" ORDER BY version DESC LIMIT 1");
                let last: Option<LastEvent> = query
                    .query
                    .get_result(self)
                    .optional()
                    .map_err(storage(table))?;
                Ok(last.map(|last| (last.version, last.event_type)))
            }

            fn insert_events<Id: IdColumn<$db>, A: es_core::Aggregate>(
                &mut self,
                table: &'static str,
                id: &Id,
                staged: &Staged<A>,
            ) -> Result<Vec<i64>, Error> {
                $dialect::insert_events(self, table, id, staged)
            }

            fn select_events<Id: IdColumn<$db>>(
                &mut self,
                table: &'static str,
                selection: Selection<'_, Id>,
            ) -> Result<Records<Id>, Error> {
                use diesel::RunQueryDsl;
                let mut query = Query::<$db>::new(
                    format!("SELECT {} FROM {table} WHERE ", $dialect::SELECT_COLUMNS),
                    $dialect::NUMBERED,
                );
                match selection {
                    Selection::Aggregate { id, as_of } => {
                        query = query.sql("aggregate_id = ").bind_id(id);
                        query = match as_of {
                            None => query,
                            Some(AsOf::Version(version)) => {
                                query
                                    .sql(" AND version <= ")
                                    .bind::<diesel::sql_types::BigInt, _>(version)
                            }
                            Some(AsOf::Time(time)) => {
                                $dialect::bind_created_at(query.sql(" AND created_at <= "), time)
                            }
                        };
                        query = query.sql(" ORDER BY version");
                    }
                    Selection::Aggregates(ids) => {
                        query = query.sql("aggregate_id IN (");
                        for (index, id) in ids.iter().enumerate() {
                            if index > 0 {
                                query = query.sql(", ");
                            }
                            query = query.bind_id(id);
                        }
                        query = query.sql(") ORDER BY aggregate_id, version");
                    }
                    Selection::Filter(filter) => {
                        query = query.sql("1 = 1");
                        if !filter.tags.is_empty() {
                            query = query.sql(" AND type IN (");
                            for (index, tag) in filter.tags.iter().enumerate() {
                                if index > 0 {
                                    query = query.sql(", ");
                                }
                                query = query.bind::<diesel::sql_types::Text, _>(tag.clone());
                            }
                            query = query.sql(")");
                        }
                        if let Some(since) = filter.since {
                            query =
                                $dialect::bind_created_at(query.sql(" AND created_at >= "), since);
                        }
                        if let Some(until) = filter.until {
                            query =
                                $dialect::bind_created_at(query.sql(" AND created_at < "), until);
                        }
                        if let Some(after) = filter.after_id {
                            query = query
                                .sql(" AND id > ")
                                .bind::<diesel::sql_types::BigInt, _>(after);
                        }
                        query = query.sql(" ORDER BY id");
                        if let Some(limit) = filter.limit {
                            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                            query = query
                                .sql(" LIMIT ")
                                .bind::<diesel::sql_types::BigInt, _>(limit);
                        }
                    }
                }
                let rows: Vec<EventRow<Id>> = query.query.load(self).map_err(storage(table))?;
                Ok(Records {
                    rows: rows.into_iter(),
                    table,
                })
            }

            fn aggregate_ids<Id: IdColumn<$db>>(
                &mut self,
                table: &'static str,
                after: Option<&Id>,
                limit: usize,
            ) -> Result<Vec<Id>, Error> {
                use diesel::RunQueryDsl;
                struct IdRow<Id>(Id);
                impl<Id: IdColumn<$db>> diesel::deserialize::QueryableByName<$db> for IdRow<Id> {
                    fn build<'a>(
                        row: &impl diesel::row::NamedRow<'a, $db>,
                    ) -> diesel::deserialize::Result<Self> {
                        Id::read(row, "aggregate_id").map(IdRow)
                    }
                }
                let mut query = Query::<$db>::new(
                    format!("SELECT DISTINCT aggregate_id FROM {table}"),
                    $dialect::NUMBERED,
                );
                if let Some(after) = after {
                    query = query.sql(" WHERE aggregate_id > ").bind_id(after);
                }
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                query = query
                    .sql(" ORDER BY aggregate_id LIMIT ")
                    .bind::<diesel::sql_types::BigInt, _>(limit);
                let rows: Vec<IdRow<Id>> = query.query.load(self).map_err(storage(table))?;
                Ok(rows.into_iter().map(|row| row.0).collect())
            }

            fn framework_ddl() -> Vec<String> {
                $dialect::framework_ddl()
            }

            fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
                $dialect::events_table_ddl(table, id_type)
            }
        }
    };
}

/// The `INSERT` of staged events: `(aggregate_id, version, type, data, metadata, created_at)`
/// for each, preceded by an explicit `id` when `with_ids` holds the first position.
fn insert_query<'a, DB, Id>(
    table: &str,
    id: &Id,
    staged: &Staged<impl Sized>,
    first_position: Option<i64>,
    numbered: bool,
    json_suffix: &str,
    bind_created_at: fn(Query<'a, DB>, DateTime<Utc>) -> Query<'a, DB>,
) -> Query<'a, DB>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>,
    Id: IdColumn<DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
{
    let columns = if first_position.is_some() {
        "id, aggregate_id, version, type, data, metadata, created_at"
    } else {
        "aggregate_id, version, type, data, metadata, created_at"
    };
    let mut query = Query::new(format!("INSERT INTO {table} ({columns}) VALUES "), numbered);
    for (index, event) in staged.events.iter().enumerate() {
        query = query.sql(if index == 0 { "(" } else { ", (" });
        if let Some(first) = first_position {
            let position = first + i64::try_from(index).unwrap_or(i64::MAX);
            query = query
                .bind::<diesel::sql_types::BigInt, _>(position)
                .sql(", ");
        }
        query = query
            .bind_id(id)
            .sql(", ")
            .bind::<diesel::sql_types::BigInt, _>(event.version)
            .sql(", ")
            .bind::<diesel::sql_types::Text, _>(event.tag.to_owned())
            .sql(", ")
            .bind::<diesel::sql_types::Text, _>(event.data.clone())
            .sql(json_suffix)
            .sql(", ")
            .bind::<diesel::sql_types::Text, _>(staged.metadata.clone())
            .sql(json_suffix)
            .sql(", ");
        query = bind_created_at(query, staged.created_at).sql(")");
    }
    query
}

/// Maps the unique violation of `(aggregate_id, version)` to a concurrency conflict.
fn insert_error<Id: std::fmt::Display>(
    table: &'static str,
    aggregate: &'static str,
    id: &Id,
    first_version: i64,
) -> impl FnOnce(diesel::result::Error) -> Error {
    move |error| match error {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation
            | diesel::result::DatabaseErrorKind::SerializationFailure,
            _,
        ) => Error::Conflict {
            aggregate,
            aggregate_id: id.to_string(),
            expected: first_version - 1,
            actual: first_version,
        },
        other => storage(table)(other),
    }
}

fn indexes_ddl(table: &str) -> [String; 2] {
    [
        format!("CREATE INDEX IF NOT EXISTS {table}_type_created_at ON {table} (type, created_at)"),
        format!("CREATE INDEX IF NOT EXISTS {table}_created_at ON {table} (created_at)"),
    ]
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    use diesel::sqlite::{Sqlite, SqliteConnection};

    pub(super) const NUMBERED: bool = false;
    pub(super) const SELECT_COLUMNS: &str =
        "id, aggregate_id, version, type, data, metadata, created_at";
    const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

    pub(super) fn bind_created_at(
        query: Query<'_, Sqlite>,
        time: DateTime<Utc>,
    ) -> Query<'_, Sqlite> {
        query.bind::<diesel::sql_types::Text, _>(time.format(FORMAT).to_string())
    }

    pub(super) fn read_created_at<'a>(
        row: &impl diesel::row::NamedRow<'a, Sqlite>,
    ) -> diesel::deserialize::Result<DateTime<Utc>> {
        let text =
            diesel::row::NamedRow::get::<diesel::sql_types::Text, String>(row, "created_at")?;
        Ok(DateTime::parse_from_rfc3339(&text)?.with_timezone(&Utc))
    }

    pub(super) fn write_transaction<T>(
        conn: &mut SqliteConnection,
        f: impl FnOnce(&mut SqliteConnection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let nested = AnsiTransactionManager::transaction_manager_status_mut(conn)
            .transaction_depth()
            .ok()
            .flatten()
            .is_some();
        let run = |conn: &mut SqliteConnection| f(conn).map_err(Failure::Es);
        let result = if nested {
            conn.transaction(run)
        } else {
            conn.immediate_transaction(run)
        };
        result.map_err(Failure::into_error)
    }

    pub(super) fn insert_events<Id: IdColumn<Sqlite>, A: es_core::Aggregate>(
        conn: &mut SqliteConnection,
        table: &'static str,
        id: &Id,
        staged: &Staged<A>,
    ) -> Result<Vec<i64>, Error> {
        use diesel::RunQueryDsl;
        let count = i64::try_from(staged.events.len()).unwrap_or(i64::MAX);
        let last: Number = diesel::sql_query(
            "UPDATE es_positions SET position = position + ? WHERE name = 'events' \
             RETURNING position AS value",
        )
        .bind::<diesel::sql_types::BigInt, _>(count)
        .get_result(conn)
        .map_err(storage("es_positions"))?;
        let first = last.value - count + 1;
        let first_version = staged.events.first().map_or(1, |event| event.version);
        insert_query(
            table,
            id,
            staged,
            Some(first),
            NUMBERED,
            "",
            bind_created_at,
        )
        .query
        .execute(conn)
        .map_err(insert_error(table, A::NAME, id, first_version))?;
        Ok((first..=last.value).collect())
    }

    pub(super) fn framework_ddl() -> Vec<String> {
        vec![
            "CREATE TABLE IF NOT EXISTS es_positions (name TEXT NOT NULL PRIMARY KEY, \
             position BIGINT NOT NULL)"
                .to_owned(),
            "INSERT INTO es_positions (name, position) VALUES ('events', 0) \
             ON CONFLICT (name) DO NOTHING"
                .to_owned(),
        ]
    }

    pub(super) fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
        let [by_type, by_time] = indexes_ddl(table);
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 id INTEGER PRIMARY KEY NOT NULL, \
                 aggregate_id {id_type} NOT NULL, \
                 version BIGINT NOT NULL, \
                 type TEXT NOT NULL, \
                 data TEXT NOT NULL, \
                 metadata TEXT NOT NULL, \
                 created_at TEXT NOT NULL, \
                 UNIQUE (aggregate_id, version))"
            ),
            by_type,
            by_time,
        ]
    }

    database!(SqliteConnection, Sqlite, sqlite);
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use diesel::pg::{Pg, PgConnection};

    pub(super) const NUMBERED: bool = true;
    pub(super) const SELECT_COLUMNS: &str = "id, aggregate_id, version, type, data::text AS data, \
         metadata::text AS metadata, created_at";

    pub(super) fn bind_created_at(query: Query<'_, Pg>, time: DateTime<Utc>) -> Query<'_, Pg> {
        query.bind::<diesel::sql_types::Timestamptz, _>(time)
    }

    pub(super) fn read_created_at<'a>(
        row: &impl diesel::row::NamedRow<'a, Pg>,
    ) -> diesel::deserialize::Result<DateTime<Utc>> {
        diesel::row::NamedRow::get::<diesel::sql_types::Timestamptz, DateTime<Utc>>(
            row,
            "created_at",
        )
    }

    pub(super) fn write_transaction<T>(
        conn: &mut PgConnection,
        f: impl FnOnce(&mut PgConnection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        conn.transaction(|conn| f(conn).map_err(Failure::Es))
            .map_err(Failure::into_error)
    }

    pub(super) fn insert_events<Id: IdColumn<Pg>, A: es_core::Aggregate>(
        conn: &mut PgConnection,
        table: &'static str,
        id: &Id,
        staged: &Staged<A>,
    ) -> Result<Vec<i64>, Error> {
        use diesel::RunQueryDsl;
        let first_version = staged.events.first().map_or(1, |event| event.version);
        let rows: Vec<Number> = insert_query(
            table,
            id,
            staged,
            None,
            NUMBERED,
            "::jsonb",
            bind_created_at,
        )
        .sql(" RETURNING id AS value")
        .query
        .load(conn)
        .map_err(insert_error(table, A::NAME, id, first_version))?;
        Ok(rows.into_iter().map(|row| row.value).collect())
    }

    pub(super) fn framework_ddl() -> Vec<String> {
        vec!["CREATE SEQUENCE IF NOT EXISTS es_event_position".to_owned()]
    }

    pub(super) fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
        let [by_type, by_time] = indexes_ddl(table);
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 id BIGINT PRIMARY KEY DEFAULT nextval('es_event_position'), \
                 aggregate_id {id_type} NOT NULL, \
                 version BIGINT NOT NULL, \
                 type TEXT NOT NULL, \
                 data JSONB NOT NULL, \
                 metadata JSONB NOT NULL, \
                 created_at TIMESTAMPTZ NOT NULL, \
                 UNIQUE (aggregate_id, version))"
            ),
            by_type,
            by_time,
        ]
    }

    database!(PgConnection, Pg, postgres);
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use diesel::mysql::{Mysql, MysqlConnection};

    pub(super) const NUMBERED: bool = false;
    pub(super) const SELECT_COLUMNS: &str =
        "id, aggregate_id, version, type, data, metadata, created_at";

    pub(super) fn bind_created_at(
        query: Query<'_, Mysql>,
        time: DateTime<Utc>,
    ) -> Query<'_, Mysql> {
        query.bind::<diesel::sql_types::Datetime, _>(time.naive_utc())
    }

    pub(super) fn read_created_at<'a>(
        row: &impl diesel::row::NamedRow<'a, Mysql>,
    ) -> diesel::deserialize::Result<DateTime<Utc>> {
        let naive = diesel::row::NamedRow::get::<diesel::sql_types::Datetime, chrono::NaiveDateTime>(
            row,
            "created_at",
        )?;
        Ok(naive.and_utc())
    }

    pub(super) fn write_transaction<T>(
        conn: &mut MysqlConnection,
        f: impl FnOnce(&mut MysqlConnection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        conn.transaction(|conn| f(conn).map_err(Failure::Es))
            .map_err(Failure::into_error)
    }

    pub(super) fn insert_events<Id: IdColumn<Mysql>, A: es_core::Aggregate>(
        conn: &mut MysqlConnection,
        table: &'static str,
        id: &Id,
        staged: &Staged<A>,
    ) -> Result<Vec<i64>, Error> {
        use diesel::RunQueryDsl;
        let count = i64::try_from(staged.events.len()).unwrap_or(i64::MAX);
        diesel::sql_query(
            "UPDATE es_positions SET position = LAST_INSERT_ID(position + ?) WHERE name = 'events'",
        )
        .bind::<diesel::sql_types::BigInt, _>(count)
        .execute(conn)
        .map_err(storage("es_positions"))?;
        let last: Number = diesel::sql_query("SELECT CAST(LAST_INSERT_ID() AS SIGNED) AS value")
            .get_result(conn)
            .map_err(storage("es_positions"))?;
        let first = last.value - count + 1;
        let first_version = staged.events.first().map_or(1, |event| event.version);
        insert_query(
            table,
            id,
            staged,
            Some(first),
            NUMBERED,
            "",
            bind_created_at,
        )
        .query
        .execute(conn)
        .map_err(insert_error(table, A::NAME, id, first_version))?;
        Ok((first..=last.value).collect())
    }

    pub(super) fn framework_ddl() -> Vec<String> {
        vec![
            "CREATE TABLE IF NOT EXISTS es_positions (name VARCHAR(64) NOT NULL PRIMARY KEY, \
             position BIGINT NOT NULL) ENGINE=InnoDB"
                .to_owned(),
            "INSERT IGNORE INTO es_positions (name, position) VALUES ('events', 0)".to_owned(),
        ]
    }

    pub(super) fn events_table_ddl(table: &str, id_type: &str) -> Vec<String> {
        vec![format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
             id BIGINT NOT NULL PRIMARY KEY, \
             aggregate_id {id_type} NOT NULL, \
             version BIGINT NOT NULL, \
             type VARCHAR(255) NOT NULL, \
             data JSON NOT NULL, \
             metadata JSON NOT NULL, \
             created_at DATETIME(6) NOT NULL, \
             UNIQUE KEY {table}_aggregate_version (aggregate_id, version), \
             KEY {table}_type_created_at (type, created_at), \
             KEY {table}_created_at (created_at)) ENGINE=InnoDB"
        )]
    }

    database!(MysqlConnection, Mysql, mysql);
}

/// An error inside a diesel transaction: ours, or diesel's (which then rolls back).
enum Failure {
    Es(Error),
    Diesel(diesel::result::Error),
}

impl From<diesel::result::Error> for Failure {
    fn from(error: diesel::result::Error) -> Self {
        Failure::Diesel(error)
    }
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Failure::Es(error) => error,
            Failure::Diesel(error) => storage("transaction")(error),
        }
    }
}
