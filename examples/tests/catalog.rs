//! The event catalog of the to-do app (the domain of the `todo` and `worker` examples),
//! `catalog/todo/`, is generated from the code and committed: this test regenerates it, and under
//! `CI=true` fails when the committed copy is stale.

use es_examples::todo::{CATALOG, TodoDispatcher};

#[test]
fn the_committed_catalog_is_fresh() {
    es_core::catalog::assert_catalog_fresh(CATALOG, TodoDispatcher::ROUTES);
}
