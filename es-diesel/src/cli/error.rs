//! [`CliError`]: what can go wrong on the command line, each saying what to do about it.
//!
//! Calls `cli::args` (the times it names).

use es_core::Error;

use super::args::*;

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
    /// `generate` was given a name or field it cannot write code for.
    #[error("cannot generate `{input}`: {reason}")]
    Generate {
        /// What was given.
        input: String,
        /// What to write instead.
        reason: String,
    },
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
    /// `subscriptions retry` left events held back: their handler still fails.
    #[error(
        "{count} event(s) still held back: their handler still fails (`subscriptions held` lists \
         them with their errors)"
    )]
    StillHeld {
        /// How many.
        count: u64,
    },
    /// `rebuild-projection` of a projection that was not mounted (with how to empty it,
    /// [`Cli::projection`](super::Cli::projection)).
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
    /// `relay` without a relay mounted.
    #[error("`relay` needs the relay's options: mount them with `Cli::relay`")]
    NoRelay,
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
pub(super) fn drifted_advice(aggregate: &str, drifted: u64, unreplayable: u64) -> String {
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

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    #[test]
    fn a_time_out_of_range_is_named() {
        let time = Time::Day(NaiveDate::MAX);
        assert_eq!(
            CliError::TimeOutOfRange { time }.to_string(),
            format!("the time `{}` is out of range", NaiveDate::MAX)
        );
    }
}
