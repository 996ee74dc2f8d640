//! What the examples' tests share: a PostgreSQL schema of their own run.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

/// The URL of the PostgreSQL server for the PostgreSQL half of a test (`PG_DATABASE_URL`, else
/// `DATABASE_URL`), if one is set; under `CI=true` one must be.
pub(crate) fn postgres_url(what: &str) -> Option<String> {
    let url = std::env::var("PG_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL"));
    match url.ok().filter(|url| url.starts_with("postgres")) {
        Some(url) => Some(url),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but PG_DATABASE_URL is not set: {what} must run on PostgreSQL")
        }
        None => {
            eprintln!("\n*** POSTGRES RUN OF {what} SKIPPED: set PG_DATABASE_URL ***\n");
            None
        }
    }
}

/// A PostgreSQL schema for one test that no other run of the tests can share,
/// `es_<run>_example_<test>` (`<run>` drawn once per process), dropped when the value is (kept
/// when the test failed, for a look). The example binaries run in it when
/// `es_examples::db::SCHEMA_VAR` names it.
pub(crate) struct RunSchema {
    url: String,
    name: String,
}

impl RunSchema {
    /// The schema of this run for `test` on the server at `url` (not created: the example's
    /// story creates it).
    pub(crate) fn new(url: &str, test: &str) -> Self {
        static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let run = RUN.get_or_init(|| format!("{:08x}", fastrand::u32(..)));
        Self {
            url: url.to_owned(),
            name: format!("es_{run}_example_{test}"),
        }
    }

    /// The schema's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for RunSchema {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the test schema `{}`", self.name);
            return;
        }
        if let Ok(mut conn) = PgConnection::establish(&self.url) {
            let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}
