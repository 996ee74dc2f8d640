//! A worker process for the to-do app: runs the jobs of its async reactors (notifications, the
//! event bus) until Ctrl-C, then stops gracefully (the job in progress finishes; claimed jobs not
//! started are given back). Start as many as you like, on as many machines: no two ever run the
//! same job at once while they live, and the jobs of one that dies are run by the others once its
//! lease expires.
//!
//! `cargo run --example worker [PATH]` works on the SQLite file `PATH` (default `todo.db`, written
//! by `cargo run --example todo`); with `DATABASE_URL=postgres://...` it works on the schema
//! `example_todo` of that PostgreSQL database (or the one `ES_EXAMPLE_SCHEMA` names).

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use es_diesel::{Worker, WorkerOptions, job_counts};
use es_examples::todo::{TodoDatabase, TodoDispatcher};

/// Runs the worker on connections `connect` opens: one for the jobs, one for the heartbeat that
/// keeps the leases of the jobs it holds alive (and again, when one is lost).
fn work<C: TodoDatabase>(
    connect: impl Fn() -> Result<C, Box<dyn Error + Send + Sync>> + Sync,
    place: &str,
) -> Result<(), Box<dyn Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))?;
    let mut conn = connect().map_err(|error| error.to_string())?;
    let worker = Worker::new(&TodoDispatcher, WorkerOptions::default());
    println!(
        "{} working on {place}: {:?} (Ctrl-C to stop)",
        worker.owner(),
        job_counts(&mut conn)?
    );
    let stats = worker.run(&connect, &stop)?;
    println!("stopped: {stats:?}, jobs now {:?}", job_counts(&mut conn)?);
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let schema = es_examples::db::schema_name("todo")?;
            work(
                || {
                    let mut conn = PgConnection::establish(&url)?;
                    conn.batch_execute(&format!("SET search_path TO {schema}"))?;
                    Ok(conn)
                },
                &format!("PostgreSQL schema {schema}"),
            )
        }
        _ => {
            let path = std::env::args()
                .nth(1)
                .unwrap_or_else(|| "todo.db".to_owned());
            work(|| Ok(es_diesel::sqlite::establish(&path)?), &path)
        }
    }
}
