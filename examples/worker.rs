//! A worker process for the to-do app: runs the jobs of its async reactors (notifications, the
//! event bus) until Ctrl-C, then stops gracefully (the job in progress finishes; claimed jobs not
//! started are given back). Start as many as you like, on as many machines: they never run the
//! same job at once.
//!
//! `cargo run --example worker [PATH]` works on the SQLite file `PATH` (default `todo.db`, written
//! by `cargo run --example todo`); with `DATABASE_URL=postgres://...` it works on the schema
//! `example_todo` of that PostgreSQL database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use es_diesel::{Database, Dispatch, Worker, WorkerOptions, job_counts};
use es_examples::todo::TodoDispatcher;

fn work<C: Database>(conn: &mut C, place: &str) -> Result<(), Box<dyn std::error::Error>>
where
    TodoDispatcher: Dispatch<C>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))?;
    println!(
        "working on {place}: {:?} (Ctrl-C to stop)",
        job_counts(conn)?
    );
    let worker = Worker::new(&TodoDispatcher, WorkerOptions::default());
    let stats = worker.run_until(conn, &stop)?;
    println!("stopped: {stats:?}, jobs now {:?}", job_counts(conn)?);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let mut conn = PgConnection::establish(&url)?;
            conn.batch_execute("SET search_path TO example_todo")?;
            work(&mut conn, "PostgreSQL schema example_todo")
        }
        _ => {
            let path = std::env::args()
                .nth(1)
                .unwrap_or_else(|| "todo.db".to_owned());
            work(&mut es_diesel::sqlite::establish(&path)?, &path)
        }
    }
}
