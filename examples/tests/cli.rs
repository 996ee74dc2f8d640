//! The operator command line (`es_diesel::cli`) as an operator runs it: the todo example's binary,
//! run as a process (assert_cmd) on the database its story wrote — a SQLite file, and PostgreSQL
//! when `PG_DATABASE_URL` is set (under `CI=true` it must be).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

/// The todo example's binary, next to the test binaries. `cargo test` builds the examples; a
/// narrower `cargo test --test cli` does not, so the binary is built here when it is missing or
/// older than the examples' library (rebuilding it always would redo it with this package's
/// features alone, after a workspace build with more).
fn todo_binary() -> PathBuf {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let binary = deps
        .parent()
        .expect("target/<profile>")
        .join("examples")
        .join(format!("todo{}", std::env::consts::EXE_SUFFIX));
    CHECKED.call_once(|| {
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
            let built = std::process::Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "es-examples", "--example", "todo"])
                .status()
                .expect("cargo runs");
            assert!(built.success(), "cargo build --example todo failed");
        }
    });
    binary
}

/// Where the todo example and its command line run: a directory (its `todo.db`) and, for
/// PostgreSQL, the database's URL.
struct Place {
    dir: tempfile::TempDir,
    database_url: Option<String>,
}

impl Place {
    fn todo(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        let mut command = Command::new(todo_binary());
        command.current_dir(self.dir.path()).args(args);
        match &self.database_url {
            Some(url) => command.env("DATABASE_URL", url),
            None => command.env_remove("DATABASE_URL"),
        };
        command.assert()
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
        let mut command = std::process::Command::new(todo_binary());
        command
            .current_dir(self.dir.path())
            .args(["jobs", "work"])
            .stdout(std::process::Stdio::piped());
        match &self.database_url {
            Some(url) => command.env("DATABASE_URL", url),
            None => command.env_remove("DATABASE_URL"),
        };
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

    /// Runs SQL on the database behind the command line, as an operator's psql would.
    fn sql(&self, sql: &str) {
        match &self.database_url {
            Some(url) => {
                let mut conn = PgConnection::establish(url).expect("PostgreSQL");
                conn.batch_execute(&format!("SET search_path TO example_todo; {sql}"))
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
    let place = Place {
        dir: tempfile::tempdir().expect("a temporary directory"),
        database_url,
    };
    // Before the story wrote its database, there is nothing to operate on.
    match &place.database_url {
        Some(url) => {
            let mut conn = PgConnection::establish(url).expect("PostgreSQL");
            conn.batch_execute("DROP SCHEMA IF EXISTS example_todo CASCADE")
                .expect("the schema is dropped");
            let missing = place.fails(&["log", "task", "1"], 1);
            assert!(missing.contains("task_events"), "{missing}");
        }
        None => {
            let missing = place.fails(&["log", "task", "1"], 1);
            assert!(missing.contains("no todo.db here"), "{missing}");
        }
    }
    place.ok(&[]);

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
    place.sql("DELETE FROM activities WHERE event_id > 5");
    let rebuilt = place.ok(&["rebuild-projection", "activity_feed"]);
    assert!(
        rebuilt.starts_with("rebuilt projection activity_feed from 10 events"),
        "{rebuilt}"
    );
    let unknown = place.fails(&["rebuild-projection", "nope"], 1);
    assert!(
        unknown.contains("the projections are: activity_feed"),
        "{unknown}"
    );

    // jobs: counts, a dead job listed, retried and run.
    assert_eq!(
        place.ok(&["jobs"]),
        "pending 0, running 0, done 12, dead 0\n"
    );
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
    assert_eq!(
        place.ok(&["jobs", "work", "--once"]),
        "jobs completed 1, retried 0, dead 0\n"
    );
    assert_eq!(
        place.ok(&["jobs", "counts"]),
        "pending 0, running 0, done 12, dead 0\n"
    );
    let stopped = place.work_until_interrupted();
    assert!(
        stopped.starts_with("working (Ctrl-C to stop)\n"),
        "{stopped}"
    );
    assert!(
        stopped.ends_with("jobs completed 0, retried 0, dead 0\n"),
        "{stopped}"
    );

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

#[test]
fn every_command_on_sqlite() {
    every_command(None);
}

#[test]
fn every_command_on_postgres() {
    let url = std::env::var("PG_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL"));
    match url.ok().filter(|url| url.starts_with("postgres")) {
        Some(url) => every_command(Some(url)),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but PG_DATABASE_URL is not set: the command line must run on PostgreSQL"
            )
        }
        None => {
            eprintln!("\n*** POSTGRES RUN OF THE COMMAND LINE SKIPPED: set PG_DATABASE_URL ***\n")
        }
    }
}
