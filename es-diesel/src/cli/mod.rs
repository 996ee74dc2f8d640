//! The operator's command line — "git for data": the history of a record, its state in the
//! past, replay with a progress bar, a consistency audit, the event catalog, the jobs, the
//! subscriptions, and statistics. Feature `cli`.
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
//! app jobs [counts | list [--state pending] [--reactor R] [--after ID] [--limit N] | dead
//!          | retry ID | retry --all | work [--once | --drain]]
//! app stats task [--json]
//! app generate event Task Archived reason:String [--creates | --destroys]
//! app generate aggregate TaskList name:String due_on:Option<UtcDateTime>
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
//!
//! `args.rs` holds what clap parses, `error.rs` [`CliError`], `mount.rs` the mounted aggregates,
//! `render.rs` the printing; this file the [`Cli`] that runs the commands.

mod args;
mod error;
mod generate;
mod mount;
#[cfg(feature = "nats")]
mod relay;
mod render;
mod subscriptions;

#[cfg(feature = "nats")]
pub use self::args::RelayCommand;
pub use self::args::{
    GenerateCommand, JobsCommand, LogArgs, Ops, ReplayArgs, ShowArgs, SubscriptionsCommand, Time,
};
pub use self::error::CliError;
use self::mount::*;
use self::render::*;

use std::ffi::OsString;
use std::io::Write;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::{FromArgMatches, Subcommand};
use es_core::{AsOf, EventFilter, OnBadHistory};
use indicatif::HumanCount;
use serde::Serialize;

use crate::database::Database;
use crate::dispatch::{Dispatch, ReactorError};
use crate::jobs::admin::{
    JobCounts, JobFilter, dead_jobs, job_counts_by_reactor, jobs, prune_jobs, retry_dead_jobs,
};
use crate::jobs::{Worker, WorkerOptions};
use crate::projection::rebuild_projection;
use crate::table::AggregateTable;

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
    #[cfg(feature = "nats")]
    relay: Option<crate::relay::RelayOptions>,
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
            #[cfg(feature = "nats")]
            relay: None,
        }
    }

    /// Mounts aggregate `A` under its name ([`Aggregate::NAME`](es_core::Aggregate::NAME), `task`). `show` and `verify`
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

    /// Mounts the NATS JetStream relay (feature `nats`): `relay` shows its lag and last error,
    /// `relay run` runs it (on connections of its own: mount [`connect`](Self::connect) too),
    /// `relay reset` moves it.
    #[cfg(feature = "nats")]
    pub fn relay(mut self, options: crate::relay::RelayOptions) -> Self {
        self.relay = Some(options);
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
            Ops::Subscriptions { command } => self.subscriptions(
                conn,
                command.as_ref().unwrap_or(&SubscriptionsCommand::List),
                out,
            ),
            Ops::Generate { command } => {
                out.write_all(generate::generate::<C::Backend>(command)?.as_bytes())?;
                Ok(())
            }
            Ops::Stats { aggregate, json } => self.stats(conn, aggregate, *json, out),
            #[cfg(feature = "nats")]
            Ops::Relay { command } => {
                self.relay_command(conn, command.as_ref().unwrap_or(&RelayCommand::Status), out)
            }
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
            until: args
                .until
                .map(|until| until.end().ok_or(CliError::TimeOutOfRange { time: until }))
                .transpose()?,
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
            JobsCommand::List {
                state,
                reactor,
                after,
                limit,
            } => {
                let filter = JobFilter {
                    state: *state,
                    reactor: reactor.clone(),
                    after_id: *after,
                };
                let listed = jobs(conn, &filter, *limit)?;
                for job in &listed {
                    write!(
                        out,
                        "job {}: {} on event {} of {}, {}, {} attempt(s), due {}",
                        job.id,
                        job.reactor,
                        job.event_id,
                        job.events_table,
                        job.state,
                        job.attempts,
                        job.run_at.to_rfc3339()
                    )?;
                    if let (Some(by), Some(until)) = (&job.locked_by, job.locked_until) {
                        write!(out, ", held by {by} until {}", until.to_rfc3339())?;
                    }
                    if let Some(finished) = job.finished_at {
                        write!(out, ", finished {}", finished.to_rfc3339())?;
                    }
                    match &job.last_error {
                        Some(error) => writeln!(out, ": {error}")?,
                        None => writeln!(out)?,
                    }
                }
                if listed.is_empty() {
                    writeln!(out, "no job")?;
                }
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
            JobsCommand::Work { once, drain } => {
                let dispatcher = self.dispatcher.ok_or(CliError::NoDispatcher {
                    command: "jobs work",
                })?;
                let worker = Worker::new(dispatcher, self.worker.clone());
                let stats = if *once {
                    worker.run_once(conn)?
                } else if *drain {
                    worker.drain(conn)?
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
                if *drain {
                    writeln!(
                        out,
                        "jobs left pending or running, not due: {}",
                        stats.not_due
                    )?;
                }
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
