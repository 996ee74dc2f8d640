//! Durable jobs for async reactors, and the [`Worker`] that runs them.
//!
//! Each async reactor routed for an event becomes one row of `es_jobs`, inserted in the event's
//! write transaction: never before commit, never lost after it. Workers claim due jobs of the
//! reactors their dispatcher routes in a short write transaction (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL and MySQL, so that workers on several machines never claim the same job; SQLite's
//! write lock elsewhere), run them, and record the outcome.
//!
//! A claim holds its jobs for a lease, which the worker's heartbeat keeps extending while the
//! worker lives (from a thread and connection of its own), so a job is never run by two workers
//! at once while their workers are alive. A job whose worker died is claimed again once its
//! lease expires: delivery is at least once, and [`JobContext::idempotency_key`] lets a reactor
//! deduplicate. Every claim increments the job's attempt number, which fences its outcome: a
//! worker that lost its claim cannot overwrite the outcome of the attempt that replaced it.
//!
//! `queue.rs` holds the statements of writes and workers on `es_jobs`, `admin.rs` what an
//! operator lists, counts, retries and prunes, `worker.rs` the worker, `shift.rs` what it keeps
//! in memory and its pace, `options.rs` its options and stats.

pub(crate) mod admin;
pub(crate) mod options;
pub(crate) mod queue;
pub(crate) mod shift;
pub(crate) mod worker;

pub use self::options::{WorkerOptions, WorkerStats};
pub use self::worker::Worker;
