//! Reactors of the test domain: posts where only one is pinned (a trigger creating events on other
//! aggregates), a trigger that fails, a cycle, a flaky and slow async reactor, an async reactor
//! creating events, a projection, and a reactor for every event; and a second dispatcher whose
//! triggers handle the failures of what they do (`ForgivingDispatcher`).

use std::time::Duration;

use diesel::prelude::*;
use es_core::{Aggregate, AppendOptions, Apply, Event, EventContext, RecordedEvent};
use es_diesel::{
    AggregateTable, AnyEvent, Database, JobContext, ReactorError, Recorded, TriggerContext,
    dispatcher,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{Created, Project, Task};

/// The diesel schema of the posts and boards.
#[allow(missing_docs)]
pub mod schema {
    diesel::table! {
        posts (id) {
            id -> BigInt,
            title -> Text,
            description -> Text,
            published -> Bool,
            pinned -> Bool,
        }
    }

    diesel::table! {
        boards (id) {
            id -> BigInt,
            pinned_post -> Nullable<BigInt>,
        }
    }

    diesel::table! {
        reactions (idempotency_key, reactor, attempt) {
            idempotency_key -> Text,
            reactor -> Text,
            attempt -> Integer,
        }
    }

    diesel::table! {
        chaos_attempts (event_id, attempt, began) {
            event_id -> BigInt,
            attempt -> Integer,
            worker -> BigInt,
            began -> BigInt,
            ended -> Nullable<BigInt>,
            failed -> Nullable<Bool>,
        }
    }

    diesel::table! {
        feed (event_id, line) {
            event_id -> BigInt,
            line -> Text,
        }
    }
}

/// The statements creating the tables of this module (and the reactions log and feed), one each.
pub const TABLES: &[&str] = &[
    "CREATE TABLE posts (id BIGINT PRIMARY KEY NOT NULL, title VARCHAR(255) NOT NULL, \
     description TEXT NOT NULL, published BOOLEAN NOT NULL, pinned BOOLEAN NOT NULL)",
    "CREATE TABLE boards (id BIGINT PRIMARY KEY NOT NULL, pinned_post BIGINT)",
    "CREATE TABLE reactions (idempotency_key VARCHAR(255) NOT NULL, reactor VARCHAR(64) NOT NULL, \
     attempt INTEGER NOT NULL)",
    "CREATE TABLE feed (event_id BIGINT NOT NULL, line TEXT NOT NULL)",
    "CREATE TABLE chaos_attempts (event_id BIGINT NOT NULL, attempt INTEGER NOT NULL, \
     worker BIGINT NOT NULL, began BIGINT NOT NULL, ended BIGINT, failed BOOLEAN)",
];

/// One attempt of the `chaos` reactor, as it logged it: the job's event and attempt, the worker
/// process that ran it, and when it began and ended (microseconds of the machine's clock, which
/// every worker process of a test shares); `ended` and `failed` are unset when the attempt never
/// finished (its worker was killed).
#[derive(Queryable, Debug, Clone, Copy)]
pub struct ChaosAttempt {
    /// The job's event.
    pub event_id: i64,
    /// The attempt's number.
    pub attempt: i32,
    /// The process id of the worker that ran it.
    pub worker: i64,
    /// When it began.
    pub began: i64,
    /// When it ended, if it did.
    pub ended: Option<i64>,
    /// Whether it failed, if it ended.
    pub failed: Option<bool>,
}

/// A post.
#[derive(
    Aggregate, Queryable, Selectable, Insertable, Serialize, Default, Clone, Debug, PartialEq,
)]
#[aggregate(table = schema::posts)]
#[diesel(table_name = schema::posts)]
pub struct Post {
    /// The post's id.
    pub id: i64,
    /// Its title.
    pub title: String,
    /// What it is about.
    pub description: String,
    /// Whether readers see it.
    pub published: bool,
    /// Whether it is the pinned post.
    pub pinned: bool,
}

/// The board that knows which post is pinned.
#[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]
#[aggregate(table = schema::boards)]
#[diesel(table_name = schema::boards)]
pub struct Board {
    /// The board's id.
    pub id: i64,
    /// The pinned post.
    pub pinned_post: Option<i64>,
}

/// A post was written.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Post)]
#[event(creates)]
pub struct PostWritten {
    /// Its title (`boom` makes its trigger fail).
    #[data_attributes]
    pub title: String,
}

/// A post's title was changed.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Post)]
pub struct TitleChanged {
    /// The new title.
    #[data_attributes]
    pub title: String,
}

/// A post's description was changed.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Post)]
pub struct DescriptionChanged {
    /// The new description.
    #[data_attributes]
    pub description: String,
}

/// A post was published.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Post)]
pub struct Published {}

/// A post was unpublished.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Post)]
pub struct Unpublished {}

/// A post was pinned.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Post)]
pub struct Pinned {}

/// A post was unpinned.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Post)]
pub struct Unpinned {}

/// A board was opened.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Board)]
#[event(creates)]
pub struct BoardOpened {}

/// The board's pinned post changed.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Board)]
pub struct PinMoved {
    /// The newly pinned post.
    #[data_attributes]
    pub post: i64,
}

/// A project was pinged: its async reactor fails `failures` times, after sleeping `sleep_ms`.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Project)]
pub struct Pinged {
    /// How many attempts fail.
    #[data_attributes]
    pub failures: i32,
    /// How long each attempt takes (pings stored before it existed take no time).
    #[data_attributes]
    #[serde(default)]
    pub sleep_ms: u64,
}

/// A project answered a ping (created by an async reactor).
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Project)]
pub struct Ponged {}

/// A project was shaken: its async reactor fails at random, or always if `doomed`.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Project)]
pub struct Shaken {
    /// Whether every attempt of its reactor fails (its job ends dead).
    #[data_attributes]
    pub doomed: bool,
}

/// An event whose trigger creates another one of itself: a cycle.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Project)]
pub struct Looped {}

impl Apply<Post> for PostWritten {
    fn apply(&self, post: &mut Post, _: &EventContext<'_>) {
        post.title.clone_from(&self.title);
    }
}

impl Apply<Post> for TitleChanged {
    fn apply(&self, post: &mut Post, _: &EventContext<'_>) {
        post.title.clone_from(&self.title);
    }
}

impl Apply<Post> for DescriptionChanged {
    fn apply(&self, post: &mut Post, _: &EventContext<'_>) {
        post.description.clone_from(&self.description);
    }
}

impl Apply<Post> for Published {
    fn apply(&self, post: &mut Post, _: &EventContext<'_>) {
        post.published = true;
    }
}

impl Apply<Post> for Unpublished {
    fn apply(&self, post: &mut Post, _: &EventContext<'_>) {
        post.published = false;
    }
}

impl Apply<Post> for Pinned {
    fn apply(&self, post: &mut Post, _: &EventContext<'_>) {
        post.pinned = true;
    }
}

impl Apply<Post> for Unpinned {
    fn apply(&self, post: &mut Post, _: &EventContext<'_>) {
        post.pinned = false;
    }
}

impl Apply<Board> for BoardOpened {
    fn apply(&self, _: &mut Board, _: &EventContext<'_>) {}
}

impl Apply<Board> for PinMoved {
    fn apply(&self, board: &mut Board, _: &EventContext<'_>) {
        board.pinned_post = Some(self.post);
    }
}

impl Apply<Project> for Pinged {
    fn apply(&self, _: &mut Project, _: &EventContext<'_>) {}
}

impl Apply<Project> for Ponged {
    fn apply(&self, _: &mut Project, _: &EventContext<'_>) {}
}

impl Apply<Project> for Shaken {
    fn apply(&self, _: &mut Project, _: &EventContext<'_>) {}
}

impl Apply<Project> for Looped {
    fn apply(&self, _: &mut Project, _: &EventContext<'_>) {}
}

/// The board every test uses.
pub const BOARD: i64 = 1;

/// Only one pinned post: pinning one unpins the previous one, in the same transaction.
pub fn unpin_other_post<C: Database>(
    ctx: &mut TriggerContext<'_, C>,
    pinned: Recorded<'_, Pinned>,
) -> Result<(), ReactorError>
where
    Post: AggregateTable<C>,
    Board: AggregateTable<C>,
{
    let board = Board::load(ctx.connection(), &BOARD)?.ok_or("the board is not open")?;
    let post = *pinned.aggregate_id();
    if let Some(previous) = board.pinned_post.filter(|previous| *previous != post) {
        ctx.append::<Post>(&previous, Unpinned {}, &AppendOptions::default())?;
    }
    ctx.append::<Board>(&BOARD, PinMoved { post }, &AppendOptions::default())?;
    Ok(())
}

/// Fails on posts titled `boom`.
pub fn refuse_boom<C: Database>(
    _: &mut TriggerContext<'_, C>,
    written: Recorded<'_, PostWritten>,
) -> Result<(), ReactorError> {
    if written.title == "boom" {
        return Err("boom refused".into());
    }
    Ok(())
}

/// Creates another `Looped`: a cycle.
pub fn loop_again<C: Database>(
    ctx: &mut TriggerContext<'_, C>,
    looped: Recorded<'_, Looped>,
) -> Result<(), ReactorError>
where
    Project: AggregateTable<C>,
{
    ctx.append::<Project>(looped.aggregate_id(), Looped {}, &AppendOptions::default())?;
    Ok(())
}

/// What the test reactors write besides events — the reactions log and the feed — with their
/// values bound, never written into the SQL, on each connection type of the tests.
pub trait ReactorConnection: Database {
    /// Logs a side effect of `reactor` under its job's idempotency key.
    fn log_reaction(&mut self, key: &str, reactor: &str, attempt: i32) -> QueryResult<()>;
    /// Writes the feed's line for event `event_id`.
    fn write_feed(&mut self, event_id: i64, line: &str) -> QueryResult<()>;
    /// Logs the start of `attempt` on the job of event `event_id` by this process.
    fn begin_chaos_attempt(&mut self, event_id: i64, attempt: i32, began: i64) -> QueryResult<()>;
    /// Logs the end of the attempt that began at `began`, and whether it failed.
    fn end_chaos_attempt(
        &mut self,
        event_id: i64,
        attempt: i32,
        began: i64,
        failed: bool,
    ) -> QueryResult<()>;
    /// Every logged attempt of the `chaos` reactor, by event then attempt.
    fn chaos_attempts(&mut self) -> QueryResult<Vec<ChaosAttempt>>;
    /// Every row of `seen`, the subscription's handler's table, in the order the events came.
    fn seen(&mut self) -> QueryResult<Vec<crate::subscriptions::Seen>>;
}

macro_rules! reactor_connection {
    ($conn:ty) => {
        impl ReactorConnection for $conn {
            fn log_reaction(&mut self, key: &str, reactor: &str, attempt: i32) -> QueryResult<()> {
                use schema::reactions::dsl;
                diesel::insert_into(dsl::reactions)
                    .values((
                        dsl::idempotency_key.eq(key),
                        dsl::reactor.eq(reactor),
                        dsl::attempt.eq(attempt),
                    ))
                    .execute(self)
                    .map(drop)
            }

            fn write_feed(&mut self, event_id: i64, line: &str) -> QueryResult<()> {
                use schema::feed::dsl;
                diesel::insert_into(dsl::feed)
                    .values((dsl::event_id.eq(event_id), dsl::line.eq(line)))
                    .execute(self)
                    .map(drop)
            }

            fn begin_chaos_attempt(
                &mut self,
                event_id: i64,
                attempt: i32,
                began: i64,
            ) -> QueryResult<()> {
                use schema::chaos_attempts::dsl;
                diesel::insert_into(dsl::chaos_attempts)
                    .values((
                        dsl::event_id.eq(event_id),
                        dsl::attempt.eq(attempt),
                        dsl::worker.eq(i64::from(std::process::id())),
                        dsl::began.eq(began),
                    ))
                    .execute(self)
                    .map(drop)
            }

            fn end_chaos_attempt(
                &mut self,
                event_id: i64,
                attempt: i32,
                began: i64,
                failed: bool,
            ) -> QueryResult<()> {
                use schema::chaos_attempts::dsl;
                let this = dsl::chaos_attempts
                    .filter(dsl::event_id.eq(event_id))
                    .filter(dsl::attempt.eq(attempt))
                    .filter(dsl::began.eq(began));
                diesel::update(this)
                    .set((dsl::ended.eq(clock_micros()), dsl::failed.eq(failed)))
                    .execute(self)
                    .map(drop)
            }

            fn chaos_attempts(&mut self) -> QueryResult<Vec<ChaosAttempt>> {
                use schema::chaos_attempts::dsl;
                dsl::chaos_attempts
                    .order((dsl::event_id, dsl::attempt, dsl::began))
                    .load(self)
            }

            fn seen(&mut self) -> QueryResult<Vec<crate::subscriptions::Seen>> {
                diesel::sql_query(
                    "SELECT seq, event_id, tag, aggregate_id, version, doomed FROM seen \
                     ORDER BY seq",
                )
                .load(self)
            }
        }
    };
}

reactor_connection!(diesel::SqliteConnection);
#[cfg(feature = "postgres")]
reactor_connection!(diesel::PgConnection);
#[cfg(feature = "mysql")]
reactor_connection!(diesel::MysqlConnection);

/// Sleeps, logs its attempt, and fails while the attempt is within the event's `failures`.
pub fn flaky<C: ReactorConnection>(
    ctx: &mut JobContext<'_, C>,
    pinged: Recorded<'_, Pinged>,
) -> Result<(), ReactorError> {
    std::thread::sleep(Duration::from_millis(pinged.sleep_ms));
    let (key, attempt) = (ctx.idempotency_key(), ctx.attempt());
    ctx.connection().log_reaction(&key, "flaky", attempt)?;
    if attempt <= pinged.failures {
        return Err(format!(
            "attempt {attempt} of {} failing on purpose",
            pinged.failures
        )
        .into());
    }
    Ok(())
}

/// Microseconds since the epoch on this machine's clock.
pub fn clock_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Logs when each attempt begins and ends (`chaos_attempts`) and fails one attempt in five at
/// random — every attempt if the event is `doomed`; logs each success in the
/// reactions log under its job's idempotency key (a retried or re-run job may log twice: delivery
/// is at least once).
pub fn chaos<C: ReactorConnection>(
    ctx: &mut JobContext<'_, C>,
    shaken: Recorded<'_, Shaken>,
) -> Result<(), ReactorError> {
    let (event_id, attempt) = (ctx.job().event_id, ctx.attempt());
    let began = clock_micros();
    ctx.connection()
        .begin_chaos_attempt(event_id, attempt, began)?;
    let outcome: Result<(), ReactorError> = if shaken.doomed {
        Err("chaos: doomed".into())
    } else if fastrand::u8(0..5) == 0 {
        Err("chaos: a random failure".into())
    } else {
        let key = ctx.idempotency_key();
        ctx.connection()
            .log_reaction(&key, "chaos", attempt)
            .map_err(ReactorError::from)
    };
    ctx.connection()
        .end_chaos_attempt(event_id, attempt, began, outcome.is_err())?;
    outcome
}

/// Answers a ping with a `Ponged` event (caused by the ping).
pub fn pong<C: Database>(
    ctx: &mut JobContext<'_, C>,
    pinged: Recorded<'_, Pinged>,
) -> Result<(), ReactorError>
where
    Project: AggregateTable<C>,
{
    if pinged.failures == 0 {
        ctx.append::<Project>(pinged.aggregate_id(), Ponged {}, &AppendOptions::default())?;
    }
    Ok(())
}

/// Forwards every event to the "event bus" (the reactions log).
pub fn forward_to_event_bus<C: ReactorConnection>(
    ctx: &mut JobContext<'_, C>,
    event: &AnyEvent,
) -> Result<(), ReactorError> {
    let (key, attempt) = (ctx.idempotency_key(), ctx.attempt());
    let reactor = format!("bus:{}", event.event_type);
    Ok(ctx.connection().log_reaction(&key, &reactor, attempt)?)
}

thread_local! {
    /// The event ids the feed projections were given on this thread, in the order they came.
    static FEED_ARRIVALS: std::cell::RefCell<Vec<i64>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn note_feed_arrival(event_id: i64) {
    FEED_ARRIVALS.with_borrow_mut(|arrivals| arrivals.push(event_id));
}

/// The event ids the feed projections (`project_feed`, `task_feed`) were given on this thread
/// since the last call, in the order they came (a projection runs on the writer's thread).
pub fn take_feed_arrivals() -> Vec<i64> {
    FEED_ARRIVALS.take()
}

thread_local! {
    /// The event ids [`every_event`] was given on this thread, in the order they came.
    static EVERY_EVENT_ARRIVALS: std::cell::RefCell<Vec<i64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The event ids [`every_event`] was given on this thread since the last call, in order.
pub fn take_every_event_arrivals() -> Vec<i64> {
    EVERY_EVENT_ARRIVALS.take()
}

/// A projection of every event of every events table: it notes the ids it is given.
pub fn every_event<C>(_conn: &mut C, event: &AnyEvent) -> Result<(), ReactorError> {
    EVERY_EVENT_ARRIVALS.with_borrow_mut(|arrivals| arrivals.push(event.id));
    Ok(())
}

/// The projects' feed: one line per project event.
pub fn project_feed<C: ReactorConnection>(
    conn: &mut C,
    event: &RecordedEvent<<Project as Aggregate>::Id>,
) -> Result<(), ReactorError> {
    note_feed_arrival(event.id);
    let line = format!("{} of project {}", event.event_type, event.aggregate_id);
    Ok(conn.write_feed(event.id, &line)?)
}

/// The actor whose completions the tasks' feed refuses: a failing projection.
pub const REFUSED_BY_THE_FEED: &str = "refused-by-the-feed";

/// The tasks' feed: one line per completed task (it fails for [`REFUSED_BY_THE_FEED`]).
pub fn task_feed<C: ReactorConnection>(
    conn: &mut C,
    completed: Recorded<'_, crate::domain::Completed>,
) -> Result<(), ReactorError> {
    note_feed_arrival(completed.id());
    if completed.metadata().actor_id.as_deref() == Some(REFUSED_BY_THE_FEED) {
        return Err("the feed refuses this completion".into());
    }
    let line = format!(
        "task {} completed by {}",
        completed.aggregate_id(),
        completed.metadata().actor_id.as_deref().unwrap_or("nobody")
    );
    Ok(conn.write_feed(completed.id(), &line)?)
}

/// Opens a task for each written post (same id, same title). A task it cannot open is no reason to
/// refuse the post: the error is handled and the post written. An empty title breaks the tasks'
/// `CHECK` (the nested write fails in the database), and then the reactor just goes on; a title
/// `boom` makes [`refuse_boom_task`] fail after the task's event was stored and its job
/// ([`welcome_task`]) queued, and then the reactor notes the refusal in the reactions log, in the
/// same transaction.
pub fn open_task_for_post<C: ReactorConnection>(
    ctx: &mut TriggerContext<'_, C>,
    written: Recorded<'_, PostWritten>,
) -> Result<(), ReactorError>
where
    Task: AggregateTable<C>,
{
    let id = *written.aggregate_id();
    let title = written.title.clone();
    let opened = ctx.append::<Task>(&id, Created { title }, &AppendOptions::default());
    if opened.is_err() && written.title == "boom" {
        ctx.connection()
            .log_reaction(&format!("post {id}"), "open_task_for_post", 1)?;
    }
    Ok(())
}

/// Fails on tasks created with the title `boom`.
pub fn refuse_boom_task<C: Database>(
    _: &mut TriggerContext<'_, C>,
    created: Recorded<'_, Created>,
) -> Result<(), ReactorError> {
    if created.title == "boom" {
        return Err("boom task refused".into());
    }
    Ok(())
}

/// Welcomes a task, after commit (does nothing: its job is what the tests look at).
pub fn welcome_task<C: Database>(
    _: &mut JobContext<'_, C>,
    _: Recorded<'_, Created>,
) -> Result<(), ReactorError> {
    Ok(())
}

/// Writes to a table that does not exist, ignores the error and returns `Ok`: on PostgreSQL the
/// failed statement has aborted the write transaction.
pub fn ignore_failed_sql<C: Database>(
    ctx: &mut TriggerContext<'_, C>,
    _: Recorded<'_, TitleChanged>,
) -> Result<(), ReactorError> {
    let written = ctx
        .connection()
        .batch_execute("INSERT INTO no_such_table (id) VALUES (1)");
    match written {
        Ok(()) => Err("no_such_table exists".into()),
        Err(_) => Ok(()),
    }
}

dispatcher! {
    /// Routes whose triggers handle the failures of what they do, and no catch-all job: a write
    /// whose triggers all succeed or handle their errors commits with no statement after them.
    pub struct ForgivingDispatcher;
    PostWritten => trigger: [open_task_for_post -> [Created]];
    Created => async: [welcome_task], trigger: [refuse_boom_task];
    TitleChanged => trigger: [ignore_failed_sql];
}

dispatcher! {
    /// The routes of the test domain.
    pub struct TestDispatcher;
    Pinned => trigger: [unpin_other_post -> [Unpinned, PinMoved]];
    PostWritten => trigger: [refuse_boom];
    Looped => trigger: [loop_again -> [Looped]];
    Pinged => async: [flaky, pong -> [Ponged]];
    Shaken => async: [chaos];
    crate::domain::Completed => project: [task_feed];
    Project::* => project: [project_feed];
    * => async: [forward_to_event_bus];
}
