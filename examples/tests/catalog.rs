//! The event catalog of each example app, `catalog/<example>/`, is generated from the code and
//! committed: these tests regenerate them, and under `CI=true` fail when a committed copy is
//! stale. (The worker example runs the to-do app: its catalog is `catalog/todo/`.)

use es_core::catalog::assert_catalog_fresh;
use es_examples::{crm, drip, meetings, todo};

#[test]
fn the_todo_catalog_is_fresh() {
    assert_catalog_fresh(
        todo::CATALOG,
        todo::AGGREGATES,
        todo::TodoDispatcher::ROUTES,
    );
}

#[test]
fn the_drip_catalog_is_fresh() {
    assert_catalog_fresh(
        drip::CATALOG,
        drip::AGGREGATES,
        drip::DripDispatcher::ROUTES,
    );
}

#[test]
fn the_meetings_catalog_is_fresh() {
    assert_catalog_fresh(meetings::CATALOG, meetings::AGGREGATES, &[]);
}

#[test]
fn the_crm_catalog_is_fresh() {
    assert_catalog_fresh(crm::CATALOG, crm::AGGREGATES, crm::CrmDispatcher::ROUTES);
}
