//! What a newcomer writes, with the public API of `es-core` and `es-diesel` only (issue #19): a
//! pinboard whose code is generic over the backend with one bound of its own, a trigger that runs
//! a typed diesel query on whichever backend it is given, typed application metadata (read in
//! `apply` and in a job, refused when missing, in the catalog), a portable time column, `?` on diesel's
//! errors and the store's in one function, no turbofish on the store, and a worker drained with
//! its jobs listed. Only the `TestDb` that hands out a fresh database comes from the suite.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use es_core::{Aggregate, AppendOptions, Apply, Event, EventContext, EventStore, Metadata};
use es_diesel::{
    Database, DieselStore, Dispatches, JobContext, JobFilter, JobState, ReactorError, Recorded,
    Stores, TriggerContext, UtcDateTime, Worker, WorkerOptions, dispatcher, with_connection,
};
use es_tests::backend::TestDb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Check;

mod schema {
    diesel::table! {
        use diesel::sql_types::*;
        use es_diesel::sql_types::UtcTime;

        stickies (id) {
            id -> BigInt,
            body -> Text,
            pinned -> Bool,
            written_at -> UtcTime,
            pinned_at -> Nullable<UtcTime>,
            pinned_from -> Nullable<Text>,
        }
    }

    diesel::table! {
        announcements (idempotency_key) {
            idempotency_key -> Text,
            line -> Text,
        }
    }
}

use schema::{announcements, stickies};

/// A sticky note on the board: an ordinary diesel model with two time columns.
#[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]
#[aggregate(table = schema::stickies)]
#[diesel(table_name = schema::stickies)]
pub(crate) struct Sticky {
    /// Its id.
    pub(crate) id: i64,
    /// What it says.
    pub(crate) body: String,
    /// Whether it is pinned (one at most).
    pub(crate) pinned: bool,
    /// When it was written.
    pub(crate) written_at: UtcDateTime,
    /// When it was last pinned.
    pub(crate) pinned_at: Option<UtcDateTime>,
    /// The screen it was last pinned from.
    pub(crate) pinned_from: Option<String>,
}

/// Where a pin comes from: the pinboard's own metadata, typed.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub(crate) struct PinContext {
    /// The screen the pin was made on.
    pub(crate) screen: String,
}

/// A sticky was written.
#[derive(Event, Serialize, Deserialize, JsonSchema)]
#[aggregate(Sticky)]
#[event(creates)]
pub(crate) struct StickyWritten {
    /// What it says.
    #[data_attributes]
    pub(crate) body: String,
}

/// A sticky was pinned.
#[derive(Event, Serialize, Deserialize, JsonSchema)]
#[aggregate(Sticky)]
#[event(metadata = PinContext)]
pub(crate) struct StickyPinned {}

/// A sticky was unpinned (another one was pinned).
#[derive(Event, Serialize, Deserialize, JsonSchema)]
#[aggregate(Sticky)]
pub(crate) struct StickyUnpinned {}

impl Apply<Sticky> for StickyWritten {
    fn apply(&self, sticky: &mut Sticky, event: &EventContext<'_>) {
        sticky.body.clone_from(&self.body);
        sticky.written_at = event.created_at.into();
    }
}

impl Apply<Sticky> for StickyPinned {
    fn apply(&self, sticky: &mut Sticky, event: &EventContext<'_>) {
        sticky.pinned = true;
        sticky.pinned_at = Some(event.created_at.into());
        let context = event.metadata.app::<PinContext>();
        sticky.pinned_from = context.ok().map(|context| context.screen);
    }
}

impl Apply<Sticky> for StickyUnpinned {
    fn apply(&self, sticky: &mut Sticky, _: &EventContext<'_>) {
        sticky.pinned = false;
    }
}

/// One pinned sticky at most: unpins the others, found with a typed query of its own.
pub(crate) fn unpin_the_others<C: Stores<Sticky>>(
    ctx: &mut TriggerContext<'_, C>,
    pinned: Recorded<'_, StickyPinned>,
) -> Result<(), ReactorError> {
    let this = *pinned.aggregate_id();
    let others: Vec<i64> = with_connection!(ctx.connection(), |conn| {
        stickies::table
            .filter(stickies::pinned.eq(true))
            .filter(stickies::id.ne(this))
            .select(stickies::id)
            .order(stickies::id)
            .load(conn)
    })?;
    for other in others {
        ctx.append::<Sticky>(&other, StickyUnpinned {}, &AppendOptions::default())?;
    }
    Ok(())
}

/// Announces a pin, after commit (the table stands in for a message); its key makes a retry
/// harmless.
pub(crate) fn announce<C: Database>(
    job: &mut JobContext<'_, C>,
    pinned: Recorded<'_, StickyPinned>,
) -> Result<(), ReactorError> {
    let key = job.idempotency_key();
    let context: PinContext = pinned.metadata().app()?;
    let line = format!(
        "sticky {} was pinned from the {}",
        pinned.aggregate_id(),
        context.screen
    );
    with_connection!(job.connection(), |conn| {
        diesel::insert_into(announcements::table)
            .values((
                announcements::idempotency_key.eq(&key),
                announcements::line.eq(&line),
            ))
            .execute(conn)
    })?;
    Ok(())
}

dispatcher! {
    /// The pinboard's routes.
    pub(crate) struct PinboardDispatcher;
    StickyPinned => trigger: [unpin_the_others], async: [announce];
}

/// A database the pinboard runs on, whichever backend it is: the one bound of its code.
pub(crate) trait PinboardDatabase:
    Database + Stores<Sticky> + Dispatches<PinboardDispatcher>
{
}

impl<C: Database + Stores<Sticky> + Dispatches<PinboardDispatcher>> PinboardDatabase for C {}

/// Pins sticky `id` and counts the pinned stickies, in one transaction: `?` on the store's errors
/// and on diesel's alike.
pub(crate) fn pin<C: PinboardDatabase>(
    conn: &mut C,
    id: i64,
    options: &AppendOptions,
) -> Result<i64, es_core::Error> {
    conn.transaction(|conn| {
        DieselStore::new(conn)
            .with_dispatcher(&PinboardDispatcher)
            .append(&id, StickyPinned {}, options)?;
        let pinned = with_connection!(conn, |conn| {
            stickies::table
                .filter(stickies::pinned.eq(true))
                .count()
                .get_result(conn)
        })?;
        Ok(pinned)
    })
}

/// The pinboard's tables on backend `backend` (`TestDb::NAME`): the time columns' types are the
/// ones `UtcTime` documents.
fn tables(backend: &str) -> [String; 2] {
    let (time, key) = match backend {
        "postgres" => ("TIMESTAMPTZ", "TEXT"),
        "mysql" => ("DATETIME(6)", "VARCHAR(255)"),
        _ => ("TEXT", "TEXT"),
    };
    [
        format!(
            "CREATE TABLE stickies (id BIGINT PRIMARY KEY NOT NULL, body TEXT NOT NULL, \
             pinned BOOLEAN NOT NULL, written_at {time} NOT NULL, pinned_at {time}, \
             pinned_from TEXT)"
        ),
        format!(
            "CREATE TABLE announcements (idempotency_key {key} PRIMARY KEY NOT NULL, \
             line TEXT NOT NULL)"
        ),
    ]
}

pub(crate) fn checks<D: TestDb>() -> Vec<(&'static str, Check<D>)>
where
    D::Conn: PinboardDatabase,
{
    vec![
        ("a_newcomers_pinboard_runs_generic_over_the_backend", |db| {
            let routes = PinboardDispatcher::ROUTES;
            let registry = es_core::Registry::global().unwrap();
            let catalog =
                es_core::catalog::Catalog::of_aggregates(registry, &[Sticky::NAME], routes)
                    .unwrap();
            let pinned = &catalog.aggregates[0].events[0];
            assert_eq!(pinned.tag, "sticky.sticky_pinned");
            let app = pinned.app_metadata.as_ref().expect("the catalog lists it");
            assert_eq!(app.rust_type, "PinContext");
            assert_eq!(app.fields[0].name, "screen");
            assert_eq!(app.fields[0].doc, "The screen the pin was made on.");
            let mut conn = db.connect();
            for table in tables(D::NAME) {
                conn.batch_execute(&table).unwrap();
            }
            pinboard(&mut conn).unwrap();
        }),
    ]
}

/// The newcomer's story, on any backend.
fn pinboard<C: PinboardDatabase>(conn: &mut C) -> Result<(), Box<dyn std::error::Error>> {
    es_diesel::create_tables::<_, Sticky>(conn)?;
    let mut store = DieselStore::new(&mut *conn).with_dispatcher(&PinboardDispatcher);
    for (id, body) in [(1, "slides"), (2, "rehearse"), (3, "travel")] {
        let body = body.to_owned();
        store.append(&id, StickyWritten { body }, &AppendOptions::default())?;
    }
    let from = |actor: &str, screen: &str| -> Result<AppendOptions, serde_json::Error> {
        let context = PinContext {
            screen: screen.to_owned(),
        };
        let metadata = Metadata::by_actor(actor).with_app(&context)?;
        Ok(AppendOptions::with_metadata(metadata))
    };
    let untyped = AppendOptions::with_metadata(Metadata::by_actor("eve").with_extra("screen", 7));
    let refused = pin(store.connection(), 2, &untyped).unwrap_err();
    assert!(
        matches!(
            refused,
            es_core::Error::InvalidMetadata {
                tag: "sticky.sticky_pinned",
                ..
            }
        ),
        "{refused}"
    );
    assert_eq!(
        store.version::<Sticky>(&2)?,
        1,
        "a refused pin writes nothing"
    );
    assert_eq!(pin(store.connection(), 1, &from("ann", "wall")?)?, 1);
    assert_eq!(
        pin(store.connection(), 3, &from("bob", "phone")?)?,
        1,
        "the trigger unpinned sticky 1"
    );

    let first: Sticky = store.load(&1)?.ok_or("sticky 1")?;
    let third: Sticky = store.load(&3)?.ok_or("sticky 3")?;
    assert!(!first.pinned && third.pinned);
    assert_eq!(
        third.pinned_from.as_deref(),
        Some("phone"),
        "apply read the typed metadata"
    );
    let history = store.history::<Sticky>(&1)?;
    let tags: Vec<&str> = history
        .iter()
        .map(|event| event.event_type.as_str())
        .collect();
    assert_eq!(
        tags,
        [
            "sticky.sticky_written",
            "sticky.sticky_pinned",
            "sticky.sticky_unpinned"
        ]
    );
    assert_eq!(
        *first.written_at, history[0].created_at,
        "the time column round-trips"
    );
    assert_eq!(first.pinned_at.as_deref(), Some(&history[1].created_at));
    let pinned_since: Vec<i64> = with_connection!(store.connection(), |conn| {
        stickies::table
            .filter(stickies::pinned_at.ge(first.pinned_at))
            .select(stickies::id)
            .order(stickies::id)
            .load(conn)
    })?;
    assert_eq!(pinned_since, [1, 3], "a time column compares in SQL");

    let conn = store.connection();
    let pending = JobFilter::default().state(JobState::Pending);
    assert_eq!(es_diesel::jobs(conn, &pending, 10)?.len(), 2);
    let worker = Worker::new(&PinboardDispatcher, WorkerOptions::default());
    assert_eq!(worker.drain(conn)?.completed, 2);
    assert!(es_diesel::jobs(conn, &pending, 10)?.is_empty());
    let lines: Vec<String> = with_connection!(conn, |conn| {
        announcements::table
            .select(announcements::line)
            .order(announcements::line)
            .load(conn)
    })?;
    assert_eq!(
        lines,
        [
            "sticky 1 was pinned from the wall",
            "sticky 3 was pinned from the phone"
        ],
        "the job read the typed metadata"
    );

    with_connection!(conn, |conn| diesel::delete(stickies::table).execute(conn))?;
    let replayed = DieselStore::new(conn).replay_all::<Sticky>(&mut |_| {})?;
    assert_eq!(replayed.aggregates, 3);
    let again: Option<Sticky> = DieselStore::new(conn).load(&1)?;
    assert_eq!(
        again,
        Some(first),
        "replay rebuilds the rows, times included"
    );
    Ok(())
}
