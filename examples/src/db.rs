//! Where the examples run, and the typed diesel queries their reactors need, written once for
//! every backend with `es_diesel::with_connection!`.

use std::error::Error;
use std::process::ExitCode;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use es_diesel::{Database, with_connection};

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

/// The environment variable naming the PostgreSQL schema an example runs in, instead of
/// `example_{name}`: the examples' tests give each run a schema of its own.
pub const SCHEMA_VAR: &str = "ES_EXAMPLE_SCHEMA";

/// Runs an example on PostgreSQL when `DATABASE_URL` names a PostgreSQL database (in a fresh
/// schema, [`schema_name`]), else on a fresh SQLite file `{name}.db` in the current directory.
pub fn run_on_database(
    name: &str,
    on_sqlite: impl FnOnce(&mut SqliteConnection) -> Result<(), Box<dyn Error>>,
    on_postgres: impl FnOnce(&mut PgConnection) -> Result<(), Box<dyn Error>>,
) -> Result<(), Box<dyn Error>> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            on_postgres(&mut fresh_postgres(&url, &schema_name(name)?)?)
        }
        _ => on_sqlite(&mut fresh_sqlite(&format!("{name}.db"))?),
    }
}

/// How an example's command line opens more connections to the database it operates on (`jobs
/// work` runs a worker, which keeps one for its heartbeat and reconnects when one is lost).
pub type Connect<'a, C> = &'a (dyn Fn() -> Result<C, Box<dyn Error + Send + Sync>> + Sync);

/// Runs an example's operator command line (`es_diesel::cli`) on the database its story wrote:
/// the schema [`schema_name`] of the PostgreSQL database `DATABASE_URL` names, else the SQLite
/// file `{name}.db` in the current directory. Each function is given a connection and the way to
/// open more.
pub fn operate(
    name: &str,
    on_sqlite: impl FnOnce(&mut SqliteConnection, Connect<'_, SqliteConnection>) -> ExitCode,
    on_postgres: impl FnOnce(&mut PgConnection, Connect<'_, PgConnection>) -> ExitCode,
) -> Result<ExitCode, Box<dyn Error>> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let schema = schema_name(name)?;
            let connect = || -> Result<PgConnection, Box<dyn Error + Send + Sync>> {
                let mut conn = PgConnection::establish(&url)?;
                conn.batch_execute(&format!("SET search_path TO {schema}"))?;
                Ok(conn)
            };
            let mut conn = connect().map_err(|error| error.to_string())?;
            Ok(on_postgres(&mut conn, &connect))
        }
        _ => {
            let path = format!("{name}.db");
            if !std::path::Path::new(&path).exists() {
                return Err(format!(
                    "no {path} here: `cargo run --example {name}` writes it (in this directory)"
                )
                .into());
            }
            let connect = || -> Result<SqliteConnection, Box<dyn Error + Send + Sync>> {
                Ok(es_diesel::sqlite::establish(&path)?)
            };
            let mut conn = connect().map_err(|error| error.to_string())?;
            Ok(on_sqlite(&mut conn, &connect))
        }
    }
}

/// The PostgreSQL schema the example `name` runs in: the one [`SCHEMA_VAR`] names, else
/// `example_{name}`.
pub fn schema_name(name: &str) -> Result<String, Box<dyn Error>> {
    let schema = std::env::var(SCHEMA_VAR).unwrap_or_else(|_| format!("example_{name}"));
    identifier(&schema)
}

/// `name` if it is a plain lowercase SQL identifier, safe to write in a statement.
fn identifier(name: &str) -> Result<String, Box<dyn Error>> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63;
    if plain {
        Ok(name.to_owned())
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

/// A connection to `url` whose search path is `schema`, new and empty (an older one is dropped).
pub fn fresh_postgres(url: &str, schema: &str) -> Result<PgConnection, Box<dyn Error>> {
    let schema = identifier(schema)?;
    let mut conn = PgConnection::establish(url)?;
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; \
         SET search_path TO {schema}"
    ))?;
    Ok(conn)
}

/// Records the message `text` in the outbox under `key`, unless a row with that key exists
/// already: on any backend, as the examples' async reactors do.
pub fn record_in_outbox<C: Database>(conn: &mut C, key: &str, text: &str) -> QueryResult<()> {
    use schema::outbox::dsl::*;
    with_connection!(conn, |conn| {
        diesel::insert_into(outbox)
            .values((idempotency_key.eq(key), message.eq(text)))
            .on_conflict_do_nothing()
            .execute(conn)
            .map(drop)
    })
}

/// The messages of the outbox, in key order.
pub fn outbox<C: Database>(conn: &mut C) -> QueryResult<Vec<String>> {
    use schema::outbox::dsl::*;
    with_connection!(conn, |conn| outbox
        .order(idempotency_key)
        .select(message)
        .load(conn))
}

/// Writes the activity feed's line for event `event_id`.
pub fn record_activity<C: Database>(conn: &mut C, event: i64, text: &str) -> QueryResult<()> {
    use schema::activities::dsl::*;
    with_connection!(conn, |conn| {
        diesel::insert_into(activities)
            .values((event_id.eq(event), line.eq(text)))
            .execute(conn)
            .map(drop)
    })
}

/// The activity feed, oldest first.
pub fn activities<C: Database>(conn: &mut C) -> QueryResult<Vec<String>> {
    use schema::activities::dsl::*;
    with_connection!(conn, |conn| activities
        .order(event_id)
        .select(line)
        .load(conn))
}

/// Empties the activity feed (before it is rebuilt from the events).
pub fn clear_activities<C: Database>(conn: &mut C) -> QueryResult<()> {
    with_connection!(conn, |conn| diesel::delete(schema::activities::table)
        .execute(conn)
        .map(drop))
}
