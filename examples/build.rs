//! Sets `cfg(postgres_suite)` when the examples' PostgreSQL tests are to run — `PG_DATABASE_URL`
//! names a PostgreSQL server, or `CI=true` (where a missing URL fails them) — so that without it
//! they are listed as ignored rather than passing without running; and `cfg(nats_suite)` for
//! the relay's test of the warehouse example, when `NATS_URL` is set or `CI=true`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(postgres_suite)");
    println!("cargo::rustc-check-cfg=cfg(nats_suite)");
    println!("cargo::rerun-if-env-changed=NATS_URL");
    println!("cargo::rerun-if-env-changed=PG_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=CI");
    let url = std::env::var("PG_DATABASE_URL").unwrap_or_default();
    let ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
    if url.starts_with("postgres") || ci {
        println!("cargo::rustc-cfg=postgres_suite");
    }
    if std::env::var("NATS_URL").is_ok_and(|url| !url.is_empty()) || ci {
        println!("cargo::rustc-cfg=nats_suite");
    }
}
