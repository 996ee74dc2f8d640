//! Never built: sqlx-sqlite, its only dependent, is not enabled in this benchmark.
