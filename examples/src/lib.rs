//! The domains of the examples, shared by their programs and by the tests that run them and
//! check what they print.

pub mod crm;
pub mod db;
pub mod drip;
pub mod meetings;
pub mod todo;
#[cfg(feature = "nats")]
pub mod warehouse;

use std::fmt::Display;
use std::io::Write;

use diesel::connection::SimpleConnection;
use es_core::RecordedEvent;

/// Regenerates an app's event catalog (`es_core::catalog`) at boot, and says where on stderr.
pub fn write_catalog_at_boot(
    dir: &str,
    aggregates: &[&str],
    routes: &[es_core::Route],
) -> Result<(), es_core::catalog::CatalogError> {
    let catalog = es_core::catalog::write_catalog(dir, aggregates, routes)?;
    eprintln!(
        "event catalog of {} aggregate(s) written to {dir}",
        catalog.aggregates.len()
    );
    Ok(())
}

/// Creates an example's own tables, one statement each.
pub fn create_tables(
    conn: &mut impl SimpleConnection,
    tables: &[&str],
) -> Result<(), diesel::result::Error> {
    tables
        .iter()
        .try_for_each(|statement| conn.batch_execute(statement))
}

/// Prints a history, one event a line: version, day, type, data, who and from where.
pub fn print_history<Id: Display>(
    out: &mut impl Write,
    events: &[RecordedEvent<Id>],
) -> std::io::Result<()> {
    for event in events {
        let metadata = &event.metadata;
        let mut by = metadata.actor_id.clone().unwrap_or_else(|| "?".to_owned());
        if let Some(ip) = &metadata.ip {
            by.push_str(&format!(" from {ip}"));
        }
        for (key, value) in &metadata.extra {
            by.push_str(&format!(" {key}={value}"));
        }
        // Through a JSON value, whose keys are sorted: PostgreSQL's jsonb reorders them.
        let data = event
            .data_json()
            .map_or_else(|_| event.data.clone(), |data| data.to_string());
        writeln!(
            out,
            "  v{} {} {:<30} {data} by {by}",
            event.version,
            event.created_at.format("%Y-%m-%d"),
            event.event_type,
        )?;
    }
    Ok(())
}
