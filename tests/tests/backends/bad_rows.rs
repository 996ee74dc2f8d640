//! Bad stored rows, one column at a time (the corrupt-row matrix through the library): each is a
//! typed error naming the table, event id, tag and column; it stops only what needs it — a replay
//! that skips bad histories and `verify` report its aggregate and go on, time travel to an
//! earlier version never reads it, the counts per day still count it — and version arithmetic on
//! stored versions never overflows.

use es_core::{AsOf, EventFilter, EventStore, OnBadHistory};
use es_diesel::{AggregateTable, DieselStore, DriftKind};
use es_tests::backend::TestDb;
use es_tests::domain::{Created, Task, TitleUpdated};

use crate::{Check, by, execute};

/// The first event id of the hand-written rows.
const FIRST_ROW: i64 = 90_000;

/// One hand-written second event of its own aggregate: its columns as SQL literals, and what
/// reading it must say.
struct Row {
    version: &'static str,
    tag: &'static str,
    data: &'static str,
    metadata: &'static str,
    created_at: &'static str,
    /// `None` when the row reads; else its error names this column and says this.
    fails: Option<(&'static str, &'static str)>,
}

const GOOD_DATA: &str = r#"'{"title":"x"}'"#;

fn row(column: &'static str, literal: &'static str, fails: Option<&'static str>) -> Row {
    let mut row = Row {
        version: "2",
        tag: "'task.title_updated'",
        data: GOOD_DATA,
        metadata: "'{}'",
        created_at: "",
        fails: fails.map(|says| (column, says)),
    };
    match column {
        "version" => row.version = literal,
        "type" => row.tag = literal,
        "data" => row.data = literal,
        "metadata" => row.metadata = literal,
        _ => row.created_at = literal,
    }
    row
}

/// The matrix of this backend: what each can store that the store never writes.
fn matrix<D: TestDb>() -> Vec<Row> {
    let mut rows = vec![
        row("metadata", r#"'"text"'"#, Some("invalid type: string")),
        row("metadata", "'[1, 2]'", Some("invalid type: sequence")),
    ];
    match D::NAME {
        "sqlite" => rows.extend([
            row("metadata", "'not json'", Some("expected ident")),
            row(
                "created_at",
                "'yesterday'",
                Some("`yesterday` is not a time"),
            ),
            row("created_at", "'2026-04-20 12:00:00'", None),
            row("created_at", "'2026-04-20 12:00:00.123'", None),
            row(
                "created_at",
                "'+262143-01-01T00:00:00Z'",
                Some("is not a time"),
            ),
            row("created_at", "X'00'", Some("a blob, not text")),
            row("version", "'abc'", Some("`abc` is text, not an integer")),
            row(
                "version",
                "2.5",
                Some("2.5 is a real number, not an integer"),
            ),
            row("type", "X'00'", Some("a blob, not text")),
            row("data", "X'7B7D'", Some("a blob, not text")),
            row(
                "data",
                r#"CAST(X'7B227469746C65223A22FF227D' AS TEXT)"#,
                Some("invalid utf-8"),
            ),
        ]),
        "postgres" => rows.extend([
            row("created_at", "'infinity'", Some("too large")),
            row("created_at", "'-infinity'", Some("too large")),
            row(
                "created_at",
                "'294276-12-31 23:59:59+00'",
                Some("too large"),
            ),
            row("created_at", "'4713-01-01 00:00:00+00 BC'", None),
        ]),
        _ => rows.extend([
            row("created_at", "'0000-00-00 00:00:00'", Some("date")),
            row("created_at", "'9999-12-31 23:59:59.999999'", None),
            row("created_at", "'1000-01-01 00:00:00'", None),
        ]),
    }
    rows
}

/// Each aggregate `n` of the matrix has a good first event, then row `n` by hand as its second.
fn write_matrix<D: TestDb>(conn: &mut D::Conn, rows: &[Row])
where
    Task: AggregateTable<D::Conn>,
{
    let mut store = DieselStore::new(conn);
    for n in 0..rows.len() as i64 {
        let title = format!("task {n}");
        store.append(&n, Created { title }, &by("ann")).unwrap();
    }
    if D::NAME == "mysql" {
        execute::<D>(store.connection(), "SET SESSION sql_mode = ''");
    }
    for (n, row) in rows.iter().enumerate() {
        let created_at = if row.created_at.is_empty() {
            D::TIMESTAMP_LITERAL
        } else {
            row.created_at
        };
        execute::<D>(
            store.connection(),
            &format!(
                "INSERT INTO task_events (id, aggregate_id, version, type, data, metadata, \
                 created_at) VALUES ({}, {n}, {}, {}, {}, {}, {created_at})",
                FIRST_ROW + n as i64,
                row.version,
                row.tag,
                row.data,
                row.metadata
            ),
        );
    }
}

/// Reading every row: a good row is an event, a bad one an error in its place naming the table,
/// the event id, the tag (when the `type` column reads) and the column, with the cause.
fn a_bad_row_is_a_typed_error_naming_its_column<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
{
    let rows = matrix::<D>();
    let mut conn = db.connect();
    write_matrix::<D>(&mut conn, &rows);
    let mut store = DieselStore::new(&mut conn);
    let hand_written = EventFilter {
        after_id: Some(FIRST_ROW - 1),
        ..EventFilter::default()
    };
    let read: Vec<Result<i64, String>> =
        EventStore::<Task>::stream_events(&mut store, &hand_written)
            .unwrap()
            .map(|record| {
                record
                    .map(|record| record.id)
                    .map_err(|error| error.to_string())
            })
            .collect();
    assert_eq!(read.len(), rows.len(), "{read:?}");
    for ((n, row), read) in rows.iter().enumerate().zip(&read) {
        let event_id = FIRST_ROW + n as i64;
        match (row.fails, read) {
            (None, Ok(id)) => assert_eq!(*id, event_id),
            (Some((column, says)), Err(error)) => {
                let named = if column == "metadata" {
                    format!("cannot decode the metadata of event {event_id} (`task.title_updated`)")
                } else {
                    format!("cannot read column `{column}` of event {event_id}")
                };
                assert!(error.contains(&named), "{error}");
                assert!(error.contains("in `task_events`"), "{error}");
                assert!(error.contains(says), "{column}: {error}");
                if column != "type" {
                    assert!(error.contains("`task.title_updated`"), "{error}");
                }
            }
            (expected, read) => panic!("row {n}: expected {expected:?}, read {read:?}"),
        }
    }
    let counts = es_diesel::event_counts::<_, Task>(store.connection()).unwrap();
    let counted: i64 = counts.iter().map(|count| count.events).sum();
    assert_eq!(
        counted,
        2 * rows.len() as i64,
        "every row has a day, or its text"
    );
    for (n, row) in rows.iter().enumerate() {
        let id = n as i64;
        let history = EventStore::<Task>::history(&mut store, &id);
        assert_eq!(
            history.is_err(),
            row.fails.is_some(),
            "task {n}: {history:?}"
        );
        let before: Task = store.state_as_of(&id, AsOf::Version(1)).unwrap().unwrap();
        assert_eq!(
            before.title,
            format!("task {n}"),
            "time travel to v1 never reads v2"
        );
    }
}

/// A replay that skips bad histories and `verify` report the aggregate of each bad row (and of
/// the version that cannot follow its predecessor) and carry on with the others; a replay that
/// stops, stops.
fn replay_and_verify_skip_the_aggregates_of_bad_rows<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
{
    let mut rows = matrix::<D>();
    rows.push(row("version", "9223372036854775807", None));
    let mut conn = db.connect();
    write_matrix::<D>(&mut conn, &rows);
    let bad: Vec<String> = rows
        .iter()
        .enumerate()
        .filter(|(_, row)| row.fails.is_some() || row.version != "2")
        .map(|(n, _)| n.to_string())
        .collect();
    let good: Vec<i64> = (0..rows.len() as i64)
        .filter(|n| !bad.contains(&n.to_string()))
        .collect();

    let mut drifts = Vec::new();
    let verified = es_diesel::verify::<_, Task>(
        &mut conn,
        &mut |drift| drifts.push(drift.clone()),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        (verified.aggregates, verified.drifted, verified.unreplayable),
        (rows.len() as u64, rows.len() as u64, bad.len() as u64)
    );
    let unreplayable: Vec<&str> = drifts
        .iter()
        .filter(|drift| matches!(drift.kind, DriftKind::Unreplayable { .. }))
        .map(|drift| drift.aggregate_id.as_str())
        .collect();
    assert_eq!(unreplayable, bad, "{drifts:?}");

    let mut store = DieselStore::new(&mut conn);
    let stopped = EventStore::<Task>::replay_all(&mut store, &mut |_| {});
    assert!(stopped.is_err(), "{stopped:?}");
    let report =
        EventStore::<Task>::replay_all_with(&mut store, OnBadHistory::Skip, &mut |_| {}).unwrap();
    let skipped: Vec<&str> = report
        .skipped
        .iter()
        .map(|skipped| skipped.aggregate_id.as_str())
        .collect();
    assert_eq!(skipped, bad);
    assert_eq!(
        (report.progress.aggregates, report.progress.skipped),
        (good.len() as u64, bad.len() as u64)
    );
    for id in good {
        let task: Task = store.load(&id).unwrap().unwrap();
        assert_eq!(task.title, "x", "task {id} was replayed");
    }
}

/// An append after a stored version of `i64::MAX` is an error saying so, not an overflow.
fn no_version_follows_the_largest<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    store
        .append(&1, Created { title: "t".into() }, &by("ann"))
        .unwrap();
    execute::<D>(
        store.connection(),
        "UPDATE task_events SET version = 9223372036854775807 WHERE aggregate_id = 1",
    );
    let retitled = TitleUpdated { title: "u".into() };
    let error = store.append(&1, retitled, &by("ann")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "task 1 in `task_events` is at version 9223372036854775807: no version can follow it"
    );
}

/// A text aggregate id in an integer column (SQLite keeps `'abc'` as text there) is an error
/// naming the column, never the id 0: read as 0, it sent the replay's keyset pagination back to
/// the first aggregate, forever.
fn a_text_aggregate_id_is_an_error_not_zero<D: TestDb>(db: &D)
where
    Task: AggregateTable<D::Conn>,
{
    if D::NAME != "sqlite" {
        return; // an integer column of the other backends holds only integers
    }
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn);
    store
        .append(&1, Created { title: "t".into() }, &by("ann"))
        .unwrap();
    execute::<D>(
        store.connection(),
        &format!(
            "INSERT INTO task_events (id, aggregate_id, version, type, data, metadata, \
             created_at) VALUES ({FIRST_ROW}, 'abc', 1, 'task.created', {GOOD_DATA}, '{{}}', {})",
            D::TIMESTAMP_LITERAL
        ),
    );
    let all = EventStore::<Task>::events(&mut store, &EventFilter::default());
    let error = all.unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "cannot read column `aggregate_id` of event {FIRST_ROW}"
        )) && error.contains("`abc` is text, not an integer"),
        "{error}"
    );
    let replayed = EventStore::<Task>::replay_all_with(&mut store, OnBadHistory::Skip, &mut |_| {});
    let error = replayed.unwrap_err().to_string();
    assert_eq!(
        error,
        "storage error on `task_events`: column `aggregate_id`: `abc` is text, not an integer"
    );
}

/// The checks of this module.
pub(crate) fn checks<D: TestDb>() -> Vec<(&'static str, Check<D>)>
where
    Task: AggregateTable<D::Conn>,
{
    vec![
        (
            "a_bad_row_is_a_typed_error_naming_its_column",
            a_bad_row_is_a_typed_error_naming_its_column::<D>,
        ),
        (
            "replay_and_verify_skip_the_aggregates_of_bad_rows",
            replay_and_verify_skip_the_aggregates_of_bad_rows::<D>,
        ),
        (
            "a_text_aggregate_id_is_an_error_not_zero",
            a_text_aggregate_id_is_an_error_not_zero::<D>,
        ),
        (
            "no_version_follows_the_largest",
            no_version_follows_the_largest::<D>,
        ),
    ]
}
