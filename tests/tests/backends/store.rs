//! The store: its contract, atomicity, concurrency, replay stories, UUID ids and corrupt rows.

use std::thread;

use diesel::connection::SimpleConnection;

use es_core::{
    AsOf, CommandError, Conflicted, Error, EventFilter, EventStore, OnBadHistory, retry_on_conflict,
};
use es_diesel::{AggregateTable, DieselStore, verify};
use es_diesel::{DriftKind, FieldDrift, TextUuid};
use es_tests::backend::{TestConnection, TestDb};
use es_tests::commands::{UpdatePost, WritePost};
use es_tests::contract;
use es_tests::domain::{
    Completed, Created, Destroyed, Note, NoteWritten, Project, ProjectStarted, Task, TitleUpdated,
};
use es_tests::reactors::{Post, PostWritten, TitleChanged};

use crate::{Check, by, execute};

/// Aggregates keyed by UUIDs (stored as text) append, load, replay and time-travel.
fn uuid_ids_work<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    let ids: Vec<TextUuid> = (0..3).map(|_| TextUuid::new_v4()).collect();
    for id in &ids {
        store
            .append(
                id,
                NoteWritten {
                    body: id.to_string(),
                },
                &by("ann"),
            )
            .unwrap();
    }
    for id in &ids {
        let note: Note = store.load(id).unwrap().unwrap();
        assert_eq!(note.body, id.to_string());
        let history = EventStore::<Note>::history(&mut store, id).unwrap();
        assert_eq!(history[0].aggregate_id, *id);
    }
    execute::<D>(store.connection(), "DELETE FROM notes");
    let done = EventStore::<Note>::replay_all(&mut store, &mut |_| {}).unwrap();
    assert_eq!(done.aggregates, 3);
    let note: Note = store.load(&ids[1]).unwrap().unwrap();
    assert_eq!(note.body, ids[1].to_string());
}

/// A failing save (a CHECK constraint of the user's table) rolls back the events already inserted.
fn a_failing_save_leaves_nothing<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    store
        .append(
            &1,
            Created {
                title: "Keep".into(),
            },
            &by("ann"),
        )
        .unwrap();
    let error = store
        .append(
            &1,
            TitleUpdated {
                title: String::new(),
            },
            &by("ann"),
        )
        .unwrap_err();
    assert!(
        matches!(error, Error::Storage { table: "tasks", .. }),
        "{error}"
    );
    assert_eq!(
        EventStore::<Task>::history(&mut store, &1).unwrap().len(),
        1
    );
    let task: Task = store.load(&1).unwrap().unwrap();
    assert_eq!(task.title, "Keep");
}

/// The store joins the caller's transaction: rolled back with it, committed with it.
fn appends_join_the_callers_transaction<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let rolled_back =
        diesel::Connection::transaction::<(), diesel::result::Error, _>(&mut conn, |conn| {
            DieselStore::new(&mut *conn)
                .append(
                    &1,
                    Created {
                        title: "Lost".into(),
                    },
                    &by("ann"),
                )
                .unwrap();
            conn.batch_execute("INSERT INTO project_rows (id, name) VALUES (9, 'lost')")?;
            Err(diesel::result::Error::RollbackTransaction)
        });
    assert!(rolled_back.is_err());
    let mut store = DieselStore::new(&mut conn);
    assert_eq!(EventStore::<Task>::load(&mut store, &1).unwrap(), None);
    assert!(
        EventStore::<Task>::history(&mut store, &1)
            .unwrap()
            .is_empty()
    );

    diesel::Connection::transaction::<(), diesel::result::Error, _>(&mut conn, |conn| {
        DieselStore::new(&mut *conn)
            .append(
                &1,
                Created {
                    title: "Kept".into(),
                },
                &by("ann"),
            )
            .unwrap();
        conn.batch_execute("INSERT INTO project_rows (id, name) VALUES (9, 'kept')")
    })
    .unwrap();
    let task: Task = DieselStore::new(&mut conn).load(&1).unwrap().unwrap();
    assert_eq!(task.title, "Kept");
}

/// What a request's own transaction fails with: diesel's errors and the store's. It is
/// [`Conflicted`], so that `retry_on_conflict` runs the whole transaction again when it collided
/// with another.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// Beginning or ending the transaction failed.
    Diesel(diesel::result::Error),
    /// The command failed.
    Command(CommandError),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Diesel(error) => error.fmt(f),
            Self::Command(error) => error.fmt(f),
        }
    }
}

impl From<diesel::result::Error> for RequestError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Diesel(error)
    }
}

impl From<CommandError> for RequestError {
    fn from(error: CommandError) -> Self {
        Self::Command(error)
    }
}

impl Conflicted for RequestError {
    fn is_conflict(&self) -> bool {
        matches!(self, Self::Command(error) if error.is_conflict())
    }
}

/// Runs a request's work in a transaction of the caller's (diesel's `transaction`, SQLite's
/// `immediate_transaction`).
pub(crate) type InTransaction<C> =
    fn(&mut C, &mut dyn FnMut(&mut C) -> Result<(), RequestError>) -> Result<(), RequestError>;

/// 4 threads × 50 commands retitling one post, each command in a transaction of the caller's that
/// the store joins, the whole transaction retried on conflict: every command lands once, each
/// thread's in its order. Returns how many attempts were retried.
pub(crate) fn requests_in_transactions_land<D: TestDb>(
    db: &D,
    in_transaction: InTransaction<D::Conn>,
) -> usize
where
    Post: AggregateTable<D::Conn>,
{
    const THREADS: usize = 4;
    const REQUESTS: usize = 50;
    let mut conn = db.connect();
    let title = "hot".to_owned();
    DieselStore::new(&mut conn)
        .execute(&WritePost { id: 1, title }, &by("author"))
        .unwrap();
    let retries: usize = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                scope.spawn(move || {
                    let mut conn = db.connect();
                    let mut attempts = 0;
                    for request in 0..REQUESTS {
                        let retitle = UpdatePost {
                            id: 1,
                            title: Some(format!("{thread}-{request}")),
                            ..UpdatePost::default()
                        };
                        let actor = format!("thread-{thread}");
                        retry_on_conflict(1_000, || {
                            attempts += 1;
                            in_transaction(&mut conn, &mut |conn| {
                                DieselStore::new(conn).execute(&retitle, &by(&actor))?;
                                Ok(())
                            })
                        })
                        .unwrap_or_else(|error| panic!("{actor}, request {request}: {error}"));
                    }
                    attempts - REQUESTS
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .sum()
    });
    let mut store = DieselStore::new(&mut conn);
    let history = EventStore::<Post>::history(&mut store, &1).unwrap();
    let versions: Vec<i64> = history.iter().map(|event| event.version).collect();
    let expected: Vec<i64> = (1..=(1 + THREADS * REQUESTS) as i64).collect();
    assert_eq!(versions, expected);
    for thread in 0..THREADS {
        let actor = format!("thread-{thread}");
        let titles: Vec<String> = history
            .iter()
            .filter(|event| event.metadata.actor_id.as_deref() == Some(&actor))
            .map(|event| event.data_json().unwrap()["title"].to_string())
            .collect();
        let wanted: Vec<String> = (0..REQUESTS)
            .map(|request| format!("\"{thread}-{request}\""))
            .collect();
        assert_eq!(titles, wanted, "the requests of {actor}, in order");
    }
    let stored: Option<Post> = store.load(&1).unwrap();
    assert_eq!(store.replay(&1).unwrap(), stored);
    retries
}

/// Commands in the caller's own diesel transactions (`Connection::transaction`: a deferred
/// `BEGIN` on SQLite, whose upgrade to a write fails when another connection wrote first) all
/// land under contention: a collision is a conflict, retried whole by `retry_on_conflict`.
fn commands_in_the_callers_transactions_land_under_contention<D: TestDb>(db: &D)
where
    Post: AggregateTable<D::Conn>,
{
    let retries = requests_in_transactions_land(db, |conn, work| {
        diesel::Connection::transaction(conn, |conn| work(conn))
    });
    eprintln!(
        "{}: 200 requests in the caller's transactions, {retries} retried",
        D::NAME
    );
}

/// A row inserted by hand into an events table with the next free id (`MAX(id) + 1`, the id
/// SQLite gives a row inserted without one) takes the position the store allocates next: the next
/// append fails with a storage error of that events table saying so and how to move the position,
/// not a conflict, so `retry_on_conflict` does not run it again. Once the position is moved past
/// it, as the error says, appends to every events table go on, and every id is unique.
fn a_position_taken_by_hand_is_a_storage_error<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    store
        .append(&1, Created { title: "t".into() }, &by("ann"))
        .unwrap();
    let taken = store
        .connection()
        .count("SELECT MAX(id) AS value FROM task_events")
        + 1;
    execute::<D>(
        store.connection(),
        &format!(
            "INSERT INTO task_events (id, aggregate_id, version, type, data, metadata, \
             created_at) VALUES ({taken}, 2, 1, 'task.created', '{{\"title\": \"imported\"}}', \
             '{{}}', {})",
            D::TIMESTAMP_LITERAL
        ),
    );
    let mut attempts = 0;
    let error = retry_on_conflict(5, || {
        attempts += 1;
        store.append(&1, TitleUpdated { title: "u".into() }, &by("ann"))
    })
    .unwrap_err();
    assert_eq!(attempts, 1, "not retried: {error}");
    assert!(
        matches!(
            error,
            Error::Storage {
                table: "task_events",
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    let fix = D::SET_POSITION.replace("{}", "<highest id>");
    assert!(message.contains("position"), "{message}");
    assert!(message.contains(&fix), "{message}");
    assert_eq!(
        EventStore::<Task>::history(&mut store, &1).unwrap().len(),
        1
    );

    execute::<D>(
        store.connection(),
        &D::SET_POSITION.replace("{}", &taken.to_string()),
    );
    store
        .append(&1, TitleUpdated { title: "u".into() }, &by("ann"))
        .unwrap();
    store
        .append(&1, ProjectStarted { name: "p".into() }, &by("ann"))
        .unwrap();
    let mut ids: Vec<i64> = EventStore::<Task>::events(&mut store, &EventFilter::default())
        .unwrap()
        .iter()
        .chain(&EventStore::<Project>::events(&mut store, &EventFilter::default()).unwrap())
        .map(|event| event.id)
        .collect();
    assert_eq!(ids.len(), 4);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "unique positions: {ids:?}");
}

/// A unique key of the app's own on an aggregate's table (the posts' titles): a write that breaks
/// it, creating a row or updating one, is a storage error of that table and writes nothing — no
/// event, no row, no other row changed.
fn an_apps_unique_key_refuses_a_duplicate_and_writes_nothing<D: TestDb>(db: &D)
where
    Post: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    execute::<D>(
        &mut conn,
        "CREATE UNIQUE INDEX posts_title ON posts (title)",
    );
    let mut store = DieselStore::new(&mut conn);
    for (id, title) in [(1, "first"), (2, "second")] {
        let title = title.to_owned();
        store
            .append(&id, PostWritten { title }, &by("ann"))
            .unwrap();
    }
    let rows = |store: &mut DieselStore<'_, D::Conn>| -> Vec<Option<Post>> {
        (1..=3).map(|id| store.load(&id).unwrap()).collect()
    };
    let before = rows(&mut store);
    let title = "first".to_owned();
    let created = store
        .append(&3, PostWritten { title }, &by("bob"))
        .unwrap_err();
    let title = "first".to_owned();
    let updated = store
        .append(&2, TitleChanged { title }, &by("bob"))
        .unwrap_err();
    for error in [created, updated] {
        assert!(
            matches!(error, Error::Storage { table: "posts", .. }),
            "{error}"
        );
    }
    assert_eq!(rows(&mut store), before);
    for (id, events) in [(1, 1), (2, 1), (3, 0)] {
        let history = EventStore::<Post>::history(&mut store, &id).unwrap();
        assert_eq!(history.len(), events, "events of post {id}");
    }
    let title = "third".to_owned();
    store.append(&3, PostWritten { title }, &by("bob")).unwrap();
}

/// Threads appending to one aggregate: no lost or duplicated version, and the stored aggregate
/// equals the replay of its events.
fn concurrent_writers_on_one_aggregate<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
{
    const THREADS: usize = 4;
    const APPENDS: usize = 25;
    let mut conn = db.connect();
    DieselStore::new(&mut conn)
        .append(&1, Created { title: "t".into() }, &by("ann"))
        .unwrap();
    thread::scope(|scope| {
        for thread in 0..THREADS {
            scope.spawn(move || {
                let mut conn = db.connect();
                let mut store = DieselStore::new(&mut conn);
                for append in 0..APPENDS {
                    let title = format!("t{thread}-{append}");
                    store
                        .append(&1, TitleUpdated { title }, &by("bob"))
                        .unwrap();
                }
            });
        }
    });
    let mut store = DieselStore::new(&mut conn);
    let history = EventStore::<Task>::history(&mut store, &1).unwrap();
    let versions: Vec<i64> = history.iter().map(|event| event.version).collect();
    let expected: Vec<i64> = (1..=(1 + THREADS * APPENDS) as i64).collect();
    assert_eq!(versions, expected);
    let last = history.last().unwrap().version;
    let stored: Option<Task> = store.load(&1).unwrap();
    let travelled = store.state_as_of(&1, AsOf::Version(last)).unwrap();
    assert_eq!(stored, travelled);
    assert_eq!(store.replay(&1).unwrap(), stored);
}

/// Threads creating the same aggregate: exactly one wins, the others get a typed error.
fn concurrent_creations_of_one_aggregate<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
{
    let results: Vec<Result<(), Error>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|thread| {
                scope.spawn(move || {
                    let mut conn = db.connect();
                    DieselStore::new(&mut conn)
                        .append(
                            &7,
                            Created {
                                title: format!("by {thread}"),
                            },
                            &by("ann"),
                        )
                        .map(|_| ())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let winners = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for result in results.iter().filter_map(|result| result.as_ref().err()) {
        assert!(
            matches!(
                result,
                Error::Conflict { .. } | Error::AlreadyExists { .. } | Error::Contention { .. }
            ),
            "{result}"
        );
    }
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    assert_eq!(
        EventStore::<Task>::history(&mut store, &7).unwrap().len(),
        1
    );
}

/// The talk's backfill: a column added later (here: emptied) is filled by replaying the events.
fn replay_backfills_a_new_column<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    for id in 1..=30 {
        store
            .append(
                &id,
                Created {
                    title: format!("t{id}"),
                },
                &by("ann"),
            )
            .unwrap();
        if id % 3 == 0 {
            store.append(&id, Completed {}, &by("bob")).unwrap();
        }
    }
    let before: Vec<Option<Task>> = (1..=30).map(|id| store.load(&id).unwrap()).collect();
    execute::<D>(
        store.connection(),
        "UPDATE tasks SET completed_at = NULL, completed_by = NULL",
    );
    let mut batches = 0;
    let done = EventStore::<Task>::replay_all(&mut store, &mut |_| batches += 1).unwrap();
    assert_eq!((done.aggregates, done.events), (30, 40));
    let after: Vec<Option<Task>> = (1..=30).map(|id| store.load(&id).unwrap()).collect();
    assert_eq!(before, after);
    assert!(after[2].as_ref().unwrap().completed_at.is_some());
}

/// Rows deleted by hand come back from their events; small batches walk every aggregate.
fn replay_restores_deleted_rows<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).replay_batch(7);
    for id in 1..=20 {
        store
            .append(
                &id,
                Created {
                    title: format!("t{id}"),
                },
                &by("ann"),
            )
            .unwrap();
    }
    let before: Vec<Option<Task>> = (1..=20).map(|id| store.load(&id).unwrap()).collect();
    execute::<D>(store.connection(), "DELETE FROM tasks");
    let mut batches = Vec::new();
    EventStore::<Task>::replay_all(&mut store, &mut |progress| {
        batches.push(progress.aggregates)
    })
    .unwrap();
    assert_eq!(batches, [7, 14, 20]);
    let after: Vec<Option<Task>> = (1..=20).map(|id| store.load(&id).unwrap()).collect();
    assert_eq!(before, after);
}

/// `verify` replays every task in memory and lists, field by field, the rows that are not what
/// their events build: an edited field, a missing row, a row of a destroyed task, events that
/// do not replay; `event_counts` counts the events per day and type.
fn verify_lists_drift_field_by_field<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    for id in 1..=30 {
        let title = format!("t{id}");
        store.append(&id, Created { title }, &by("ann")).unwrap();
        if id % 3 == 0 {
            store.append(&id, Completed {}, &by("bob")).unwrap();
        }
    }
    store.append(&9, Destroyed {}, &by("bob")).unwrap();
    let mut drifts = Vec::new();
    let clean = es_diesel::verify::<_, Task>(
        store.connection(),
        &mut |drift| drifts.push(drift.clone()),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        (clean.aggregates, clean.events, clean.drifted, drifts.len()),
        (30, 41, 0, 0)
    );

    execute::<D>(
        store.connection(),
        "UPDATE tasks SET title = 'edited by hand' WHERE id = 2; \
         DELETE FROM tasks WHERE id = 5; \
         INSERT INTO tasks (id, title) VALUES (9, 'ghost'); \
         UPDATE task_events SET type = 'task.archived' WHERE aggregate_id = 7",
    );
    let mut reports = Vec::new();
    let found = es_diesel::verify::<_, Task>(
        store.connection(),
        &mut |drift| drifts.push(drift.clone()),
        &mut |report| reports.push(*report),
    )
    .unwrap();
    assert_eq!((found.aggregates, found.drifted), (30, 4));
    assert_eq!(reports.last(), Some(&found));
    let kinds: Vec<(&str, &DriftKind)> = drifts
        .iter()
        .map(|drift| (drift.aggregate_id.as_str(), &drift.kind))
        .collect();
    let edited = DriftKind::Fields(vec![FieldDrift {
        field: "title".into(),
        stored: "edited by hand".into(),
        replayed: "t2".into(),
    }]);
    assert_eq!(kinds[0], ("2", &edited));
    assert_eq!(kinds[1], ("5", &DriftKind::MissingRow));
    assert!(
        matches!(kinds[2], ("7", DriftKind::Unreplayable { error })
            if error.contains("task.archived") && error.contains("task_events")),
        "{kinds:?}"
    );
    assert_eq!(kinds[3], ("9", &DriftKind::UnexpectedRow));

    let counts = es_diesel::event_counts::<_, Task>(store.connection()).unwrap();
    let count = |tag: &str| -> i64 {
        counts
            .iter()
            .filter(|count| count.event_type == tag)
            .map(|count| count.events)
            .sum()
    };
    let tags = [
        "task.created",
        "task.completed",
        "task.destroyed",
        "task.archived",
    ];
    assert_eq!(tags.map(count), [29, 10, 1, 1]);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        counts
            .iter()
            .all(|count| count.day.len() == 10 && count.day <= today),
        "{counts:?}"
    );

    // A replay repairs what it can (the edited row, the missing one, the row of a destroyed
    // task) and leaves the unreplayable one as it is.
    let replayed =
        EventStore::<Task>::replay_all_with(&mut store, OnBadHistory::Skip, &mut |_| {}).unwrap();
    assert_eq!(replayed.progress.skipped, 1);
    let after = es_diesel::verify::<_, Task>(store.connection(), &mut |_| {}, &mut |_| {}).unwrap();
    assert_eq!(
        (after.aggregates, after.drifted, after.unreplayable),
        (30, 1, 1)
    );
    let ghost: Option<Task> = store.load(&9).unwrap();
    assert_eq!(ghost, None);
}

/// Events of several aggregates share one global position, in the order they were written.
fn positions_are_global_across_events_tables<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    let mut written = Vec::new();
    for id in 1..=3 {
        let task = store
            .append(&id, Created { title: "t".into() }, &by("ann"))
            .unwrap();
        written.push(task.events[0].id);
        let project = store
            .append(&id, ProjectStarted { name: "p".into() }, &by("ann"))
            .unwrap();
        written.push(project.events[0].id);
    }
    assert!(
        written.windows(2).all(|pair| pair[0] < pair[1]),
        "{written:?}"
    );
    let mut stored: Vec<i64> = EventStore::<Task>::events(&mut store, &Default::default())
        .unwrap()
        .iter()
        .chain(&EventStore::<Project>::events(&mut store, &Default::default()).unwrap())
        .map(|event| event.id)
        .collect();
    stored.sort_unstable();
    assert_eq!(stored, written);
}

/// `verify` neither blocks a writer nor takes its write for drift: while it reports task 1's
/// drift, inside its read of the batch, another connection writes task 2 of the same batch under a
/// 2-second lock timeout, and it lands; verify, reading one snapshot, finds task 2 as it was.
fn verify_takes_no_lock_and_reads_one_snapshot<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    for id in [1, 2] {
        let title = format!("t{id}");
        store.append(&id, Created { title }, &by("ann")).unwrap();
    }
    execute::<D>(
        store.connection(),
        "UPDATE tasks SET title = 'tampered' WHERE id = 1",
    );
    let mut writer = db.connect();
    let short_lock_wait = match D::NAME {
        "postgres" => "SET lock_timeout = '2s'",
        "mysql" => "SET SESSION innodb_lock_wait_timeout = 2",
        _ => "PRAGMA busy_timeout = 2000",
    };
    execute::<D>(&mut writer, short_lock_wait);
    let mut drifted = Vec::new();
    let report = verify::<D::Conn, Task>(
        store.connection(),
        &mut |drift| {
            drifted.push(drift.aggregate_id.clone());
            let title = "written during verify".to_owned();
            DieselStore::new(&mut writer)
                .append(&2, TitleUpdated { title }, &by("bob"))
                .unwrap_or_else(|error| panic!("verify blocked a writer: {error}"));
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(drifted, ["1"], "task 2's concurrent write is not drift");
    assert_eq!((report.aggregates, report.drifted), (2, 1));
    let two: Task = store.load(&2).unwrap().unwrap();
    assert_eq!(two.title, "written during verify");
}

/// Bad stored data gives typed errors naming table, event id and tag, and a failed replay changes
/// nothing.
fn corrupt_rows_are_typed_errors<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let insert = |conn: &mut D::Conn,
                  id: i64,
                  aggregate: i64,
                  version: i64,
                  tag: &str,
                  data: &str,
                  metadata: &str| {
        execute::<D>(
            conn,
            &format!(
                "INSERT INTO task_events (id, aggregate_id, version, type, data, metadata, \
                 created_at) VALUES ({id}, {aggregate}, {version}, '{tag}', '{data}', \
                 '{metadata}', {})",
                D::TIMESTAMP_LITERAL
            ),
        );
    };
    insert(&mut conn, 9001, 50, 1, "task.archived", "{}", "{}");
    insert(&mut conn, 9002, 51, 1, "task.created", "{}", "{}");
    insert(
        &mut conn,
        9003,
        52,
        1,
        "task.created",
        r#"{"title": 3}"#,
        "{}",
    );
    insert(
        &mut conn,
        9004,
        53,
        1,
        "task.created",
        r#"{"title": "a"}"#,
        "{}",
    );
    insert(&mut conn, 9005, 53, 3, "task.completed", "{}", "{}");
    insert(
        &mut conn,
        9006,
        54,
        1,
        "task.created",
        r#"{"title": "a"}"#,
        "[1]",
    );
    if D::STORES_INVALID_JSON {
        insert(
            &mut conn,
            9007,
            55,
            1,
            "task.created",
            r#"{"title": "#,
            "{}",
        );
    }
    // Aggregate 53's row, as it was before its history was damaged: a failed replay keeps it.
    execute::<D>(
        &mut conn,
        "INSERT INTO tasks (id, title) VALUES (53, 'as it was')",
    );
    let as_it_was = |store: &mut DieselStore<'_, D::Conn>| {
        let task: Option<Task> = store.load(&53).unwrap();
        assert_eq!(task.map(|task| task.title).as_deref(), Some("as it was"));
    };
    let mut store = DieselStore::new(&mut conn);
    let after_seed = EventFilter {
        after_id: Some(9000),
        ..EventFilter::default()
    };
    let streamed: Vec<Result<i64, String>> =
        EventStore::<Task>::stream_events(&mut store, &after_seed)
            .unwrap()
            .map(|record| {
                record
                    .map(|record| record.id)
                    .map_err(|error| error.to_string())
            })
            .collect();
    assert_eq!(
        streamed[..5],
        [Ok(9001), Ok(9002), Ok(9003), Ok(9004), Ok(9005)]
    );
    assert!(
        streamed[5]
            .as_ref()
            .is_err_and(|error| error.starts_with("cannot decode the metadata of event 9006")),
        "{streamed:?}"
    );
    let expected_rows = if D::STORES_INVALID_JSON { 7 } else { 6 };
    assert_eq!(streamed.len(), expected_rows, "{streamed:?}");
    // A stream dropped after its first event leaves the connection ready for the next query.
    let first = EventStore::<Task>::stream_events(&mut store, &after_seed)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(first.id, 9001);
    assert_eq!(
        EventStore::<Task>::version(&mut store, &53).unwrap(),
        3,
        "the connection works after a partial read"
    );
    let mut replay = |id: i64| {
        EventStore::<Task>::replay(&mut store, &id)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        replay(50),
        "unknown event type `task.archived` in `task_events` (event id 9001)"
    );
    assert!(
        replay(51).starts_with(
            "cannot decode the data of event 9002 (`task.created`) in `task_events`: missing field `title`"
        ),
        "{}",
        replay(51)
    );
    assert!(
        replay(52).contains("event 9003 (`task.created`)"),
        "{}",
        replay(52)
    );
    assert_eq!(
        replay(53),
        "version gap in `task_events` for aggregate 53: expected version 2, found 3 (event id 9005)"
    );
    assert!(
        replay(54).starts_with(
            "cannot decode the metadata of event 9006 (`task.created`) in `task_events`"
        ),
        "{}",
        replay(54)
    );
    if D::STORES_INVALID_JSON {
        assert!(
            replay(55).contains("event 9007 (`task.created`)"),
            "{}",
            replay(55)
        );
    }
    as_it_was(&mut store);
    let error = EventStore::<Task>::replay_all(&mut store, &mut |_| {}).unwrap_err();
    assert!(
        matches!(error, Error::UnknownEventType { event_id: 9001, .. }),
        "{error}"
    );
    as_it_was(&mut store);
}

/// The checks of this module.
pub(crate) fn checks<D: TestDb>() -> Vec<(&'static str, Check<D>)>
where
    Task: AggregateTable<D::Conn>,
    Project: AggregateTable<D::Conn>,
    Note: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
{
    vec![
        ("append_applies_saves_and_records", |db| {
            contract::append_applies_saves_and_records(&mut DieselStore::new(&mut db.connect()));
        }),
        ("several_events_are_stored_in_order", |db| {
            contract::several_events_are_stored_in_order(&mut DieselStore::new(&mut db.connect()));
        }),
        ("a_failing_append_leaves_nothing", |db| {
            contract::a_failing_append_leaves_nothing(&mut DieselStore::new(&mut db.connect()));
        }),
        ("optimistic_concurrency_conflicts", |db| {
            contract::optimistic_concurrency_conflicts(&mut DieselStore::new(&mut db.connect()));
        }),
        (
            "verify_lists_drift_field_by_field",
            verify_lists_drift_field_by_field,
        ),
        (
            "verify_takes_no_lock_and_reads_one_snapshot",
            verify_takes_no_lock_and_reads_one_snapshot::<D>,
        ),
        ("time_travel_by_version_and_time", |db| {
            contract::time_travel_by_version_and_time(&mut DieselStore::new(&mut db.connect()));
        }),
        ("destroy_and_restore_by_replay", |db| {
            contract::destroy_and_restore_by_replay(
                &mut DieselStore::new(&mut db.connect()),
                |store, id| {
                    execute::<D>(
                        store.connection(),
                        &format!("DELETE FROM tasks WHERE id = {id}"),
                    );
                },
            );
        }),
        ("creating_over_a_live_history_is_a_conflict", |db| {
            contract::creating_over_a_live_history_is_a_conflict(
                &mut DieselStore::new(&mut db.connect()),
                |store, id| {
                    execute::<D>(
                        store.connection(),
                        &format!("DELETE FROM tasks WHERE id = {id}"),
                    );
                },
            );
        }),
        ("replay_all_reproduces_every_aggregate", |db| {
            contract::replay_all_reproduces_every_aggregate(
                &mut DieselStore::new(&mut db.connect()),
                |store, id| {
                    let damage = if id % 2 == 0 {
                        format!("DELETE FROM tasks WHERE id = {id}")
                    } else {
                        format!(
                            "UPDATE tasks SET title = 'damaged', completed_at = NULL WHERE id = {id}"
                        )
                    };
                    execute::<D>(store.connection(), &damage);
                },
            );
        }),
        (
            "a_failing_save_leaves_nothing",
            a_failing_save_leaves_nothing::<D>,
        ),
        (
            "appends_join_the_callers_transaction",
            appends_join_the_callers_transaction::<D>,
        ),
        (
            "concurrent_writers_on_one_aggregate",
            concurrent_writers_on_one_aggregate::<D>,
        ),
        (
            "concurrent_creations_of_one_aggregate",
            concurrent_creations_of_one_aggregate::<D>,
        ),
        (
            "replay_backfills_a_new_column",
            replay_backfills_a_new_column::<D>,
        ),
        (
            "replay_restores_deleted_rows",
            replay_restores_deleted_rows::<D>,
        ),
        (
            "positions_are_global_across_events_tables",
            positions_are_global_across_events_tables::<D>,
        ),
        (
            "a_position_taken_by_hand_is_a_storage_error",
            a_position_taken_by_hand_is_a_storage_error::<D>,
        ),
        (
            "an_apps_unique_key_refuses_a_duplicate_and_writes_nothing",
            an_apps_unique_key_refuses_a_duplicate_and_writes_nothing::<D>,
        ),
        (
            "commands_in_the_callers_transactions_land_under_contention",
            commands_in_the_callers_transactions_land_under_contention::<D>,
        ),
        ("uuid_ids_work", uuid_ids_work::<D>),
        (
            "corrupt_rows_are_typed_errors",
            corrupt_rows_are_typed_errors::<D>,
        ),
    ]
}

/// On SQLite, commands in the caller's `immediate_transaction`s (`BEGIN IMMEDIATE`: the write lock
/// from the start, waited for) all land with no retry at all.
pub(crate) fn commands_in_immediate_transactions_never_collide(db: &es_tests::backend::SqliteDb) {
    let retries = requests_in_transactions_land(db, |conn, work| {
        diesel::SqliteConnection::immediate_transaction(conn, |conn| work(conn))
    });
    assert_eq!(retries, 0);
}

#[cfg(feature = "postgres")]
pub(crate) fn native_uuid_ids_work(db: &es_tests::backend::PgDb) {
    use es_tests::domain::{Card, CardWritten};
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    let id = uuid::Uuid::new_v4();
    store
        .append(
            &id,
            CardWritten {
                body: "hello".into(),
            },
            &by("ann"),
        )
        .unwrap();
    let card: Card = store.load(&id).unwrap().unwrap();
    assert_eq!(card.body, "hello");
    execute::<es_tests::backend::PgDb>(store.connection(), "DELETE FROM cards");
    assert_eq!(store.replay(&id).unwrap(), Some(card));
}

/// Waits until a connection to `db` is blocked by the PostgreSQL backend `pid`.
#[cfg(feature = "postgres")]
fn wait_until_blocked_by(db: &es_tests::backend::PgDb, pid: i32) {
    use diesel::RunQueryDsl;
    let blocked = diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT COUNT(*) FROM pg_stat_activity WHERE {pid} = ANY(pg_blocking_pids(pid)))"
    ));
    let mut observer = db.connect();
    while diesel::select(blocked.clone())
        .get_result::<i64>(&mut observer)
        .unwrap()
        == 0
    {
        thread::yield_now();
    }
}

/// The PostgreSQL backend of a connection.
#[cfg(feature = "postgres")]
fn backend_pid(conn: &mut diesel::PgConnection) -> i32 {
    use diesel::RunQueryDsl;
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result::<i32>(conn)
    .unwrap()
}

/// A writer that waited for another's row lock appends after that writer's events. PostgreSQL
/// reads the head in the locking statement with a snapshot taken before the wait, so the store
/// must see that it is stale and read it again; otherwise the second append would reuse version 3.
#[cfg(feature = "postgres")]
pub(crate) fn a_writer_that_waited_for_the_lock_appends_after_the_head(
    db: &es_tests::backend::PgDb,
) {
    use es_core::Transactional;
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    store
        .append(&1, Created { title: "t".into() }, &by("ann"))
        .unwrap();
    let first_pid = backend_pid(store.connection());
    let second = thread::scope(|scope| {
        let waiting = store
            .transaction(|store| {
                store.append(
                    &1,
                    TitleUpdated {
                        title: "first".into(),
                    },
                    &by("ann"),
                )?;
                let waiting = scope.spawn(|| {
                    let mut conn = db.connect();
                    DieselStore::new(&mut conn).append(
                        &1,
                        TitleUpdated {
                            title: "second".into(),
                        },
                        &by("bob"),
                    )
                });
                wait_until_blocked_by(db, first_pid);
                Ok::<_, Error>(waiting)
            })
            .unwrap();
        waiting.join().unwrap().unwrap()
    });
    let versions: Vec<i64> = second.events.iter().map(|event| event.version).collect();
    assert_eq!(versions, [3]);
    assert_eq!(second.state.unwrap().title, "second");
    let history = EventStore::<Task>::history(&mut store, &1).unwrap();
    assert_eq!(history.len(), 3);
}

/// Two creators of one aggregate on PostgreSQL: the second's lock finds no row to wait for and
/// its head no event, so it stores version 1 too, waiting for the first's uncommitted one; when
/// the first commits, the unique `(aggregate_id, version)` refuses it: a conflict, not a storage
/// error.
#[cfg(feature = "postgres")]
pub(crate) fn a_version_stored_first_by_another_writer_is_a_conflict(db: &es_tests::backend::PgDb) {
    use es_core::Transactional;
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    let first_pid = backend_pid(store.connection());
    let second = thread::scope(|scope| {
        let waiting = store
            .transaction(|store| {
                store.append(
                    &1,
                    Created {
                        title: "first".into(),
                    },
                    &by("ann"),
                )?;
                let waiting = scope.spawn(|| {
                    let mut conn = db.connect();
                    let title = "second".to_owned();
                    DieselStore::new(&mut conn).append(&1, Created { title }, &by("bob"))
                });
                wait_until_blocked_by(db, first_pid);
                Ok::<_, Error>(waiting)
            })
            .unwrap();
        waiting.join().unwrap()
    });
    let error = second.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{error}"
    );
    let task: Task = store.load(&1).unwrap().unwrap();
    assert_eq!(task.title, "first");
}

/// On SQLite, a replay inside the caller's deferred transaction (`BEGIN`) after another connection
/// wrote since that transaction read: its write cannot begin, which is `Contention` naming the
/// batch's aggregates (`1..=3`), for `retry_on_conflict` to run the caller's transaction again;
/// inside the caller's transaction the replay does not retry on its own.
pub(crate) fn a_replay_in_a_stale_transaction_is_contention(db: &es_tests::backend::SqliteDb) {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let mut conn = db.connect();
    for id in 1..=3 {
        DieselStore::new(&mut conn)
            .append(&id, Created { title: "t".into() }, &by("ann"))
            .unwrap();
    }
    AnsiTransactionManager::begin_transaction(&mut conn).unwrap();
    let mut store = DieselStore::new(&mut conn);
    let read: Option<Task> = store.load(&1).unwrap();
    assert!(read.is_some());
    DieselStore::new(&mut db.connect())
        .append(&2, TitleUpdated { title: "u".into() }, &by("bob"))
        .unwrap();
    let error = EventStore::<Task>::replay_all(&mut store, &mut |_| {}).unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Contention { aggregate: "task", aggregate_id, .. } if aggregate_id == "1..=3"
        ),
        "{error}"
    );
    AnsiTransactionManager::rollback_transaction(&mut conn).unwrap();
}
