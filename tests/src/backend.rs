//! Test databases: SQLite always (a temporary file), PostgreSQL from `PG_DATABASE_URL` (fallback
//! `DATABASE_URL`), MySQL from `MYSQL_DATABASE_URL`. Each test gets its own schema or database.

#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::{QueryableByName, SqliteConnection};
use es_diesel::{AggregateTable, Dispatch, create_tables};

use crate::domain::{Note, Project, Task};
use crate::reactors::{Board, Post};

/// One row of the reactions log that the test reactors write.
#[derive(Queryable, QueryableByName, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reaction {
    /// The job's idempotency key.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub idempotency_key: String,
    /// The reactor.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub reactor: String,
    /// The attempt that wrote the row.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub attempt: i32,
}

/// One line of the feed projection.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedLine {
    /// The event it was written for.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub event_id: i64,
    /// The line.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub line: String,
}

/// What the tests need of a connection beyond the store, written once per connection type so that
/// generic tests need no diesel bounds.
pub trait TestConnection: crate::reactors::ReactorConnection {
    /// The test dispatcher for this connection type.
    fn dispatcher() -> &'static dyn Dispatch<Self>;
    /// The dispatcher whose triggers handle their failures, for this connection type.
    fn forgiving_dispatcher() -> &'static dyn Dispatch<Self>;
    /// The dispatcher of the subscription `seen`, for this connection type.
    fn subscription_dispatcher() -> &'static dyn Dispatch<Self>;
    /// The reactions logged by `reactor`, sorted.
    fn reactions(&mut self, reactor: &str) -> Vec<Reaction>;
    /// The feed, sorted.
    fn feed(&mut self) -> Vec<FeedLine>;
    /// The `state` and `attempts` of the jobs of `reactor` for event `event_id`.
    fn job_states(&mut self, reactor: &str, event_id: i64) -> Vec<Reaction>;
    /// The single number a `SELECT COUNT(*) AS value ...` returns.
    fn count(&mut self, sql: &str) -> i64;
    /// The numbers a `SELECT ... AS value ...` returns, one per row.
    fn values(&mut self, sql: &str) -> Vec<i64>;
}

/// The framework's tables, as the tests look at them.
mod framework {
    diesel::table! {
        es_jobs (id) {
            id -> BigInt,
            event_id -> BigInt,
            reactor -> Text,
            state -> Text,
            attempts -> Integer,
        }
    }
}

/// The result of a `SELECT COUNT(*) AS value`.
#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    value: i64,
}

macro_rules! test_connection {
    ($conn:ty) => {
        impl TestConnection for $conn {
            fn dispatcher() -> &'static dyn Dispatch<Self> {
                &crate::reactors::TestDispatcher
            }

            fn forgiving_dispatcher() -> &'static dyn Dispatch<Self> {
                &crate::reactors::ForgivingDispatcher
            }

            fn subscription_dispatcher() -> &'static dyn Dispatch<Self> {
                &crate::subscriptions::SubscriptionDispatcher
            }

            fn reactions(&mut self, reactor: &str) -> Vec<Reaction> {
                use crate::reactors::schema::reactions::dsl;
                let mut rows: Vec<Reaction> = dsl::reactions
                    .filter(dsl::reactor.eq(reactor))
                    .select((dsl::idempotency_key, dsl::reactor, dsl::attempt))
                    .load(self)
                    .expect("read reactions");
                rows.sort();
                rows
            }

            fn feed(&mut self) -> Vec<FeedLine> {
                let mut rows: Vec<FeedLine> = diesel::sql_query("SELECT event_id, line FROM feed")
                    .load(self)
                    .expect("read the feed");
                rows.sort();
                rows
            }

            fn job_states(&mut self, reactor: &str, event_id: i64) -> Vec<Reaction> {
                use framework::es_jobs::dsl;
                dsl::es_jobs
                    .filter(dsl::reactor.eq(reactor).and(dsl::event_id.eq(event_id)))
                    .select((dsl::state, dsl::reactor, dsl::attempts))
                    .load(self)
                    .expect("read jobs")
            }

            fn count(&mut self, sql: &str) -> i64 {
                let count: Count = diesel::sql_query(sql)
                    .get_result(self)
                    .unwrap_or_else(|error| panic!("{sql}: {error}"));
                count.value
            }

            fn values(&mut self, sql: &str) -> Vec<i64> {
                let rows: Vec<Count> = diesel::sql_query(sql)
                    .load(self)
                    .unwrap_or_else(|error| panic!("{sql}: {error}"));
                rows.into_iter().map(|row| row.value).collect()
            }
        }
    };
}

test_connection!(SqliteConnection);
#[cfg(feature = "postgres")]
test_connection!(diesel::PgConnection);
#[cfg(feature = "mysql")]
test_connection!(diesel::MysqlConnection);

/// A database for one test, isolated from the others.
pub trait TestDb: Send + Sync {
    /// The connection type.
    type Conn: TestConnection;
    /// The backend's name, for test names and messages.
    const NAME: &'static str;
    /// A `created_at` value as an SQL literal, for rows written by hand.
    const TIMESTAMP_LITERAL: &'static str;
    /// Whether the events tables accept invalid JSON (SQLite's TEXT does; JSON types do not).
    const STORES_INVALID_JSON: bool;
    /// Whether a failed statement aborts the whole transaction (PostgreSQL), rather than only
    /// rolling back itself (SQLite, MySQL).
    const FAILED_STATEMENT_ABORTS_TRANSACTION: bool;
    /// The statement moving the global event position to `{}` (its last id taken).
    const SET_POSITION: &'static str;
    /// A new connection to this test's database.
    fn connect(&self) -> Self::Conn;
    /// The arguments with which `test_worker` (the crash test's worker process) reaches this
    /// database.
    fn worker_args(&self) -> Vec<String>;
    /// Closes every connection to this test's database but `conn`'s, on the server's side (a
    /// database restart, as the clients see it), and returns how many it closed. SQLite has no
    /// server: nothing to close, 0.
    fn close_other_connections(&self, conn: &mut Self::Conn) -> usize;
}

/// What a helper process of the tests (a worker, a subscriber) runs on the test database its
/// arguments name.
pub trait OnTestDb {
    /// Runs on `db`.
    fn run<D: TestDb>(self, db: &D);
}

/// Runs `on` on the test database that `args` name, as `worker_args` gives them: `sqlite PATH`,
/// `postgres URL SCHEMA` or `mysql URL DATABASE`.
pub fn on_test_db(args: &[String], on: impl OnTestDb) {
    match args[0].as_str() {
        "sqlite" => on.run(&SqliteDb::open(&args[1])),
        #[cfg(feature = "postgres")]
        "postgres" => on.run(&PgDb::open(&args[1], &args[2])),
        #[cfg(feature = "mysql")]
        "mysql" => on.run(&MysqlDb::open(&args[1], &args[2])),
        other => panic!("unknown backend {other}"),
    }
}

/// Creates the domain's tables (`tables_ddl`, one statement each) and their events tables.
pub fn create_domain_tables<D: TestDb>(db: &D, tables_ddl: &[&str]) -> D::Conn
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let shared = crate::reactors::TABLES
        .iter()
        .chain(crate::subscriptions::SEEN_TABLES);
    for statement in tables_ddl.iter().chain(shared) {
        conn.batch_execute(statement)
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    create_tables::<_, Task>(&mut conn).expect("create task_events");
    create_tables::<_, Project>(&mut conn).expect("create project_events");
    create_tables::<_, Note>(&mut conn).expect("create note_events");
    create_tables::<_, Post>(&mut conn).expect("create post_events");
    create_tables::<_, Board>(&mut conn).expect("create board_events");
    conn
}

diesel::define_sql_function! {
    /// Sleeps this many milliseconds, and returns them: registered on every connection of a
    /// [`SqliteDb`], for triggers that slow a transaction down on purpose (PostgreSQL has
    /// `pg_sleep`, MySQL `SLEEP`).
    fn es_test_sleep(milliseconds: diesel::sql_types::BigInt) -> diesel::sql_types::BigInt;
}

/// A SQLite database in a temporary file (WAL needs a file for several connections).
pub struct SqliteDb {
    _dir: Option<tempfile::TempDir>,
    path: String,
}

impl SqliteDb {
    /// A fresh database with the domain's tables.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("test.db").to_string_lossy().into_owned();
        let db = Self {
            _dir: Some(dir),
            path,
        };
        create_domain_tables(
            &db,
            &[
                "CREATE TABLE tasks (id BIGINT PRIMARY KEY NOT NULL, \
                 title TEXT NOT NULL CHECK (title <> ''), due_on TEXT, completed_at TIMESTAMP, \
                 completed_by TEXT)",
                "CREATE TABLE project_rows (id BIGINT PRIMARY KEY NOT NULL, name TEXT NOT NULL)",
                "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL)",
            ],
        );
        db
    }
}

impl Default for SqliteDb {
    fn default() -> Self {
        Self::new()
    }
}

impl SqliteDb {
    /// The database at `path`, as it is.
    pub fn open(path: &str) -> Self {
        Self {
            _dir: None,
            path: path.to_owned(),
        }
    }

    /// The database file.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl TestDb for SqliteDb {
    type Conn = SqliteConnection;
    const NAME: &'static str = "sqlite";
    const TIMESTAMP_LITERAL: &'static str = "'2026-04-20T12:00:00.000000Z'";
    const STORES_INVALID_JSON: bool = true;
    const FAILED_STATEMENT_ABORTS_TRANSACTION: bool = false;
    const SET_POSITION: &'static str =
        "UPDATE es_positions SET position = {} WHERE name = 'events'";
    fn connect(&self) -> SqliteConnection {
        let mut conn = es_diesel::sqlite::establish(&self.path).expect("open SQLite");
        es_test_sleep_utils::register_impl(&mut conn, |milliseconds: i64| {
            std::thread::sleep(std::time::Duration::from_millis(
                u64::try_from(milliseconds).unwrap_or_default(),
            ));
            milliseconds
        })
        .expect("register es_test_sleep");
        conn
    }
    fn worker_args(&self) -> Vec<String> {
        vec![Self::NAME.to_owned(), self.path.clone()]
    }
    fn close_other_connections(&self, _: &mut SqliteConnection) -> usize {
        0
    }
}

/// A schema or database name for `test` that no other run can share: `es_<run>_<test>`, where
/// `<run>` is drawn once per process, so that two runs of the suite on one server (two
/// developers, CI beside a session) never drop each other's tables. Long test names are cut and
/// end with a hash of the whole name, keeping it within PostgreSQL's 63 and MySQL's 64 bytes.
pub fn isolated_name(test: &str) -> String {
    use std::hash::{Hash, Hasher};
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| format!("{:08x}", fastrand::u32(..)));
    let name = format!("es_{run}_{test}");
    if name.len() <= 63 {
        return name;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    test.hash(&mut hasher);
    let hash = format!("{:08x}", hasher.finish() as u32);
    format!("{}_{hash}", &name[..63 - hash.len() - 1])
}

/// Whether a test's own schema or database is dropped when it ends: always, unless the test
/// failed (then it is kept, and named on stderr, for a look) or `ES_TEST_KEEP=1` is set.
fn drop_when_done(name: &str) -> bool {
    let keep = std::thread::panicking() || std::env::var("ES_TEST_KEEP").as_deref() == Ok("1");
    if keep {
        eprintln!("kept the test database `{name}`");
    }
    !keep
}

/// The URL of the PostgreSQL server for tests, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var("PG_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .filter(|url| url.starts_with("postgres"))
}

/// The URL of the MySQL server for tests, if any.
pub fn mysql_url() -> Option<String> {
    std::env::var("MYSQL_DATABASE_URL").ok()
}

/// A PostgreSQL schema of its own for one test.
#[cfg(feature = "postgres")]
pub struct PgDb {
    url: String,
    schema: String,
    /// Whether this value created the schema, and drops it when dropped.
    owned: bool,
}

#[cfg(feature = "postgres")]
impl PgDb {
    /// The schema `schema` of the server at `url`, as it is.
    pub fn open(url: &str, schema: &str) -> Self {
        Self {
            url: url.to_owned(),
            schema: schema.to_owned(),
            owned: false,
        }
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A fresh schema of this run for the test ([`isolated_name`]), with the domain's tables;
    /// dropped with the value.
    pub fn new(url: &str, test: &str) -> Self {
        let schema = isolated_name(test);
        let mut conn = diesel::PgConnection::establish(url).expect("connect to PostgreSQL");
        conn.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
        ))
        .expect("create schema");
        let db = Self {
            url: url.to_owned(),
            schema,
            owned: true,
        };
        let mut conn = create_domain_tables(
            &db,
            &[
                "CREATE TABLE tasks (id BIGINT PRIMARY KEY, title TEXT NOT NULL \
                 CHECK (title <> ''), due_on TEXT, completed_at TIMESTAMP, completed_by TEXT)",
                "CREATE TABLE project_rows (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",
                "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
                "CREATE TABLE cards (id UUID PRIMARY KEY, body TEXT NOT NULL)",
            ],
        );
        create_tables::<_, crate::domain::Card>(&mut conn).expect("create card_events");
        db
    }
}

#[cfg(feature = "postgres")]
impl Drop for PgDb {
    fn drop(&mut self) {
        if self.owned && drop_when_done(&self.schema) {
            if let Ok(mut conn) = diesel::PgConnection::establish(&self.url) {
                let _ =
                    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
            }
        }
    }
}

#[cfg(feature = "postgres")]
impl TestDb for PgDb {
    type Conn = diesel::PgConnection;
    const NAME: &'static str = "postgres";
    const TIMESTAMP_LITERAL: &'static str = "'2026-04-20 12:00:00+00'";
    const STORES_INVALID_JSON: bool = false;
    const FAILED_STATEMENT_ABORTS_TRANSACTION: bool = true;
    const SET_POSITION: &'static str = "SELECT setval('es_event_position', {})";
    fn connect(&self) -> diesel::PgConnection {
        let mut conn = diesel::PgConnection::establish(&self.url).expect("connect to PostgreSQL");
        // The schema names the connection too, so that a test can find its own connections.
        conn.batch_execute(&format!(
            "SET search_path TO {0}; SET application_name TO '{0}'",
            self.schema
        ))
        .expect("set search_path");
        conn
    }
    fn worker_args(&self) -> Vec<String> {
        vec![Self::NAME.to_owned(), self.url.clone(), self.schema.clone()]
    }
    fn close_other_connections(&self, conn: &mut diesel::PgConnection) -> usize {
        // The others chosen first: in one WHERE, PostgreSQL may terminate before it compares.
        let closed = conn.count(&format!(
            "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)) AS value FROM \
             (SELECT pid FROM pg_stat_activity WHERE application_name = '{}' \
             AND pid <> pg_backend_pid() OFFSET 0) AS others",
            self.schema
        ));
        usize::try_from(closed).unwrap_or_default()
    }
}

/// A MySQL database of its own for one test.
#[cfg(feature = "mysql")]
pub struct MysqlDb {
    url: String,
    database: String,
    /// Whether this value created the database, and drops it when dropped.
    owned: bool,
}

#[cfg(feature = "mysql")]
impl MysqlDb {
    /// The database `database` of the server at `url`, as it is.
    pub fn open(url: &str, database: &str) -> Self {
        Self {
            url: url.to_owned(),
            database: database.to_owned(),
            owned: false,
        }
    }

    /// A fresh database of this run for the test ([`isolated_name`]), with the domain's tables;
    /// dropped with the value.
    pub fn new(url: &str, test: &str) -> Self {
        let database = isolated_name(test);
        let mut conn = diesel::MysqlConnection::establish(url).expect("connect to MySQL");
        conn.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database};"
        ))
        .expect("create database");
        let db = Self {
            url: url.to_owned(),
            database,
            owned: true,
        };
        create_domain_tables(
            &db,
            &[
                "CREATE TABLE tasks (id BIGINT PRIMARY KEY, title VARCHAR(255) NOT NULL \
                 CHECK (title <> ''), due_on TEXT, completed_at DATETIME(6), completed_by TEXT)",
                "CREATE TABLE project_rows (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",
                "CREATE TABLE notes (id CHAR(36) PRIMARY KEY, body TEXT NOT NULL)",
            ],
        );
        db
    }
}

#[cfg(feature = "mysql")]
impl Drop for MysqlDb {
    fn drop(&mut self) {
        if self.owned && drop_when_done(&self.database) {
            if let Ok(mut conn) = diesel::MysqlConnection::establish(&self.url) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {}", self.database));
            }
        }
    }
}

#[cfg(feature = "mysql")]
impl TestDb for MysqlDb {
    type Conn = diesel::MysqlConnection;
    const NAME: &'static str = "mysql";
    const TIMESTAMP_LITERAL: &'static str = "'2026-04-20 12:00:00'";
    const STORES_INVALID_JSON: bool = false;
    const FAILED_STATEMENT_ABORTS_TRANSACTION: bool = false;
    const SET_POSITION: &'static str =
        "UPDATE es_positions SET position = {} WHERE name = 'events'";
    fn connect(&self) -> diesel::MysqlConnection {
        let mut conn = diesel::MysqlConnection::establish(&self.url).expect("connect to MySQL");
        conn.batch_execute(&format!("USE {}", self.database))
            .expect("use database");
        conn
    }
    fn worker_args(&self) -> Vec<String> {
        vec![
            Self::NAME.to_owned(),
            self.url.clone(),
            self.database.clone(),
        ]
    }
    fn close_other_connections(&self, conn: &mut diesel::MysqlConnection) -> usize {
        let others = conn.values(&format!(
            "SELECT id AS value FROM information_schema.processlist WHERE db = '{}' \
             AND id <> CONNECTION_ID()",
            self.database
        ));
        for id in &others {
            // One may have ended by itself meanwhile.
            let _ = conn.batch_execute(&format!("KILL {id}"));
        }
        others.len()
    }
}
