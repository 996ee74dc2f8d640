//! The command line's arguments, as clap parses them: [`Ops`] and its subcommands' arguments,
//! and the times an operator writes.
//!
//! Calls nothing of the crate but `JobState` (what `jobs list --state` parses) and `Start` (what
//! `subscriptions reset --to` parses).

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use clap::{Args, Subcommand};

use crate::jobs::admin::JobState;
use crate::subscription::Start;

/// The operator commands, as clap parses them.
#[derive(Debug, Clone, Subcommand)]
pub enum Ops {
    /// The history of one record: type, time, version, data and who, newest first.
    Log(LogArgs),
    /// The state of one record now, or in the past (time travel, computed from its events).
    Show(ShowArgs),
    /// Rebuilds one record, or every record, from its events and writes it back. Safe to
    /// interrupt (each batch is one transaction) and to run again.
    Replay(ReplayArgs),
    /// Empties a projection and feeds it every event again, in the order they were written.
    RebuildProjection {
        /// The projection, as the dispatcher names it.
        name: String,
    },
    /// Replays every record in memory and compares it with its stored row, field by field;
    /// fails if any drifted.
    Verify {
        /// The aggregate (`task`).
        aggregate: String,
        /// One JSON object per drifted record, one a line.
        #[arg(long)]
        json: bool,
    },
    /// Regenerates the event catalog (YAML, JSON Schemas, Markdown).
    Docs,
    /// The async reactors' jobs: counts, listings, dead ones, retries, a worker.
    Jobs {
        /// What to do with them (default: count them by state).
        #[command(subcommand)]
        command: Option<JobsCommand>,
    },
    /// The subscriptions: where each stands and how far behind, who holds it, its last error;
    /// resets; a subscriber.
    Subscriptions {
        /// What to do with them (default: list them).
        #[command(subcommand)]
        command: Option<SubscriptionsCommand>,
    },
    /// The NATS JetStream relay mounted with `Cli::relay` (feature `nats`): its lag and last
    /// error; a relay; a reset.
    #[cfg(feature = "nats")]
    Relay {
        /// What to do (default: its status).
        #[command(subcommand)]
        command: Option<RelayCommand>,
    },
    /// Prints the code of a new event (struct and calculator) or aggregate (diesel schema,
    /// model, and the migration of its tables on this database's backend), to paste.
    Generate {
        /// What to generate.
        #[command(subcommand)]
        command: GenerateCommand,
    },
    /// Events per type and per day of an aggregate.
    Stats {
        /// The aggregate (`task`).
        aggregate: String,
        /// One JSON object per day and type, one a line.
        #[arg(long)]
        json: bool,
    },
}

/// What `generate` prints.
#[derive(Debug, Clone, Subcommand)]
pub enum GenerateCommand {
    /// An event of an aggregate: `generate event Task Archived reason:String`.
    Event {
        /// The aggregate's Rust type (`Task`).
        aggregate: String,
        /// The event's Rust type (`Archived`).
        event: String,
        /// Its data attributes, `name:Type` (`i64`, `i32`, `bool`, `String`, `f64`,
        /// `UtcDateTime`, or `Option<...>` of one).
        fields: Vec<String>,
        /// The event creates its aggregate.
        #[arg(long, conflicts_with = "destroys")]
        creates: bool,
        /// The event destroys its aggregate.
        #[arg(long)]
        destroys: bool,
    },
    /// An aggregate with an `i64` id: `generate aggregate TaskList name:String`.
    Aggregate {
        /// Its Rust type (`TaskList`).
        aggregate: String,
        /// Its other columns, `name:Type`, as for an event's fields.
        fields: Vec<String>,
    },
}

/// Arguments of `log`.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// The aggregate (`task`).
    pub aggregate: String,
    /// The record's id.
    pub id: String,
    /// Oldest first.
    #[arg(long)]
    pub reverse: bool,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only events created at or after this time (a day: from its start).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<Time>,
    /// Only events created before this time (a day: through its end).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<Time>,
    /// One JSON object per event, one a line.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The aggregate (`task`).
    pub aggregate: String,
    /// The record's id.
    pub id: String,
    /// The state with every event created at or before this time (a day: through its end).
    #[arg(long, value_parser = parse_time, conflicts_with = "version")]
    pub as_of: Option<Time>,
    /// The state right after the event with this version.
    #[arg(long)]
    pub version: Option<i64>,
    /// The state as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The aggregate (`task`).
    pub aggregate: String,
    /// Only this record.
    #[arg(long)]
    pub id: Option<String>,
    /// Skip (and list) the records whose events cannot be replayed, instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
}

/// What `subscriptions` does.
#[derive(Debug, Clone, Subcommand)]
pub enum SubscriptionsCommand {
    /// Each subscription of the dispatcher: position, events handled, events and time behind,
    /// the subscriber holding it, and its state (new, idle, held, failing with its error).
    List,
    /// Moves a subscription's checkpoint; whichever subscriber holds it reads on from there.
    /// What its handlers wrote stays.
    Reset {
        /// The subscription, as the dispatcher names it.
        name: String,
        /// `start` (every event again), `end` (only new events), a time (the first event
        /// created then or later: `2026-04-20`, `2026-04-20T09:00:00Z`), or an event id (the
        /// events after it).
        #[arg(long, value_parser = parse_reset_to)]
        to: Start,
    },
    /// Runs subscribers (every subscription of the dispatcher, or one) until Ctrl-C, or until
    /// they are caught up.
    Run {
        /// Only this subscription.
        name: Option<String>,
        /// Handle what the feed holds now, on this connection, then stop.
        #[arg(long)]
        catch_up: bool,
        /// A failing handler holds back its aggregate only (its event and the later ones, for
        /// `subscriptions retry`), instead of the whole feed.
        #[arg(long)]
        hold_back: bool,
        /// Split each subscription into this many shards by aggregate, one subscriber each
        /// (run the same on several machines: each shard is held by one at a time).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        shards: u32,
    },
    /// The events held back (`run --hold-back`), by subscription and feed order, with their
    /// errors.
    Held {
        /// Only this subscription's.
        name: Option<String>,
    },
    /// Retries the events a subscription holds back, aggregate by aggregate in order, once its
    /// handler is fixed.
    Retry {
        /// The subscription.
        name: String,
    },
}

/// What `relay` does.
#[cfg(feature = "nats")]
#[derive(Debug, Clone, Subcommand)]
pub enum RelayCommand {
    /// Where the relay stands, how many events and how long it is behind, who holds it, and its
    /// state (new, idle, held, failing with its last error). NATS need not be up.
    Status,
    /// Publishes the events behind the relay, then follows the feed until Ctrl-C; or, with
    /// `--catch-up`, publishes what the feed holds now and stops.
    Run {
        /// Publish what the feed holds now, on this connection, then stop.
        #[arg(long)]
        catch_up: bool,
    },
    /// Moves the relay's checkpoint: its next batch publishes from there (the stream drops what
    /// it still remembers within its duplicate window).
    Reset {
        /// `start` (every event again), `end` (only new events), a time, or an event id, as for
        /// `subscriptions reset`.
        #[arg(long, value_parser = parse_reset_to)]
        to: Start,
    },
}

/// Parses where `subscriptions reset --to` moves a checkpoint.
fn parse_reset_to(text: &str) -> Result<Start, String> {
    match text {
        "start" => Ok(Start::Beginning),
        "end" => Ok(Start::End),
        _ => match text.parse::<i64>() {
            Ok(event_id) => Ok(Start::AfterEvent(event_id)),
            Err(_) => parse_time(text)
                .map(|time| Start::Time(time.start()))
                .map_err(|error| format!("expected start, end, an event id or a time: {error}")),
        },
    }
}

/// What `jobs` does.
#[derive(Debug, Clone, Subcommand)]
pub enum JobsCommand {
    /// How many jobs each async reactor has pending, running, done and dead.
    Counts,
    /// The jobs by id, oldest first, with their state, attempts, due time, lease and last error.
    List {
        /// Only jobs in this state: pending, running, done or dead.
        #[arg(long)]
        state: Option<JobState>,
        /// Only jobs of this async reactor.
        #[arg(long)]
        reactor: Option<String>,
        /// Only jobs with an id above this one (the last of the previous page).
        #[arg(long, value_name = "ID")]
        after: Option<i64>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The dead jobs, oldest first, with their last error.
    Dead {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Makes a dead job (or all of them) pending again, with fresh attempts.
    Retry {
        /// The job's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every dead job.
        #[arg(long)]
        all: bool,
    },
    /// Runs the jobs until Ctrl-C (the job in progress finishes), once, or until none is due.
    Work {
        /// Run one batch of the jobs that are due now, on this connection, then stop.
        #[arg(long, conflicts_with = "drain")]
        once: bool,
        /// Run batches on this connection until no job is due now (retries waiting out their
        /// backoff are left pending, and counted), then stop.
        #[arg(long)]
        drain: bool,
    },
    /// Deletes the done jobs that finished long enough ago (dead jobs are kept).
    Prune {
        /// How long ago: `7d`, `12h`, `30min`, `1week 2days`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
    },
}

/// A point in time given on the command line: an exact time, or a whole day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Time {
    /// `2026-04-20T09:00:00Z`, `2026-04-20 09:00:00` (UTC).
    At(DateTime<Utc>),
    /// `2026-04-20`.
    Day(NaiveDate),
}

impl Time {
    /// The first instant this time covers.
    pub(super) fn start(self) -> DateTime<Utc> {
        match self {
            Time::At(at) => at,
            Time::Day(day) => day.and_time(NaiveTime::MIN).and_utc(),
        }
    }

    /// The first instant after this time (a day: the next midnight), if there is one.
    pub(super) fn end(self) -> Option<DateTime<Utc>> {
        match self {
            Time::At(at) => Some(at),
            Time::Day(day) => day
                .succ_opt()
                .map(|next| next.and_time(NaiveTime::MIN).and_utc()),
        }
    }

    /// The last instant this time covers, to the microsecond that events are stored with.
    pub(super) fn last_instant(self) -> DateTime<Utc> {
        match self {
            Time::At(at) => at,
            Time::Day(day) => day.and_time(LAST_MICROSECOND).and_utc(),
        }
    }

    fn year(self) -> i32 {
        match self {
            Time::At(at) => at.year(),
            Time::Day(day) => day.year(),
        }
    }
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Time::At(at) => write!(f, "{}", at.to_rfc3339()),
            Time::Day(day) => write!(f, "{day}"),
        }
    }
}

/// The last microsecond of a day (checked when compiling).
pub(super) const LAST_MICROSECOND: NaiveTime =
    NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).expect("23:59:59.999999 is a time of day");

/// The years a time on the command line may name: RFC 3339's four digits, within which every
/// bound a command computes (the end of a day) exists.
pub(super) const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

pub(super) fn parse_time(text: &str) -> Result<Time, String> {
    let time = parse_any_time(text)?;
    if YEARS.contains(&time.year()) {
        Ok(time)
    } else {
        Err(format!(
            "`{text}` is out of range: write a time of the years {} to {}",
            YEARS.start(),
            YEARS.end()
        ))
    }
}

pub(super) fn parse_any_time(text: &str) -> Result<Time, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Time::At(at.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Time::At(at.and_utc()));
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Time::Day)
        .map_err(|_| {
            format!(
                "`{text}` is not a time: write 2026-04-20, 2026-04-20 09:00:00 (UTC) or \
                 2026-04-20T09:00:00+02:00"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_documented_form() {
        let nine = "2026-04-20T09:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(parse_time("2026-04-20T11:00:00+02:00"), Ok(Time::At(nine)));
        assert_eq!(parse_time("2026-04-20 09:00:00"), Ok(Time::At(nine)));
        assert_eq!(parse_time("2026-04-20T09:00:00"), Ok(Time::At(nine)));
        let day = parse_time("2026-04-20").unwrap();
        assert_eq!(day.start().to_rfc3339(), "2026-04-20T00:00:00+00:00");
        assert_eq!(day.end().unwrap().to_rfc3339(), "2026-04-21T00:00:00+00:00");
        assert_eq!(
            day.last_instant().to_rfc3339(),
            "2026-04-20T23:59:59.999999+00:00"
        );
        assert_eq!(Time::At(nine).last_instant(), nine);
        let error = parse_time("April 20th").unwrap_err();
        assert!(error.contains("`April 20th` is not a time"), "{error}");
    }

    #[test]
    fn times_out_of_range_are_refused_not_overflowed() {
        for text in [
            "+262142-12-31",
            "-262143-01-01",
            "+10000-01-01T00:00:00",
            "0000-12-31",
        ] {
            let error = parse_time(text).unwrap_err();
            assert_eq!(
                error,
                format!("`{text}` is out of range: write a time of the years 1 to 9999")
            );
        }
        assert!(parse_time("9999-12-31").is_ok_and(|day| day.end().is_some()));
        let last = Time::Day(NaiveDate::MAX);
        assert_eq!(last.end(), None);
        assert_eq!(last.last_instant().date_naive(), NaiveDate::MAX);
    }
}
