//! Where the examples run, and the typed diesel queries their reactors need, written once and
//! instantiated for each connection type (an app on one backend writes them directly).

use std::error::Error;
use std::process::ExitCode;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use es_diesel::Database;

/// The diesel schema of the outbox the examples' async reactors write to.
#[allow(missing_docs)]
pub mod schema {
    diesel::table! {
        outbox (idempotency_key) {
            idempotency_key -> Text,
            message -> Text,
        }
    }

    diesel::table! {
        activities (event_id) {
            event_id -> BigInt,
            line -> Text,
        }
    }
}

/// The outbox table: one row per message "sent" (an email, an event-bus message), keyed by the
/// job's idempotency key so that a retried delivery is harmless.
pub const OUTBOX_TABLE: &str = "CREATE TABLE outbox (idempotency_key VARCHAR(255) PRIMARY KEY \
                                NOT NULL, message TEXT NOT NULL)";

/// The activity feed table: one line per event, keyed by the event it was written for.
pub const ACTIVITIES_TABLE: &str =
    "CREATE TABLE activities (event_id BIGINT PRIMARY KEY NOT NULL, line TEXT NOT NULL)";

/// Runs an example on PostgreSQL when `DATABASE_URL` names a PostgreSQL database (in a fresh
/// schema named after the example), else on a fresh SQLite file `{name}.db` in the current
/// directory.
pub fn run_on_database(
    name: &str,
    on_sqlite: impl FnOnce(&mut SqliteConnection) -> Result<(), Box<dyn Error>>,
    on_postgres: impl FnOnce(&mut PgConnection) -> Result<(), Box<dyn Error>>,
) -> Result<(), Box<dyn Error>> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => on_postgres(&mut fresh_postgres(&url, name)?),
        _ => on_sqlite(&mut fresh_sqlite(&format!("{name}.db"))?),
    }
}

/// Runs an example's operator command line (`es_diesel::cli`) on the database its story wrote:
/// the schema `example_{name}` of the PostgreSQL database `DATABASE_URL` names, else the SQLite
/// file `{name}.db` in the current directory.
pub fn operate(
    name: &str,
    on_sqlite: impl FnOnce(&mut SqliteConnection) -> ExitCode,
    on_postgres: impl FnOnce(&mut PgConnection) -> ExitCode,
) -> Result<ExitCode, Box<dyn Error>> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let schema = schema_name(name)?;
            let mut conn = PgConnection::establish(&url)?;
            conn.batch_execute(&format!("SET search_path TO {schema}"))?;
            Ok(on_postgres(&mut conn))
        }
        _ => {
            let path = format!("{name}.db");
            if !std::path::Path::new(&path).exists() {
                return Err(format!(
                    "no {path} here: `cargo run --example {name}` writes it (in this directory)"
                )
                .into());
            }
            Ok(on_sqlite(&mut es_diesel::sqlite::establish(&path)?))
        }
    }
}

/// The PostgreSQL schema an example runs in: `example_{name}`.
fn schema_name(name: &str) -> Result<String, Box<dyn Error>> {
    if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        Ok(format!("example_{name}"))
    } else {
        Err(format!("`{name}` is not a schema name").into())
    }
}

/// A new, empty SQLite database at `path` (an older one is removed).
pub fn fresh_sqlite(path: &str) -> Result<SqliteConnection, Box<dyn Error>> {
    for stale in [
        path.to_owned(),
        format!("{path}-wal"),
        format!("{path}-shm"),
    ] {
        match std::fs::remove_file(&stale) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error.into()),
            _ => {}
        }
    }
    Ok(es_diesel::sqlite::establish(path)?)
}

/// A connection to `url` whose search path is a new, empty schema `example_{name}`.
pub fn fresh_postgres(url: &str, name: &str) -> Result<PgConnection, Box<dyn Error>> {
    let schema = schema_name(name)?;
    let mut conn = PgConnection::establish(url)?;
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; \
         SET search_path TO {schema}"
    ))?;
    Ok(conn)
}

/// What the examples' reactors write besides events, on any connection of theirs.
pub trait AppConnection: Database {
    /// Records the message `text` in the outbox under `key`, unless a row with that key exists already.
    fn record_in_outbox(&mut self, key: &str, text: &str) -> QueryResult<()>;
    /// The messages of the outbox, in key order.
    fn outbox(&mut self) -> QueryResult<Vec<String>>;
    /// Writes the activity feed's line for event `event_id`.
    fn record_activity(&mut self, event_id: i64, text: &str) -> QueryResult<()>;
    /// The activity feed, oldest first.
    fn activities(&mut self) -> QueryResult<Vec<String>>;
    /// Empties the activity feed (before it is rebuilt from the events).
    fn clear_activities(&mut self) -> QueryResult<()>;
}

macro_rules! app_connection {
    ($conn:ty) => {
        impl AppConnection for $conn {
            fn record_in_outbox(&mut self, key: &str, text: &str) -> QueryResult<()> {
                use schema::outbox::dsl::*;
                diesel::insert_into(outbox)
                    .values((idempotency_key.eq(key), message.eq(text)))
                    .on_conflict_do_nothing()
                    .execute(self)
                    .map(drop)
            }

            fn outbox(&mut self) -> QueryResult<Vec<String>> {
                use schema::outbox::dsl::*;
                outbox.order(idempotency_key).select(message).load(self)
            }

            fn record_activity(&mut self, event: i64, text: &str) -> QueryResult<()> {
                use schema::activities::dsl::*;
                diesel::insert_into(activities)
                    .values((event_id.eq(event), line.eq(text)))
                    .execute(self)
                    .map(drop)
            }

            fn activities(&mut self) -> QueryResult<Vec<String>> {
                use schema::activities::dsl::*;
                activities.order(event_id).select(line).load(self)
            }

            fn clear_activities(&mut self) -> QueryResult<()> {
                diesel::delete(schema::activities::table)
                    .execute(self)
                    .map(drop)
            }
        }
    };
}

app_connection!(SqliteConnection);
app_connection!(PgConnection);
