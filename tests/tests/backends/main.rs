//! Every backend-dependent behaviour, on every backend: the store (`store.rs`), commands
//! (`commands.rs`), the dispatcher, its reactors, jobs and projections (`dispatcher.rs`), the job
//! worker's leases, fences and recovery (`leases.rs`), draining and listing the job queue
//! (`queue.rs`), reliability under load (`reliability.rs`), and bad stored rows column by column
//! (`bad_rows.rs`).
//! SQLite always runs; PostgreSQL runs when `PG_DATABASE_URL` (or `DATABASE_URL`) is set; MySQL
//! when built with `--features es-tests/mysql` and `MYSQL_DATABASE_URL` is set. A skipped suite is
//! announced and its tests are listed as ignored; under `CI=true` a skipped suite is a failure.
//! With `ES_TESTS_FAIL_FAST=1` the first failing check ends the run (mutation testing: one
//! failure is all it needs to know).

mod bad_rows;
mod commands;
mod dispatcher;
mod leases;
mod newcomer;
mod queue;
#[cfg(feature = "nats")]
mod relay;
mod reliability;
mod store;
mod subscriptions;

use diesel::connection::SimpleConnection;
use es_core::{AppendOptions, Metadata};
use es_diesel::AggregateTable;
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::domain::{Note, Project, Task};
use es_tests::reactors::{Board, Post};
use libtest_mimic::{Arguments, Failed, Trial};

/// One behaviour check on one backend's database.
pub(crate) type Check<D> = fn(&D);

pub(crate) fn by(actor: &str) -> AppendOptions {
    AppendOptions::with_metadata(Metadata::by_actor(actor))
}

/// A child process, killed when dropped (a failing assertion must not leave it running).
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sets a stop flag when dropped: a check whose assertion fails inside a thread scope stops the
/// workers of that scope instead of waiting for them forever.
pub(crate) struct StopOnDrop<'a>(pub(crate) &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) fn execute<D: TestDb>(conn: &mut D::Conn, sql: &str) {
    conn.batch_execute(sql)
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The trials of one backend: every check on a fresh database of its own (`make(test name)`),
/// ignored with a banner when the backend is unavailable.
fn trials<D: TestDb + 'static>(
    make: impl Fn(&str) -> D + Send + Sync + Clone + 'static,
    skip: Option<&str>,
    extra: Vec<(&'static str, Check<D>)>,
) -> Vec<Trial>
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
    leases::LeaseDispatcher: es_diesel::Dispatch<D::Conn>,
    leases::OtherAppDispatcher: es_diesel::Dispatch<D::Conn>,
    leases::BothAppsDispatcher: es_diesel::Dispatch<D::Conn>,
    leases::PanicDispatcher: es_diesel::Dispatch<D::Conn>,
    leases::InTransactionDispatcher: es_diesel::Dispatch<D::Conn>,
    dispatcher::FeedDispatcher: es_diesel::Dispatch<D::Conn>,
    D::Conn: newcomer::PinboardDatabase,
    es_tests::subscriptions::SubscriptionDispatcher: es_diesel::Dispatch<D::Conn>,
{
    let checks = store::checks::<D>()
        .into_iter()
        .chain(commands::checks::<D>())
        .chain(dispatcher::checks::<D>())
        .chain(leases::checks::<D>())
        .chain(queue::checks::<D>())
        .chain(reliability::checks::<D>())
        .chain(bad_rows::checks::<D>())
        .chain(newcomer::checks::<D>())
        .chain(subscriptions::checks::<D>())
        .chain(extra)
        .map(|(name, check)| (name, check, skip.is_some()));
    let checks = checks.chain(relay_checks::<D>(skip.is_some()));
    let fail_fast = std::env::var("ES_TESTS_FAIL_FAST").as_deref() == Ok("1");
    let mut trials: Vec<Trial> = checks
        .map(|(name, check, ignored)| {
            let make = make.clone();
            let test = format!("{}::{name}", D::NAME);
            Trial::test(test.clone(), move || {
                if !fail_fast {
                    check(&make(name));
                } else if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    check(&make(name))
                }))
                .is_err()
                {
                    eprintln!("{test} failed; ES_TESTS_FAIL_FAST=1 ends the run");
                    std::process::exit(101);
                }
                Ok(())
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    if let Some(reason) = skip {
        eprintln!(
            "\n*** {} SUITE SKIPPED: {reason} ***\n",
            D::NAME.to_uppercase()
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            let reason = reason.to_owned();
            trials.push(Trial::test(
                format!("{}::suite_runs_in_ci", D::NAME),
                move || {
                    Err(Failed::from(format!(
                        "CI=true but the suite was skipped: {reason}"
                    )))
                },
            ));
        }
    }
    trials
}

/// The relay's checks on one backend, ignored without NATS (or without the backend).
#[cfg(feature = "nats")]
fn relay_checks<D: TestDb + 'static>(backend_skipped: bool) -> Vec<(&'static str, Check<D>, bool)>
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    es_tests::subscriptions::SubscriptionDispatcher: es_diesel::Dispatch<D::Conn>,
{
    let ignored = backend_skipped || es_tests::nats::nats_url().is_none();
    let no_server = es_tests::nats::NatsServer::binary().is_none();
    relay::checks::<D>()
        .into_iter()
        // SQLite has no server whose connections could close.
        .filter(|(name, _)| D::NAME != "sqlite" || !name.contains("database_connections_close"))
        .map(|(name, check)| {
            let needs_server = name.contains("nats_restart");
            (name, check, ignored || (needs_server && no_server))
        })
        .collect()
}

#[cfg(not(feature = "nats"))]
fn relay_checks<D: TestDb + 'static>(_: bool) -> Vec<(&'static str, Check<D>, bool)> {
    Vec::new()
}

/// The banner of a skipped NATS suite, and under `CI=true` a failing check.
fn nats_suite() -> Vec<Trial> {
    #[cfg(feature = "nats")]
    let (skip, server) = (
        es_tests::nats::nats_url()
            .is_none()
            .then_some("set NATS_URL to a NATS server with JetStream to run it"),
        es_tests::nats::NatsServer::binary().is_none(),
    );
    #[cfg(not(feature = "nats"))]
    let (skip, server) = (Some("built without feature `es-tests/nats`"), false);
    let Some(reason) = skip.or(server.then_some(
        "nats-server is not installed (NATS_SERVER or /usr/sbin/nats-server): the restart test \
         cannot start a server of its own",
    )) else {
        return Vec::new();
    };
    eprintln!("\n*** NATS RELAY SUITE SKIPPED: {reason} ***\n");
    if std::env::var("CI").as_deref() != Ok("true") {
        return Vec::new();
    }
    let reason = reason.to_owned();
    vec![Trial::test("nats::suite_runs_in_ci", move || {
        Err(Failed::from(format!(
            "CI=true but the suite was skipped: {reason}"
        )))
    })]
}

fn main() {
    let arguments = Arguments::from_args();
    let mut all = trials::<SqliteDb>(
        |_| SqliteDb::new(),
        None,
        vec![
            (
                "commands_in_immediate_transactions_never_collide",
                store::commands_in_immediate_transactions_never_collide,
            ),
            (
                "a_replay_in_a_stale_transaction_is_contention",
                store::a_replay_in_a_stale_transaction_is_contention,
            ),
        ],
    );
    all.extend(postgres_trials());
    all.extend(mysql_trials());
    all.extend(nats_suite());
    libtest_mimic::run(&arguments, all).exit();
}

#[cfg(feature = "postgres")]
fn postgres_trials() -> Vec<Trial> {
    use es_tests::backend::{PgDb, postgres_url};
    let url = postgres_url();
    let skip = url
        .is_none()
        .then_some("set PG_DATABASE_URL (or DATABASE_URL) to a PostgreSQL database to run it");
    let url = std::sync::Arc::new(url.unwrap_or_default());
    trials::<PgDb>(
        move |test| PgDb::new(&url, test),
        skip,
        vec![
            ("native_uuid_ids_work", store::native_uuid_ids_work),
            (
                "a_writer_that_waited_for_the_lock_appends_after_the_head",
                store::a_writer_that_waited_for_the_lock_appends_after_the_head,
            ),
            (
                "a_version_stored_first_by_another_writer_is_a_conflict",
                store::a_version_stored_first_by_another_writer_is_a_conflict,
            ),
            (
                "notifications_wake_idle_workers",
                dispatcher::notifications_wake_idle_workers,
            ),
        ],
    )
}

#[cfg(not(feature = "postgres"))]
fn postgres_trials() -> Vec<Trial> {
    eprintln!("\n*** POSTGRES SUITE SKIPPED: built without feature `es-tests/postgres` ***\n");
    Vec::new()
}

#[cfg(feature = "mysql")]
fn mysql_trials() -> Vec<Trial> {
    use es_tests::backend::{MysqlDb, mysql_url};
    let url = mysql_url();
    let skip = url
        .is_none()
        .then_some("set MYSQL_DATABASE_URL to a MySQL/MariaDB database to run it");
    let url = std::sync::Arc::new(url.unwrap_or_default());
    trials::<MysqlDb>(move |test| MysqlDb::new(&url, test), skip, Vec::new())
}

#[cfg(not(feature = "mysql"))]
fn mysql_trials() -> Vec<Trial> {
    eprintln!(
        "\n*** MYSQL SUITE SKIPPED: built without feature `es-tests/mysql` (needs libmariadb-dev); \
         run `cargo test --workspace --features es-tests/mysql` with MYSQL_DATABASE_URL set ***\n"
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        return vec![Trial::test("mysql::suite_runs_in_ci", || {
            Err(Failed::from(
                "CI=true but es-tests was built without feature `mysql`",
            ))
        })];
    }
    Vec::new()
}
