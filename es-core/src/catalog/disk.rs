//! The catalog on disk: writing it at boot ([`write_catalog`]), and keeping the committed copy
//! fresh from a test ([`refresh_catalog`], [`assert_catalog_fresh`]: rewrite it, or under
//! `CI=true` fail on the first stale, missing or left-over file). Calls the model
//! (`super::model`) and, through [`Catalog::files`], the rendering; nothing calls it back (its
//! tests use `fixtures`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::model::{Catalog, CatalogError, CatalogFile, SCHEMAS_DIR};
use crate::registry::Registry;
use crate::route::Route;

impl Catalog {
    /// Writes the catalog under `dir`, creating it, rewriting only the files that changed and
    /// removing the JSON Schemas of events that no longer exist.
    pub fn write_to(&self, dir: impl AsRef<Path>) -> Result<(), CatalogError> {
        let dir = dir.as_ref();
        let files = self.files()?;
        for file in &files {
            let path = dir.join(&file.path);
            if read(&path)?.as_deref() == Some(file.contents.as_str()) {
                continue;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io("write", parent))?;
            }
            std::fs::write(&path, &file.contents).map_err(io("write", &path))?;
        }
        for path in obsolete_schemas(dir, &files)? {
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
        }
        Ok(())
    }

    /// Checks that the catalog under `dir` is exactly this one: fails with
    /// [`CatalogError::Stale`], naming the first stale file and the command `refresh` that
    /// regenerates it.
    pub fn check(&self, dir: impl AsRef<Path>, refresh: &str) -> Result<(), CatalogError> {
        let dir = dir.as_ref();
        let files = self.files()?;
        let stale = |path: PathBuf, reason| CatalogError::Stale {
            path,
            reason,
            refresh: refresh.to_owned(),
        };
        for file in &files {
            let path = dir.join(&file.path);
            match read(&path)? {
                None => return Err(stale(path, "is missing")),
                Some(contents) if contents != file.contents => {
                    return Err(stale(path, "differs from what the code generates"));
                }
                Some(_) => {}
            }
        }
        match obsolete_schemas(dir, &files)?.into_iter().next() {
            Some(path) => Err(stale(path, "describes an event that no longer exists")),
            None => Ok(()),
        }
    }
}

/// Builds the catalog of the events of `aggregates` with `routes` and writes it under `dir`: the
/// one call to make at boot.
pub fn write_catalog(
    dir: impl AsRef<Path>,
    aggregates: &[&str],
    routes: &[Route],
) -> Result<Catalog, CatalogError> {
    let catalog = Catalog::of_aggregates(Registry::global()?, aggregates, routes)?;
    catalog.write_to(dir)?;
    Ok(catalog)
}

/// Keeps the committed catalog of `aggregates` under `dir` fresh, from a test: rewrites it, or,
/// under `CI=true`, checks it and fails when it is stale.
///
/// The failure names the stale file and the command that regenerates it (`cargo test -p <the
/// crate under test>`).
pub fn refresh_catalog(
    dir: impl AsRef<Path>,
    aggregates: &[&str],
    routes: &[Route],
) -> Result<(), CatalogError> {
    let catalog = Catalog::of_aggregates(Registry::global()?, aggregates, routes)?;
    if in_ci() {
        let refresh = match std::env::var("CARGO_PKG_NAME") {
            Ok(package) => format!("cargo test -p {package}"),
            Err(_) => "cargo test".to_owned(),
        };
        catalog.check(dir, &refresh)
    } else {
        catalog.write_to(dir)
    }
}

/// [`refresh_catalog`] as a test assertion.
///
/// # Panics
///
/// When the catalog cannot be written, or under `CI=true` when it is stale, with a message saying
/// which file and how to refresh it.
#[track_caller]
pub fn assert_catalog_fresh(dir: impl AsRef<Path>, aggregates: &[&str], routes: &[Route]) {
    if let Err(error) = refresh_catalog(dir, aggregates, routes) {
        panic!("{error}");
    }
}

/// `CI=true`, as GitHub Actions and GitLab CI set it: the one rule of this workspace (its test
/// suites also fail, rather than skip, a backend suite without its URL under it).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CatalogError {
    let path = path.to_owned();
    move |source| CatalogError::Io {
        action,
        path,
        source,
    }
}

/// The contents of `path`, or `None` if it does not exist.
fn read(path: &Path) -> Result<Option<String>, CatalogError> {
    match std::fs::read_to_string(path) {
        Ok(contents) => Ok(Some(contents)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io("read", path)(error)),
    }
}

/// The `*.schema.json` files under `dir/schemas` that the catalog no longer generates, sorted.
fn obsolete_schemas(dir: &Path, files: &[CatalogFile]) -> Result<Vec<PathBuf>, CatalogError> {
    let wanted: BTreeSet<PathBuf> = files.iter().map(|file| dir.join(&file.path)).collect();
    let mut obsolete = Vec::new();
    let mut pending = vec![dir.join(SCHEMAS_DIR)];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(io("read", &current)(error)),
        };
        for entry in entries {
            let path = entry.map_err(io("read", &current))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(".schema.json") && !wanted.contains(&path) {
                obsolete.push(path);
            }
        }
    }
    obsolete.sort();
    Ok(obsolete)
}

#[cfg(test)]
mod tests {
    use crate::catalog::fixtures::catalog;
    use crate::catalog::model::{YAML_FILE, schema_path};

    #[test]
    fn a_written_catalog_is_fresh_until_a_file_differs_or_is_left_over() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog();
        catalog.write_to(dir.path()).unwrap();
        catalog.check(dir.path(), "cargo test").unwrap();
        let schema = dir
            .path()
            .join(schema_path("subscription", "subscription.created"));
        assert!(
            std::fs::read_to_string(&schema)
                .unwrap()
                .contains("\"default\": \"USD\"")
        );

        std::fs::write(&schema, "{}").unwrap();
        let error = catalog.check(dir.path(), "cargo test -p app").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the event catalog is stale: `{}` differs from what the code generates; \
                 regenerate it by running `cargo test -p app` without `CI=true`, and commit the \
                 result",
                schema.display()
            )
        );

        catalog.write_to(dir.path()).unwrap();
        let gone = dir
            .path()
            .join(schema_path("subscription", "subscription.paused"));
        std::fs::write(&gone, "{}").unwrap();
        let error = catalog.check(dir.path(), "cargo test").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("describes an event that no longer exists"),
            "{error}"
        );
        catalog.write_to(dir.path()).unwrap();
        assert!(!gone.exists());
        catalog.check(dir.path(), "cargo test").unwrap();

        std::fs::remove_file(dir.path().join(YAML_FILE)).unwrap();
        let error = catalog.check(dir.path(), "cargo test").unwrap_err();
        assert!(
            error.to_string().contains("catalog.yaml` is missing"),
            "{error}"
        );
    }
}
