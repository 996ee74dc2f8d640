//! Runs each example's story on SQLite (a temporary file) and on PostgreSQL (when
//! `PG_DATABASE_URL` is set, in a schema of this run; under `CI=true` it must be; otherwise the
//! PostgreSQL tests are ignored) and checks what it prints: the lines a reader follows, in order.

mod support;

use es_examples::db::{fresh_postgres, fresh_sqlite};
use es_examples::{crm, drip, meetings, todo};
use support::{RunSchema, postgres_url};

type Story = fn(&mut Vec<u8>, Backend<'_>) -> Result<(), Box<dyn std::error::Error>>;

enum Backend<'a> {
    Sqlite(&'a str),
    Postgres(&'a str, &'a str),
}

macro_rules! story {
    ($module:ident) => {
        |out: &mut Vec<u8>, backend: Backend<'_>| match backend {
            Backend::Sqlite(path) => $module::run(&mut fresh_sqlite(path)?, out),
            Backend::Postgres(url, schema) => $module::run(&mut fresh_postgres(url, schema)?, out),
        }
    };
}

/// Runs `story` on SQLite (a temporary file) or PostgreSQL (a schema of this run) and checks that
/// its output has `expected` lines, in order.
fn check(name: &str, story: Story, expected: &[&str], on_postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.db"));
    let (backend, output) = if on_postgres {
        let url = postgres_url(&format!("the {name} example's story"));
        let schema = RunSchema::new(&url, name);
        let output = run(story, Backend::Postgres(&url, schema.name()));
        ("postgres", output)
    } else {
        (
            "sqlite",
            run(story, Backend::Sqlite(path.to_str().unwrap())),
        )
    };
    let mut rest = output.as_str();
    for line in expected {
        match rest.find(line) {
            Some(at) => rest = &rest[at + line.len()..],
            None => panic!("{name} on {backend}: expected, in order, {line:?} in:\n{output}"),
        }
    }
}

/// A test of `$story`'s lines on SQLite, and one on PostgreSQL (ignored without
/// `cfg(postgres_suite)`, see `build.rs`).
macro_rules! tells_its_story {
    ($module:ident, $expected:expr, $on_sqlite:ident, $on_postgres:ident) => {
        #[test]
        fn $on_sqlite() {
            check(stringify!($module), story!($module), $expected, false);
        }

        #[test]
        #[cfg_attr(
            not(postgres_suite),
            ignore = "PG_DATABASE_URL is not set: the PostgreSQL run is skipped"
        )]
        fn $on_postgres() {
            check(stringify!($module), story!($module), $expected, true);
        }
    };
}

fn run(story: Story, backend: Backend<'_>) -> String {
    let mut out = Vec::new();
    story(&mut out, backend).unwrap();
    String::from_utf8(out).unwrap()
}

const TODO_STORY: &[&str] = &[
    "completing it twice: the second time is a no-op = true",
    "  v1 2026-04-10 task.created",
    r#"{"title":"Prepare slide"} by philippe from 203.0.113.7"#,
    "  v6 2026-04-23 task.completed",
    r#"title "Prepare slides", due Some("2026-04-20"), completed None"#,
    r#"as of version 1: title "Prepare slide""#,
    r#"  task 1 "Prepare slides": completed_at None, completed_by None, deleted_at None"#,
    "  task 3: no row",
    "verify: 3 of 3 tasks are not what their events build",
    r#"  task 1: completed_at null -> "2026-04-23T09:00:00", completed_by null -> "philippe""#,
    r#"  task 2: completed_at null -> "2026-04-14T09:00:00", completed_by null -> "ann""#,
    "  task 3: its row is missing",
    "replayed 10 events of 3 tasks with today's calculators (no reactor ran):",
    r#"  task 1 "Prepare slides": completed_at Some("2026-04-23 09:00:00"), completed_by Some("philippe"), deleted_at None"#,
    r#"  task 2 "Book the venue": completed_at Some("2026-04-14 09:00:00"), completed_by Some("ann"), deleted_at None"#,
    r#"  task 3 "Print flyers": completed_at None, completed_by None, deleted_at Some("2026-04-16 09:00:00")"#,
    "verify: 0 of 3 tasks are not what their events build",
    "activity feed (a projection, written with each event): 10 lines",
    "jobs queued for the worker: 12",
    "a worker ran 12 job(s); the emails in the outbox:",
    "  email: task 1 was completed by philippe",
    "  email: task 2 was completed by ann",
];

tells_its_story!(
    todo,
    TODO_STORY,
    todo_tells_its_story_on_sqlite,
    todo_tells_its_story_on_postgres
);

const DRIP_STORY: &[&str] = &[
    "refused: invalid `Activate`: stripe_key: is required",
    "webhook 33456 activated subscription 12: 1 event(s), 2 job(s) queued",
    "webhook 33457 (a retry) activated it again: no-op = true, 0 job(s) queued",
    "a worker ran 2 job(s); the outbox:",
    "  email to the creator: new subscriber (subscription 12)",
    "  email to the supporter: subscription 12 is active",
    "subscription 12: active with sub_66123, USD",
    "subscription.activated",
    r#"{"stripe_key":"sub_66123"} by stripe-webhook notification_id=33456"#,
    "  Trigger unpin_other_posts for post.pinned",
    "post 1 pinned: false",
    "post 2 pinned: true",
    "post 1's post.unpinned was caused by the pin of post 2: true",
    "refused: `Activate` is not allowed on subscription 12: it was deactivated",
];

tells_its_story!(
    drip,
    DRIP_STORY,
    drip_tells_its_story_on_sqlite,
    drip_tells_its_story_on_postgres
);

const MEETINGS_STORY: &[&str] = &[
    "ann schedules a meeting with herself: refused: invalid `Schedule`: __all__: the \
         organizer cannot invite themselves",
    "ann schedules meeting 1 with bob: meeting.scheduled",
    "ann moves it to May 5th, as of version 1: meeting.rescheduled",
    "bob accepts it, as of version 1: refused: concurrency conflict on meeting 1: \
         expected version 1, found 2",
    "bob reloads and accepts it, as of version 2: meeting.accepted",
    "bob accepts it again: nothing to do (no event)",
    "ann records that it took place: meeting.finished",
    "ann cancels it afterwards: refused: `Cancel` is not allowed on meeting 1: it took \
         place already",
    "ann accepts meeting 2: refused: `Accept` is not allowed on meeting 2: it is cancelled",
    "meeting 1 is finished on 2026-05-05 14:00:00",
];

tells_its_story!(
    meetings,
    MEETINGS_STORY,
    meetings_tells_its_story_on_sqlite,
    meetings_tells_its_story_on_postgres
);

const CRM_STORY: &[&str] = &[
    "before its subscriber runs, the contact list has handled Sam's meeting (event 4): false",
    "its subscriber handled 4 events; now: true",
    "  dave/Pat Smith (pat@example.com) next meeting 2026-05-04 notes none",
    "version 2 built from 4 events beside version 1, which the contact list still shows:",
    "  dave/Pat Smith (pat@example.com) next meeting 2026-05-04 notes none",
    "version 2 caught up on 1 more event(s), and the contact list switched to it in the \
     transaction of that last batch:",
    "  dave/Pat Smith (pat@work.example) next meeting 2026-05-04 notes <p>Ask about the \
         <em>move</em></p>",
    "  dave/Sam Jones (@sam) next meeting 2026-05-05 notes <p>Bring the \
         <strong>contract</strong></p>",
    "version 1 retired: its checkpoint and its rows deleted",
    "after editing Pat (event 5), the contact list has handled it: true",
    "Pat is reached at pat@work.example",
    "2 notes email(s) queued, 1 sent today:",
    "  email to dave: notes for your meeting with Pat Smith today: Ask about the *move*",
    r#"still queued: ["Sam Jones on 2026-05-05"]"#,
    "rebuilt meeting_notes_emails from 6 events: the same queue = true",
    "contact.notes_email_sent",
];

tells_its_story!(
    crm,
    CRM_STORY,
    crm_tells_its_story_on_sqlite,
    crm_tells_its_story_on_postgres
);
