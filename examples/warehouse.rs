//! The warehouse of the Kickstarter talk: the to-do app's events forwarded to NATS JetStream by
//! a relay (its history backfilled, then live), and a consumer on the other side rebuilding the
//! tasks in a database of its own from the stream, with the app's own event types. Feature
//! `nats`; NATS with JetStream at `NATS_URL` (`nats://127.0.0.1:4222` by default):
//!
//! `cargo run -p es-examples --features nats --example warehouse`
//!
//! The app runs on a SQLite file (`warehouse.db`), or with `DATABASE_URL=postgres://...` on
//! PostgreSQL in a schema `example_warehouse`; the warehouse is a SQLite file
//! (`warehouse-dw.db`). The stream is `NATS_STREAM`, else the schema's name in capitals
//! (`EXAMPLE_WAREHOUSE`); a stream of that name from an earlier run is deleted first. Then the
//! relay on the command line: `-- relay` (its lag and last error), `-- relay reset --to start`,
//! `-- relay run [--catch-up]`.

use std::process::ExitCode;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use es_examples::db::{fresh_postgres, fresh_sqlite, operate, schema_name};
use es_examples::warehouse::{Nats, cli};

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let stream = match std::env::var("NATS_STREAM") {
        Ok(stream) => stream,
        Err(_) => schema_name("warehouse")?.to_uppercase(),
    };
    let nats = Nats {
        url: &nats_url,
        stream: &stream,
    };
    if std::env::args_os().len() > 1 {
        return operate(
            "warehouse",
            |conn, connect| cli(nats).connect(connect).main(conn, std::env::args_os()),
            |conn, connect| cli(nats).connect(connect).main(conn, std::env::args_os()),
        );
    }
    let mut warehouse = fresh_sqlite("warehouse-dw.db")?;
    let mut out = std::io::stdout();
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let schema = schema_name("warehouse")?;
            let mut app = fresh_postgres(&url, &schema)?;
            let connect = || -> Result<PgConnection, Box<dyn std::error::Error + Send + Sync>> {
                let mut conn = PgConnection::establish(&url)?;
                conn.batch_execute(&format!("SET search_path TO {schema}"))?;
                Ok(conn)
            };
            es_examples::warehouse::run(&mut app, &connect, &mut warehouse, nats, &mut out)?;
        }
        _ => {
            let path = "warehouse.db";
            let mut app = fresh_sqlite(path)?;
            let connect = || es_diesel::sqlite::establish(path);
            es_examples::warehouse::run(&mut app, &connect, &mut warehouse, nats, &mut out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
