//! The reads and replays of [`EventStore`](crate::EventStore) whose arguments do not say the
//! aggregate type, as inherent methods of a store with the type as their parameter:
//! `store.replay_all::<Task>(..)`, `store.version::<Task>(&1)`, where the trait needs
//! `EventStore::<Task>::replay_all(&mut store, ..)`. Each calls the trait's method, and the fully
//! qualified form still works. `InMemoryStore` and `es_diesel::DieselStore` expand them.
//!
//! Calls nothing of the crate.

/// The methods, each calling the [`EventStore`](crate::EventStore) method of the same name.
#[doc(hidden)]
#[macro_export]
macro_rules! __aggregate_type_methods {
    () => {
        $crate::__aggregate_type_method! {
            /// [`EventStore::load`] of an aggregate of type `A`.
            fn load(id: &A::Id) -> ::core::option::Option<A>;
            /// [`EventStore::version`] of aggregate `id` of type `A`: `store.version::<Task>(&1)`.
            fn version(id: &A::Id) -> i64;
            /// [`EventStore::history`] of aggregate `id` of type `A`: `store.history::<Task>(&1)`.
            fn history(id: &A::Id) -> ::std::vec::Vec<$crate::RecordedEvent<A::Id>>;
            /// [`EventStore::events`] of the aggregates of type `A`: `store.events::<Task>(&filter)`.
            fn events(filter: &$crate::EventFilter) -> ::std::vec::Vec<$crate::RecordedEvent<A::Id>>;
            /// [`EventStore::state_as_of`] of aggregate `id` of type `A`.
            fn state_as_of(id: &A::Id, as_of: $crate::AsOf) -> ::core::option::Option<A>;
            /// [`EventStore::replay`] of aggregate `id` of type `A`: `store.replay::<Task>(&1)`.
            fn replay(id: &A::Id) -> ::core::option::Option<A>;
            /// [`EventStore::replay_all`] of the aggregates of type `A`:
            /// `store.replay_all::<Task>(&mut |progress| ..)`.
            fn replay_all(progress: &mut dyn FnMut(&$crate::ReplayProgress)) -> $crate::ReplayProgress;
            /// [`EventStore::replay_all_with`] of the aggregates of type `A`:
            /// `store.replay_all_with::<Task>(OnBadHistory::Skip, ..)`.
            fn replay_all_with(
                on_bad: $crate::OnBadHistory,
                progress: &mut dyn FnMut(&$crate::ReplayProgress)
            ) -> $crate::ReplayReport;
        }

        /// [`EventStore::stream_events`] of the aggregates of type `A`:
        /// `store.stream_events::<Task>(&filter)`.
        pub fn stream_events<'s, A: $crate::Aggregate>(
            &'s mut self,
            filter: &'s $crate::EventFilter,
        ) -> ::core::result::Result<
            impl ::core::iter::Iterator<
                Item = ::core::result::Result<$crate::RecordedEvent<A::Id>, $crate::Error>,
            > + 's,
            $crate::Error,
        >
        where
            Self: $crate::EventStore<A>,
        {
            <Self as $crate::EventStore<A>>::stream_events(self, filter)
        }
    };
}

/// One method per signature: generic over the aggregate type `A`, calling the
/// [`EventStore`](crate::EventStore) method of the same name.
#[doc(hidden)]
#[macro_export]
macro_rules! __aggregate_type_method {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $output:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name<A: $crate::Aggregate>(
            &mut self,
            $($arg: $ty),*
        ) -> ::core::result::Result<$output, $crate::Error>
        where
            Self: $crate::EventStore<A>,
        {
            <Self as $crate::EventStore<A>>::$name(self, $($arg),*)
        }
    )*};
}
