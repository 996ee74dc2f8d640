//! Generative tests: random sequences of events and commands on a few aggregates. Whatever was
//! refused along the way (creating twice, completing a destroyed task, an invalid title),
//! afterwards every aggregate as stored equals its replay and its time travel to its last version,
//! and replaying it again changes nothing. Run by proptest on the in-memory store and SQLite
//! (`tests/test_generative.rs`) and on every backend (`tests/backends/reliability.rs`).

use crate::commands::{UpdatePost, WritePost};
use crate::domain::{Completed, Created, Destroyed, DueDateSet, Task, TitleUpdated};
use crate::reactors::Post;
use es_core::{AppendOptions, AsOf, EventStore, Metadata, NewEvent};
use proptest::prelude::*;

/// One step: an append of one or two events to a task, or a command on a post.
#[derive(Debug, Clone)]
pub enum Step {
    /// Create task `n` with a title.
    Create(usize, String),
    /// Retitle task `n`.
    Retitle(usize, String),
    /// Set the due day (in April) of task `n`.
    DueOn(usize, u8),
    /// Complete task `n`.
    Complete(usize),
    /// Destroy task `n` (its row is deleted).
    Destroy(usize),
    /// Retitle and complete task `n` in one append.
    RetitleThenComplete(usize, String),
    /// Run the `WritePost` command on post `n`.
    WritePost(usize, String),
    /// Run the `UpdatePost` command on post `n`.
    UpdatePost(usize, Option<String>, Option<bool>),
}

/// How many aggregates of each type the steps touch.
pub const AGGREGATES: usize = 4;

fn title() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "a", "b", "slides"]).prop_map(str::to_owned)
}

/// A random step.
pub fn step() -> impl Strategy<Value = Step> {
    let id = 0..AGGREGATES;
    prop_oneof![
        (id.clone(), title()).prop_map(|(id, title)| Step::Create(id, title)),
        (id.clone(), title()).prop_map(|(id, title)| Step::Retitle(id, title)),
        (id.clone(), 1..28u8).prop_map(|(id, day)| Step::DueOn(id, day)),
        id.clone().prop_map(Step::Complete),
        id.clone().prop_map(Step::Destroy),
        (id.clone(), title()).prop_map(|(id, title)| Step::RetitleThenComplete(id, title)),
        (id.clone(), title()).prop_map(|(id, title)| Step::WritePost(id, title)),
        (
            id,
            prop::option::of(title()),
            prop::option::of(any::<bool>())
        )
            .prop_map(|(id, title, published)| Step::UpdatePost(id, title, published)),
    ]
}

/// Runs the steps (refusals are part of the game) on aggregates `base + 0..AGGREGATES`, then
/// checks every aggregate against its events.
pub fn run_and_check<S>(store: &mut S, base: i64, steps: &[Step]) -> Result<(), TestCaseError>
where
    S: EventStore<Task> + EventStore<Post>,
{
    for step in steps {
        let options = AppendOptions::with_metadata(Metadata::by_actor("prop"));
        let id = |n: &usize| base + *n as i64;
        // A refusal (a typed error) is a legitimate outcome of a random step.
        let _accepted: bool = match step.clone() {
            Step::Create(n, title) => store.append(&id(&n), Created { title }, &options).is_ok(),
            Step::Retitle(n, title) => {
                let retitled = TitleUpdated { title };
                store.append(&id(&n), retitled, &options).is_ok()
            }
            Step::DueOn(n, day) => {
                let due_on = format!("2026-04-{day:02}");
                store
                    .append(&id(&n), DueDateSet { due_on }, &options)
                    .is_ok()
            }
            Step::Complete(n) => store.append(&id(&n), Completed {}, &options).is_ok(),
            Step::Destroy(n) => store.append(&id(&n), Destroyed {}, &options).is_ok(),
            Step::RetitleThenComplete(n, title) => {
                let events: Vec<NewEvent<Task>> =
                    vec![TitleUpdated { title }.into(), Completed {}.into()];
                store.append(&id(&n), events, &options).is_ok()
            }
            Step::WritePost(n, title) => {
                let write = WritePost { id: id(&n), title };
                store.execute(&write, &options).is_ok()
            }
            Step::UpdatePost(n, title, published) => {
                let update = UpdatePost {
                    id: id(&n),
                    title,
                    published,
                    ..UpdatePost::default()
                };
                store.execute(&update, &options).is_ok()
            }
        };
    }
    for n in 0..AGGREGATES as i64 {
        check_one::<S, Task>(store, base + n)?;
        check_one::<S, Post>(store, base + n)?;
    }
    Ok(())
}

fn check_one<S, A>(store: &mut S, id: i64) -> Result<(), TestCaseError>
where
    S: EventStore<A>,
    A: es_core::Aggregate<Id = i64> + PartialEq + std::fmt::Debug,
{
    let history = store.history(&id).unwrap();
    let versions: Vec<i64> = history.iter().map(|event| event.version).collect();
    let contiguous: Vec<i64> = (1..=history.len() as i64).collect();
    prop_assert_eq!(versions, contiguous);
    let stored = store.load(&id).unwrap();
    let travelled = store
        .state_as_of(&id, AsOf::Version(history.len() as i64))
        .unwrap();
    prop_assert_eq!(
        &stored,
        &travelled,
        "{} {}: stored vs time travel",
        A::NAME,
        id
    );
    let replayed = store.replay(&id).unwrap();
    prop_assert_eq!(&stored, &replayed, "{} {}: stored vs replay", A::NAME, id);
    let again = store.replay(&id).unwrap();
    prop_assert_eq!(
        &replayed,
        &again,
        "{} {}: replay is idempotent",
        A::NAME,
        id
    );
    prop_assert_eq!(
        store.history(&id).unwrap(),
        history,
        "replay writes no event"
    );
    Ok(())
}
