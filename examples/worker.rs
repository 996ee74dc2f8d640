//! A worker process for the to-do app: runs the jobs of its async reactors (notifications, the
//! event bus) until Ctrl-C, then stops gracefully (the job in progress finishes; claimed jobs not
//! started are given back). Start as many as you like, on as many machines: they never run the
//! same job at once.
//!
//! `cargo run --example worker [PATH]` works on the SQLite file `PATH` (default `todo.db`, written
//! by `cargo run --example todo`). It serves the to-do app's domain, so the events and reactors it
//! runs are those of the app's catalog, `examples/catalog/todo/catalog.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use es_diesel::{Worker, WorkerOptions, job_counts};
use es_examples::todo::TodoDispatcher;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "todo.db".to_owned());
    let mut conn = es_diesel::sqlite::establish(&path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))?;

    println!(
        "working on {path}: {:?} (Ctrl-C to stop)",
        job_counts(&mut conn)?
    );
    let worker = Worker::new(&TodoDispatcher, WorkerOptions::default());
    let stats = worker.run_until(&mut conn, &stop)?;
    println!("stopped: {stats:?}, jobs now {:?}", job_counts(&mut conn)?);
    Ok(())
}
