//! Drip, the product of the blog post "Event Sourcing made Simple": subscriptions created by
//! supporters and activated by the payment platform's webhook (with its notification id in the
//! metadata), confirmation emails as async reactors run by a worker, commands that validate and
//! skip no-ops (a retried webhook activates nothing twice), and only one pinned post per Drip,
//! kept so atomically by a trigger reactor.
//!
//! `cargo run --example drip` runs it on a SQLite file (`drip.db`); with
//! `DATABASE_URL=postgres://...` it runs on PostgreSQL, in a schema `example_drip`.

use std::process::ExitCode;

use es_examples::db::{operate, run_on_database};
use es_examples::drip::run;

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    if std::env::args_os().len() > 1 {
        return operate(
            "drip",
            |conn, connect| {
                es_examples::drip::cli()
                    .connect(connect)
                    .main(conn, std::env::args_os())
            },
            |conn, connect| {
                es_examples::drip::cli()
                    .connect(connect)
                    .main(conn, std::env::args_os())
            },
        );
    }
    story()?;
    Ok(ExitCode::SUCCESS)
}

fn story() -> Result<(), Box<dyn std::error::Error>> {
    use es_examples::drip::{AGGREGATES, CATALOG};
    es_examples::write_catalog_at_boot(
        CATALOG,
        AGGREGATES,
        es_examples::drip::DripDispatcher::ROUTES,
    )?;
    let mut out = std::io::stdout();
    run_on_database(
        "drip",
        |conn| run(conn, &mut out),
        |conn| run(conn, &mut std::io::stdout()),
    )
}
