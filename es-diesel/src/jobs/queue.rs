//! The job queue, `es_jobs`, as writes and workers use it: the jobs a write inserts
//! ([`NewJob`]), and the claims, renewals and outcomes of workers — written once over the
//! backend's dialect. What an operator lists, counts, retries and prunes is in `admin.rs`.
//!
//! Calls `backend` (the dialect), `statement` and `errors`.

use std::time::Duration;

use chrono::TimeDelta;
use diesel::deserialize::{self, QueryableByName};
use diesel::row::NamedRow;
use es_core::Error;

use crate::backend::{Dialect, Number, SqlDialect};
use crate::errors::storage;
use crate::statement::{Binds, Statement};

/// A job to insert with the events of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewJob {
    pub(crate) events_table: &'static str,
    pub(crate) event_id: i64,
    pub(crate) reactor: &'static str,
}

/// A job claimed by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimedJob {
    /// The job's id.
    pub id: i64,
    /// The events table of its event.
    pub events_table: String,
    /// Its event's id.
    pub event_id: i64,
    /// The async reactor to run.
    pub reactor: String,
    /// This attempt's number: 1 for the first run.
    pub attempts: i32,
}

/// How a job attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    /// It succeeded.
    Done,
    /// It failed and runs again after `delay`.
    Retry { delay: TimeDelta, error: String },
    /// It failed its last allowed attempt.
    Dead { error: String },
}

/// What a worker asks of [`claim_jobs`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobClaim<'a> {
    /// Who claims: recorded in `locked_by`.
    pub(crate) worker: &'a str,
    /// The async reactors the worker's dispatcher routes: the only jobs it takes.
    pub(crate) reactors: &'a [&'static str],
    /// How long the claim holds its jobs unless renewed.
    pub(crate) lease: TimeDelta,
    /// How many jobs at most.
    pub(crate) limit: usize,
    /// A job whose lease expired after this many attempts is dead, not claimed again.
    pub(crate) max_attempts: i32,
}

#[cfg(test)]
impl ClaimedJob {
    /// A claim of job `id` (of event `10 × id`) at attempt `attempts`, for unit tests.
    pub(crate) fn claimed(id: i64, attempts: i32) -> Self {
        Self {
            id,
            events_table: "task_events".to_owned(),
            event_id: id * 10,
            reactor: "notify".to_owned(),
            attempts,
        }
    }
}

/// `id, events_table, event_id, reactor, attempts`, by position.
impl<DB: SqlDialect> QueryableByName<DB> for ClaimedJob {
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        Ok(Self {
            id: DB::get_big_int(row, 0)?,
            events_table: DB::get_text(row, 1)?,
            event_id: DB::get_big_int(row, 2)?,
            reactor: DB::get_text(row, 3)?,
            attempts: DB::get_integer(row, 4)?,
        })
    }
}

/// `duration` as a signed time offset, if it is at most [`LONGEST`]; else the error naming
/// `option`.
pub(crate) fn checked_delta(option: &'static str, duration: Duration) -> Result<TimeDelta, Error> {
    TimeDelta::from_std(duration)
        .ok()
        .filter(|_| duration <= LONGEST)
        .ok_or_else(|| Error::InvalidOption {
            option,
            reason: format!("must be at most a century (100 × 365 days), got {duration:?}"),
        })
}

/// The longest duration any worker option may take: a century.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Inserts the jobs of async reactors (one multi-row `INSERT`) and wakes idle workers.
pub(crate) fn insert_jobs<C: Dialect>(conn: &mut C, jobs: &[NewJob]) -> Result<(), Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let [wake_before, wake_after] = C::Backend::WAKE_WORKERS;
    let mut query = Statement::new(format!(
        "{wake_before}INSERT INTO es_jobs (events_table, event_id, reactor, state, attempts, \
         run_at, created_at) VALUES "
    ));
    for (index, job) in jobs.iter().enumerate() {
        query = query
            .sql(if index == 0 { "(" } else { ", (" })
            .text(job.events_table)
            .sql(", ")
            .big_int(job.event_id)
            .sql(", ")
            .text(job.reactor)
            .sql(", 'pending', 0, ");
        query = C::Backend::now_plus(query, TimeDelta::zero()).sql(", ");
        query = C::Backend::now_plus(query, TimeDelta::zero()).sql(")");
    }
    conn.execute(query.sql(wake_after))
        .map_err(storage("es_jobs"))?;
    Ok(())
}

/// What [`claim_jobs`] found due.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    /// The jobs claimed.
    pub(crate) jobs: Vec<ClaimedJob>,
    /// Jobs found due that were made dead instead: their worker's lease expired during their
    /// last allowed attempt.
    pub(crate) made_dead: usize,
}

impl Claimed {
    /// How many due jobs the claim found: none means none of its reactors' jobs is due.
    pub(crate) fn found(&self) -> usize {
        self.jobs.len() + self.made_dead
    }
}

/// Claims up to `claim.limit` due jobs of `claim.reactors` (or such jobs whose worker's lease
/// expired) for `claim.worker`, in one write transaction; other workers skip the rows it locks.
/// Expired jobs that already had their last attempt are made dead, not claimed. Times are the
/// database's clock (PostgreSQL, MySQL) or the process's (SQLite, one machine).
pub(crate) fn claim_jobs<C: Dialect>(conn: &mut C, claim: &JobClaim<'_>) -> Result<Claimed, Error> {
    if claim.reactors.is_empty() {
        return Ok(Claimed::default());
    }
    conn.jobs_transaction(|conn| {
        let now = |query| C::Backend::now_plus(query, TimeDelta::zero());
        let query = now(Statement::new(
            "SELECT id, events_table, event_id, reactor, attempts FROM es_jobs \
             WHERE ((state = 'pending' AND run_at <= ",
        ))
        .sql(") OR (state = 'running' AND locked_until < ");
        let query = now(query)
            .sql(")) AND reactor IN (")
            .bind_list(
                claim
                    .reactors
                    .iter()
                    .map(|reactor| C::Backend::text((*reactor).to_owned())),
            )
            .sql(") ORDER BY run_at, id LIMIT ")
            .big_int(i64::try_from(claim.limit).unwrap_or(i64::MAX))
            .sql(C::Backend::CLAIM_LOCK);
        let found: Vec<ClaimedJob> = conn.load(query).map_err(storage("es_jobs"))?;
        let (exhausted, mut claimed): (Vec<ClaimedJob>, Vec<ClaimedJob>) = found
            .into_iter()
            .partition(|job| job.attempts >= claim.max_attempts);
        for job in &exhausted {
            let error = format!(
                "attempt {} of {} did not finish: its worker stopped before its lease expired",
                job.attempts, claim.max_attempts
            );
            let dead = now(
                Statement::new("UPDATE es_jobs SET state = 'dead', last_error = ")
                    .text(error)
                    .sql(", locked_by = NULL, locked_until = NULL, finished_at = "),
            )
            .sql(" WHERE id = ")
            .big_int(job.id);
            conn.execute(dead).map_err(storage("es_jobs"))?;
            tracing::warn!(
                job_id = job.id,
                reactor = %job.reactor,
                attempts = job.attempts,
                "a job whose last attempt never finished is dead"
            );
        }
        let made_dead = exhausted.len();
        if claimed.is_empty() {
            return Ok(Claimed {
                jobs: claimed,
                made_dead,
            });
        }
        let update = C::Backend::now_plus(
            Statement::new(
                "UPDATE es_jobs SET state = 'running', attempts = attempts + 1, locked_by = ",
            )
            .text(claim.worker)
            .sql(", locked_until = "),
            claim.lease,
        )
        .sql(" WHERE id IN (")
        .bind_list(claimed.iter().map(|job| C::Backend::big_int(job.id)))
        .sql(")");
        conn.execute(update).map_err(storage("es_jobs"))?;
        for job in &mut claimed {
            job.attempts += 1;
        }
        Ok(Claimed {
            jobs: claimed,
            made_dead,
        })
    })
}

/// Extends the lease of the claims `held` (their ids and attempt numbers) of `worker` by `lease`
/// from now; returns how many were still held.
pub(crate) fn renew_jobs<C: Dialect>(
    conn: &mut C,
    worker: &str,
    held: &[(i64, i32)],
    lease: TimeDelta,
) -> Result<usize, Error> {
    if held.is_empty() {
        return Ok(0);
    }
    let query = C::Backend::now_plus(Statement::new("UPDATE es_jobs SET locked_until = "), lease)
        .sql(" WHERE ");
    let query = held_by(query, worker, held);
    conn.jobs_transaction(|conn| conn.execute(query).map_err(storage("es_jobs")))
}

/// Records that the claims `done` of `worker` completed, with one statement; returns how many
/// were still held (a claim taken over by another worker after its lease expired is not).
pub(crate) fn complete_jobs<C: Dialect>(
    conn: &mut C,
    worker: &str,
    done: &[(i64, i32)],
) -> Result<usize, Error> {
    if done.is_empty() {
        return Ok(0);
    }
    let query = C::Backend::now_plus(
        Statement::new(
            "UPDATE es_jobs SET state = 'done', last_error = NULL, locked_by = NULL, \
             locked_until = NULL, finished_at = ",
        ),
        TimeDelta::zero(),
    )
    .sql(" WHERE ");
    conn.execute(held_by(query, worker, done))
        .map_err(storage("es_jobs"))
}

/// Records the failed attempt of a claim of `worker`: pending again after `outcome`'s delay, or
/// dead. Returns whether the claim was still held.
pub(crate) fn fail_job<C: Dialect>(
    conn: &mut C,
    worker: &str,
    job: &ClaimedJob,
    outcome: &JobOutcome,
) -> Result<bool, Error> {
    let query = Statement::new("UPDATE es_jobs SET state = ");
    let query = match outcome {
        JobOutcome::Done => query.sql("'done', last_error = NULL, finished_at = "),
        JobOutcome::Retry { error, .. } => query
            .sql("'pending', last_error = ")
            .text(error.clone())
            .sql(", run_at = "),
        JobOutcome::Dead { error } => query
            .sql("'dead', last_error = ")
            .text(error.clone())
            .sql(", finished_at = "),
    };
    let delay = match outcome {
        JobOutcome::Retry { delay, .. } => *delay,
        JobOutcome::Done | JobOutcome::Dead { .. } => TimeDelta::zero(),
    };
    let query =
        C::Backend::now_plus(query, delay).sql(", locked_by = NULL, locked_until = NULL WHERE ");
    let held = conn
        .execute(held_by(query, worker, &[(job.id, job.attempts)]))
        .map_err(storage("es_jobs"))?;
    Ok(held > 0)
}

/// Gives claims back, unrun (graceful shutdown): pending again, their attempt not counted.
pub(crate) fn release_jobs<C: Dialect>(
    conn: &mut C,
    worker: &str,
    held: &[(i64, i32)],
) -> Result<usize, Error> {
    if held.is_empty() {
        return Ok(0);
    }
    let query = Statement::new(
        "UPDATE es_jobs SET state = 'pending', attempts = attempts - 1, locked_by = NULL, \
         locked_until = NULL WHERE ",
    );
    let query = held_by(query, worker, held);
    conn.jobs_transaction(|conn| conn.execute(query).map_err(storage("es_jobs")))
}

/// How many jobs of `reactors` are pending or running, due or not.
pub(crate) fn count_unfinished<C: Dialect>(
    conn: &mut C,
    reactors: &[&'static str],
) -> Result<u64, Error> {
    if reactors.is_empty() {
        return Ok(0);
    }
    let query = Statement::new(
        "SELECT COUNT(*) AS value FROM es_jobs WHERE state IN ('pending', 'running') \
         AND reactor IN (",
    )
    .bind_list(
        reactors
            .iter()
            .map(|reactor| C::Backend::text((*reactor).to_owned())),
    )
    .sql(")");
    let counted: Vec<Number> = conn.load(query).map_err(storage("es_jobs"))?;
    Ok(counted
        .first()
        .map_or(0, |Number(count)| u64::try_from(*count).unwrap_or(0)))
}

/// Appends the condition that selects the claims `held` (ids and attempt numbers) of `worker`,
/// and only while they are still its own: running, locked by it, at the attempt it claimed. The
/// attempt number is each claim's fencing token (every claim increments it), so a worker whose
/// lease expired and whose job was claimed again cannot record an outcome over the new attempt.
fn held_by<'a, DB: SqlDialect>(
    query: Statement<'a, DB>,
    worker: &str,
    held: &[(i64, i32)],
) -> Statement<'a, DB> {
    let mut by_attempt = std::collections::BTreeMap::<i32, Vec<i64>>::new();
    for &(id, attempt) in held {
        by_attempt.entry(attempt).or_default().push(id);
    }
    let mut query = query
        .sql("state = 'running' AND locked_by = ")
        .text(worker)
        .sql(" AND (");
    for (index, (attempt, ids)) in by_attempt.into_iter().enumerate() {
        query = query
            .sql(if index == 0 {
                "(attempts = "
            } else {
                " OR (attempts = "
            })
            .integer(attempt)
            .sql(" AND id IN (")
            .bind_list(ids.into_iter().map(DB::big_int))
            .sql("))");
    }
    query.sql(")")
}
