//! What an operator sees of the job queue and does by hand: jobs listed ([`Job`], [`JobState`],
//! [`JobFilter`]), counted ([`JobCounts`]), dead ([`DeadJob`]) and retried, and done jobs pruned.
//! The table's columns and states are documented in the crate's `# Tables`.
//!
//! Calls `backend` (the dialect), `statement`, `errors` and `queue` (the claimed job's columns).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::deserialize::{self, QueryableByName};
use diesel::row::NamedRow;
use es_core::Error;

use super::queue::{ClaimedJob, checked_delta};
use crate::backend::{Dialect, SqlDialect};
use crate::errors::storage;
use crate::statement::Statement;

/// A job that failed its last allowed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadJob {
    /// The job's id.
    pub id: i64,
    /// The events table of its event.
    pub events_table: String,
    /// Its event's id.
    pub event_id: i64,
    /// The async reactor.
    pub reactor: String,
    /// How many times it ran.
    pub attempts: i32,
    /// The error of its last attempt.
    pub last_error: Option<String>,
}

/// The state of a job: the values of `es_jobs.state`.
///
/// A job is inserted `pending`; a worker's claim makes it `running`; its outcome makes it `done`,
/// `pending` again (a failed attempt, retried at `run_at`) or `dead` (its last allowed attempt
/// failed, or its worker died during it). [`retry_dead_jobs`] makes a dead job `pending` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting to run, or to be retried: due once `run_at` has passed.
    Pending,
    /// Claimed by the worker in `locked_by`, whose lease runs until `locked_until`.
    Running,
    /// Completed (deleted by pruning once old enough).
    Done,
    /// Failed its last allowed attempt; kept with its last error.
    Dead,
}

impl JobState {
    /// Every state, in the order a job goes through them.
    pub const ALL: [JobState; 4] = [Self::Pending, Self::Running, Self::Done, Self::Dead];

    /// The state as `es_jobs.state` stores it: `pending`, `running`, `done` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state `es_jobs.state` stores as this text; the error names what is not one.
impl std::str::FromStr for JobState {
    type Err = String;

    fn from_str(stored: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == stored)
            .ok_or_else(|| {
                format!("{stored:?} is not a job state (pending, running, done or dead)")
            })
    }
}

/// A row of `es_jobs`, as [`jobs`] lists it. Times are UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Job {
    /// The job's id.
    pub id: i64,
    /// The events table of its event.
    pub events_table: String,
    /// Its event's id.
    pub event_id: i64,
    /// The async reactor.
    pub reactor: String,
    /// How many times it was claimed (a claim given back unrun on shutdown is not counted).
    pub attempts: i32,
    /// Its state.
    pub state: JobState,
    /// When it is due: its creation, or the time of its next retry.
    pub run_at: DateTime<Utc>,
    /// The worker holding it while running (as [`Worker::owner`](crate::Worker::owner) names
    /// it); `None` otherwise.
    pub locked_by: Option<String>,
    /// When the running claim's lease expires unless renewed; `None` unless running.
    pub locked_until: Option<DateTime<Utc>>,
    /// The error of its last failed attempt, if any (cleared when it completes).
    pub last_error: Option<String>,
    /// When it was inserted, with its event.
    pub created_at: DateTime<Utc>,
    /// When it became done or dead.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which jobs [`jobs`] lists: every condition set must hold. The default lists every job.
///
/// ```
/// use es_diesel::{JobFilter, JobState};
///
/// let waiting = JobFilter::default().state(JobState::Pending).reactor("send_welcome");
/// assert_eq!(waiting.reactor.as_deref(), Some("send_welcome"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this async reactor.
    pub reactor: Option<String>,
    /// Only jobs with an id above this one: the last id of the previous page.
    pub after_id: Option<i64>,
}

impl JobFilter {
    /// Only jobs in `state`.
    #[must_use]
    pub fn state(mut self, state: JobState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only jobs of the async reactor `reactor`.
    #[must_use]
    pub fn reactor(mut self, reactor: impl Into<String>) -> Self {
        self.reactor = Some(reactor.into());
        self
    }

    /// Only jobs with an id above `id` (the last of the previous page).
    #[must_use]
    pub fn after_id(mut self, id: i64) -> Self {
        self.after_id = Some(id);
        self
    }
}

/// Jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCounts {
    /// Waiting to run (or to be retried).
    pub pending: i64,
    /// Claimed by a worker.
    pub running: i64,
    /// Completed.
    pub done: i64,
    /// Failed their last allowed attempt.
    pub dead: i64,
}

impl JobCounts {
    fn add(&mut self, state: &str, count: i64) {
        match state.parse() {
            Ok(JobState::Pending) => self.pending += count,
            Ok(JobState::Running) => self.running += count,
            Ok(JobState::Done) => self.done += count,
            Ok(JobState::Dead) => self.dead += count,
            Err(_) => {}
        }
    }
}

/// Counts the jobs in each state.
pub fn job_counts<C: Dialect>(conn: &mut C) -> Result<JobCounts, Error> {
    let mut counts = JobCounts::default();
    for (_, state, count) in count_jobs(conn, false)? {
        counts.add(&state, count);
    }
    Ok(counts)
}

/// Counts the jobs of each async reactor in each state, by reactor name. A reactor that no
/// running worker routes shows here with its jobs pending.
pub fn job_counts_by_reactor<C: Dialect>(conn: &mut C) -> Result<Vec<(String, JobCounts)>, Error> {
    let mut by_reactor: Vec<(String, JobCounts)> = Vec::new();
    for (reactor, state, count) in count_jobs(conn, true)? {
        match by_reactor.last_mut() {
            Some((last, counts)) if *last == reactor => counts.add(&state, count),
            _ => {
                let mut counts = JobCounts::default();
                counts.add(&state, count);
                by_reactor.push((reactor, counts));
            }
        }
    }
    Ok(by_reactor)
}

/// The dead jobs, oldest first, with their last error.
pub fn dead_jobs<C: Dialect>(conn: &mut C, limit: usize) -> Result<Vec<DeadJob>, Error> {
    conn.load(
        Statement::new(
            "SELECT id, events_table, event_id, reactor, attempts, last_error FROM es_jobs \
             WHERE state = 'dead' ORDER BY id LIMIT ",
        )
        .big_int(i64::try_from(limit).unwrap_or(i64::MAX)),
    )
    .map_err(storage("es_jobs"))
}

/// Up to `limit` jobs that pass `filter`, by id (the order they were inserted in), each with
/// its state, attempts, due time, lease and last error: what a worker is waiting for, what is
/// running where, what failed. Page with [`JobFilter::after_id`], the last id of a page. A
/// state not in [`JobState`], written by hand, is an [`Error::Storage`].
///
/// ```
/// # let mut conn = es_diesel::sqlite::establish(":memory:")?;
/// # use es_diesel::Database;
/// # for statement in diesel::SqliteConnection::framework_ddl() {
/// #     diesel::connection::SimpleConnection::batch_execute(&mut conn, &statement)?;
/// # }
/// use es_diesel::{JobFilter, JobState, jobs};
///
/// let pending = jobs(&mut conn, &JobFilter::default().state(JobState::Pending), 100)?;
/// for job in &pending {
///     println!("job {} ({}) due at {}", job.id, job.reactor, job.run_at);
/// }
/// # assert!(pending.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn jobs<C: Dialect>(conn: &mut C, filter: &JobFilter, limit: usize) -> Result<Vec<Job>, Error> {
    let mut query = Statement::new(format!("SELECT {JOB_COLUMNS} FROM es_jobs WHERE 1 = 1"));
    if let Some(state) = filter.state {
        query = query.sql(" AND state = ").text(state.as_str());
    }
    if let Some(reactor) = &filter.reactor {
        query = query.sql(" AND reactor = ").text(reactor.clone());
    }
    if let Some(after_id) = filter.after_id {
        query = query.sql(" AND id > ").big_int(after_id);
    }
    let query = query
        .sql(" ORDER BY id LIMIT ")
        .big_int(i64::try_from(limit).unwrap_or(i64::MAX));
    conn.load(query).map_err(storage("es_jobs"))
}

/// The columns of a [`Job`], in the order it reads them: those of a [`ClaimedJob`] first.
const JOB_COLUMNS: &str = "id, events_table, event_id, reactor, attempts, state, run_at, \
                           locked_by, locked_until, last_error, created_at, finished_at";

/// Makes dead jobs pending again with fresh attempts: all of them, or the one with `id`.
/// Returns how many.
pub fn retry_dead_jobs<C: Dialect>(conn: &mut C, id: Option<i64>) -> Result<usize, Error> {
    let mut query = C::Backend::now_plus(
        Statement::new(
            "UPDATE es_jobs SET state = 'pending', attempts = 0, finished_at = NULL, run_at = ",
        ),
        TimeDelta::zero(),
    )
    .sql(" WHERE state = 'dead'");
    if let Some(id) = id {
        query = query.sql(" AND id = ").big_int(id);
    }
    conn.execute(query).map_err(storage("es_jobs"))
}

/// Deletes the done jobs that finished more than `older_than` ago (by the database's clock on
/// PostgreSQL and MySQL), in chunks of 1,000 rows so that no statement holds locks for long;
/// returns how many. Pending, running and dead jobs are kept. A worker does this on its own
/// with [`WorkerOptions::keep_done`](crate::WorkerOptions::keep_done).
pub fn prune_jobs<C: Dialect>(conn: &mut C, older_than: Duration) -> Result<usize, Error> {
    let older_than = checked_delta("prune_jobs older_than", older_than)?;
    let mut pruned = 0;
    loop {
        let deleted = prune_chunk(conn, older_than)?;
        pruned += deleted;
        if deleted < PRUNE_CHUNK {
            return Ok(pruned);
        }
    }
}

/// How many done jobs one pruning statement deletes at most.
const PRUNE_CHUNK: usize = 1_000;

/// The columns of a [`ClaimedJob`], then `last_error`.
impl<DB: SqlDialect> QueryableByName<DB> for DeadJob {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        let ClaimedJob {
            id,
            events_table,
            event_id,
            reactor,
            attempts,
        } = ClaimedJob::build(row)?;
        Ok(Self {
            id,
            events_table,
            event_id,
            reactor,
            attempts,
            last_error: DB::get_optional_text(row, 5)?,
        })
    }
}

/// `JOB_COLUMNS`: the columns of a [`ClaimedJob`], then the state, times, lease and error.
impl<DB: SqlDialect> QueryableByName<DB> for Job {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        let ClaimedJob {
            id,
            events_table,
            event_id,
            reactor,
            attempts,
        } = ClaimedJob::build(row)?;
        Ok(Self {
            id,
            events_table,
            event_id,
            reactor,
            attempts,
            state: DB::get_text(row, 5)?.parse()?,
            run_at: DB::read_time(row, 6)?,
            locked_by: DB::get_optional_text(row, 7)?,
            locked_until: DB::read_optional_time(row, 8)?,
            last_error: DB::get_optional_text(row, 9)?,
            created_at: DB::read_time(row, 10)?,
            finished_at: DB::read_optional_time(row, 11)?,
        })
    }
}

/// Deletes up to [`PRUNE_CHUNK`] done jobs that finished more than `older_than` ago; returns how
/// many.
fn prune_chunk<C: Dialect>(conn: &mut C, older_than: TimeDelta) -> Result<usize, Error> {
    let [before, between, after] = C::Backend::DELETE_DONE_JOBS;
    let query = C::Backend::now_plus(Statement::new(before), -older_than)
        .sql(between)
        .big_int(i64::try_from(PRUNE_CHUNK).unwrap_or(i64::MAX))
        .sql(after);
    conn.jobs_transaction(|conn| conn.execute(query).map_err(storage("es_jobs")))
}

/// How many jobs are in each state, `(reactor, state, count)`: of each reactor if `by_reactor`,
/// else of all reactors (reactor `""`), which the `(state, run_at)` index answers without reading
/// the table — a cheap poll while workers drain the jobs.
fn count_jobs<C: Dialect>(
    conn: &mut C,
    by_reactor: bool,
) -> Result<Vec<(String, String, i64)>, Error> {
    struct StateCount(String, String, i64);
    impl<DB: SqlDialect> QueryableByName<DB> for StateCount {
        fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
            Ok(Self(
                DB::get_text(row, 0)?,
                DB::get_text(row, 1)?,
                DB::get_big_int(row, 2)?,
            ))
        }
    }
    let query = if by_reactor {
        "SELECT reactor, state, COUNT(*) AS value FROM es_jobs GROUP BY reactor, state \
         ORDER BY reactor, state"
    } else {
        "SELECT '' AS reactor, state, COUNT(*) AS value FROM es_jobs GROUP BY state ORDER BY state"
    };
    let rows: Vec<StateCount> = conn
        .load(Statement::new(query))
        .map_err(storage("es_jobs"))?;
    Ok(rows
        .into_iter()
        .map(|StateCount(reactor, state, count)| (reactor, state, count))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::JobState;

    #[test]
    fn a_job_state_reads_back_as_it_is_stored() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
        }
        assert_eq!(
            "paused".parse::<JobState>(),
            Err("\"paused\" is not a job state (pending, running, done or dead)".to_owned())
        );
        assert!(
            "Pending".parse::<JobState>().is_err(),
            "stored in lower case"
        );
    }
}
