//! Generative tests: random sequences of events and commands on a few aggregates. Whatever was
//! refused along the way (creating twice, completing a destroyed task, an invalid title),
//! afterwards every aggregate as stored equals its replay and its time travel to its last version,
//! and replaying it again changes nothing. The steps a store accepted are counted: a store that
//! refuses every write of a kind (and so trivially replays to what it stored) fails the test. Run
//! by proptest on the in-memory store and SQLite (`tests/test_generative.rs`) and on every backend
//! (`tests/backends/reliability.rs`), with a fixed seed so that a failure reproduces.

use crate::commands::{UpdatePost, WritePost};
use crate::domain::{Completed, Created, Destroyed, DueDateSet, Task, TitleUpdated};
use crate::reactors::Post;
use es_core::{AppendOptions, AsOf, EventStore, Metadata, NewEvent};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

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

impl Step {
    /// The names of the kinds of step, in the order of [`Step::kind`].
    pub const KINDS: [&'static str; 8] = [
        "Create",
        "Retitle",
        "DueOn",
        "Complete",
        "Destroy",
        "RetitleThenComplete",
        "WritePost",
        "UpdatePost",
    ];

    /// The index of this step's kind in [`Step::KINDS`].
    pub fn kind(&self) -> usize {
        match self {
            Step::Create(..) => 0,
            Step::Retitle(..) => 1,
            Step::DueOn(..) => 2,
            Step::Complete(..) => 3,
            Step::Destroy(..) => 4,
            Step::RetitleThenComplete(..) => 5,
            Step::WritePost(..) => 6,
            Step::UpdatePost(..) => 7,
        }
    }
}

/// How many steps of each kind ([`Step::KINDS`]) a store accepted; it refused the others, as
/// it may.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted(pub [u32; Step::KINDS.len()]);

/// The counts of two runs together.
impl std::ops::Add for Accepted {
    type Output = Accepted;

    fn add(mut self, other: Accepted) -> Accepted {
        for (total, more) in self.0.iter_mut().zip(other.0) {
            *total += more;
        }
        self
    }
}

/// Runs `case` on `cases` random sequences of up to 40 steps (a fixed seed: a failure
/// reproduces) and adds up the steps it says its store accepted. Fails with proptest's report
/// when a case fails, and when the store accepted no step of some kind over all the cases:
/// every kind is accepted many times over by a working store, so a store that refuses them (and
/// then, having stored nothing, trivially replays to what it stored) proves nothing.
pub fn random_histories(
    cases: u32,
    case: impl Fn(&[Step]) -> Result<Accepted, TestCaseError>,
) -> Result<Accepted, String> {
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let config = Config {
        cases,
        // The seed is fixed: a failure reproduces without a file of regressions.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let total = std::cell::Cell::new(Accepted::default());
    runner
        .run(&proptest::collection::vec(step(), 0..40), |steps| {
            total.set(total.get() + case(&steps)?);
            Ok(())
        })
        .map_err(|failure| failure.to_string())?;
    let total = total.get();
    let refused: Vec<&str> = Step::KINDS
        .iter()
        .zip(total.0)
        .filter(|(_, accepted)| *accepted == 0)
        .map(|(kind, _)| *kind)
        .collect();
    if refused.is_empty() {
        Ok(total)
    } else {
        Err(format!(
            "the store accepted no step of the kinds {refused:?} in {cases} random histories \
             (accepted: {total:?})"
        ))
    }
}

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
/// checks every aggregate against its events; returns how many steps the store accepted.
pub fn run_and_check<S>(store: &mut S, base: i64, steps: &[Step]) -> Result<Accepted, TestCaseError>
where
    S: EventStore<Task> + EventStore<Post>,
{
    let mut accepted = Accepted::default();
    for step in steps {
        let options = AppendOptions::with_metadata(Metadata::by_actor("prop"));
        let id = |n: &usize| base + *n as i64;
        // A refusal (a typed error) is a legitimate outcome of a random step.
        let done: bool = match step.clone() {
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
        accepted.0[step.kind()] += u32::from(done);
    }
    for n in 0..AGGREGATES as i64 {
        check_one::<S, Task>(store, base + n)?;
        check_one::<S, Post>(store, base + n)?;
    }
    Ok(accepted)
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
