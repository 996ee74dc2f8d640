//! Meetings, from "An Introduction to Event Sourcing for Rubyists": schedule, accept, reschedule,
//! cancel and finish a meeting, each allowed only in some states (a cancelled meeting cannot be
//! accepted), and optimistic concurrency on the aggregate's version when two people edit one
//! meeting at once.
//!
//! `cargo run --example meetings` runs it on a SQLite file (`meetings.db`); with
//! `DATABASE_URL=postgres://...` it runs on PostgreSQL, in a schema `example_meetings`.

use std::process::ExitCode;

use es_examples::db::{operate, run_on_database};
use es_examples::meetings::run;

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    if std::env::args_os().len() > 1 {
        return operate(
            "meetings",
            |conn, connect| {
                es_examples::meetings::cli()
                    .connect(connect)
                    .main(conn, std::env::args_os())
            },
            |conn, connect| {
                es_examples::meetings::cli()
                    .connect(connect)
                    .main(conn, std::env::args_os())
            },
        );
    }
    story()?;
    Ok(ExitCode::SUCCESS)
}

fn story() -> Result<(), Box<dyn std::error::Error>> {
    use es_examples::meetings::{AGGREGATES, CATALOG};
    es_examples::write_catalog_at_boot(CATALOG, AGGREGATES, &[])?;
    let mut out = std::io::stdout();
    run_on_database(
        "meetings",
        |conn| run(conn, &mut std::io::stdout()),
        |conn| run(conn, &mut out),
    )
}
