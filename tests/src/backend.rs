//! Test databases: SQLite always (a temporary file), PostgreSQL from `PG_DATABASE_URL` (fallback
//! `DATABASE_URL`), MySQL from `MYSQL_DATABASE_URL`. Each test gets its own schema or database.

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use es_diesel::{AggregateTable, Database, create_tables};

use crate::domain::{Note, Project, Task};

/// A database for one test, isolated from the others.
pub trait TestDb: Send + Sync {
    /// The connection type.
    type Conn: Database;
    /// The backend's name, for test names and messages.
    const NAME: &'static str;
    /// A new connection to this test's database.
    fn connect(&self) -> Self::Conn;
}

/// Creates the domain's tables (`tables_ddl`, one statement each) and their events tables.
pub fn create_domain_tables<D: TestDb>(db: &D, tables_ddl: &[&str]) -> D::Conn
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    for statement in tables_ddl {
        conn.batch_execute(statement)
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    create_tables::<_, Task>(&mut conn).expect("create task_events");
    create_tables::<_, Project>(&mut conn).expect("create project_events");
    create_tables::<_, Note>(&mut conn).expect("create note_events");
    conn
}

/// A SQLite database in a temporary file (WAL needs a file for several connections).
pub struct SqliteDb {
    _dir: tempfile::TempDir,
    path: String,
}

impl SqliteDb {
    /// A fresh database with the domain's tables.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("test.db").to_string_lossy().into_owned();
        let db = Self { _dir: dir, path };
        create_domain_tables(
            &db,
            &[
                "CREATE TABLE tasks (id BIGINT PRIMARY KEY NOT NULL, \
                 title TEXT NOT NULL CHECK (title <> ''), due_on TEXT, completed_at TIMESTAMP, \
                 completed_by TEXT)",
                "CREATE TABLE projects (id BIGINT PRIMARY KEY NOT NULL, name TEXT NOT NULL)",
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

impl TestDb for SqliteDb {
    type Conn = SqliteConnection;
    const NAME: &'static str = "sqlite";
    fn connect(&self) -> SqliteConnection {
        es_diesel::sqlite::establish(&self.path).expect("open SQLite")
    }
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
}

#[cfg(feature = "postgres")]
impl PgDb {
    /// A fresh schema named after the test, with the domain's tables.
    pub fn new(url: &str, test: &str) -> Self {
        let schema = format!("es_test_{test}");
        let mut conn = diesel::PgConnection::establish(url).expect("connect to PostgreSQL");
        conn.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
        ))
        .expect("create schema");
        let db = Self {
            url: url.to_owned(),
            schema,
        };
        let mut conn = create_domain_tables(
            &db,
            &[
                "CREATE TABLE tasks (id BIGINT PRIMARY KEY, title TEXT NOT NULL \
                 CHECK (title <> ''), due_on TEXT, completed_at TIMESTAMP, completed_by TEXT)",
                "CREATE TABLE projects (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",
                "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
                "CREATE TABLE cards (id UUID PRIMARY KEY, body TEXT NOT NULL)",
            ],
        );
        create_tables::<_, crate::domain::Card>(&mut conn).expect("create card_events");
        db
    }
}

#[cfg(feature = "postgres")]
impl TestDb for PgDb {
    type Conn = diesel::PgConnection;
    const NAME: &'static str = "postgres";
    fn connect(&self) -> diesel::PgConnection {
        let mut conn = diesel::PgConnection::establish(&self.url).expect("connect to PostgreSQL");
        conn.batch_execute(&format!("SET search_path TO {}", self.schema))
            .expect("set search_path");
        conn
    }
}

/// A MySQL database of its own for one test.
#[cfg(feature = "mysql")]
pub struct MysqlDb {
    url: String,
    database: String,
}

#[cfg(feature = "mysql")]
impl MysqlDb {
    /// A fresh database named after the test, with the domain's tables.
    pub fn new(url: &str, test: &str) -> Self {
        let database = format!("es_test_{test}");
        let mut conn = diesel::MysqlConnection::establish(url).expect("connect to MySQL");
        conn.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database};"
        ))
        .expect("create database");
        let db = Self {
            url: url.to_owned(),
            database,
        };
        create_domain_tables(
            &db,
            &[
                "CREATE TABLE tasks (id BIGINT PRIMARY KEY, title VARCHAR(255) NOT NULL \
                 CHECK (title <> ''), due_on TEXT, completed_at DATETIME(6), completed_by TEXT)",
                "CREATE TABLE projects (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",
                "CREATE TABLE notes (id CHAR(36) PRIMARY KEY, body TEXT NOT NULL)",
            ],
        );
        db
    }
}

#[cfg(feature = "mysql")]
impl TestDb for MysqlDb {
    type Conn = diesel::MysqlConnection;
    const NAME: &'static str = "mysql";
    fn connect(&self) -> diesel::MysqlConnection {
        let mut conn = diesel::MysqlConnection::establish(&self.url).expect("connect to MySQL");
        conn.batch_execute(&format!("USE {}", self.database))
            .expect("use database");
        conn
    }
}
