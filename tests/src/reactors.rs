//! Reactors of the test domain: posts where only one is pinned (a trigger creating events on other
//! aggregates), a trigger that fails, a cycle, a flaky and slow async reactor, an async reactor
//! creating events, a projection, and a reactor for every event.

use std::time::Duration;

use diesel::prelude::*;
use es_core::{Aggregate, AppendOptions, Apply, Event, EventContext, RecordedEvent};
use es_diesel::{
    AggregateTable, AnyEvent, Database, JobContext, ReactorError, Recorded, TriggerContext,
    dispatcher,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::Project;

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
}

/// The statements creating the tables of this module (and the reactions log and feed), one each.
pub const TABLES: &[&str] = &[
    "CREATE TABLE posts (id BIGINT PRIMARY KEY NOT NULL, title VARCHAR(255) NOT NULL, \
     description TEXT NOT NULL, published BOOLEAN NOT NULL, pinned BOOLEAN NOT NULL)",
    "CREATE TABLE boards (id BIGINT PRIMARY KEY NOT NULL, pinned_post BIGINT)",
    "CREATE TABLE reactions (idempotency_key VARCHAR(255) NOT NULL, reactor VARCHAR(64) NOT NULL, \
     attempt INTEGER NOT NULL)",
    "CREATE TABLE feed (event_id BIGINT NOT NULL, line VARCHAR(255) NOT NULL)",
];

/// A post.
#[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]
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

/// A project was shaken: its async reactor fails at random.
#[derive(Event, Serialize, Deserialize, Debug, Clone, JsonSchema)]
#[aggregate(Project)]
pub struct Shaken {}

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

fn log_reaction<C: Database>(
    conn: &mut C,
    key: &str,
    reactor: &str,
    attempt: i32,
) -> Result<(), ReactorError> {
    conn.batch_execute(&format!(
        "INSERT INTO reactions (idempotency_key, reactor, attempt) VALUES ('{key}', '{reactor}', \
         {attempt})"
    ))?;
    Ok(())
}

/// Sleeps, logs its attempt, and fails while the attempt is within the event's `failures`.
pub fn flaky<C: Database>(
    ctx: &mut JobContext<'_, C>,
    pinged: Recorded<'_, Pinged>,
) -> Result<(), ReactorError> {
    std::thread::sleep(Duration::from_millis(pinged.sleep_ms));
    let (key, attempt) = (ctx.idempotency_key(), ctx.attempt());
    log_reaction(ctx.connection(), &key, "flaky", attempt)?;
    if attempt <= pinged.failures {
        return Err(format!(
            "attempt {attempt} of {} failing on purpose",
            pinged.failures
        )
        .into());
    }
    Ok(())
}

/// Fails one attempt in five at random; logs each success in the reactions log under its job's
/// idempotency key (a retried or re-run job may log twice: delivery is at least once).
pub fn chaos<C: Database>(
    ctx: &mut JobContext<'_, C>,
    _: Recorded<'_, Shaken>,
) -> Result<(), ReactorError> {
    if fastrand::u8(0..5) == 0 {
        return Err("chaos: a random failure".into());
    }
    let (key, attempt) = (ctx.idempotency_key(), ctx.attempt());
    log_reaction(ctx.connection(), &key, "chaos", attempt)
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
pub fn forward_to_event_bus<C: Database>(
    ctx: &mut JobContext<'_, C>,
    event: &AnyEvent,
) -> Result<(), ReactorError> {
    let (key, attempt) = (ctx.idempotency_key(), ctx.attempt());
    log_reaction(
        ctx.connection(),
        &key,
        &format!("bus:{}", event.event_type),
        attempt,
    )
}

/// The projects' feed: one line per project event.
pub fn project_feed<C: Database>(
    conn: &mut C,
    event: &RecordedEvent<<Project as Aggregate>::Id>,
) -> Result<(), ReactorError> {
    conn.batch_execute(&format!(
        "INSERT INTO feed (event_id, line) VALUES ({}, '{} of project {}')",
        event.id, event.event_type, event.aggregate_id
    ))?;
    Ok(())
}

/// The actor whose completions the tasks' feed refuses: a failing projection.
pub const REFUSED_BY_THE_FEED: &str = "refused-by-the-feed";

/// The tasks' feed: one line per completed task (it fails for [`REFUSED_BY_THE_FEED`]).
pub fn task_feed<C: Database>(
    conn: &mut C,
    completed: Recorded<'_, crate::domain::Completed>,
) -> Result<(), ReactorError> {
    if completed.metadata().actor_id.as_deref() == Some(REFUSED_BY_THE_FEED) {
        return Err("the feed refuses this completion".into());
    }
    conn.batch_execute(&format!(
        "INSERT INTO feed (event_id, line) VALUES ({}, 'task {} completed by {}')",
        completed.id(),
        completed.aggregate_id(),
        completed.metadata().actor_id.as_deref().unwrap_or("nobody")
    ))?;
    Ok(())
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
