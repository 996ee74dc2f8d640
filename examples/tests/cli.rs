//! The operator command line (`es_diesel::cli`) as an operator runs it: the todo example's binary
//! (and the CRM's, for its subscriptions), run as a process (assert_cmd) on the database its story wrote — a SQLite file, and PostgreSQL
//! when `PG_DATABASE_URL` is set (under `CI=true` it must be), in a schema of this run
//! ([`support::RunSchema`], which the binary is given by `es_examples::db::SCHEMA_VAR`).

mod support;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use es_examples::db::SCHEMA_VAR;
use support::{RunSchema, postgres_url};

/// The binary of example `example`, next to the test binaries. `cargo test` builds the examples; a
/// narrower `cargo test --test cli` does not, so the binary is built here when it is missing or
/// older than the examples' library (rebuilding it always would redo it with this package's
/// features alone, after a workspace build with more).
fn example_binary(example: &'static str) -> PathBuf {
    static CHECKED: std::sync::Mutex<Vec<&str>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let binary = deps
        .parent()
        .expect("target/<profile>")
        .join("examples")
        .join(format!("{example}{}", std::env::consts::EXE_SUFFIX));
    let mut checked = CHECKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !checked.contains(&example) {
        checked.push(example);
        let modified = |path: &Path| path.metadata().and_then(|meta| meta.modified()).ok();
        let library = std::fs::read_dir(deps)
            .expect("the deps directory")
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("libes_examples-"))
            })
            .filter_map(|path| modified(&path))
            .max();
        if modified(&binary) < library || !binary.exists() {
            let features = if example == "warehouse" { "nats" } else { "" };
            let built = std::process::Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "es-examples", "--example", example])
                .args(["--features", features])
                .status()
                .expect("cargo runs");
            assert!(built.success(), "cargo build --example {example} failed");
        }
    }
    binary
}

/// Where an example (the todo app's, unless told) and its command line run: a directory (its
/// `todo.db`) and, for PostgreSQL, the database's URL and the schema of this run.
struct Place {
    example: &'static str,
    dir: tempfile::TempDir,
    postgres: Option<(String, RunSchema)>,
    /// More of the example's environment.
    env: Vec<(&'static str, String)>,
}

impl Place {
    /// A new place on SQLite (`None`) or in a new schema of this run for `test` on PostgreSQL.
    fn new(database_url: Option<String>, test: &str) -> Self {
        Self::of("todo", database_url, test)
    }

    /// A new place of example `example`.
    fn of(example: &'static str, database_url: Option<String>, test: &str) -> Self {
        Self {
            example,
            dir: tempfile::tempdir().expect("a temporary directory"),
            postgres: database_url.map(|url| {
                let schema = RunSchema::new(&url, test);
                (url, schema)
            }),
            env: Vec::new(),
        }
    }

    /// This place with `name=value` in the example's environment.
    #[cfg(feature = "nats")]
    fn with_env(mut self, name: &'static str, value: String) -> Self {
        self.env.push((name, value));
        self
    }

    /// Points `command` at this place's database.
    fn database(&self, command: &mut std::process::Command) {
        command.current_dir(self.dir.path());
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        match &self.postgres {
            Some((url, schema)) => command
                .env("DATABASE_URL", url)
                .env(SCHEMA_VAR, schema.name()),
            None => command.env_remove("DATABASE_URL").env_remove(SCHEMA_VAR),
        };
    }

    fn todo(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        let mut command = std::process::Command::new(example_binary(self.example));
        self.database(&mut command);
        Command::from_std(command).args(args).assert()
    }

    /// Runs `args` and returns what it printed, checking that it succeeded.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.todo(args).success().get_output().stdout.clone();
        String::from_utf8(output).expect("UTF-8 output")
    }

    /// Runs `args`, checks that it failed with `code`, and returns what it printed on stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let output = self.todo(args).code(code).get_output().stderr.clone();
        String::from_utf8(output).expect("UTF-8 output")
    }

    /// Runs `jobs work` until it says it is working, then sends it SIGINT (Ctrl-C), and returns
    /// what it printed by the time it stopped, checking that it stopped gracefully.
    fn work_until_interrupted(&self) -> String {
        use std::io::{BufRead, BufReader, Read};
        let mut command = std::process::Command::new(example_binary(self.example));
        self.database(&mut command);
        command
            .args(["jobs", "work"])
            .stdout(std::process::Stdio::piped());
        let mut worker = command.spawn().expect("the worker starts");
        let mut stdout = BufReader::new(worker.stdout.take().expect("its stdout"));
        let mut printed = String::new();
        stdout.read_line(&mut printed).expect("it says it works");
        let interrupted = std::process::Command::new("kill")
            .args(["-INT", &worker.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(interrupted.success());
        stdout
            .read_to_string(&mut printed)
            .expect("the rest of its output");
        assert!(worker.wait().expect("it stops").success(), "{printed}");
        printed
    }

    /// `2026-04-25 09:00:00` (UTC) as an SQL literal of a `created_at` this backend stores.
    fn time(&self, utc: &str) -> String {
        match &self.postgres {
            Some(_) => format!("'{utc}+00'"),
            None => format!("'{}.000000Z'", utc.replace(' ', "T")),
        }
    }

    /// A `created_at` that is not a time the store can read, as an SQL literal.
    fn bad_time(&self) -> String {
        match &self.postgres {
            Some(_) => "'infinity'".to_owned(),
            None => "'yesterday'".to_owned(),
        }
    }

    /// The result of `SELECT COUNT(*) AS value ...` on the database behind the command line.
    fn count(&self, sql: &str) -> i64 {
        let count: Count = match &self.postgres {
            Some((url, schema)) => {
                let mut conn = PgConnection::establish(url).expect("PostgreSQL");
                conn.batch_execute(&format!("SET search_path TO {}", schema.name()))
                    .expect("the schema exists");
                diesel::RunQueryDsl::get_result(diesel::sql_query(sql), &mut conn)
            }
            None => {
                let path = self.dir.path().join("todo.db");
                let mut conn = es_diesel::sqlite::establish(path.to_str().expect("UTF-8 path"))
                    .expect("SQLite");
                diesel::RunQueryDsl::get_result(diesel::sql_query(sql), &mut conn)
            }
        }
        .expect("the rows are counted");
        count.value
    }

    /// Runs SQL on the database behind the command line, as an operator's psql would.
    fn sql(&self, sql: &str) {
        match &self.postgres {
            Some((url, schema)) => {
                let mut conn = PgConnection::establish(url).expect("PostgreSQL");
                conn.batch_execute(&format!("SET search_path TO {}; {sql}", schema.name()))
                    .expect("the SQL runs");
            }
            None => {
                let path = self.dir.path().join("todo.db");
                let mut conn = es_diesel::sqlite::establish(path.to_str().expect("UTF-8 path"))
                    .expect("SQLite");
                conn.batch_execute(sql).expect("the SQL runs");
            }
        }
    }
}

fn every_command(database_url: Option<String>) {
    let place = Place::new(database_url, "cli");
    // Before the story wrote its database, there is nothing to operate on.
    let missing = place.fails(&["log", "task", "1"], 1);
    match &place.postgres {
        Some(_) => assert!(missing.contains("task_events"), "{missing}"),
        None => assert!(missing.contains("no todo.db here"), "{missing}"),
    }
    place.ok(&[]);
    if let Some((url, schema)) = &place.postgres {
        let mut conn = PgConnection::establish(url).expect("PostgreSQL");
        let tables = diesel::sql_query(
            "SELECT COUNT(*) AS value FROM information_schema.tables WHERE table_schema = $1",
        )
        .bind::<diesel::sql_types::Text, _>(schema.name());
        let count: Count =
            diesel::RunQueryDsl::get_result(tables, &mut conn).expect("the tables are counted");
        assert!(
            count.value > 0,
            "the story wrote its tables in the schema of this run"
        );
    }

    // log: newest first, oldest first, filtered by type, time, as JSON.
    let log = place.ok(&["log", "task", "1"]);
    let first = log.lines().next().unwrap_or_default();
    assert_eq!(first, "v6 task.completed 2026-04-23 09:00:00 UTC (event 6)");
    assert!(log.contains("    by philippe, from 203.0.113.7"), "{log}");
    assert!(log.contains(r#"    {"title":"Prepare slide"}"#), "{log}");
    let oldest_first = place.ok(&["log", "task", "1", "--reverse"]);
    assert!(
        oldest_first.starts_with("v1 task.created"),
        "{oldest_first}"
    );
    let assigned = place.ok(&["log", "task", "1", "--type", "task.assigned", "--json"]);
    let lines: Vec<serde_json::Value> = assigned
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
        .collect();
    assert_eq!(lines.len(), 1, "{assigned}");
    assert_eq!(lines[0]["type"], "task.assigned");
    assert_eq!(lines[0]["data"]["assignee"], "philippe");
    assert_eq!(lines[0]["metadata"]["actor_id"], "philippe");
    let one_day = place.ok(&[
        "log",
        "task",
        "1",
        "--since",
        "2026-04-12",
        "--until",
        "2026-04-12",
        "--reverse",
    ]);
    let versions: Vec<&str> = one_day
        .lines()
        .filter(|line| line.starts_with('v'))
        .map(|line| line.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(versions, ["v3", "v4"], "{one_day}");

    // show: now, as of a day, as of a version.
    let now = place.ok(&["show", "task", "1"]);
    assert!(now.starts_with("task 1: version 6 of 6"), "{now}");
    assert!(now.contains(r#"completed_by  "philippe""#), "{now}");
    let april_20 = place.ok(&["show", "task", "1", "--as-of", "2026-04-20"]);
    assert!(
        april_20.starts_with("task 1 as of the end of 2026-04-20 (UTC): version 4 of 6"),
        "{april_20}"
    );
    assert!(
        april_20.contains(r#"due_on        "2026-04-20""#),
        "{april_20}"
    );
    assert!(april_20.contains("completed_at  null"), "{april_20}");
    let first: serde_json::Value =
        serde_json::from_str(&place.ok(&["show", "task", "1", "--version", "1", "--json"]))
            .expect("JSON");
    assert_eq!(first["title"], "Prepare slide");
    let absent = place.fails(&["show", "task", "9"], 1);
    assert!(absent.contains("task 9 does not exist"), "{absent}");
    let before = place.fails(&["show", "task", "1", "--as-of", "2026-04-01"], 1);
    assert!(
        before.contains("task 1 does not exist as of the end of 2026-04-01"),
        "{before}"
    );

    // verify finds drift field by field; replay repairs it; verify agrees.
    assert!(
        place
            .ok(&["verify", "task"])
            .contains("verified 3 task(s) against 10 events")
    );
    place.sql("UPDATE tasks SET title = 'tampered', completed_by = NULL WHERE id = 2");
    let drifted = place.todo(&["verify", "task"]).code(1);
    let report = String::from_utf8_lossy(&drifted.get_output().stdout).into_owned();
    assert!(report.contains("task 2 drifted:"), "{report}");
    assert!(
        report.contains(r#"completed_by  stored null, replayed "ann""#),
        "{report}"
    );
    assert!(
        report.contains(r#"title         stored "tampered", replayed "Book the venue""#),
        "{report}"
    );
    assert!(report.contains(": 1 drifted"), "{report}");
    let json = place.todo(&["verify", "task", "--json"]).code(1);
    let drift: serde_json::Value =
        serde_json::from_slice(&json.get_output().stdout).expect("one drift, as JSON");
    assert_eq!(drift["aggregate_id"], "2");
    assert_eq!(drift["kind"]["fields"][1]["field"], "title");
    let replayed = place.ok(&["replay", "task"]);
    assert!(
        replayed.starts_with("replayed 3 task(s) from 10 events in "),
        "{replayed}"
    );
    assert!(place.ok(&["verify", "task"]).contains(": 0 drifted"));
    place.sql("UPDATE tasks SET title = 'tampered' WHERE id = 2");
    let one = place.ok(&["replay", "task", "--id", "2"]);
    assert!(one.contains(r#"title         "Book the venue""#), "{one}");
    let repaired = "SELECT COUNT(*) AS value FROM tasks WHERE id = 2 AND title = 'Book the venue'";
    assert_eq!(place.count(repaired), 1, "replay --id rewrote the row");

    // stats: per day and type, totals.
    let stats = place.ok(&["stats", "task"]);
    assert!(
        stats.contains("2026-04-12  task.title_updated         1"),
        "{stats}"
    );
    assert!(
        stats.contains("all days    task.created               3"),
        "{stats}"
    );
    assert!(
        stats.ends_with("10 events of 6 type(s) over 9 day(s)\n"),
        "{stats}"
    );
    let per_day = place.ok(&["stats", "task", "--json"]);
    assert_eq!(per_day.lines().count(), 10, "{per_day}");

    // rebuild-projection: the activity feed, from the events.
    let activities = "SELECT COUNT(*) AS value FROM activities";
    let live = place.count(activities);
    place.sql("DELETE FROM activities WHERE event_id > 5");
    assert_eq!(place.count(activities), 5);
    let rebuilt = place.ok(&["rebuild-projection", "activity_feed"]);
    assert!(
        rebuilt.starts_with("rebuilt projection activity_feed from 10 events"),
        "{rebuilt}"
    );
    assert_eq!(place.count(activities), live, "the feed is whole again");
    let unknown = place.fails(&["rebuild-projection", "nope"], 1);
    assert!(
        unknown.contains("the projections are: activity_feed"),
        "{unknown}"
    );

    // jobs: counts per reactor, a dead job listed, retried and run.
    let counts = "reactor               pending  running     done     dead\n\
         forward_to_event_bus        0        0       10        0\n\
         notify_creator              0        0        2        0\n\
         all                         0        0       12        0\n";
    assert_eq!(place.ok(&["jobs"]), counts);
    place.sql(
        "UPDATE es_jobs SET state = 'dead', last_error = 'the mail server said no' \
         WHERE id = (SELECT MIN(id) FROM es_jobs)",
    );
    let dead = place.ok(&["jobs", "dead"]);
    assert!(
        dead.contains("1 attempt(s): the mail server said no"),
        "{dead}"
    );
    let job = dead
        .strip_prefix("job ")
        .and_then(|rest| rest.split(':').next())
        .expect("a job id");
    assert_eq!(
        place.ok(&["jobs", "retry", job]),
        "1 dead job(s) pending again\n"
    );
    assert_eq!(
        place.ok(&["jobs", "retry", "--all"]),
        "0 dead job(s) pending again\n"
    );
    // jobs list: by state, by reactor, in pages; a state that is not one is a usage error.
    let pending = place.ok(&["jobs", "list", "--state", "pending"]);
    assert!(
        pending.starts_with(&format!("job {job}: "))
            && pending.contains(", pending, 0 attempt(s), due ")
            && pending.ends_with(": the mail server said no\n")
            && pending.lines().count() == 1,
        "{pending}"
    );
    assert_eq!(place.ok(&["jobs", "list", "--state", "dead"]), "no job\n");
    let notify = place.ok(&["jobs", "list", "--reactor", "notify_creator"]);
    assert_eq!(notify.lines().count(), 2, "{notify}");
    assert!(
        notify
            .lines()
            .all(|line| line.contains(": notify_creator on event ")),
        "{notify}"
    );
    let all = place.ok(&["jobs", "list", "--limit", "100"]);
    assert_eq!(all.lines().count(), 12, "{all}");
    let first = place.ok(&["jobs", "list", "--limit", "5"]);
    let last_id = first.lines().last().and_then(|line| {
        line.strip_prefix("job ")
            .and_then(|rest| rest.split(':').next())
    });
    let rest = place.ok(&["jobs", "list", "--after", last_id.expect("a job id")]);
    assert_eq!(format!("{first}{rest}"), all, "two pages make the whole");
    let bad_state = place.fails(&["jobs", "list", "--state", "paused"], 2);
    assert!(bad_state.contains("is not a job state"), "{bad_state}");
    assert_eq!(
        place.ok(&["jobs", "work", "--once"]),
        "jobs completed 1, retried 0, dead 0\n"
    );
    assert_eq!(
        place.ok(&["jobs", "work", "--drain"]),
        "jobs completed 0, retried 0, dead 0\njobs left pending or running, not due: 0\n"
    );
    assert_eq!(place.ok(&["jobs", "counts"]), counts);
    let stopped = place.work_until_interrupted();
    assert!(
        stopped.starts_with("working as ") && stopped.contains(" (Ctrl-C to stop)\n"),
        "{stopped}"
    );
    assert!(
        stopped.ends_with("jobs completed 0, retried 0, dead 0\n"),
        "{stopped}"
    );

    // jobs prune: done jobs older than the retention are deleted, others kept.
    assert_eq!(
        place.ok(&["jobs", "prune", "--older-than", "7d"]),
        "deleted 0 done job(s) finished more than 7days ago\n"
    );
    assert_eq!(
        place.ok(&["jobs", "prune", "--older-than", "0s"]),
        "deleted 12 done job(s) finished more than 0s ago\n"
    );
    let bad_duration = place.fails(&["jobs", "prune", "--older-than", "soon"], 2);
    assert!(bad_duration.contains("--older-than"), "{bad_duration}");

    // docs: the catalog, regenerated.
    assert!(
        place
            .ok(&["docs"])
            .starts_with("event catalog of 1 aggregate(s), 6 event(s)")
    );

    // Mistakes: clap's usage with 2, the framework's errors with 1.
    assert!(place.fails(&["log"], 2).contains("Usage: todo log"));
    let unknown = place.fails(&["log", "tasks", "1"], 1);
    assert!(unknown.contains("no aggregate `tasks` here; the aggregates are: task"));
    let bad_id = place.fails(&["show", "task", "one"], 1);
    assert!(bad_id.contains("`one` is not an id of task"), "{bad_id}");
    let bad_time = place.fails(&["show", "task", "1", "--as-of", "April"], 2);
    assert!(bad_time.contains("`April` is not a time"), "{bad_time}");
}

/// Each command says what is true of what it did, and fails (exit 1) when it did nothing: a
/// replay of a record without events, a retry of a job that is not dead; `show` tells the
/// version its row reflects from the latest event's; `verify` advises `replay` only for what a
/// replay can rewrite. Times out of range are usage errors (exit 2), not overflows (101).
fn honest_answers(database_url: Option<String>) {
    let place = Place::new(database_url, "honest");
    place.ok(&[]);
    let none = place.fails(&["replay", "task", "--id", "99999"], 1);
    assert!(
        none.contains("task 99999 has no event: nothing was replayed"),
        "{none}"
    );
    let not_dead = place.fails(&["jobs", "retry", "999999"], 1);
    assert!(
        not_dead.contains("job 999999 is not a dead job: nothing was retried"),
        "{not_dead}"
    );
    for args in [
        &["show", "task", "1", "--as-of", "+262142-12-31"][..],
        &["log", "task", "1", "--until", "+262142-12-31"],
        &["log", "task", "1", "--since=-262143-01-01T00:00:00"],
    ] {
        let usage = place.fails(args, 2);
        assert!(usage.contains("is out of range"), "{args:?}: {usage}");
    }
    // An event written by hand, its row left as it was: the row reflects version 6 of 7.
    place.sql(&format!(
        "INSERT INTO task_events (id, aggregate_id, version, type, data, metadata, created_at) \
         VALUES (90000, 1, 7, 'task.title_updated', '{{\"title\":\"By hand\"}}', '{{}}', {})",
        place.time("2026-04-25 09:00:00")
    ));
    let now = place.ok(&["show", "task", "1"]);
    assert!(
        now.starts_with(
            "task 1: version 6 of 7 (the stored row; its events go on to version 7: \
             `replay task --id 1` applies them)\n"
        ),
        "{now}"
    );
    assert!(now.contains(r#"title         "Prepare slides""#), "{now}");
    let seventh = place.ok(&["show", "task", "1", "--version", "7"]);
    assert!(seventh.contains(r#"title         "By hand""#), "{seventh}");
    place.sql("UPDATE tasks SET title = 'matches no version' WHERE id = 2");
    let edited = place.ok(&["show", "task", "2"]);
    assert!(
        edited.starts_with(
            "task 2: the stored row, which matches no version of its events (1 to 2): \
             `verify task` shows how it differs\n"
        ),
        "{edited}"
    );
}

/// A row of the matrix, for one backend: the SQL literals of a `task_events` row's columns
/// (id, aggregate, version, type, data, metadata, created_at).
type BadRow = (
    i64,
    i64,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    String,
);

/// Rows the store never writes, each as the next event of a task of the story (task 2 has 2
/// events, task 3 has 2) or of a task of its own (100 and up).
fn bad_rows(place: &Place) -> Vec<BadRow> {
    let title = r#"'{"title":"x"}'"#;
    let updated = "'task.title_updated'";
    let at = place.time("2026-04-25 09:00:00");
    let mut rows: Vec<BadRow> = vec![
        (90_002, 2, "3", updated, title, "'{}'", place.bad_time()),
        (90_003, 3, "3", updated, title, r#"'"text"'"#, at.clone()),
        (
            90_100,
            100,
            "1",
            "'task.created'",
            title,
            "'{}'",
            at.clone(),
        ),
        (
            90_101,
            100,
            "9223372036854775807",
            updated,
            title,
            "'{}'",
            at.clone(),
        ),
    ];
    if place.postgres.is_some() {
        rows.extend([
            (
                90_201,
                101,
                "1",
                "'task.created'",
                title,
                "'{}'",
                at.clone(),
            ),
            (
                90_202,
                101,
                "2",
                updated,
                title,
                "'{}'",
                "'294276-12-31 23:59:59+00'".to_owned(),
            ),
        ]);
    } else {
        rows.extend([
            (
                90_201,
                101,
                "1",
                "'task.created'",
                "X'7B7D'",
                "'{}'",
                at.clone(),
            ),
            (
                90_202,
                102,
                "'abc'",
                "'task.created'",
                title,
                "'{}'",
                at.clone(),
            ),
            (
                90_203,
                103,
                "1",
                "'task.created'",
                title,
                "'not json'",
                "'+262143-01-01T00:00:00Z'".to_owned(),
            ),
            (
                90_204,
                104,
                "1",
                "'task.created'",
                title,
                "'{}'",
                "'2026-04-25 09:00:00'".to_owned(),
            ),
        ]);
    }
    rows
}

/// The corrupt-row matrix through the binary: every command reads around bad rows, naming each
/// (table, event id, tag, column), and none exits 101.
fn bad_rows_are_named_and_read_around(database_url: Option<String>) {
    let place = Place::new(database_url, "bad_rows");
    place.ok(&[]);
    for (id, aggregate, version, tag, data, metadata, created_at) in bad_rows(&place) {
        place.sql(&format!(
            "INSERT INTO task_events (id, aggregate_id, version, type, data, metadata, \
             created_at) VALUES ({id}, {aggregate}, {version}, {tag}, {data}, {metadata}, \
             {created_at})"
        ));
    }

    let log = place.todo(&["log", "task", "2"]).code(1);
    let (out, err) = outputs(&log);
    assert!(out.starts_with("v2 task.completed"), "{out}");
    assert!(out.contains("v1 task.created"), "{out}");
    assert!(
        err.contains(
            "cannot read column `created_at` of event 90002 (`task.title_updated` of \
             aggregate 2) in `task_events`"
        ),
        "{err}"
    );
    let second = place.ok(&["show", "task", "2", "--version", "2"]);
    assert!(
        second.starts_with("task 2 as of version 2: version 2 of 3\n"),
        "{second}"
    );
    let now = place.ok(&["show", "task", "2"]);
    assert!(
        now.starts_with(
            "task 2: version 2 of 3 (the stored row; its events cannot be replayed past version \
             2: cannot read column `created_at` of event 90002"
        ),
        "{now}"
    );

    let verify = place.todo(&["verify", "task"]).code(1);
    let (out, err) = outputs(&verify);
    assert!(
        out.contains("task 2: its events cannot be replayed: cannot read column `created_at`"),
        "{out}"
    );
    assert!(
        out.contains(
            "task 3: its events cannot be replayed: cannot decode the metadata of event 90003 \
             (`task.title_updated`)"
        ),
        "{out}"
    );
    assert!(
        out.contains("task 100: its events cannot be replayed: version gap"),
        "{out}"
    );
    let unreplayable = out.matches("cannot be replayed").count();
    // Task 104 (SQLite's own time format) replays; it has no row, which a replay writes.
    let advice = match &place.postgres {
        Some(_) => format!(
            "{unreplayable} task(s) drifted from their events and cannot be replayed: a replay \
             leaves them as they are until their bad events are fixed"
        ),
        None => format!(
            "{} task(s) drifted from their events; {unreplayable} of them cannot be replayed: \
             `replay task --skip-bad` leaves them as they are and rewrites the others",
            unreplayable + 1
        ),
    };
    assert!(err.contains(&advice), "{err}");

    let replay = place.todo(&["replay", "task", "--skip-bad"]).code(1);
    let (out, err) = outputs(&replay);
    let replayed = match &place.postgres {
        Some(_) => "replayed 1 task(s) from 6 events in ",
        None => "replayed 2 task(s) from 7 events in ",
    };
    assert!(out.starts_with(replayed), "{out}");
    assert!(
        out.contains("skipped task 2: cannot read column `created_at`"),
        "{out}"
    );
    assert!(out.contains("skipped task 100: version gap"), "{out}");
    assert!(
        err.contains(&format!(
            "{unreplayable} task(s) could not be replayed and were left as they were"
        )),
        "{err}"
    );

    for id in ["2", "3", "100", "101", "102", "103", "104"] {
        for args in [
            &["log", "task", id][..],
            &["log", "task", id, "--json"],
            &["show", "task", id],
            &["show", "task", id, "--version", "1"],
            &["show", "task", id, "--as-of", "2026-04-30"],
            &["replay", "task", "--id", id],
        ] {
            let code = place.todo(args).get_output().status.code();
            assert!(matches!(code, Some(0 | 1)), "{args:?}: exit {code:?}");
        }
    }
    for args in [
        &["stats", "task"][..],
        &["rebuild-projection", "activity_feed"],
    ] {
        let code = place.todo(args).get_output().status.code();
        assert!(matches!(code, Some(0 | 1)), "{args:?}: exit {code:?}");
    }
}

/// What a finished command printed on stdout and stderr.
fn outputs(assert: &assert_cmd::assert::Assert) -> (String, String) {
    let output = assert.get_output();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn honest_answers_on_sqlite() {
    honest_answers(None);
}

#[test]
#[cfg_attr(
    not(postgres_suite),
    ignore = "PG_DATABASE_URL is not set: the PostgreSQL run is skipped"
)]
fn honest_answers_on_postgres() {
    honest_answers(Some(postgres_url("the command line's answers")));
}

#[test]
fn bad_rows_are_named_and_read_around_on_sqlite() {
    bad_rows_are_named_and_read_around(None);
}

#[test]
#[cfg_attr(
    not(postgres_suite),
    ignore = "PG_DATABASE_URL is not set: the PostgreSQL run is skipped"
)]
fn bad_rows_are_named_and_read_around_on_postgres() {
    bad_rows_are_named_and_read_around(Some(postgres_url("the command line on bad rows")));
}

/// `generate` prints exactly the code and the migration that `tests/ui-pass/generated.rs`
/// compiles and runs (each `// >>> generate ...` section, and its `UP_SQL`), and refuses what it
/// cannot write code for with the form to write instead.
#[test]
fn generate_prints_the_code_the_template_test_compiles() {
    let place = Place::new(None, "generate");
    place.ok(&[]);
    let template = include_str!("../../tests/ui-pass/generated.rs");
    let mut sections = 0;
    for section in template.split("\n// >>> ").skip(1) {
        let (command, rest) = section.split_once('\n').expect("a command line");
        let (expected, _) = rest.split_once("// <<<").expect("an end marker");
        let args: Vec<&str> = command.split(' ').collect();
        let printed = place.ok(&args);
        let (code, migration) = match printed.split_once("\n-- up.sql\n") {
            Some((code, migration)) => (code.to_owned(), Some(migration.to_owned())),
            None => (printed.clone(), None),
        };
        assert_eq!(code, expected, "`{command}` prints the template's code");
        if let Some(migration) = migration {
            let (up, _) = migration.split_once("\n\n-- down.sql").expect("a down.sql");
            let (_, sql) = template
                .split_once("const UP_SQL: &str = r\"\n")
                .expect("UP_SQL");
            let (sql, _) = sql.split_once("\n\";").expect("its end");
            assert_eq!(up, sql, "`{command}` prints the template's migration");
        }
        sections += 1;
    }
    assert_eq!(sections, 3);
    let refused = place.fails(&["generate", "event", "Task", "Archived", "reason"], 1);
    assert!(refused.contains("`name:Type`"), "{refused}");
    let refused = place.fails(&["generate", "aggregate", "task_list"], 1);
    assert!(refused.contains("upper camel case"), "{refused}");
}

/// `subscriptions` on the CRM's database after its story: each subscription of its dispatcher
/// with its position, events handled and behind, and state; `reset` moves one (a usage error for a
/// `--to` that is none of start, end, a time or an event id; an error for a name the dispatcher does
/// not declare); `run --catch-up` handles what is behind, in shards with `--shards`; `held` and
/// `retry` list and retry the events held back.
fn subscriptions_are_listed_reset_and_run(database_url: Option<String>) {
    let place = Place::of("crm", database_url, "cli_subscriptions");
    place.ok(&[]);
    let lines = |listing: String| -> Vec<Vec<String>> {
        listing
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().map(str::to_owned).collect())
            .collect()
    };
    let listed = lines(place.ok(&["subscriptions"]));
    // name, position, handled, behind, behind for, owner, state
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0][0], "contact_list");
    assert_eq!((listed[0][1].as_str(), listed[0][6].as_str()), ("-", "new"));
    assert_eq!(listed[1][0], "contact_list_v2");
    assert_eq!(
        (
            listed[1][2].as_str(),
            listed[1][3].as_str(),
            listed[1][6].as_str()
        ),
        ("5", "1", "idle"),
        "v2 handled the 5 events up to the switch; the notes email sent after is behind"
    );
    assert_eq!(
        place.ok(&["subscriptions", "reset", "contact_list_v2", "--to", "start"]),
        "subscription contact_list_v2 reset to after 0\n"
    );
    let listed = lines(place.ok(&["subscriptions", "list"]));
    assert_eq!((listed[1][2].as_str(), listed[1][3].as_str()), ("0", "6"));
    let bad = place.fails(
        &["subscriptions", "reset", "contact_list_v2", "--to", "soon"],
        2,
    );
    assert!(
        bad.contains("expected start, end, an event id or a time"),
        "{bad}"
    );
    let unknown = place.fails(&["subscriptions", "reset", "nope", "--to", "end"], 1);
    assert!(unknown.contains("subscription `nope`"), "{unknown}");
    assert_eq!(
        place.ok(&["subscriptions", "run", "contact_list_v2", "--catch-up"]),
        "subscription contact_list_v2: 6 events handled in 1 batches\n"
    );
    let listed = lines(place.ok(&["subscriptions"]));
    assert_eq!((listed[1][2].as_str(), listed[1][3].as_str()), ("6", "0"));
    // Nothing failed, so nothing is held back (the backend suite holds some back and retries).
    assert_eq!(place.ok(&["subscriptions", "held"]), "no event held back\n");
    assert_eq!(
        place.ok(&["subscriptions", "retry", "contact_list_v2"]),
        "subscription contact_list_v2: 0 held event(s) handled, 0 still held\n"
    );
    // In two shards: each reads its contacts' events from a checkpoint of its own.
    let sharded = place.ok(&[
        "subscriptions",
        "run",
        "contact_list_v2",
        "--catch-up",
        "--shards",
        "2",
    ]);
    let handled: Vec<(&str, u64)> = sharded
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (
                words[1].trim_end_matches(':'),
                words[2].parse().expect("a count"),
            )
        })
        .collect();
    assert_eq!(handled.len(), 2, "{sharded}");
    assert_eq!(handled[0].0, "contact_list_v2#0/2");
    assert_eq!(handled[1].0, "contact_list_v2#1/2");
    assert_eq!(handled[0].1 + handled[1].1, 6, "{sharded}");
    let listed = lines(place.ok(&["subscriptions"]));
    let names: Vec<&str> = listed.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "contact_list",
            "contact_list_v2",
            "contact_list_v2#0/2",
            "contact_list_v2#1/2"
        ]
    );
}

#[test]
fn subscriptions_are_listed_reset_and_run_on_sqlite() {
    subscriptions_are_listed_reset_and_run(None);
}

#[test]
#[cfg_attr(
    not(postgres_suite),
    ignore = "PG_DATABASE_URL is not set: the PostgreSQL run is skipped"
)]
fn subscriptions_are_listed_reset_and_run_on_postgres() {
    subscriptions_are_listed_reset_and_run(Some(postgres_url("the subscriptions command line")));
}

/// The warehouse example's relay on its command line: after the story, `relay` shows it caught
/// up; reset to the start it is 8 events behind; `relay run --catch-up` publishes them again and
/// JetStream drops every copy (its message ids); then it is caught up again.
#[cfg(feature = "nats")]
fn relay_is_shown_reset_and_run(database_url: Option<String>) {
    use es_diesel::relay::{Relay, RelayOptions};
    let nats = std::env::var("NATS_URL").expect("NATS_URL is set (CI=true needs it)");
    let stream = format!("ES_CLI_RELAY_{:08X}", fastrand::u32(..));
    let place = Place::of("warehouse", database_url, "cli_relay")
        .with_env("NATS_URL", nats.clone())
        .with_env("NATS_STREAM", stream.clone());
    let story = place.ok(&[]);
    assert!(
        story.contains("They equal the app's, field for field: true"),
        "{story}"
    );
    // name, position, handled, behind, ...; the last column is the state.
    let row = |status: String| -> Vec<String> {
        let mut lines = status.lines();
        assert_eq!(
            lines.next(),
            Some(format!("relay to NATS stream {stream} at {nats}").as_str())
        );
        let row = lines.nth(1).expect("the relay's line");
        row.split_whitespace().map(str::to_owned).collect()
    };
    let caught_up = row(place.ok(&["relay"]));
    assert_eq!(caught_up[0], format!("relay:{stream}"));
    assert_eq!((caught_up[2].as_str(), caught_up[3].as_str()), ("8", "0"));
    assert_eq!(caught_up.last().map(String::as_str), Some("idle"));
    assert_eq!(
        place.ok(&["relay", "reset", "--to", "start"]),
        format!("relay:{stream} reset to after 0\n")
    );
    let behind = row(place.ok(&["relay", "status"]));
    assert_eq!(behind[3], "8", "{behind:?}");
    assert_eq!(
        place.ok(&["relay", "run", "--catch-up"]),
        format!(
            "relay:{stream}: 0 events published (8 already in the stream) in 1 batches, 0 errors\n"
        )
    );
    let again = row(place.ok(&["relay"]));
    assert_eq!(again[3], "0", "{again:?}");
    let deleted = Relay::new(RelayOptions::new(nats, stream))
        .and_then(|relay| relay.delete_stream())
        .expect("delete the test's stream");
    assert!(deleted);
}

#[test]
#[cfg(feature = "nats")]
#[cfg_attr(
    not(nats_suite),
    ignore = "NATS_URL is not set: the relay's command line is not tested"
)]
fn relay_is_shown_reset_and_run_on_sqlite() {
    relay_is_shown_reset_and_run(None);
}

#[test]
#[cfg(feature = "nats")]
#[cfg_attr(
    not(all(nats_suite, postgres_suite)),
    ignore = "NATS_URL or PG_DATABASE_URL is not set: the relay's command line on PostgreSQL is \
              not tested"
)]
fn relay_is_shown_reset_and_run_on_postgres() {
    relay_is_shown_reset_and_run(Some(postgres_url("the relay's command line")));
}

/// The result of a `SELECT COUNT(*) AS value`.
#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    value: i64,
}

#[test]
fn every_command_on_sqlite() {
    every_command(None);
}

#[test]
#[cfg_attr(
    not(postgres_suite),
    ignore = "PG_DATABASE_URL is not set: the PostgreSQL run is skipped"
)]
fn every_command_on_postgres() {
    every_command(Some(postgres_url("the command line")));
}
