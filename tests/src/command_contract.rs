//! The behaviour of commands, written once and run against each store: validation per field,
//! typed rejections, no-ops, change detection, several commands in one transaction, conflicts, and
//! the given/when/then test kit.

use es_core::testing::{Scenario, TestStore};
use es_core::{AppendOptions, CommandError, Error, EventStore, Metadata, NewEvent, Transactional};

use crate::commands::{PinPost, UpdatePost, WritePost};
use crate::domain::{Created, Task};
use crate::reactors::{Pinned, Post, PostWritten, Published};

fn by(actor: &str) -> AppendOptions {
    AppendOptions::with_metadata(Metadata::by_actor(actor))
}

fn write<S: EventStore<Post>>(store: &mut S, id: i64, title: &str) {
    let title = title.to_owned();
    store.execute(&WritePost { id, title }, &by("ann")).unwrap();
}

fn tags<S: EventStore<Post>>(store: &mut S, id: i64) -> Vec<String> {
    let history = store.history(&id).unwrap();
    history.into_iter().map(|event| event.event_type).collect()
}

/// Bad attributes are refused with an error per field, before anything is read or written.
pub fn invalid_attributes_are_refused_per_field<S: EventStore<Post>>(store: &mut S) {
    let error = store
        .execute(
            &WritePost {
                id: 1,
                title: String::new(),
            },
            &by("ann"),
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid `WritePost`: title: must be 1 to 100 characters"
    );
    assert!(store.history(&1).unwrap().is_empty());

    write(store, 1, "Hello");
    let update = UpdatePost {
        id: 1,
        title: Some("t".repeat(101)),
        description: Some("d".repeat(501)),
        published: Some(true),
    };
    let CommandError::Invalid { command, errors } = store.execute(&update, &by("ann")).unwrap_err()
    else {
        panic!("an invalid update is a validation error");
    };
    assert_eq!(command, "UpdatePost");
    let field_errors = errors.field_errors();
    let mut fields: Vec<&str> = field_errors.keys().map(|field| &**field).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["description", "title"]);
    assert_eq!(tags(store, 1), ["post.post_written"]);
}

/// A command refused by the aggregate's state is a typed error naming the aggregate, and writes
/// nothing.
pub fn rejections_are_typed_errors<S: EventStore<Post>>(store: &mut S) {
    let missing = UpdatePost {
        id: 404,
        title: Some("Hello".into()),
        ..UpdatePost::default()
    };
    let error = store.execute(&missing, &by("ann")).unwrap_err();
    assert!(
        matches!(&error, CommandError::NotFound { aggregate: "post", aggregate_id } if aggregate_id == "404"),
        "{error:?}"
    );

    write(store, 2, "Hello");
    let error = store
        .execute(
            &WritePost {
                id: 2,
                title: "Again".into(),
            },
            &by("ann"),
        )
        .unwrap_err();
    assert_eq!(error.to_string(), "post 2 already exists");

    let error = store.execute(&PinPost { id: 2 }, &by("ann")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`PinPost` is not allowed on post 2: only a published post can be pinned"
    );
    assert_eq!(tags(store, 2), ["post.post_written"]);
}

/// A command that would change nothing stores nothing and says so; its aggregate is returned as
/// it is.
pub fn a_command_that_changes_nothing_is_a_noop<S: EventStore<Post>>(store: &mut S) {
    write(store, 3, "Hello");
    let same = UpdatePost {
        id: 3,
        title: Some("Hello".into()),
        description: Some(String::new()),
        published: Some(false),
    };
    let done = store.execute(&same, &by("ann")).unwrap();
    assert!(done.is_noop());
    assert!(done.reactions.is_empty());
    assert_eq!(done.state.unwrap().title, "Hello");
    assert_eq!(tags(store, 3), ["post.post_written"]);

    let publish = UpdatePost {
        id: 3,
        published: Some(true),
        ..UpdatePost::default()
    };
    assert_eq!(store.execute(&publish, &by("ann")).unwrap().events.len(), 1);
    assert!(store.execute(&publish, &by("ann")).unwrap().is_noop());
    assert!(
        !store
            .execute(&PinPost { id: 3 }, &by("ann"))
            .unwrap()
            .is_noop()
    );
    assert!(
        store
            .execute(&PinPost { id: 3 }, &by("ann"))
            .unwrap()
            .is_noop()
    );
    assert_eq!(
        tags(store, 3),
        ["post.post_written", "post.published", "post.pinned"]
    );
}

/// Only the attributes that change become events: the blog's `updatePost(title: "Current title",
/// description: "Same description", published: true)` only publishes the post.
pub fn only_changed_attributes_become_events<S: EventStore<Post>>(store: &mut S) {
    write(store, 4, "Current title");
    let describe = UpdatePost {
        id: 4,
        description: Some("Same description".into()),
        ..UpdatePost::default()
    };
    store.execute(&describe, &by("ann")).unwrap();

    let update = UpdatePost {
        id: 4,
        title: Some("Current title".into()),
        description: Some("Same description".into()),
        published: Some(true),
    };
    let done = store.execute(&update, &by("ann")).unwrap();
    let made: Vec<&str> = done.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(made, ["post.published"]);

    let retitle = UpdatePost {
        id: 4,
        title: Some("My new title".into()),
        ..UpdatePost::default()
    };
    let done = store.execute(&retitle, &by("ann")).unwrap();
    assert_eq!(done.events[0].event_type, "post.title_changed");
    assert_eq!(done.events[0].data, r#"{"title":"My new title"}"#);
    let post = done.state.unwrap();
    assert_eq!(
        (
            post.title.as_str(),
            post.description.as_str(),
            post.published
        ),
        ("My new title", "Same description", true)
    );
}

/// Several commands and appends, on several aggregates and aggregate types, in one transaction:
/// all of them are kept, or — when one fails — none is.
pub fn several_commands_in_one_transaction_are_all_or_nothing<S>(store: &mut S)
where
    S: EventStore<Post> + EventStore<Task> + Transactional,
{
    store
        .transaction(|store| {
            store.execute(
                &WritePost {
                    id: 10,
                    title: "Ten".into(),
                },
                &by("ann"),
            )?;
            store.execute(
                &UpdatePost {
                    id: 10,
                    published: Some(true),
                    ..UpdatePost::default()
                },
                &by("ann"),
            )?;
            store.execute(
                &WritePost {
                    id: 11,
                    title: "Eleven".into(),
                },
                &by("ann"),
            )?;
            store.append(
                &10,
                Created {
                    title: "Ten".into(),
                },
                &by("ann"),
            )?;
            Ok::<_, CommandError>(())
        })
        .unwrap();
    assert_eq!(tags(store, 10), ["post.post_written", "post.published"]);
    assert_eq!(tags(store, 11), ["post.post_written"]);
    assert_eq!(EventStore::<Task>::history(store, &10).unwrap().len(), 1);

    let error = store
        .transaction(|store| {
            store.execute(
                &UpdatePost {
                    id: 10,
                    title: Some("Lost".into()),
                    ..UpdatePost::default()
                },
                &by("ann"),
            )?;
            store.execute(
                &WritePost {
                    id: 12,
                    title: "Lost too".into(),
                },
                &by("ann"),
            )?;
            store.append(
                &11,
                Created {
                    title: "Lost".into(),
                },
                &by("ann"),
            )?;
            store.execute(
                &UpdatePost {
                    id: 999,
                    title: Some("Nobody".into()),
                    ..UpdatePost::default()
                },
                &by("ann"),
            )?;
            Ok::<_, CommandError>(())
        })
        .unwrap_err();
    assert!(matches!(error, CommandError::NotFound { .. }), "{error}");
    let post: Post = store.load(&10).unwrap().unwrap();
    assert_eq!(post.title, "Ten");
    assert_eq!(tags(store, 10), ["post.post_written", "post.published"]);
    assert!(EventStore::<Post>::load(store, &12).unwrap().is_none());
    assert!(EventStore::<Post>::history(store, &12).unwrap().is_empty());
    assert!(EventStore::<Task>::history(store, &11).unwrap().is_empty());
}

/// A command with a stale expected version is a conflict, checked before it decides anything.
pub fn a_stale_expected_version_is_a_conflict<S: EventStore<Post>>(store: &mut S) {
    write(store, 20, "Hello");
    let retitle = UpdatePost {
        id: 20,
        title: Some("Hi".into()),
        ..UpdatePost::default()
    };
    let error = store
        .execute(&retitle, &by("bob").expect_version(0))
        .unwrap_err();
    assert!(
        matches!(
            &error,
            CommandError::Conflict(Error::Conflict {
                expected: 0,
                actual: 1,
                ..
            })
        ),
        "{error:?}"
    );
    let unchanged = UpdatePost {
        id: 20,
        title: Some("Hello".into()),
        ..UpdatePost::default()
    };
    let error = store
        .execute(&unchanged, &by("bob").expect_version(0))
        .unwrap_err();
    assert!(matches!(error, CommandError::Conflict(_)), "{error:?}");
    store
        .execute(&retitle, &by("bob").expect_version(1))
        .unwrap();
    assert_eq!(tags(store, 20), ["post.post_written", "post.title_changed"]);
}

/// The test kit: given events, when a command, then its events, its no-op, or its error.
pub fn the_test_kit_runs_given_when_then<S: TestStore<Post>>(store: &mut S) {
    let written: Vec<NewEvent<Post>> = vec![
        PostWritten {
            title: "Kit".into(),
        }
        .into(),
        Published {}.into(),
    ];
    Scenario::new(&mut *store)
        .given(&30, written)
        .when(PinPost { id: 30 })
        .then_events(Pinned {})
        .then_state(|post: Option<&Post>| assert!(post.unwrap().pinned));
    Scenario::new(&mut *store)
        .when(PinPost { id: 30 })
        .then_noop();
    let error = Scenario::new(&mut *store)
        .given(
            &31,
            PostWritten {
                title: "New".into(),
            },
        )
        .when(PinPost { id: 31 })
        .then_error();
    assert!(matches!(error, CommandError::NotAllowed { .. }), "{error}");
    assert_eq!(
        tags(store, 30),
        ["post.post_written", "post.published", "post.pinned"]
    );
}
