//! The event catalog of the test domain, `tests/catalog/`, is generated from the code and
//! committed: this test regenerates it, and under `CI=true` fails when the committed copy is stale.

use es_core::Registry;
use es_core::catalog::{Catalog, assert_catalog_fresh};
use es_tests::reactors::TestDispatcher;

const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog");

/// The aggregates of the test domain (not `card`, which exists only with PostgreSQL, so that the
/// catalog is the same whatever the backend features).
const AGGREGATES: &[&str] = &["board", "note", "post", "project", "task"];

#[test]
fn the_committed_catalog_is_fresh() {
    assert_catalog_fresh(CATALOG, AGGREGATES, TestDispatcher::ROUTES);
}

#[test]
fn the_catalog_lists_every_aggregate_of_the_domain_with_its_flows() {
    let catalog = Catalog::of_aggregates(
        Registry::global().unwrap(),
        AGGREGATES,
        TestDispatcher::ROUTES,
    )
    .unwrap();
    let aggregates: Vec<&str> = catalog.aggregates.iter().map(|a| &*a.name).collect();
    assert_eq!(aggregates, ["board", "note", "post", "project", "task"]);
    let post = &catalog.aggregates[2];
    let pinned = post.events.iter().find(|e| e.tag == "post.pinned").unwrap();
    let unpin = &pinned.reactors[0];
    assert_eq!(unpin.name, "unpin_other_post");
    assert!(unpin.sync);
    let created: Vec<&str> = unpin.creates.iter().map(|event| event.tag).collect();
    assert_eq!(created, ["post.unpinned", "board.pin_moved"]);
    let bus = pinned.reactors.last().unwrap();
    assert_eq!(
        (&*bus.name, bus.sync, &*bus.route),
        ("forward_to_event_bus", false, "*")
    );
    let page = catalog.to_markdown();
    assert!(
        page.contains(
            "    trigger__unpin_other_post -.->|creates| event__board__board_pin_moved\n"
        )
    );
}
