//! How the command line prints: an event of `log`, a record of `show` beside the replay of its
//! events, fields and drift, rates, and the progress bar of long commands.
//!
//! Calls `audit`, `events` and `cli::args`.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use es_core::{Error, EventFilter, Metadata, RecordedEvent};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use crate::audit::{Drift, DriftKind};
use crate::events::EventCount;

/// One event as `log` prints it.
#[derive(Debug, Serialize)]
pub(super) struct Entry {
    pub(super) id: i64,
    pub(super) aggregate_id: String,
    pub(super) version: i64,
    #[serde(rename = "type")]
    pub(super) event_type: String,
    pub(super) created_at: DateTime<Utc>,
    /// The data as JSON, or the stored text when it is not JSON (a corrupt row is shown, not
    /// hidden).
    pub(super) data: Value,
    pub(super) metadata: Metadata,
}

impl Entry {
    pub(super) fn new<Id: std::fmt::Display>(record: RecordedEvent<Id>) -> Self {
        let data = record
            .data_json()
            .unwrap_or_else(|_| Value::String(record.data.clone()));
        Self {
            id: record.id,
            aggregate_id: record.aggregate_id.to_string(),
            version: record.version,
            event_type: record.event_type,
            created_at: record.created_at,
            data,
            metadata: Arc::unwrap_or_clone(record.metadata),
        }
    }

    pub(super) fn passes(&self, filter: &EventFilter) -> bool {
        (filter.tags.is_empty() || filter.tags.contains(&self.event_type))
            && filter.since.is_none_or(|since| self.created_at >= since)
            && filter.until.is_none_or(|until| self.created_at < until)
    }

    pub(super) fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "v{} {} {} (event {})",
            self.version,
            self.event_type,
            self.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.id
        )?;
        let metadata = &self.metadata;
        let mut by = Vec::new();
        if let Some(actor) = &metadata.actor_id {
            by.push(format!("by {actor}"));
        }
        if let Some(ip) = &metadata.ip {
            by.push(format!("from {ip}"));
        }
        if let Some(agent) = &metadata.user_agent {
            by.push(format!("with {agent}"));
        }
        if let Some(request) = &metadata.request_id {
            by.push(format!("request {request}"));
        }
        if let Some(causation) = metadata.causation_id {
            by.push(format!("caused by event {causation}"));
        }
        if let Some(correlation) = metadata.correlation_id {
            by.push(format!("correlation {correlation}"));
        }
        for (key, value) in &metadata.extra {
            by.push(format!("{key}={value}"));
        }
        if !by.is_empty() {
            writeln!(out, "    {}", by.join(", "))?;
        }
        writeln!(out, "    {}", self.data)
    }
}

/// The state of a record as `show` found it.
pub(super) enum Shown {
    /// Replayed as of a version or a time.
    AsOf {
        /// `None` if it does not exist at that point.
        state: Option<Value>,
        /// The version of its last event at that point.
        version: i64,
        /// The version of its last event now.
        latest: i64,
    },
    /// Its stored row now, and what its events say of it.
    Now(Now),
}

/// A record's stored row, and the replay of its events that `show` compares it with.
pub(super) struct Now {
    /// The row, if there is one.
    pub(super) row: Option<Value>,
    /// The last version whose replayed state is the row, if any.
    pub(super) matches: Option<i64>,
    /// The version the events replay to (all of them, unless `broken`).
    pub(super) replayed_to: i64,
    /// Whether the replay to `replayed_to` builds the record.
    pub(super) builds: bool,
    /// Why the events replay no further, if they stop before the last one.
    pub(super) broken: Option<Error>,
    /// The version of the last event, when it can be read.
    pub(super) latest: Option<i64>,
}

impl Now {
    /// The line above the fields: the version the row is the state of, of the latest, and what
    /// to do when they differ.
    pub(super) fn header(&self, name: &str, id: &str) -> String {
        let of = self
            .latest
            .map_or_else(String::new, |latest| format!(" of {latest}"));
        let replayed_to = self.replayed_to;
        match (self.matches, &self.broken) {
            (Some(version), None) if Some(version) == self.latest => {
                format!("{name} {id}: version {version}{of}")
            }
            (Some(version), None) => format!(
                "{name} {id}: version {version}{of} (the stored row; its events go on to version \
                 {replayed_to}: `replay {name} --id {id}` applies them)"
            ),
            (Some(version), Some(error)) => format!(
                "{name} {id}: version {version}{of} (the stored row; its events cannot be replayed \
                 past version {replayed_to}: {error})"
            ),
            (None, None) => format!(
                "{name} {id}: the stored row, which matches no version of its events (1 to \
                 {replayed_to}): `verify {name}` shows how it differs"
            ),
            (None, Some(error)) => format!(
                "{name} {id}: the stored row, which matches no version of its events up to \
                 {replayed_to}, and they cannot be replayed past it: {error}"
            ),
        }
    }
}

/// Prints a state one field a line (or the whole value, if it is not an object).
pub(super) fn print_fields(out: &mut dyn Write, state: &Value) -> std::io::Result<()> {
    match state {
        Value::Object(fields) => {
            let width = fields.keys().map(String::len).max().unwrap_or(0);
            for (field, value) in fields {
                writeln!(out, "  {field:<width$}  {value}")?;
            }
            Ok(())
        }
        other => writeln!(out, "  {other}"),
    }
}

pub(super) fn print_drift(
    out: &mut dyn Write,
    name: &str,
    drift: &Drift,
    json: bool,
) -> std::io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, drift)?;
        return writeln!(out);
    }
    let id = &drift.aggregate_id;
    match &drift.kind {
        DriftKind::MissingRow => {
            writeln!(out, "{name} {id}: its events build it, but it has no row")
        }
        DriftKind::UnexpectedRow => {
            writeln!(
                out,
                "{name} {id}: its events destroy it, but its row is there"
            )
        }
        DriftKind::Unreplayable { error } => {
            writeln!(out, "{name} {id}: its events cannot be replayed: {error}")
        }
        DriftKind::Fields(fields) => {
            writeln!(out, "{name} {id} drifted:")?;
            let width = fields
                .iter()
                .map(|field| field.field.len())
                .max()
                .unwrap_or(0);
            for field in fields {
                writeln!(
                    out,
                    "  {:<width$}  stored {}, replayed {}",
                    field.field, field.stored, field.replayed
                )?;
            }
            Ok(())
        }
    }
}

/// The time since `started`, to a precision that suits it (`12.35ms`, `4.21s`).
pub(super) struct Elapsed(pub(super) Instant);

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2?}", self.0.elapsed())
    }
}

pub(super) fn total_events(counts: &[EventCount]) -> u64 {
    counts.iter().fold(0, |total, count| {
        total.saturating_add(u64::try_from(count.events).unwrap_or(0))
    })
}

pub(super) fn per_second(events: u64, started: Instant) -> u64 {
    let seconds = started.elapsed().as_secs_f64();
    if seconds > 0.0 {
        (events as f64 / seconds) as u64
    } else {
        events
    }
}

/// A bar on stderr (hidden when stderr is not a terminal): events done of `total`, their rate
/// and the time left.
pub(super) fn progress_bar(total: u64, message: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {human_pos}/{human_len} events, {per_sec}, ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(total)
        .with_style(style.progress_chars("=> "))
        .with_message(message.to_owned())
}
