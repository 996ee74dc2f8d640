//! Sets `cfg(postgres_suite)` when the examples' PostgreSQL tests are to run — `PG_DATABASE_URL`
//! names a PostgreSQL server, or `CI=true` (where a missing URL fails them) — so that without it
//! they are listed as ignored rather than passing without running.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(postgres_suite)");
    println!("cargo::rerun-if-env-changed=PG_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=CI");
    let url = std::env::var("PG_DATABASE_URL").unwrap_or_default();
    let ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
    if url.starts_with("postgres") || ci {
        println!("cargo::rustc-cfg=postgres_suite");
    }
}
