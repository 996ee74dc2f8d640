//! Commands on a database: the command contract, and commands whose events reach reactors — what
//! the test kit observes of them, and that a no-op reaches none.

use es_core::testing::Scenario;
use es_core::{NewEvent, ReactionKind};
use es_diesel::{AggregateTable, DieselStore, job_counts};
use es_tests::backend::{TestConnection, TestDb};
use es_tests::command_contract;
use es_tests::commands::PinPost;
use es_tests::domain::Task;
use es_tests::reactors::{
    BOARD, Board, BoardOpened, PinMoved, Pinned, Post, PostWritten, Published,
};

use crate::Check;

/// Pinning a post through a command runs its trigger (which unpins the other post and moves the
/// board's pin) and queues the event-bus job of every event of the cascade; pinning it again is a
/// no-op that reaches no reactor and queues nothing.
fn commands_reach_reactors_and_noops_do_not<D: TestDb>(db: &D)
where
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
{
    let mut conn = db.connect();
    let mut store = DieselStore::new(&mut conn).with_dispatcher(D::Conn::dispatcher());
    let published = |title: &str| -> Vec<NewEvent<Post>> {
        let title = title.to_owned();
        vec![PostWritten { title }.into(), Published {}.into()]
    };
    let mut pinned_two = published("two");
    pinned_two.push(Pinned {}.into());
    let board: Vec<NewEvent<Board>> = vec![BoardOpened {}.into(), PinMoved { post: 2 }.into()];

    let then = Scenario::new(&mut store)
        .given(&BOARD, board)
        .given(&1, published("one"))
        .given(&2, pinned_two)
        .when(PinPost { id: 1 })
        .then_events(Pinned {})
        .then_triggered("unpin_other_post")
        .then_enqueued("forward_to_event_bus");
    let reactions: Vec<(ReactionKind, &str, &str)> = then
        .reactions()
        .iter()
        .map(|reaction| {
            let event = reaction.event_type.as_str();
            (reaction.kind, reaction.reactor, event)
        })
        .collect();
    assert_eq!(
        reactions,
        [
            (ReactionKind::Trigger, "unpin_other_post", "post.pinned"),
            (ReactionKind::Job, "forward_to_event_bus", "post.unpinned"),
            (ReactionKind::Job, "forward_to_event_bus", "board.pin_moved"),
            (ReactionKind::Job, "forward_to_event_bus", "post.pinned"),
        ]
    );
    assert_eq!(job_counts(store.connection()).unwrap().pending, 3);
    let two: Post = store.load(&2).unwrap().unwrap();
    assert!(!two.pinned);

    Scenario::new(&mut store)
        .when(PinPost { id: 1 })
        .then_noop();
    assert_eq!(job_counts(store.connection()).unwrap().pending, 3);
}

pub(crate) fn checks<D: TestDb>() -> Vec<(&'static str, Check<D>)>
where
    Task: AggregateTable<D::Conn>,
    Post: AggregateTable<D::Conn>,
    Board: AggregateTable<D::Conn>,
{
    vec![
        ("invalid_attributes_are_refused_per_field", |db| {
            command_contract::invalid_attributes_are_refused_per_field(&mut DieselStore::new(
                &mut db.connect(),
            ));
        }),
        ("rejections_are_typed_errors", |db| {
            command_contract::rejections_are_typed_errors(&mut DieselStore::new(&mut db.connect()));
        }),
        ("a_command_that_changes_nothing_is_a_noop", |db| {
            command_contract::a_command_that_changes_nothing_is_a_noop(&mut DieselStore::new(
                &mut db.connect(),
            ));
        }),
        ("only_changed_attributes_become_events", |db| {
            command_contract::only_changed_attributes_become_events(&mut DieselStore::new(
                &mut db.connect(),
            ));
        }),
        (
            "several_commands_in_one_transaction_are_all_or_nothing",
            |db| {
                command_contract::several_commands_in_one_transaction_are_all_or_nothing(
                    &mut DieselStore::new(&mut db.connect()),
                );
            },
        ),
        ("a_stale_expected_version_is_a_conflict", |db| {
            command_contract::a_stale_expected_version_is_a_conflict(&mut DieselStore::new(
                &mut db.connect(),
            ));
        }),
        ("the_test_kit_runs_given_when_then", |db| {
            command_contract::the_test_kit_runs_given_when_then(&mut DieselStore::new(
                &mut db.connect(),
            ));
        }),
        (
            "commands_reach_reactors_and_noops_do_not",
            commands_reach_reactors_and_noops_do_not::<D>,
        ),
    ]
}
