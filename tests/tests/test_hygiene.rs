//! The derives are hygienic: their code compiles, without a warning, in a module that shadows
//! every prelude name it could use (`Result`, `Ok`, `Option`, `Default`, `String`, `Vec`, ...)
//! and the `core`, `std` and `es_core` paths — so every path it generates is absolute.

#![deny(warnings)]

/// schemars' own derive calls `Some` unqualified, so it cannot be derived in `shadowed`: the
/// events' schemas are implemented here, outside the shadowing, and the test stays about our
/// derives (whose generated code requires `JsonSchema`).
macro_rules! object_schema {
    ($($event:ident),*) => {$(
        impl ::schemars::JsonSchema for shadowed::$event {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($event).into()
            }

            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                ::schemars::json_schema!({ "type": "object" })
            }
        }
    )*};
}

object_schema!(Created, Renamed, Deleted);

/// An aggregate and its events, derived where the prelude names mean something else.
mod shadowed {
    use ::es_core::{Apply, EventContext};
    use ::serde::{Deserialize, Serialize};

    // In scope to break any relative path in generated code, not to be used: `dead_code` is
    // allowed on them alone, so that a warning in generated code still fails the build.
    #[allow(dead_code)]
    type Result = ();
    #[allow(dead_code)]
    struct Ok;
    #[allow(dead_code)]
    struct Err;
    #[allow(dead_code)]
    type Option = ();
    #[allow(dead_code)]
    struct Some;
    #[allow(dead_code)]
    struct None;
    #[allow(dead_code)]
    struct Box;
    #[allow(dead_code)]
    trait Default {}
    #[allow(dead_code)]
    struct String;
    #[allow(dead_code)]
    struct Vec;
    mod core {}
    mod std {}
    mod es_core {}
    mod inventory {}
    mod serde {}

    /// A task, identified by its `key`.
    #[derive(::es_core::Aggregate, Default, Clone, Debug, PartialEq)]
    #[aggregate(name = "hygienic_task", events_table = "hygienic_task_events")]
    pub(crate) struct Task {
        #[aggregate(id)]
        pub(crate) key: i64,
        pub(crate) title: ::std::string::String,
        pub(crate) priority: i64,
        pub(crate) labels: ::std::vec::Vec<::std::string::String>,
    }

    /// A task was opened (it was `hygienic_task.created` before a rename).
    #[derive(::es_core::Event, Serialize, Deserialize)]
    #[aggregate(Task)]
    #[event(creates, tag = "hygienic_task.opened", alias = "hygienic_task.created")]
    pub(crate) struct Created {
        /// What is to be done.
        #[data_attributes]
        pub(crate) title: ::std::string::String,
        /// Tasks stored before priorities existed are normal priority.
        #[data_attributes]
        #[serde(default = "normal_priority")]
        pub(crate) priority: i64,
        /// Tasks stored before labels existed have none.
        #[data_attributes]
        #[serde(default)]
        pub(crate) labels: ::std::vec::Vec<::std::string::String>,
    }

    fn normal_priority() -> i64 {
        2
    }

    /// A task was renamed.
    #[derive(::es_core::Event, Serialize, Deserialize)]
    #[aggregate(Task)]
    #[event(alias = "hygienic_task.retitled")]
    pub(crate) struct Renamed {
        /// The new title.
        #[data_attributes]
        pub(crate) title: ::std::string::String,
    }

    /// A task was deleted.
    #[derive(::es_core::Event, Serialize, Deserialize)]
    #[aggregate(Task)]
    #[event(destroys)]
    pub(crate) struct Deleted {}

    impl Apply<Task> for Created {
        fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
            task.title.clone_from(&self.title);
            task.priority = self.priority;
            task.labels.clone_from(&self.labels);
        }
    }

    impl Apply<Task> for Renamed {
        fn apply(&self, task: &mut Task, _: &EventContext<'_>) {
            task.title.clone_from(&self.title);
        }
    }

    impl Apply<Task> for Deleted {
        fn apply(&self, _: &mut Task, _: &EventContext<'_>) {}
    }
}

use es_core::{Aggregate, AppendOptions, Event, EventStore, InMemoryStore, Metadata};
use es_core::{RecordedEvent, Registry};
use shadowed::{Created, Deleted, Renamed, Task};

#[test]
fn the_generated_code_works_where_prelude_names_are_shadowed() -> Result<(), es_core::Error> {
    assert_eq!(<Task as Aggregate>::NAME, "hygienic_task");
    assert_eq!(<Task as Aggregate>::EVENTS_TABLE, "hygienic_task_events");
    assert_eq!(Task::new(7).key, 7);
    assert_eq!(<Created as Event>::TAG, "hygienic_task.opened");
    assert_eq!(<Created as Event>::ALIASES, ["hygienic_task.created"]);
    assert_eq!(<Renamed as Event>::ALIASES, ["hygienic_task.retitled"]);
    const { assert!(<Created as Event>::CREATES && <Deleted as Event>::DESTROYS) };

    let mut store = InMemoryStore::new();
    let created = Created {
        title: "Slides".into(),
        priority: 1,
        labels: vec!["talk".into()],
    };
    store.append(&1, created, &AppendOptions::default())?;
    let renamed = Renamed {
        title: "Slides for the talk".into(),
    };
    store.append(&1, renamed, &AppendOptions::default())?;

    let task: Task = store.load(&1)?.expect("the task exists");
    assert_eq!(task.title, "Slides for the talk");
    assert_eq!((task.priority, task.labels.len()), (1, 1));
    let history = EventStore::<Task>::history(&mut store, &1)?;
    let tags: Vec<&str> = history
        .iter()
        .map(|event| event.event_type.as_str())
        .collect();
    assert_eq!(tags, [Created::TAG, Renamed::TAG]);

    // Replay decodes the stored records through the registry the derive filled.
    let replayed: Option<Task> = store.replay(&1)?;
    assert_eq!(replayed.as_ref(), Some(&task));

    store.append(&1, Deleted {}, &AppendOptions::default())?;
    assert_eq!(EventStore::<Task>::load(&mut store, &1)?, None);
    Ok(())
}

#[test]
fn an_old_record_decodes_through_its_alias_and_serde_defaults() -> Result<(), es_core::Error> {
    let record = RecordedEvent {
        id: 1,
        aggregate_id: 1,
        version: 1,
        event_type: "hygienic_task.created".to_owned(),
        data: r#"{"title":"Slides"}"#.to_owned(),
        metadata: Metadata::default().into(),
        created_at: es_core::now(),
    };
    let created = Created::decode(&record)?;
    assert_eq!((created.title.as_str(), created.priority), ("Slides", 2));
    assert!(created.labels.is_empty());

    let registry = Registry::global()?;
    let by_alias = registry.lookup::<Task>("hygienic_task.created");
    assert_eq!(by_alias.map(|event| event.rust_name), Some("Created"));
    let mut task = Task::new(1);
    registry.apply(&mut task, &record)?;
    assert_eq!((task.title.as_str(), task.priority), ("Slides", 2));
    Ok(())
}
