//! What the examples' tests share: a PostgreSQL schema of their own run.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

/// The URL of the PostgreSQL server of the PostgreSQL tests (`PG_DATABASE_URL`). They run only
/// when `build.rs` set `cfg(postgres_suite)`: with a URL, or under `CI=true`, where its absence
/// fails them here; otherwise they are listed as ignored.
pub(crate) fn postgres_url(what: &str) -> String {
    match std::env::var("PG_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => panic!("{what} must run on PostgreSQL, but PG_DATABASE_URL is not set"),
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
