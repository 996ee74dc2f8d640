//! A small CRM, from "Event Sourcing in the Small": contacts and meetings, read through two read
//! models keyed by natural keys: a contact list kept by a subscription after commit (a page asks
//! whether it has handled a given event yet), rebuilt blue/green when its handler learns
//! Markdown; and the queue of meeting notes emails sent on the morning of a meeting, a projection
//! kept in the write transaction and rebuilt with `rebuild_projection`. With arguments, it is the
//! CRM's command line: `cargo run --example crm -- subscriptions`.
//!
//! `cargo run --example crm` runs it on a SQLite file (`crm.db`); with
//! `DATABASE_URL=postgres://...` it runs on PostgreSQL, in a schema `example_crm`.

use es_examples::crm::run;
use std::process::ExitCode;

use es_examples::db::{operate, run_on_database};

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    if std::env::args_os().len() > 1 {
        return operate(
            "crm",
            |conn, connect| {
                es_examples::crm::cli()
                    .connect(connect)
                    .main(conn, std::env::args_os())
            },
            |conn, connect| {
                es_examples::crm::cli()
                    .connect(connect)
                    .main(conn, std::env::args_os())
            },
        );
    }
    story()?;
    Ok(ExitCode::SUCCESS)
}

fn story() -> Result<(), Box<dyn std::error::Error>> {
    use es_examples::crm::{AGGREGATES, CATALOG};
    es_examples::write_catalog_at_boot(
        CATALOG,
        AGGREGATES,
        es_examples::crm::CrmDispatcher::ROUTES,
    )?;
    let mut out = std::io::stdout();
    run_on_database(
        "crm",
        |conn| run(conn, &mut std::io::stdout()),
        |conn| run(conn, &mut out),
    )
}
