//! The catalog's unit-test fixtures: a `subscription` aggregate with two events (and a variant of
//! one whose attribute is not in its schema), routed to a trigger, a projection and an async
//! reactor. Builds its catalog through the model's `Catalog`; the tests of `schema`, `render` and
//! `disk` use it.

use std::any::{Any, TypeId};

use schemars::Schema;

use super::model::Catalog;
use crate::__private::ApplyFailure;
use crate::event::EventContext;
use crate::registry::{AttributeDescriptor, EventDescriptor, Registry};
use crate::route::{EventRef, Pattern, Reactor, Route};

struct Subscription;

/// A subscription was created.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct Created {
    /// The plan.
    plan: String,
    /// Old events have no currency.
    #[serde(default = "usd")]
    currency: String,
    /// Optional notes.
    notes: Option<Vec<String>>,
}

fn usd() -> String {
    "USD".into()
}

/// A subscription was cancelled.
#[derive(schemars::JsonSchema)]
struct Cancelled {}

fn ignore(_: &mut dyn Any, _: &str, _: &EventContext<'_>) -> Result<(), ApplyFailure> {
    Ok(())
}

/// An event of the subscription aggregate, without aliases or doc comment.
const fn subscription_event(
    rust_name: &'static str,
    tag: &'static str,
    (creates, destroys): (bool, bool),
    attributes: &'static [AttributeDescriptor],
    schema: fn() -> Schema,
) -> EventDescriptor {
    EventDescriptor::__new(
        TypeId::of::<Subscription>,
        "subscription",
        "subscription_events",
        rust_name,
        tag,
        &[],
        creates,
        destroys,
        "",
        attributes,
        None,
        ignore,
        schema,
    )
}

static CREATED: EventDescriptor = subscription_event(
    "Created",
    "subscription.created",
    (true, false),
    &[
        AttributeDescriptor::__new("plan", "plan", "String", "The plan."),
        AttributeDescriptor::__new("currency", "currency", "String", "Old events..."),
        AttributeDescriptor::__new("notes", "notes", "Option<Vec<String>>", ""),
    ],
    crate::registry::schema_for::<Created>,
);
static CANCELLED: EventDescriptor = subscription_event(
    "Cancelled",
    "subscription.cancelled",
    (false, true),
    &[],
    crate::registry::schema_for::<Cancelled>,
);
/// `Created` with an attribute whose key is not in its schema.
pub(super) static RENAMED: EventDescriptor = subscription_event(
    "Created",
    "subscription.created",
    (true, false),
    &[AttributeDescriptor::__new(
        "plan",
        "plan_name",
        "String",
        "",
    )],
    crate::registry::schema_for::<Created>,
);

pub(super) const CANCEL: EventRef = EventRef {
    aggregate: "subscription",
    tag: "subscription.cancelled",
};
static ROUTES: &[Route] = &[
    Route {
        pattern: Pattern::Event {
            tag: "subscription.created",
            events_table: "subscription_events",
        },
        triggers: &[Reactor {
            name: "check_fraud",
            creates: &[CANCEL],
        }],
        asyncs: &[],
        projections: &[],
        subscriptions: &[],
    },
    Route {
        pattern: Pattern::Aggregate {
            name: "subscription",
            events_table: "subscription_events",
        },
        triggers: &[],
        asyncs: &[],
        projections: &["revenue"],
        subscriptions: &["search_index"],
    },
    Route {
        pattern: Pattern::All,
        triggers: &[],
        asyncs: &[Reactor {
            name: "forward",
            creates: &[],
        }],
        projections: &[],
        subscriptions: &[],
    },
];

pub(super) fn catalog() -> Catalog {
    let registry = Registry::build([&CREATED, &CANCELLED]).unwrap();
    Catalog::from_registry(&registry, ROUTES).unwrap()
}
