//! Writing the model out: the YAML, the Markdown page with its Mermaid diagram of the flows, the
//! JSON Schemas (keys sorted by `schema`'s [`sorted`]), and the list of every [`CatalogFile`].
//! Reads the model (`super::model`) and calls `schema` only for `sorted`; knows nothing of the
//! disk (its tests use `fixtures`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use schemars::Schema;

use super::model::{
    Catalog, CatalogError, CatalogFile, EventDoc, MARKDOWN_FILE, ReactorKind, YAML_FILE,
    app_metadata_schema_path, metadata_schema_path, schema_path,
};
use super::schema::sorted;
use crate::route::{EventRef, Pattern};

impl ReactorKind {
    fn name(self) -> &'static str {
        match self {
            ReactorKind::Trigger => "trigger",
            ReactorKind::Async => "async",
            ReactorKind::Project => "project",
            ReactorKind::Subscribe => "subscribe",
        }
    }
}

impl Catalog {
    /// The catalog as YAML (`catalog.yaml`).
    pub fn to_yaml(&self) -> Result<String, CatalogError> {
        let header = "# The event catalog, generated from the code by es_core::catalog: do not \
                      edit.\n";
        let body = serde_norway::to_string(self).map_err(CatalogError::Yaml)?;
        Ok(format!("{header}{body}"))
    }

    /// The JSON Schemas, each with its path relative to the catalog directory: one per event's
    /// `data` (and its application metadata, if it declares one), then the `metadata`'s.
    pub fn json_schemas(&self) -> Vec<(PathBuf, &Schema)> {
        let events = self.aggregates.iter().flat_map(|aggregate| {
            aggregate.events.iter().flat_map(|event| {
                let data = (schema_path(&aggregate.name, &event.tag), &event.data_schema);
                let app = event.app_metadata.as_ref().map(|app| {
                    let path = app_metadata_schema_path(&aggregate.name, &event.tag);
                    (path, &app.schema)
                });
                std::iter::once(data).chain(app)
            })
        });
        events
            .chain(std::iter::once((
                metadata_schema_path(),
                &self.metadata.schema,
            )))
            .collect()
    }

    /// The catalog as a Markdown page (`catalog.md`), with a Mermaid diagram of the flows.
    pub fn to_markdown(&self) -> String {
        let mut page = String::from(
            "# Event catalog\n\n<!-- Generated from the code by es_core::catalog: do not edit. \
             -->\n\n## Flows\n\nEach event, the reactors it is routed to, and the events they \
             may create.\n\n```mermaid\n",
        );
        page.push_str(&self.mermaid());
        page.push_str("```\n");
        for aggregate in &self.aggregates {
            let _ = write!(
                page,
                "\n## {}\n\nEvents table: `{}`.\n",
                aggregate.name, aggregate.events_table
            );
            for event in &aggregate.events {
                markdown_event(&mut page, event);
            }
        }
        page.push_str(
            "\n## Metadata\n\nKnown when any event is created, stored in its `metadata` \
             column. No field is required.\n\n| field | JSON type | description |\n|---|---|---|\n",
        );
        for field in &self.metadata.fields {
            let _ = writeln!(
                page,
                "| `{}` | {} | {} |",
                field.name,
                cell(&field.json_type),
                cell(&field.doc)
            );
        }
        if self.metadata.other_keys {
            page.push_str("\nAny other key is kept as free-form context.\n");
        }
        page
    }

    /// Every file of the catalog, sorted by path.
    pub fn files(&self) -> Result<Vec<CatalogFile>, CatalogError> {
        let mut files = vec![
            CatalogFile {
                path: PathBuf::from(YAML_FILE),
                contents: self.to_yaml()?,
            },
            CatalogFile {
                path: PathBuf::from(MARKDOWN_FILE),
                contents: self.to_markdown(),
            },
        ];
        for (path, schema) in self.json_schemas() {
            let mut contents =
                serde_json::to_string_pretty(&sorted(schema.as_value())).map_err(|source| {
                    CatalogError::Json {
                        path: path.clone(),
                        source,
                    }
                })?;
            contents.push('\n');
            files.push(CatalogFile { path, contents });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }
}

/// Escapes a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn markdown_event(page: &mut String, event: &EventDoc) {
    let _ = write!(page, "\n### `{}` (`{}`)\n\n", event.tag, event.rust_name);
    if !event.doc.is_empty() {
        let _ = write!(page, "{}\n\n", event.doc);
    }
    if event.creates {
        page.push_str("Creates its aggregate.\n\n");
    }
    if event.destroys {
        page.push_str("Destroys its aggregate (its row is deleted; its events are kept).\n\n");
    }
    if !event.aliases.is_empty() {
        let aliases: Vec<String> = event.aliases.iter().map(|a| format!("`{a}`")).collect();
        let _ = write!(page, "Former tags: {}.\n\n", aliases.join(", "));
    }
    if event.attributes.is_empty() {
        page.push_str("No data attributes.\n");
    } else {
        page.push_str(
            "| attribute | Rust type | JSON type | required | description |\n|---|---|---|---|---|\n",
        );
        for attribute in &event.attributes {
            let required = match &attribute.default {
                _ if attribute.required => "yes".to_owned(),
                Some(default) => format!("no, default `{default}`"),
                None => "no".to_owned(),
            };
            let _ = writeln!(
                page,
                "| `{}` | `{}` | {} | {} | {} |",
                attribute.name,
                cell(attribute.rust_type.as_deref().unwrap_or_default()),
                cell(&attribute.json_type),
                cell(&required),
                cell(&attribute.doc)
            );
        }
    }
    if let Some(app) = &event.app_metadata {
        let _ = write!(
            page,
            "\nIts `metadata` also carries `{}`:\n\n| key | JSON type | required | description \
             |\n|---|---|---|---|\n",
            app.rust_type
        );
        for field in &app.fields {
            let _ = writeln!(
                page,
                "| `{}` | {} | {} | {} |",
                field.name,
                cell(&field.json_type),
                if field.required { "yes" } else { "no" },
                cell(&field.doc)
            );
        }
    }
    if !event.reactors.is_empty() {
        page.push_str("\nRouted to:\n\n");
        for reactor in &event.reactors {
            let timing = if reactor.sync {
                "in the write transaction"
            } else {
                "after commit by a worker"
            };
            let _ = write!(
                page,
                "- `{}` ({}, {timing}) via `{}`",
                reactor.name,
                reactor.kind.name(),
                reactor.route
            );
            if !reactor.creates.is_empty() {
                let created: Vec<String> = reactor
                    .creates
                    .iter()
                    .map(|event| format!("`{}`", event.tag))
                    .collect();
                let _ = write!(page, "; may create {}", created.join(", "));
            }
            page.push('\n');
        }
    }
}

/// A Mermaid identifier made of `parts`.
fn node_id(parts: &[&str]) -> String {
    parts
        .join("__")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl Catalog {
    /// The Mermaid flowchart of the routes: pattern → reactor (labelled with its kind) → created events.
    fn mermaid(&self) -> String {
        let mut nodes: BTreeSet<String> = BTreeSet::new();
        let mut edges: Vec<String> = Vec::new();
        let event_node = |event: &EventRef, nodes: &mut BTreeSet<String>| {
            let id = node_id(&["event", event.aggregate, event.tag]);
            nodes.insert(format!("{id}[\"{}\"]", event.tag));
            id
        };
        for route in &self.routes {
            let source = match route.pattern {
                Pattern::Event { tag, events_table } => {
                    let aggregate = self
                        .aggregates
                        .iter()
                        .find(|aggregate| aggregate.events_table == events_table)
                        .map_or(events_table, |aggregate| aggregate.name.as_str());
                    let id = node_id(&["event", aggregate, tag]);
                    nodes.insert(format!("{id}[\"{tag}\"]"));
                    id
                }
                Pattern::Aggregate { name, .. } => {
                    let id = node_id(&["every", name]);
                    nodes.insert(format!("{id}{{{{\"every {name} event\"}}}}"));
                    id
                }
                Pattern::All => {
                    nodes.insert("every_event{{\"every event\"}}".to_owned());
                    "every_event".to_owned()
                }
            };
            let reactors = route
                .triggers
                .iter()
                .map(|reactor| (ReactorKind::Trigger, reactor.name, reactor.creates))
                .chain(
                    route
                        .projections
                        .iter()
                        .map(|name| (ReactorKind::Project, *name, &[][..])),
                )
                .chain(
                    route
                        .subscriptions
                        .iter()
                        .map(|name| (ReactorKind::Subscribe, *name, &[][..])),
                )
                .chain(
                    route
                        .asyncs
                        .iter()
                        .map(|reactor| (ReactorKind::Async, reactor.name, reactor.creates)),
                );
            for (kind, name, creates) in reactors {
                let id = node_id(&[kind.name(), name]);
                let shape = match kind {
                    ReactorKind::Trigger => format!("{id}[[\"{name}\"]]"),
                    ReactorKind::Async => format!("{id}([\"{name}\"])"),
                    ReactorKind::Project => format!("{id}[(\"{name}\")]"),
                    ReactorKind::Subscribe => format!("{id}[/\"{name}\"/]"),
                };
                nodes.insert(shape);
                edges.push(format!("    {source} -->|{}| {id}", kind.name()));
                for created in creates {
                    let target = event_node(created, &mut nodes);
                    edges.push(format!("    {id} -.->|creates| {target}"));
                }
            }
        }
        let mut chart = String::from("flowchart LR\n");
        for node in nodes {
            let _ = writeln!(chart, "    {node}");
        }
        for edge in edges {
            chart.push_str(&edge);
            chart.push('\n');
        }
        chart
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::fixtures::catalog;

    #[test]
    fn the_markdown_page_draws_the_flows() {
        let page = catalog().to_markdown();
        for line in [
            "    event__subscription__subscription_created -->|trigger| trigger__check_fraud\n",
            "    trigger__check_fraud -.->|creates| event__subscription__subscription_cancelled\n",
            "    every__subscription -->|project| project__revenue\n",
            "    every_event -->|async| async__forward\n",
            "| `currency` | `String` | string | no, default `\"USD\"` | Old events... |\n",
            "| `notes` | `Option<Vec<String>>` | array of string \\| null | no | Optional notes. |\n",
        ] {
            assert!(page.contains(line), "{line} not in:\n{page}");
        }
    }
}
