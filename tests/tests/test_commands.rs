//! Commands on the in-memory store: the command contract, the test kit failing when it should,
//! and property tests of the no-op and change-detection rules — on the in-memory store and on
//! SQLite — over random posts and random updates.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};

use es_core::testing::Scenario;
use es_core::{AppendOptions, AsOf, CommandError, EventStore, InMemoryStore, NewEvent};
use es_diesel::DieselStore;
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::command_contract;
use es_tests::commands::{PinPost, UpdatePost};
use es_tests::reactors::{DescriptionChanged, Pinned, Post, PostWritten, Published, TitleChanged};
use proptest::prelude::*;

#[test]
fn invalid_attributes_are_refused_per_field() {
    command_contract::invalid_attributes_are_refused_per_field(&mut InMemoryStore::new());
}

#[test]
fn rejections_are_typed_errors() {
    command_contract::rejections_are_typed_errors(&mut InMemoryStore::new());
}

#[test]
fn a_command_that_changes_nothing_is_a_noop() {
    command_contract::a_command_that_changes_nothing_is_a_noop(&mut InMemoryStore::new());
}

#[test]
fn only_changed_attributes_become_events() {
    command_contract::only_changed_attributes_become_events(&mut InMemoryStore::new());
}

#[test]
fn several_commands_in_one_transaction_are_all_or_nothing() {
    command_contract::several_commands_in_one_transaction_are_all_or_nothing(
        &mut InMemoryStore::new(),
    );
}

#[test]
fn a_stale_expected_version_is_a_conflict() {
    command_contract::a_stale_expected_version_is_a_conflict(&mut InMemoryStore::new());
}

#[test]
fn the_test_kit_runs_given_when_then() {
    command_contract::the_test_kit_runs_given_when_then(&mut InMemoryStore::new());
}

fn published(title: &str) -> Vec<NewEvent<Post>> {
    let title = title.to_owned();
    vec![PostWritten { title }.into(), Published {}.into()]
}

#[test]
#[should_panic(
    expected = "then_events: `PinPost` stored [post.pinned {}] but no event was expected"
)]
fn the_test_kit_fails_on_unexpected_events() {
    Scenario::new(&mut InMemoryStore::new())
        .given(&1, published("one"))
        .when(PinPost { id: 1 })
        .then_events(Vec::<NewEvent<Post>>::new());
}

#[test]
#[should_panic(
    expected = "then_noop: `UpdatePost` stored [post.title_changed {\"title\":\"two\"}] \
                           instead of nothing"
)]
fn the_test_kit_fails_when_a_noop_was_not() {
    let retitle = UpdatePost {
        id: 1,
        title: Some("two".into()),
        ..UpdatePost::default()
    };
    Scenario::new(&mut InMemoryStore::new())
        .given(&1, published("one"))
        .when(retitle)
        .then_noop();
}

#[test]
#[should_panic(expected = "then_error: `PinPost` succeeded and stored [post.pinned {}]")]
fn the_test_kit_fails_when_an_error_was_expected() {
    Scenario::new(&mut InMemoryStore::new())
        .given(&1, published("one"))
        .when(PinPost { id: 1 })
        .then_error();
}

#[test]
#[should_panic(expected = "then_triggered: `PinPost` did not reach Trigger reactor \
                           `unpin_other_post`; its reactions: []")]
fn the_test_kit_fails_on_a_reactor_that_did_not_run() {
    Scenario::new(&mut InMemoryStore::new())
        .given(&1, published("one"))
        .when(PinPost { id: 1 })
        .then_triggered("unpin_other_post");
}

/// A post as a random history left it.
#[derive(Debug, Clone)]
struct Start {
    title: String,
    description: String,
    published: bool,
    pinned: bool,
}

impl Start {
    fn history(&self) -> Vec<NewEvent<Post>> {
        let mut events: Vec<NewEvent<Post>> = vec![
            PostWritten {
                title: "draft".into(),
            }
            .into(),
            TitleChanged {
                title: self.title.clone(),
            }
            .into(),
        ];
        if !self.description.is_empty() {
            let description = self.description.clone();
            events.push(DescriptionChanged { description }.into());
        }
        if self.published {
            events.push(Published {}.into());
        }
        if self.pinned {
            events.push(Pinned {}.into());
        }
        events
    }
}

/// Few distinct values, so that "the same as now" comes up as often as "different".
fn word() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "a", "b"]).prop_map(str::to_owned)
}

fn start() -> impl Strategy<Value = Start> {
    (word(), word(), any::<bool>(), any::<bool>()).prop_map(
        |(title, description, published, pinned)| Start {
            title: if title.is_empty() { "t".into() } else { title },
            description,
            published,
            pinned: published && pinned,
        },
    )
}

fn update() -> impl Strategy<Value = UpdatePost> {
    let title = word().prop_map(|title| if title.is_empty() { "t".into() } else { title });
    (
        prop::option::of(title),
        prop::option::of(word()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(title, description, published)| UpdatePost {
            id: 0,
            title,
            description,
            published,
        })
}

/// An update emits exactly one event per attribute it changes and none for the others; the post
/// then holds the requested values; the same update again is a no-op; and the stored post equals
/// the replay of its events.
fn update_emits_exactly_the_changes<S: EventStore<Post>>(
    store: &mut S,
    id: i64,
    start: &Start,
    mut update: UpdatePost,
) -> Result<(), TestCaseError> {
    update.id = id;
    let none = AppendOptions::default();
    store.append(&id, start.history(), &none).unwrap();
    let before: Post = store.load(&id).unwrap().unwrap();
    let versions = store.history(&id).unwrap().len();

    let result = store.execute(&update, &none);
    if update.published == Some(false) && before.pinned {
        prop_assert!(
            matches!(result, Err(CommandError::NotAllowed { .. })),
            "{:?}",
            result
        );
        prop_assert_eq!(store.history(&id).unwrap().len(), versions);
        return Ok(());
    }
    let done = result.unwrap();
    let mut expected = Vec::new();
    if update
        .title
        .as_ref()
        .is_some_and(|title| *title != before.title)
    {
        expected.push("post.title_changed");
    }
    if (update.description.as_ref()).is_some_and(|text| *text != before.description) {
        expected.push("post.description_changed");
    }
    match update.published {
        Some(true) if !before.published => expected.push("post.published"),
        Some(false) if before.published => expected.push("post.unpublished"),
        _ => {}
    }
    let made: Vec<&str> = done.events.iter().map(|e| e.event_type.as_str()).collect();
    prop_assert_eq!(&made, &expected);
    prop_assert_eq!(done.is_noop(), expected.is_empty());

    let after: Post = store.load(&id).unwrap().unwrap();
    let wanted = Post {
        title: update.title.clone().unwrap_or(before.title.clone()),
        description: update.description.clone().unwrap_or(before.description),
        published: update.published.unwrap_or(before.published),
        ..before
    };
    prop_assert_eq!(&after, &wanted);
    prop_assert!(store.execute(&update, &none).unwrap().is_noop());

    let version = i64::try_from(store.history(&id).unwrap().len()).unwrap();
    let replayed = store.state_as_of(&id, AsOf::Version(version)).unwrap();
    prop_assert_eq!(replayed.as_ref(), Some(&after));
    Ok(())
}

static SQLITE: LazyLock<SqliteDb> = LazyLock::new(SqliteDb::new);
static NEXT_ID: AtomicI64 = AtomicI64::new(1);

proptest! {
    #[test]
    fn updates_emit_exactly_the_changes_in_memory(start in start(), update in update()) {
        update_emits_exactly_the_changes(&mut InMemoryStore::new(), 1, &start, update)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn updates_emit_exactly_the_changes_on_sqlite(start in start(), update in update()) {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut conn = SQLITE.connect();
        update_emits_exactly_the_changes(&mut DieselStore::new(&mut conn), id, &start, update)?;
    }
}
