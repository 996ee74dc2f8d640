//! SQLite connections with the settings a store needs.
//!
//! SQLite's defaults (rollback journal, `synchronous=FULL`, no busy timeout) make a second
//! connection fail at once with "database is locked" and cost ~30× in write throughput. Every
//! connection made here sets, one statement each: `busy_timeout`, `journal_mode=WAL` (files only),
//! `synchronous=NORMAL`, `foreign_keys=ON`.

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionResult};

/// How long a connection waits for the write lock before failing.
pub const BUSY_TIMEOUT_MS: u32 = 10_000;

/// Applies the store's settings to an open connection.
pub fn configure(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
    conn.batch_execute(&format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"))?;
    conn.batch_execute("PRAGMA journal_mode = WAL;")?;
    conn.batch_execute("PRAGMA synchronous = NORMAL;")?;
    conn.batch_execute("PRAGMA foreign_keys = ON;")
}

/// Opens `url` (a path, or `:memory:`) and applies [`configure`].
pub fn establish(url: &str) -> ConnectionResult<SqliteConnection> {
    let mut conn = SqliteConnection::establish(url)?;
    configure(&mut conn).map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// An r2d2 customizer applying [`configure`] to every pooled connection.
///
/// ```
/// use diesel::r2d2::{ConnectionManager, Pool};
/// use diesel::sqlite::SqliteConnection;
///
/// let pool = Pool::builder()
///     .connection_customizer(Box::new(es_diesel::sqlite::Settings))
///     .build(ConnectionManager::<SqliteConnection>::new(":memory:"))?;
/// let _conn = pool.get()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "r2d2")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings;

#[cfg(feature = "r2d2")]
impl diesel::r2d2::CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Settings {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        configure(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}
