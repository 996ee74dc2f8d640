//! The generative tests of [`es_tests::generative`] on the in-memory store and on SQLite, and
//! the proof that they count what a store accepted: a store that refuses every write fails them.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};

use es_core::{
    Aggregate, AppendOptions, AsOf, Committed, Error, EventFilter, EventStore, InMemoryStore,
    NewEvent, OnBadHistory, RecordedEvent, ReplayProgress, ReplayReport,
};
use es_diesel::DieselStore;
use es_tests::backend::{SqliteDb, TestDb};
use es_tests::generative::{AGGREGATES, random_histories, run_and_check};

static SQLITE: LazyLock<SqliteDb> = LazyLock::new(SqliteDb::new);
static NEXT_BASE: AtomicI64 = AtomicI64::new(1_000);

#[test]
fn stored_equals_replay_equals_time_travel_in_memory() {
    random_histories(256, |steps| {
        run_and_check(&mut InMemoryStore::new(), 0, steps)
    })
    .unwrap_or_else(|failure| panic!("{failure}"));
}

#[test]
fn stored_equals_replay_equals_time_travel_on_sqlite() {
    random_histories(48, |steps| {
        let base = NEXT_BASE.fetch_add(AGGREGATES as i64, Ordering::Relaxed);
        let mut conn = SQLITE.connect();
        run_and_check(&mut DieselStore::new(&mut conn), base, steps)
    })
    .unwrap_or_else(|failure| panic!("{failure}"));
}

#[test]
fn a_store_that_refuses_every_write_fails_the_generative_test() {
    let failure = random_histories(24, |steps| {
        run_and_check(&mut RefusingStore::default(), 0, steps)
    })
    .unwrap_err();
    assert!(
        failure.starts_with(
            "the store accepted no step of the kinds [\"Create\", \"Retitle\", \"DueOn\", \
             \"Complete\", \"Destroy\", \"RetitleThenComplete\", \"WritePost\", \"UpdatePost\"] \
             in 24 random histories"
        ),
        "{failure}"
    );
}

/// A store that refuses every write (and reads what its in-memory store holds: nothing).
#[derive(Default)]
struct RefusingStore(InMemoryStore);

impl<A: Aggregate + Clone> EventStore<A> for RefusingStore {
    fn append_with<E: From<Error>>(
        &mut self,
        _: &A::Id,
        _: impl FnOnce(Option<&A>) -> Result<Vec<NewEvent<A>>, E>,
        _: &AppendOptions,
    ) -> Result<Committed<A>, E> {
        Err(E::from(Error::Storage {
            table: A::EVENTS_TABLE,
            source: "every write is refused".into(),
        }))
    }

    fn load(&mut self, id: &A::Id) -> Result<Option<A>, Error> {
        EventStore::<A>::load(&mut self.0, id)
    }

    fn version(&mut self, id: &A::Id) -> Result<i64, Error> {
        EventStore::<A>::version(&mut self.0, id)
    }

    fn history(&mut self, id: &A::Id) -> Result<Vec<RecordedEvent<A::Id>>, Error> {
        EventStore::<A>::history(&mut self.0, id)
    }

    fn stream_events<'s>(
        &'s mut self,
        filter: &'s EventFilter,
    ) -> Result<impl Iterator<Item = Result<RecordedEvent<A::Id>, Error>> + 's, Error> {
        EventStore::<A>::stream_events(&mut self.0, filter)
    }

    fn state_as_of(&mut self, id: &A::Id, as_of: AsOf) -> Result<Option<A>, Error> {
        EventStore::<A>::state_as_of(&mut self.0, id, as_of)
    }

    fn replay(&mut self, id: &A::Id) -> Result<Option<A>, Error> {
        EventStore::<A>::replay(&mut self.0, id)
    }

    fn replay_all_with(
        &mut self,
        on_bad: OnBadHistory,
        progress: &mut dyn FnMut(&ReplayProgress),
    ) -> Result<ReplayReport, Error> {
        EventStore::<A>::replay_all_with(&mut self.0, on_bad, progress)
    }
}
