//! The to-do app of the talk "Event Sourcing made Simple": tasks are an ordinary diesel table
//! changed only through events, each event applies itself to its task, and every task keeps its
//! history — "git log" for a record, and time travel ("what did this task look like on April
//! 20th?"). Then the talk's evolution: the `completed` flag became `completed_at` (the event's
//! time) and `completed_by` (the event's actor), and destroyed tasks became soft-deleted ones; a
//! replay backfills both and brings the deleted task back. Reactors keep an activity feed (in the
//! write transaction) and notify the creator and forward every event to an event bus (jobs a
//! worker runs after commit).
//!
//! `cargo run --example todo` runs it on a SQLite file (`todo.db`); with
//! `DATABASE_URL=postgres://...` it runs on PostgreSQL, in a schema `example_todo`. It runs its
//! jobs in-process at the end; `cargo run --example worker` is the same worker as a process of its
//! own, waiting for the jobs of that database.

use std::process::ExitCode;

use es_examples::db::{operate, run_on_database};
use es_examples::todo::run;

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    if std::env::args_os().len() > 1 {
        return operate(
            "todo",
            |conn, connect| {
                es_examples::todo::cli()
                    .connect(connect)
                    .main(conn, std::env::args_os())
            },
            |conn, connect| {
                es_examples::todo::cli()
                    .connect(connect)
                    .main(conn, std::env::args_os())
            },
        );
    }
    story()?;
    Ok(ExitCode::SUCCESS)
}

fn story() -> Result<(), Box<dyn std::error::Error>> {
    use es_examples::todo::{AGGREGATES, CATALOG};
    es_examples::write_catalog_at_boot(
        CATALOG,
        AGGREGATES,
        es_examples::todo::TodoDispatcher::ROUTES,
    )?;
    let mut out = std::io::stdout();
    run_on_database(
        "todo",
        |conn| run(conn, &mut std::io::stdout()),
        |conn| run(conn, &mut out),
    )
}
