//! The routes of a dispatcher, described for documentation and tooling.
//!
//! A backend's dispatcher (`es_diesel::dispatcher!`) generates them; the [catalog](crate::catalog)
//! reads them to say which reactors each event reaches and which events those reactors create.

/// What a route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// One event type.
    Event {
        /// Its tag.
        tag: &'static str,
        /// Its events table.
        events_table: &'static str,
    },
    /// Every event of one aggregate.
    Aggregate {
        /// The aggregate's name.
        name: &'static str,
        /// Its events table.
        events_table: &'static str,
    },
    /// Every event.
    All,
}

impl Pattern {
    /// Whether the route matches the event `tag` of the aggregate whose events table is
    /// `events_table`.
    pub fn matches(&self, events_table: &str, tag: &str) -> bool {
        match *self {
            Pattern::Event {
                tag: route_tag,
                events_table: table,
            } => table == events_table && route_tag == tag,
            Pattern::Aggregate {
                events_table: table,
                ..
            } => table == events_table,
            Pattern::All => true,
        }
    }
}

/// One route of a dispatcher: what it matches and the reactors it runs, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// What it matches.
    pub pattern: Pattern,
    /// Reactors run in the write transaction, in order.
    pub triggers: &'static [Reactor],
    /// Reactors run by a worker after commit.
    pub asyncs: &'static [Reactor],
    /// Projection handlers, run in the write transaction and by projection rebuilds.
    pub projections: &'static [&'static str],
    /// Subscription handlers, each the handler of the subscription of its name: run after
    /// commit by a subscriber reading every event in one total order, from a checkpoint.
    pub subscriptions: &'static [&'static str],
}

/// A trigger or async reactor of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reactor {
    /// Its path as written in the dispatcher (`notify_creator`, `reactors::pong`).
    pub name: &'static str,
    /// The events it may create, as declared with `reactor -> [Event, ...]`.
    pub creates: &'static [EventRef],
}

/// An event type named by a route: its aggregate and its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct EventRef {
    /// The aggregate's name ([`Aggregate::NAME`](crate::Aggregate::NAME)).
    pub aggregate: &'static str,
    /// The event's tag.
    pub tag: &'static str,
}
