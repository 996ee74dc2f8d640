//! Everything a backend does differently, in one place: [`SqlDialect`], the SQL text and values of
//! a backend (`Sqlite`, `Pg`, `Mysql`), and [`Dialect`], what a connection does differently
//! (transactions, positions, waking workers, running statements). `sqlite.rs`, `postgres.rs` and
//! `mysql.rs` implement both for their backend, and nothing else of the crate names a backend.
//!
//! Calls `statement` (the statements it takes and builds) and `errors`; the rooms above (events,
//! the job queue, tables, the write path) are written once over these traits.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::deserialize::{self, QueryableByName};
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::result::DatabaseErrorInformation;
use diesel::row::{Field, Row, RowIndex};
use es_core::Error;

use crate::errors::storage;
use crate::sql_types::ColumnType;
use crate::statement::{Binds, Reads, Statement};

use self::concrete::Concrete;

pub(crate) mod concrete;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// The SQL a backend speaks where backends differ: column lists, time values, the jobs' locking
/// and wake-up, the DDL, and how its errors name a unique key. Sealed: implemented for diesel's
/// `Sqlite`, `Pg` and `Mysql`.
pub trait SqlDialect: Binds + Reads + sealed::Sealed {
    /// The columns of an events table in the order [`read_integer`](Self::read_integer) and its
    /// siblings read them: `id, aggregate_id, version, type, data, metadata, created_at`.
    const SELECT_COLUMNS: &'static str;
    /// [`SELECT_COLUMNS`](Self::SELECT_COLUMNS) with the aggregate id as text, for events of any
    /// aggregate type.
    const SELECT_ANY_COLUMNS: &'static str;
    /// What follows a `data` or `metadata` value in an `INSERT` (PostgreSQL's `::jsonb`).
    const JSON_CAST: &'static str;
    /// The day (`YYYY-MM-DD`, UTC) of `created_at`, in SQL.
    const DAY_OF_CREATED_AT: &'static str;
    /// What ends the `SELECT` of due jobs so that concurrent claims skip each other's rows.
    const CLAIM_LOCK: &'static str;
    /// The SQL before and after the jobs' `INSERT` that wakes idle workers (PostgreSQL's
    /// `pg_notify`; nothing elsewhere).
    const WAKE_WORKERS: [&'static str; 2];
    /// The `DELETE` of done jobs finished before a time, around that time and the limit.
    const DELETE_DONE_JOBS: [&'static str; 3];
    /// The statement moving the global position past `<highest id>`, once its last id taken.
    const MOVE_POSITION: &'static str;
    /// The first half of an event's position in the subscription feed, selected: its
    /// transaction's order on PostgreSQL (`tx_order`); by default `0`, where positions are
    /// allocated in commit order (one writer at a time holds `es_positions` until it commits:
    /// SQLite, MySQL) and the id alone orders the feed.
    const FEED_ORDER_COLUMN: &'static str = "0";
    /// The `ORDER BY` of the subscription feed: by position (by default, by id).
    const FEED_ORDER: &'static str = " ORDER BY id";
    /// What ends a `SELECT` of one row that the transaction updates next, so that a concurrent
    /// transaction doing the same waits (`FOR UPDATE`; nothing on SQLite, whose write transaction
    /// holds the database's one write lock already).
    const LOCK_ROW: &'static str;
    /// What ends the `INSERT` of a subscription's row so that an existing row is kept as it is.
    const KEEP_EXISTING_SUBSCRIPTION: &'static str;

    /// Appends, after `WHERE `, the condition of the events after feed position `after`,
    /// `(tx_order, id)`, that a reader may take now (below `horizon`, where the backend has
    /// one); by default, those with a higher id: no event can appear below one already read.
    fn feed_after<'a>(
        query: Statement<'a, Self>,
        (_, id): (i64, i64),
        _horizon: Option<i64>,
    ) -> Statement<'a, Self> {
        query.sql("id > ").big_int(id)
    }

    /// Where an events table orders its rows by transaction (PostgreSQL), the SQL before and
    /// after the aggregate id of the `WITH` query (`es_order`, one column `tx_order`) giving the
    /// `tx_order` of the rows an `INSERT` appends to one aggregate of `table`.
    fn insert_order(table: &str) -> Option<[String; 2]> {
        let _ = table;
        None
    }

    /// Whether a unique violation in events table `table` is that of `(aggregate_id, version)`,
    /// named `{table}_aggregate_version` by the DDL (the other is the id, the position).
    fn is_version_key(table: &str, info: &dyn DatabaseErrorInformation) -> bool;

    /// Binds a time as the backend stores `created_at`.
    fn bind_time(query: Statement<'_, Self>, time: DateTime<Utc>) -> Statement<'_, Self>;

    /// Appends the time `offset` from now: the database's clock where it has one that every
    /// machine shares (PostgreSQL, MySQL), this process's on SQLite (one machine).
    fn now_plus(query: Statement<'_, Self>, offset: TimeDelta) -> Statement<'_, Self>;

    /// Reads an integer column (an id, a version) the store wrote: as diesel does, unless the
    /// backend lets through what is not one.
    fn read_integer<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<i64> {
        Self::get_big_int(row, column)
    }

    /// Reads a text column (`type`, `data`, `metadata`) the store wrote: as diesel does, unless
    /// the backend lets through what is not text.
    fn read_text<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<String> {
        Self::get_text(row, column)
    }

    /// Reads a time column (`created_at`).
    fn read_time<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<DateTime<Utc>>;

    /// Reads a nullable time column (`es_jobs.locked_until`, `finished_at`): `None` for `NULL`,
    /// else as [`read_time`](Self::read_time) reads it.
    fn read_optional_time<'a, I: Copy>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<Option<DateTime<Utc>>> {
        let null = row
            .get(column)
            .ok_or(diesel::result::UnexpectedEndOfRow)?
            .is_null();
        if null {
            return Ok(None);
        }
        Self::read_time(row, column).map(Some)
    }

    /// The column type of `column` in this backend's DDL.
    fn column_type(column: ColumnType) -> &'static str;

    /// The statements creating the framework's own tables (the global event position, jobs).
    fn framework_ddl() -> Vec<String>;

    /// The statements creating one events table whose `aggregate_id` column has type `id_type`.
    fn events_table_ddl(table: &str, id_type: &str) -> Vec<String>;
}

/// What a connection does differently: its write and snapshot transactions, the allocation of
/// event positions, waking workers, and running the crate's statements. Sealed: implemented for
/// `SqliteConnection`, `PgConnection` and `MysqlConnection`.
pub trait Dialect:
    Connection<Backend: SqlDialect, TransactionManager = AnsiTransactionManager>
    + Sized
    + 'static
    + sealed::Sealed
{
    /// This connection as its concrete type, for [`with_connection!`](crate::with_connection).
    #[doc(hidden)]
    fn concrete(&mut self) -> Concrete<'_>;

    /// Runs `statement`; returns how many rows it changed.
    fn execute(&mut self, statement: Statement<'_, Self::Backend>) -> diesel::QueryResult<usize>;

    /// Runs `statement` and reads every row.
    fn load<T: QueryableByName<Self::Backend> + 'static>(
        &mut self,
        statement: Statement<'_, Self::Backend>,
    ) -> diesel::QueryResult<Vec<T>>;

    /// Runs `statement` and reads its rows as the iterator reaches them (PostgreSQL: row by row,
    /// as they arrive); the connection is busy until the iterator is dropped.
    fn stream<'c, T: QueryableByName<Self::Backend> + 'static>(
        &'c mut self,
        statement: Statement<'c, Self::Backend>,
    ) -> diesel::QueryResult<Box<dyn Iterator<Item = diesel::QueryResult<T>> + 'c>>;

    /// Begins a transaction that holds the write lock: `BEGIN IMMEDIATE` on SQLite, an ordinary
    /// transaction elsewhere (rows are locked with `SELECT ... FOR UPDATE`). Inside an enclosing
    /// transaction, a savepoint.
    fn begin_write(&mut self) -> diesel::QueryResult<()> {
        AnsiTransactionManager::begin_transaction(self)
    }

    /// Begins a read-only transaction that sees one consistent snapshot and takes no row lock: a
    /// deferred `BEGIN` on SQLite (in WAL mode a reader keeps the snapshot of its first read),
    /// `REPEATABLE READ READ ONLY` on PostgreSQL, `WITH CONSISTENT SNAPSHOT, READ ONLY` under
    /// `REPEATABLE READ` on MySQL. Inside an enclosing transaction, a savepoint.
    fn begin_snapshot(&mut self) -> diesel::QueryResult<()> {
        AnsiTransactionManager::begin_transaction(self)
    }

    /// Prepares the next transaction for the bookkeeping of `es_jobs` (MySQL: `READ COMMITTED`).
    fn before_jobs_transaction(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// The horizon of the subscription feed where transactions commit out of position order
    /// (PostgreSQL: the oldest transaction still running, `pg_snapshot_xmin`, below which no
    /// event can appear any more); `None` where positions are allocated in commit order.
    fn feed_horizon(&mut self) -> Result<Option<i64>, Error> {
        Ok(None)
    }

    /// Where positions are allocated out of commit order (PostgreSQL), a `tx_order` above every
    /// event committed so far (`pg_snapshot_xmax`: no transaction that ended has an id as high);
    /// `None` elsewhere. Once the [horizon](Dialect::feed_horizon) reaches it, a reader has seen
    /// everything committed before it was taken.
    fn feed_committed_bound(&mut self) -> Result<Option<i64>, Error> {
        Ok(None)
    }

    /// Reserves `count` positions of the global event order; returns the last, or `None` where
    /// the events table's id column takes them itself (PostgreSQL's sequence), in which case the
    /// `INSERT` returns them and carries the aggregate's upsert in a data-modifying `WITH`.
    fn reserve_positions(&mut self, count: i64) -> Result<Option<i64>, Error>;

    /// Fails if a failed statement aborted the transaction and the next statement is its
    /// `COMMIT` (PostgreSQL answers that `COMMIT` with a silent rollback): the outermost write
    /// calls it when a reactor had the connection — it may have handled the error of a statement
    /// of its own — and no statement of the write would fail before the commit. A savepoint's
    /// `RELEASE` fails by itself, and SQLite and MySQL roll back only the failed statement: no
    /// statement is sent there.
    fn check_not_aborted(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Subscribes this connection to new-job notifications (PostgreSQL `LISTEN`; a no-op elsewhere).
    fn listen_for_jobs(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Waits up to `timeout` for a new-job notification (PostgreSQL; returns whether one came) or
    /// sleeps (elsewhere; returns false). A connection lost meanwhile is an error.
    fn wait_for_jobs(&mut self, timeout: std::time::Duration) -> Result<bool, Error> {
        std::thread::sleep(timeout);
        Ok(false)
    }

    /// Runs `f` in a write transaction ([`begin_write`](Dialect::begin_write)), committed if it
    /// succeeds and rolled back if it fails, as diesel's `Connection::transaction` does.
    fn write_transaction<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.begin_write().map_err(storage("transaction"))?;
        let result = f(self);
        finish_write(self, result)
    }

    /// Runs `f` in a read-only snapshot transaction ([`begin_snapshot`](Dialect::begin_snapshot)).
    fn snapshot_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.begin_snapshot().map_err(storage("transaction"))?;
        let result = f(self);
        finish_write(self, result)
    }

    /// Runs `f` in a write transaction for the bookkeeping of `es_jobs` (claims, renewals,
    /// outcomes, pruning). On MySQL it reads committed rows only: under REPEATABLE READ a
    /// statement that scans `es_jobs` waits for (and deadlocks on) rows other claims lock, and
    /// takes gap locks that make claims deadlock with inserts of new jobs.
    fn jobs_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.before_jobs_transaction()?;
        self.write_transaction(f)
    }
}

/// A connection whose locking `SELECT` of an aggregate's row can read the head of its events in
/// the same statement. Not MySQL: there the head is read by a consistent read after the lock, and
/// a consistent read inside the locking statement would fix the transaction's snapshot before the
/// lock is granted.
#[doc(hidden)]
pub trait HeadInLock: Dialect {
    /// Writes an SQL boolean: true when the head read by the locking statement of `table` (its
    /// `FROM` clause as diesel writes it) is current.
    fn head_is_current<'b>(
        table: &'b dyn QueryFragment<Self::Backend>,
        id_column: &str,
        out: AstPass<'_, 'b, Self::Backend>,
    ) -> diesel::QueryResult<()>;
}

/// Ends the transaction begun by [`Dialect::begin_write`]: commits it if `result` is a success,
/// rolls it back otherwise — as diesel's `Connection::transaction` does.
pub(crate) fn finish_write<C: Connection, T, E: From<Error>>(
    conn: &mut C,
    result: Result<T, E>,
) -> Result<T, E> {
    match result {
        Ok(value) => {
            C::TransactionManager::commit_transaction(conn).map_err(storage("transaction"))?;
            Ok(value)
        }
        Err(error) => match C::TransactionManager::rollback_transaction(conn) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
            Err(rollback) => Err(storage("transaction")(rollback).into()),
        },
    }
}

/// Begins a transaction with `outermost` (its own `BEGIN`), or a savepoint inside an enclosing
/// transaction.
fn begin_outermost<C: Connection<TransactionManager = AnsiTransactionManager>>(
    conn: &mut C,
    outermost: impl FnOnce(&mut C) -> diesel::QueryResult<()>,
) -> diesel::QueryResult<()> {
    let nested = AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()?
        .is_some();
    if nested {
        AnsiTransactionManager::begin_transaction(conn)
    } else {
        outermost(conn)
    }
}

/// A number a statement returns (`... AS value`): a position, an id.
pub(crate) struct Number(pub(crate) i64);

impl<DB: Reads> QueryableByName<DB> for Number {
    fn build<'a>(row: &impl diesel::row::NamedRow<'a, DB>) -> deserialize::Result<Self> {
        DB::get_big_int(row, 0).map(Number)
    }
}

/// The two indexes of an events table: by type and time (filters), by time (time travel).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn indexes_ddl(table: &str) -> [String; 2] {
    [
        format!("CREATE INDEX IF NOT EXISTS {table}_type_created_at ON {table} (type, created_at)"),
        format!("CREATE INDEX IF NOT EXISTS {table}_created_at ON {table} (created_at)"),
    ]
}

/// The subscriptions' tables, `es_subscriptions` and `es_held_events`, with the backend's types
/// of a key's text, of other text and of a time, and its table options.
fn subscription_tables_ddl(key: &str, text: &str, time: &str, options: &str) -> [String; 2] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS es_subscriptions (\
             name {key} NOT NULL PRIMARY KEY, \
             tx_order BIGINT NOT NULL DEFAULT 0, \
             event_id BIGINT NOT NULL DEFAULT 0, \
             handled BIGINT NOT NULL DEFAULT 0, \
             owner TEXT, \
             lease_until {time}, \
             last_error TEXT, \
             updated_at {time} NOT NULL){options}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS es_held_events (\
             subscription {key} NOT NULL, \
             events_table {text} NOT NULL, \
             event_id BIGINT NOT NULL, \
             aggregate_id {text} NOT NULL, \
             tx_order BIGINT NOT NULL, \
             last_error TEXT NOT NULL, \
             held_at {time} NOT NULL, \
             PRIMARY KEY (subscription, event_id)){options}"
        ),
    ]
}

/// A time offset in microseconds, as the servers' interval arithmetic takes it (saturating: the
/// worker's options are checked to stay far within range).
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn microseconds(offset: TimeDelta) -> i64 {
    offset
        .num_microseconds()
        .unwrap_or(if offset < TimeDelta::zero() {
            i64::MIN
        } else {
            i64::MAX
        })
}

/// The three statement runners of [`Dialect`] for one connection type, whose events are read in
/// diesel's loading mode `$loading`: each is diesel's `RunQueryDsl` on the concrete connection,
/// where the bounds generic code cannot name hold.
macro_rules! run_statements {
    ($loading:ty) => {
        fn execute(
            &mut self,
            statement: crate::statement::Statement<'_, Self::Backend>,
        ) -> diesel::QueryResult<usize> {
            diesel::RunQueryDsl::execute(statement, self)
        }

        fn load<T: diesel::deserialize::QueryableByName<Self::Backend> + 'static>(
            &mut self,
            statement: crate::statement::Statement<'_, Self::Backend>,
        ) -> diesel::QueryResult<Vec<T>> {
            diesel::RunQueryDsl::load(statement, self)
        }

        fn stream<'c, T: diesel::deserialize::QueryableByName<Self::Backend> + 'static>(
            &'c mut self,
            statement: crate::statement::Statement<'c, Self::Backend>,
        ) -> diesel::QueryResult<Box<dyn Iterator<Item = diesel::QueryResult<T>> + 'c>> {
            let rows = diesel::RunQueryDsl::load_iter::<T, $loading>(statement, self)?;
            Ok(Box::new(rows))
        }
    };
}
use run_statements;

mod sealed {
    pub trait Sealed {}
}
