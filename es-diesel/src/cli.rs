//! The operator's command line — "git for data": the history of a record, its state in the
//! past, replay with a progress bar, a consistency audit, the event catalog, the jobs, and
//! statistics. Feature `cli`.
//!
//! The framework cannot know an app's types, so an app mounts the commands in its own binary,
//! naming its aggregates, its dispatcher and how to empty each projection:
//!
//! ```no_run
//! # use diesel::prelude::*;
//! # use es_core::{Aggregate, Apply, Event, EventContext};
//! # use schemars::JsonSchema;
//! # use serde::{Deserialize, Serialize};
//! # mod schema { diesel::table! { tasks (id) { id -> BigInt, title -> Text } } }
//! # #[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, Serialize)]
//! # #[aggregate(table = schema::tasks)]
//! # #[diesel(table_name = schema::tasks)]
//! # pub struct Task { pub id: i64, pub title: String }
//! # /// A task was created.
//! # #[derive(Event, Serialize, Deserialize, JsonSchema)]
//! # #[aggregate(Task)]
//! # #[event(creates)]
//! # pub struct Created { #[data_attributes] pub title: String }
//! # impl Apply<Task> for Created {
//! #     fn apply(&self, task: &mut Task, _: &EventContext<'_>) { task.title = self.title.clone(); }
//! # }
//! use es_diesel::cli::Cli;
//!
//! fn main() -> std::process::ExitCode {
//!     let Ok(mut conn) = es_diesel::sqlite::establish("app.db") else {
//!         return std::process::ExitCode::FAILURE;
//!     };
//!     Cli::new("app")
//!         .aggregate::<Task>()
//!         .catalog("docs/events")
//!         .main(&mut conn, std::env::args_os())
//! }
//! ```
//!
//! and then, with `Task`'s name `task`:
//!
//! ```text
//! app log task 1 [--reverse] [--type task.completed] [--since 2026-04-01] [--until ...] [--json]
//! app show task 1 [--as-of 2026-04-20 | --version 3] [--json]
//! app replay task [--id 1] [--skip-bad]
//! app rebuild-projection activity_feed
//! app verify task [--json]
//! app docs
//! app jobs [counts | dead | retry ID | retry --all | work [--once]]
//! app stats task [--json]
//! ```
//!
//! Times are RFC 3339 (`2026-04-20T09:00:00Z`), `2026-04-20 09:00:00` (UTC), or a day
//! (`2026-04-20`), of the years 1 to 9999: `--as-of` and `--until` a day mean the end of that
//! day, `--since` a day its start. [`Ops`] is a clap `Subcommand`, for an app with a command line
//! of its own: `#[command(flatten)] ops: es_diesel::cli::Ops`, then [`Cli::execute`].
//!
//! Each command says what is true of what it did, and fails (exit 1) when it did nothing or found
//! a problem: an event row that cannot be read is named (table, event id, tag, column) and only
//! what needs it stops — `log` prints the others, `verify` and `replay --skip-bad` report its
//! record and go on, `show --version` reads no event after that version.

use std::ffi::OsString;
use std::io::Write;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use clap::{Args, FromArgMatches, Subcommand};
use es_core::{
    Aggregate, AsOf, Error, EventFilter, EventStore, Metadata, OnBadHistory, Rebuild,
    RecordedEvent, ReplayProgress,
};
use indicatif::{HumanCount, ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use crate::audit::{Drift, DriftKind, VerifyReport, event_counts, state_json, verify};
use crate::database::{Database, EventCount, Selection};
use crate::dispatch::{Dispatch, ReactorError};
use crate::jobs::{
    JobCounts, Worker, WorkerOptions, dead_jobs, job_counts_by_reactor, prune_jobs, retry_dead_jobs,
};
use crate::projection::rebuild_projection;
use crate::store::DieselStore;
use crate::table::AggregateTable;

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
    /// The async reactors' jobs: counts, dead ones, retries, a worker.
    Jobs {
        /// What to do with them (default: count them by state).
        #[command(subcommand)]
        command: Option<JobsCommand>,
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

/// What `jobs` does.
#[derive(Debug, Clone, Subcommand)]
pub enum JobsCommand {
    /// How many jobs each async reactor has pending, running, done and dead.
    Counts,
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
    /// Runs the jobs until Ctrl-C (the job in progress finishes), or once.
    Work {
        /// Run one batch of the jobs that are due now, on this connection, then stop.
        #[arg(long)]
        once: bool,
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
    fn start(self) -> DateTime<Utc> {
        match self {
            Time::At(at) => at,
            Time::Day(day) => day.and_time(NaiveTime::MIN).and_utc(),
        }
    }

    /// The first instant after this time (a day: the next midnight), if there is one.
    fn end(self) -> Result<DateTime<Utc>, CliError> {
        match self {
            Time::At(at) => Ok(at),
            Time::Day(day) => day
                .succ_opt()
                .map(|next| next.and_time(NaiveTime::MIN).and_utc())
                .ok_or(CliError::TimeOutOfRange { time: self }),
        }
    }

    /// The last instant this time covers, to the microsecond that events are stored with.
    fn last_instant(self) -> DateTime<Utc> {
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
const LAST_MICROSECOND: NaiveTime =
    NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).expect("23:59:59.999999 is a time of day");

/// The years a time on the command line may name: RFC 3339's four digits, within which every
/// bound a command computes (the end of a day) exists.
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

fn parse_time(text: &str) -> Result<Time, String> {
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

fn parse_any_time(text: &str) -> Result<Time, String> {
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

/// What can go wrong on the command line, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The arguments do not parse (or help was asked for): clap's message, with the usage.
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// The store failed; the error names the table, event id, tag or aggregate.
    #[error(transparent)]
    Store(#[from] Error),
    /// No aggregate of that name was mounted.
    #[error("no aggregate `{name}` here; the aggregates are: {known}")]
    UnknownAggregate {
        /// The name given.
        name: String,
        /// The mounted aggregates' names.
        known: String,
    },
    /// An id that does not parse as the aggregate's id type.
    #[error("`{id}` is not an id of {aggregate}")]
    BadId {
        /// The aggregate.
        aggregate: &'static str,
        /// The id given.
        id: String,
    },
    /// `show` of a record that does not exist (now, or at the time asked for).
    #[error("{aggregate} {id} does not exist{when}")]
    NotFound {
        /// The aggregate.
        aggregate: &'static str,
        /// The id given.
        id: String,
        /// ` as of ...`, or nothing for now.
        when: String,
    },
    /// `show` of a record whose events build it, but which has no row.
    #[error(
        "{aggregate} {id} has no row, but its events build it (version {version}): \
         `replay {aggregate} --id {id}` restores it"
    )]
    MissingRow {
        /// The aggregate.
        aggregate: &'static str,
        /// The id given.
        id: String,
        /// The version its events build.
        version: i64,
    },
    /// `replay --id` of a record without any event: there is nothing to rebuild it from.
    #[error("{aggregate} {id} has no event: nothing was replayed")]
    NoEvents {
        /// The aggregate.
        aggregate: &'static str,
        /// The id given.
        id: String,
    },
    /// `log` printed the events it could read; these could not be.
    #[error(
        "{} event(s) of {aggregate} {id} could not be read: {}",
        errors.len(),
        errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    UnreadableEvents {
        /// The aggregate.
        aggregate: &'static str,
        /// The id given.
        id: String,
        /// Each row's error, naming the table, event id, tag and column.
        errors: Vec<Error>,
    },
    /// A time whose bounds do not exist (the end of the last day chrono knows).
    #[error("the time `{time}` is out of range")]
    TimeOutOfRange {
        /// The time given.
        time: Time,
    },
    /// `jobs retry ID` of a job that does not exist or is not dead.
    #[error("job {id} is not a dead job: nothing was retried (`jobs dead` lists them)")]
    NotDead {
        /// The job's id.
        id: i64,
    },
    /// `rebuild-projection` of a projection that was not mounted (with how to empty it,
    /// [`Cli::projection`]).
    #[error("no projection `{name}` here; the projections are: {known}")]
    UnknownProjection {
        /// The name given.
        name: String,
        /// The mounted projections' names.
        known: String,
    },
    /// `jobs work` without a way to open connections (its heartbeat needs one of its own).
    #[error(
        "`{command}` needs a way to open connections (the worker's heartbeat keeps leases alive \
         on a connection of its own, and a lost connection is opened again): mount it with \
         `Cli::connect`"
    )]
    NoConnect {
        /// The command.
        command: &'static str,
    },
    /// A command that needs the dispatcher, which was not mounted.
    #[error("`{command}` needs the app's dispatcher: mount it with `Cli::dispatcher`")]
    NoDispatcher {
        /// The command.
        command: &'static str,
    },
    /// `docs` without a catalog directory.
    #[error("`docs` needs the catalog's directory: mount it with `Cli::catalog`")]
    NoCatalog,
    /// The catalog could not be generated or written.
    #[error(transparent)]
    Catalog(#[from] es_core::catalog::CatalogError),
    /// `verify` found records that are not what their events build, and says which a replay
    /// rewrites.
    #[error("{}", drifted_advice(aggregate, *drifted, *unreplayable))]
    Drifted {
        /// The aggregate.
        aggregate: &'static str,
        /// How many records drifted.
        drifted: u64,
        /// How many of them have events that cannot be replayed (a replay leaves them).
        unreplayable: u64,
    },
    /// `replay --skip-bad` skipped records.
    #[error("{skipped} {aggregate}(s) could not be replayed and were left as they were")]
    Skipped {
        /// The aggregate.
        aggregate: &'static str,
        /// How many records were skipped.
        skipped: u64,
    },
    /// Ctrl-C could not be handled (`jobs work`).
    #[error("cannot handle Ctrl-C: {0}")]
    Signal(#[from] ctrlc::Error),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// What `verify` says of drifted records: that `replay` rewrites them, unless their events
/// cannot be replayed.
fn drifted_advice(aggregate: &str, drifted: u64, unreplayable: u64) -> String {
    let drifted_from = format!("{drifted} {aggregate}(s) drifted from their events");
    if unreplayable == 0 {
        format!("{drifted_from}; `replay {aggregate}` rewrites them")
    } else if unreplayable < drifted {
        format!(
            "{drifted_from}; {unreplayable} of them cannot be replayed: `replay {aggregate} \
             --skip-bad` leaves them as they are and rewrites the others"
        )
    } else {
        format!(
            "{drifted_from} and cannot be replayed: a replay leaves them as they are until their \
             bad events are fixed"
        )
    }
}

/// How to empty a projection's read model before a rebuild.
type Reset<'a, C> = Box<dyn Fn(&mut C) -> Result<(), ReactorError> + 'a>;

/// How to open a new connection (for `jobs work`).
type Connect<'a, C> = Box<dyn Fn() -> Result<C, ReactorError> + Sync + 'a>;

/// An app's operator command line: its aggregates, dispatcher, projections and catalog,
/// mounted once, run on a connection of type `C`.
pub struct Cli<'a, C: Database> {
    name: &'static str,
    aggregates: Vec<Box<dyn Mounted<C>>>,
    dispatcher: Option<&'a dyn Dispatch<C>>,
    projections: Vec<(String, Reset<'a, C>)>,
    catalog: Option<PathBuf>,
    worker: WorkerOptions,
    connect: Option<Connect<'a, C>>,
}

impl<C: Database> std::fmt::Debug for Cli<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cli")
            .field("name", &self.name)
            .field("aggregates", &self.aggregate_names())
            .field("dispatcher", &self.dispatcher.is_some())
            .field("projections", &self.projection_names())
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}

impl<'a, C: Database> Cli<'a, C> {
    /// A command line named `name` (shown in its help), with nothing mounted yet.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            aggregates: Vec::new(),
            dispatcher: None,
            projections: Vec::new(),
            catalog: None,
            worker: WorkerOptions::default(),
            connect: None,
        }
    }

    /// Mounts aggregate `A` under its name ([`Aggregate::NAME`], `task`). `show` and `verify`
    /// see its state through its `Serialize`.
    pub fn aggregate<A: AggregateTable<C> + Serialize>(mut self) -> Self {
        self.aggregates.push(Box::new(Typed::<A>(PhantomData)));
        self
    }

    /// Mounts the app's dispatcher: `jobs work` runs its async reactors, and the catalog draws
    /// its routes.
    pub fn dispatcher(mut self, dispatcher: &'a dyn Dispatch<C>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// Mounts projection `name` (as the dispatcher's routes name it) with `reset`, which empties
    /// its read model before `rebuild-projection` feeds it the events again.
    pub fn projection(
        mut self,
        name: impl Into<String>,
        reset: impl Fn(&mut C) -> Result<(), ReactorError> + 'a,
    ) -> Self {
        self.projections.push((name.into(), Box::new(reset)));
        self
    }

    /// Where `docs` writes the event catalog of the mounted aggregates
    /// ([`es_core::catalog::write_catalog`]).
    pub fn catalog(mut self, dir: impl Into<PathBuf>) -> Self {
        self.catalog = Some(dir.into());
        self
    }

    /// The options of the worker that `jobs work` runs (default: [`WorkerOptions::default`]).
    pub fn worker_options(mut self, options: WorkerOptions) -> Self {
        self.worker = options;
        self
    }

    /// How to open a new connection to the same database: `jobs work` runs a worker
    /// ([`Worker::run`]), which opens its own (one for its jobs, one for its heartbeat) and opens
    /// them again when they are lost.
    pub fn connect<E>(mut self, connect: impl Fn() -> Result<C, E> + Sync + 'a) -> Self
    where
        E: Into<ReactorError>,
    {
        self.connect = Some(Box::new(move || connect().map_err(Into::into)));
        self
    }

    /// Parses `args` (the program's name first, as `std::env::args_os()` gives them), runs the
    /// command on `conn`, and returns the process's exit code: 0 on success, 1 when the command
    /// failed or found a problem (the error on stderr), 2 on bad arguments.
    pub fn main<I, T>(&self, conn: &mut C, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        match self.run_from(conn, args, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(CliError::Usage(usage)) => {
                // Help and version go to stdout with success, mistakes to stderr with 2.
                let code = if usage.use_stderr() { 2 } else { 0 };
                // Nowhere is left to report a failure to print the usage to.
                let _ = usage.print();
                ExitCode::from(code)
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    }

    /// Parses `args` (the program's name first) and runs the command on `conn`, writing its
    /// output to `out`.
    pub fn run_from<I, T>(&self, conn: &mut C, args: I, out: &mut dyn Write) -> Result<(), CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = Ops::augment_subcommands(clap::Command::new(self.name))
            .about("Operates the event store: history, time travel, replay, audit, docs, jobs")
            .after_help(format!(
                "Aggregates: {}. Projections: {}.",
                self.aggregate_names().join(", "),
                self.projection_names().join(", ")
            ))
            .subcommand_required(true)
            .arg_required_else_help(true);
        let matches = command.try_get_matches_from(args)?;
        let ops = Ops::from_arg_matches(&matches)?;
        self.execute(conn, &ops, out)
    }

    /// Runs a parsed command on `conn`, writing its output to `out`.
    pub fn execute(&self, conn: &mut C, ops: &Ops, out: &mut dyn Write) -> Result<(), CliError> {
        match ops {
            Ops::Log(args) => self.log(conn, args, out),
            Ops::Show(args) => self.show(conn, args, out),
            Ops::Replay(args) => self.replay(conn, args, out),
            Ops::RebuildProjection { name } => self.rebuild_projection(conn, name, out),
            Ops::Verify { aggregate, json } => self.verify(conn, aggregate, *json, out),
            Ops::Docs => self.docs(out),
            Ops::Jobs { command } => {
                self.jobs(conn, command.as_ref().unwrap_or(&JobsCommand::Counts), out)
            }
            Ops::Stats { aggregate, json } => self.stats(conn, aggregate, *json, out),
        }
    }

    fn aggregate_names(&self) -> Vec<&'static str> {
        self.aggregates
            .iter()
            .map(|mounted| mounted.name())
            .collect()
    }

    fn projection_names(&self) -> Vec<&str> {
        self.projections
            .iter()
            .map(|(name, _)| name.as_str())
            .collect()
    }

    fn mounted(&self, name: &str) -> Result<&dyn Mounted<C>, CliError> {
        self.aggregates
            .iter()
            .find(|mounted| mounted.name() == name)
            .map(|mounted| &**mounted)
            .ok_or_else(|| CliError::UnknownAggregate {
                name: name.to_owned(),
                known: self.aggregate_names().join(", "),
            })
    }

    fn log(&self, conn: &mut C, args: &LogArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let mounted = self.mounted(&args.aggregate)?;
        let filter = EventFilter {
            tags: args.types.clone(),
            since: args.since.map(Time::start),
            until: args.until.map(Time::end).transpose()?,
            ..EventFilter::default()
        };
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for entry in mounted.history(conn, &args.id)? {
            match entry {
                Ok(entry) if entry.passes(&filter) => entries.push(entry),
                Ok(_) => {}
                Err(error) => errors.push(error),
            }
        }
        if !args.reverse {
            entries.reverse();
        }
        for entry in &entries {
            if args.json {
                serde_json::to_writer(&mut *out, entry).map_err(std::io::Error::from)?;
                writeln!(out)?;
            } else {
                entry.print(out)?;
            }
        }
        if !args.json && entries.is_empty() {
            writeln!(out, "no event of {} {} matches", args.aggregate, args.id)?;
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CliError::UnreadableEvents {
                aggregate: mounted.name(),
                id: args.id.clone(),
                errors,
            })
        }
    }

    fn show(&self, conn: &mut C, args: &ShowArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let mounted = self.mounted(&args.aggregate)?;
        let (name, id) = (mounted.name(), &args.id);
        let as_of = match (args.version, args.as_of) {
            (Some(version), _) => Some(AsOf::Version(version)),
            (None, Some(time)) => Some(AsOf::Time(time.last_instant())),
            (None, None) => None,
        };
        let when = match (args.version, args.as_of) {
            (Some(version), _) => format!(" as of version {version}"),
            (None, Some(Time::Day(day))) => format!(" as of the end of {day} (UTC)"),
            (None, Some(Time::At(at))) => format!(" as of {}", at.to_rfc3339()),
            (None, None) => String::new(),
        };
        let not_found = |when: String| CliError::NotFound {
            aggregate: name,
            id: id.clone(),
            when,
        };
        let (state, header) = match mounted.show(conn, id, as_of)? {
            Shown::AsOf {
                state,
                version,
                latest,
            } => {
                let state = state.ok_or_else(|| not_found(when.clone()))?;
                (
                    state,
                    format!("{name} {id}{when}: version {version} of {latest}"),
                )
            }
            Shown::Now(now) => {
                let header = now.header(name, id);
                match now.row {
                    Some(row) => (row, header),
                    None => {
                        return Err(match now.broken {
                            Some(error) => error.into(),
                            None if now.builds => CliError::MissingRow {
                                aggregate: name,
                                id: id.clone(),
                                version: now.replayed_to,
                            },
                            None => not_found(when),
                        });
                    }
                }
            }
        };
        if args.json {
            serde_json::to_writer(&mut *out, &state).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{header}")?;
            print_fields(out, &state)?;
        }
        Ok(())
    }

    fn replay(&self, conn: &mut C, args: &ReplayArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let mounted = self.mounted(&args.aggregate)?;
        let name = mounted.name();
        if let Some(id) = &args.id {
            match mounted.replay_one(conn, id)? {
                Some(state) => {
                    writeln!(out, "replayed {name} {id}:")?;
                    print_fields(out, &state)?;
                }
                None => writeln!(
                    out,
                    "replayed {name} {id}: its events destroy it, its row is gone"
                )?,
            }
            return Ok(());
        }
        let on_bad = if args.skip_bad {
            OnBadHistory::Skip
        } else {
            OnBadHistory::Stop
        };
        let total = total_events(&mounted.event_counts(conn)?);
        let bar = progress_bar(total, &format!("replaying {name}"));
        let started = Instant::now();
        let replayed = mounted.replay_all(conn, on_bad, &mut |progress| {
            bar.set_position(progress.events);
        });
        bar.finish_and_clear();
        let (progress, skipped) = replayed?;
        writeln!(
            out,
            "replayed {} {name}(s) from {} events in {}: {} events/s",
            HumanCount(progress.aggregates),
            HumanCount(progress.events),
            Elapsed(started),
            HumanCount(per_second(progress.events, started)),
        )?;
        for (id, error) in &skipped {
            writeln!(out, "skipped {name} {id}: {error}")?;
        }
        if skipped.is_empty() {
            Ok(())
        } else {
            Err(CliError::Skipped {
                aggregate: name,
                skipped: skipped.len() as u64,
            })
        }
    }

    fn rebuild_projection(
        &self,
        conn: &mut C,
        name: &str,
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        let dispatcher = self.dispatcher.ok_or(CliError::NoDispatcher {
            command: "rebuild-projection",
        })?;
        let (name, reset) = self
            .projections
            .iter()
            .find(|(projection, _)| projection == name)
            .ok_or_else(|| CliError::UnknownProjection {
                name: name.to_owned(),
                known: self.projection_names().join(", "),
            })?;
        let started = Instant::now();
        let events = rebuild_projection(conn, dispatcher, name, |conn| reset(conn))?;
        writeln!(
            out,
            "rebuilt projection {name} from {} events in {}",
            HumanCount(events),
            Elapsed(started),
        )?;
        Ok(())
    }

    fn verify(
        &self,
        conn: &mut C,
        aggregate: &str,
        json: bool,
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        let mounted = self.mounted(aggregate)?;
        let name = mounted.name();
        let total = total_events(&mounted.event_counts(conn)?);
        let bar = progress_bar(total, &format!("verifying {name}"));
        let mut written = Ok(());
        let started = Instant::now();
        let verified = mounted.verify(
            conn,
            &mut |drift| {
                if written.is_ok() {
                    written = bar.suspend(|| print_drift(out, name, drift, json));
                }
            },
            &mut |report| bar.set_position(report.events),
        );
        bar.finish_and_clear();
        let report = verified?;
        written?;
        if !json {
            writeln!(
                out,
                "verified {} {name}(s) against {} events in {}: {} drifted",
                HumanCount(report.aggregates),
                HumanCount(report.events),
                Elapsed(started),
                HumanCount(report.drifted),
            )?;
        }
        match report.drifted {
            0 => Ok(()),
            drifted => Err(CliError::Drifted {
                aggregate: name,
                drifted,
                unreplayable: report.unreplayable,
            }),
        }
    }

    fn docs(&self, out: &mut dyn Write) -> Result<(), CliError> {
        let dir = self.catalog.as_ref().ok_or(CliError::NoCatalog)?;
        let routes = self
            .dispatcher
            .map_or(&[][..], |dispatcher| dispatcher.routes());
        let catalog = es_core::catalog::write_catalog(dir, &self.aggregate_names(), routes)?;
        let events: usize = catalog
            .aggregates
            .iter()
            .map(|aggregate| aggregate.events.len())
            .sum();
        writeln!(
            out,
            "event catalog of {} aggregate(s), {events} event(s), written to {}",
            catalog.aggregates.len(),
            dir.display()
        )?;
        Ok(())
    }

    fn jobs(
        &self,
        conn: &mut C,
        command: &JobsCommand,
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        match command {
            JobsCommand::Counts => {
                let by_reactor = job_counts_by_reactor(conn)?;
                let width = by_reactor
                    .iter()
                    .map(|(reactor, _)| reactor.len())
                    .chain([7])
                    .max()
                    .unwrap_or(7);
                writeln!(
                    out,
                    "{:width$}  {:>7}  {:>7}  {:>7}  {:>7}",
                    "reactor", "pending", "running", "done", "dead"
                )?;
                let mut all = JobCounts::default();
                for (reactor, counts) in &by_reactor {
                    writeln!(
                        out,
                        "{reactor:width$}  {:>7}  {:>7}  {:>7}  {:>7}",
                        counts.pending, counts.running, counts.done, counts.dead
                    )?;
                    all.pending += counts.pending;
                    all.running += counts.running;
                    all.done += counts.done;
                    all.dead += counts.dead;
                }
                writeln!(
                    out,
                    "{:width$}  {:>7}  {:>7}  {:>7}  {:>7}",
                    "all", all.pending, all.running, all.done, all.dead
                )?;
            }
            JobsCommand::Dead { limit } => {
                let dead = dead_jobs(conn, *limit)?;
                for job in &dead {
                    writeln!(
                        out,
                        "job {}: {} on event {} of {}, {} attempt(s): {}",
                        job.id,
                        job.reactor,
                        job.event_id,
                        job.events_table,
                        job.attempts,
                        job.last_error.as_deref().unwrap_or("(no error recorded)")
                    )?;
                }
                if dead.is_empty() {
                    writeln!(out, "no dead job")?;
                }
            }
            JobsCommand::Retry { id, all } => {
                let retried = retry_dead_jobs(conn, if *all { None } else { *id })?;
                if let (Some(id), false, 0) = (id, all, retried) {
                    return Err(CliError::NotDead { id: *id });
                }
                writeln!(out, "{retried} dead job(s) pending again")?;
            }
            JobsCommand::Work { once } => {
                let dispatcher = self.dispatcher.ok_or(CliError::NoDispatcher {
                    command: "jobs work",
                })?;
                let worker = Worker::new(dispatcher, self.worker.clone());
                let stats = if *once {
                    worker.run_once(conn)?
                } else {
                    let connect = self.connect.as_ref().ok_or(CliError::NoConnect {
                        command: "jobs work",
                    })?;
                    let stop = Arc::new(AtomicBool::new(false));
                    let on_signal = Arc::clone(&stop);
                    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))?;
                    writeln!(out, "working as {} (Ctrl-C to stop)", worker.owner())?;
                    out.flush()?;
                    worker.run(connect, &stop)?
                };
                writeln!(
                    out,
                    "jobs completed {}, retried {}, dead {}",
                    stats.completed, stats.retried, stats.dead
                )?;
            }
            JobsCommand::Prune { older_than } => {
                let pruned = prune_jobs(conn, *older_than)?;
                writeln!(
                    out,
                    "deleted {pruned} done job(s) finished more than {} ago",
                    humantime::format_duration(*older_than)
                )?;
            }
        }
        Ok(())
    }

    fn stats(
        &self,
        conn: &mut C,
        aggregate: &str,
        json: bool,
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        let mounted = self.mounted(aggregate)?;
        let counts = mounted.event_counts(conn)?;
        if json {
            for count in &counts {
                serde_json::to_writer(&mut *out, count).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
            return Ok(());
        }
        let width = counts
            .iter()
            .map(|count| count.event_type.len())
            .max()
            .unwrap_or(0)
            .max("type".len());
        writeln!(out, "{:<10}  {:<width$}  {:>8}", "day", "type", "events")?;
        for count in &counts {
            writeln!(
                out,
                "{:<10}  {:<width$}  {:>8}",
                count.day, count.event_type, count.events
            )?;
        }
        let mut by_type: std::collections::BTreeMap<&str, i64> = Default::default();
        for count in &counts {
            let events = by_type.entry(&count.event_type).or_default();
            *events = events.saturating_add(count.events);
        }
        for (event_type, events) in &by_type {
            writeln!(out, "{:<10}  {event_type:<width$}  {events:>8}", "all days")?;
        }
        writeln!(
            out,
            "{} events of {} type(s) over {} day(s)",
            total_events(&counts),
            by_type.len(),
            counts
                .iter()
                .map(|count| &count.day)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        )?;
        Ok(())
    }
}

/// One event as `log` prints it.
#[derive(Debug, Serialize)]
struct Entry {
    id: i64,
    aggregate_id: String,
    version: i64,
    #[serde(rename = "type")]
    event_type: String,
    created_at: DateTime<Utc>,
    /// The data as JSON, or the stored text when it is not JSON (a corrupt row is shown, not
    /// hidden).
    data: Value,
    metadata: Metadata,
}

impl Entry {
    fn new<Id: std::fmt::Display>(record: RecordedEvent<Id>) -> Self {
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

    fn passes(&self, filter: &EventFilter) -> bool {
        (filter.tags.is_empty() || filter.tags.contains(&self.event_type))
            && filter.since.is_none_or(|since| self.created_at >= since)
            && filter.until.is_none_or(|until| self.created_at < until)
    }

    fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
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
enum Shown {
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
struct Now {
    /// The row, if there is one.
    row: Option<Value>,
    /// The last version whose replayed state is the row, if any.
    matches: Option<i64>,
    /// The version the events replay to (all of them, unless `broken`).
    replayed_to: i64,
    /// Whether the replay to `replayed_to` builds the record.
    builds: bool,
    /// Why the events replay no further, if they stop before the last one.
    broken: Option<Error>,
    /// The version of the last event, when it can be read.
    latest: Option<i64>,
}

impl Now {
    /// The line above the fields: the version the row is the state of, of the latest, and what
    /// to do when they differ.
    fn header(&self, name: &str, id: &str) -> String {
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

/// What the command line does with one aggregate type, its type erased.
trait Mounted<C: Database> {
    fn name(&self) -> &'static str;
    fn history(&self, conn: &mut C, id: &str) -> Result<Vec<Result<Entry, Error>>, CliError>;
    fn show(&self, conn: &mut C, id: &str, as_of: Option<AsOf>) -> Result<Shown, CliError>;
    fn replay_one(&self, conn: &mut C, id: &str) -> Result<Option<Value>, CliError>;
    fn replay_all(
        &self,
        conn: &mut C,
        on_bad: OnBadHistory,
        progress: &mut dyn FnMut(&ReplayProgress),
    ) -> Result<(ReplayProgress, Vec<(String, Error)>), Error>;
    fn verify(
        &self,
        conn: &mut C,
        on_drift: &mut dyn FnMut(&Drift),
        progress: &mut dyn FnMut(&VerifyReport),
    ) -> Result<VerifyReport, Error>;
    fn event_counts(&self, conn: &mut C) -> Result<Vec<EventCount>, Error>;
}

struct Typed<A>(PhantomData<fn() -> A>);

impl<A: Aggregate> Typed<A> {
    fn parse_id(id: &str) -> Result<A::Id, CliError> {
        id.parse().map_err(|_| CliError::BadId {
            aggregate: A::NAME,
            id: id.to_owned(),
        })
    }
}

impl<C: Database, A: AggregateTable<C> + Serialize> Mounted<C> for Typed<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn history(&self, conn: &mut C, id: &str) -> Result<Vec<Result<Entry, Error>>, CliError> {
        let id = Self::parse_id(id)?;
        let all = Selection::Aggregate {
            id: &id,
            as_of: None,
        };
        let records = conn.select_events(A::EVENTS_TABLE, all)?;
        Ok(records.map(|record| record.map(Entry::new)).collect())
    }

    /// As of a point: the events up to it, and no other. Now: the row, and the replay of every
    /// event to find the version whose state it is.
    fn show(&self, conn: &mut C, id: &str, as_of: Option<AsOf>) -> Result<Shown, CliError> {
        let id = Self::parse_id(id)?;
        let mut rebuild = Rebuild::<A>::new(id.clone())?;
        let Some(as_of) = as_of else {
            let row = EventStore::<A>::load(&mut DieselStore::new(conn), &id)?;
            let row = row.as_ref().map(state_json).transpose()?;
            let (mut matches, mut broken) = (None, None);
            let all = Selection::Aggregate {
                id: &id,
                as_of: None,
            };
            for record in conn.select_events(A::EVENTS_TABLE, all)? {
                if let Err(error) = record.and_then(|record| rebuild.apply(&record)) {
                    broken = Some(error);
                    break;
                }
                if rebuild.state().map(state_json).transpose()? == row {
                    matches = Some(rebuild.version());
                }
            }
            let latest = match broken {
                None => Some(rebuild.version()),
                Some(_) => EventStore::<A>::version(&mut DieselStore::new(conn), &id).ok(),
            };
            return Ok(Shown::Now(Now {
                row,
                matches,
                replayed_to: rebuild.version(),
                builds: rebuild.state().is_some(),
                broken,
                latest,
            }));
        };
        let until = Selection::Aggregate {
            id: &id,
            as_of: Some(as_of),
        };
        for record in conn.select_events(A::EVENTS_TABLE, until)? {
            let record = record?;
            if !as_of.includes(&record) {
                break;
            }
            rebuild.apply(&record)?;
        }
        let version = rebuild.version();
        let state = rebuild.finish().as_ref().map(state_json).transpose()?;
        let latest = EventStore::<A>::version(&mut DieselStore::new(conn), &id)?;
        Ok(Shown::AsOf {
            state,
            version,
            latest,
        })
    }

    fn replay_one(&self, conn: &mut C, id: &str) -> Result<Option<Value>, CliError> {
        let aggregate_id = Self::parse_id(id)?;
        let replayed = DieselStore::new(conn)
            .replay_batch_of::<A>(std::slice::from_ref(&aggregate_id), OnBadHistory::Stop)?;
        if replayed.events == 0 {
            return Err(CliError::NoEvents {
                aggregate: A::NAME,
                id: id.to_owned(),
            });
        }
        let state = replayed.saved.into_iter().next();
        Ok(state.as_ref().map(state_json).transpose()?)
    }

    fn replay_all(
        &self,
        conn: &mut C,
        on_bad: OnBadHistory,
        progress: &mut dyn FnMut(&ReplayProgress),
    ) -> Result<(ReplayProgress, Vec<(String, Error)>), Error> {
        let report =
            EventStore::<A>::replay_all_with(&mut DieselStore::new(conn), on_bad, progress)?;
        let skipped = report
            .skipped
            .into_iter()
            .map(|skipped| (skipped.aggregate_id, skipped.error))
            .collect();
        Ok((report.progress, skipped))
    }

    fn verify(
        &self,
        conn: &mut C,
        on_drift: &mut dyn FnMut(&Drift),
        progress: &mut dyn FnMut(&VerifyReport),
    ) -> Result<VerifyReport, Error> {
        verify::<C, A>(conn, on_drift, progress)
    }

    fn event_counts(&self, conn: &mut C) -> Result<Vec<EventCount>, Error> {
        event_counts::<C, A>(conn)
    }
}

/// Prints a state one field a line (or the whole value, if it is not an object).
fn print_fields(out: &mut dyn Write, state: &Value) -> std::io::Result<()> {
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

fn print_drift(out: &mut dyn Write, name: &str, drift: &Drift, json: bool) -> std::io::Result<()> {
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
struct Elapsed(Instant);

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2?}", self.0.elapsed())
    }
}

fn total_events(counts: &[EventCount]) -> u64 {
    counts.iter().fold(0, |total, count| {
        total.saturating_add(u64::try_from(count.events).unwrap_or(0))
    })
}

fn per_second(events: u64, started: Instant) -> u64 {
    let seconds = started.elapsed().as_secs_f64();
    if seconds > 0.0 {
        (events as f64 / seconds) as u64
    } else {
        events
    }
}

/// A bar on stderr (hidden when stderr is not a terminal): events done of `total`, their rate
/// and the time left.
fn progress_bar(total: u64, message: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {human_pos}/{human_len} events, {per_sec}, ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(total)
        .with_style(style.progress_chars("=> "))
        .with_message(message.to_owned())
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
        assert!(parse_time("9999-12-31").is_ok_and(|day| day.end().is_ok()));
        let last = Time::Day(NaiveDate::MAX);
        assert_eq!(
            last.end().unwrap_err().to_string(),
            format!("the time `{}` is out of range", NaiveDate::MAX)
        );
        assert_eq!(last.last_instant().date_naive(), NaiveDate::MAX);
    }
}
