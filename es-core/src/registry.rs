//! The registry of every event type in the program, filled by `#[derive(Event)]`.
//!
//! It is how a stored record finds its Rust type by tag (no hand-written `match` over events), how
//! the generated docs enumerate events, and where two events sharing a tag are caught.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::OnceLock;

use crate::aggregate::Aggregate;
use crate::error::Error;
use crate::event::{EventContext, RecordedEvent};

/// The description of one event type, registered by `#[derive(Event)]`.
#[derive(Debug)]
#[non_exhaustive]
pub struct EventDescriptor {
    /// The `TypeId` of the event's aggregate.
    pub aggregate_type: fn() -> TypeId,
    /// The aggregate's name ([`Aggregate::NAME`]).
    pub aggregate: &'static str,
    /// The aggregate's events table ([`Aggregate::EVENTS_TABLE`]).
    pub events_table: &'static str,
    /// The event's Rust type name as written (`Completed`).
    pub rust_name: &'static str,
    /// The event's type tag.
    pub tag: &'static str,
    /// Former tags still decoding to this event.
    pub aliases: &'static [&'static str],
    /// Whether the event creates its aggregate.
    pub creates: bool,
    /// Whether the event destroys its aggregate.
    pub destroys: bool,
    /// The doc comment of the event struct.
    pub doc: &'static str,
    /// The data attributes, in declaration order.
    pub attributes: &'static [AttributeDescriptor],
    /// The application metadata the event declares (`#[event(metadata = Type)]`), if any.
    pub app_metadata: Option<AppMetadataDescriptor>,
    apply: ApplyFn,
    schema: SchemaFn,
}

/// The application metadata an event declares with `#[event(metadata = Type)]`: a serde +
/// schemars struct whose keys its metadata carries ([`Metadata::app`](crate::Metadata::app)).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AppMetadataDescriptor {
    /// The Rust type as written.
    pub rust_type: &'static str,
    schema: SchemaFn,
}

impl AppMetadataDescriptor {
    #[doc(hidden)]
    pub const fn __new(rust_type: &'static str, schema: SchemaFn) -> Self {
        Self { rust_type, schema }
    }

    /// The JSON Schema of the type, derived by schemars.
    pub fn schema(&self) -> schemars::Schema {
        (self.schema)()
    }
}

/// The description of one data attribute of an event.
#[derive(Debug)]
#[non_exhaustive]
pub struct AttributeDescriptor {
    /// The field name.
    pub name: &'static str,
    /// Its key in the `data` JSON: the field name, or its `#[serde(rename = "...")]`.
    pub key: &'static str,
    /// The field's Rust type as written.
    pub rust_type: &'static str,
    /// The doc comment of the field.
    pub doc: &'static str,
}

type ApplyFn = fn(&mut dyn Any, &str, &EventContext<'_>) -> Result<(), ApplyFailure>;

type SchemaFn = fn() -> schemars::Schema;

/// Why an erased apply failed.
#[doc(hidden)]
#[derive(Debug)]
pub enum ApplyFailure {
    Decode(serde_json::Error),
    WrongAggregate,
}

impl EventDescriptor {
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn __new(
        aggregate_type: fn() -> TypeId,
        aggregate: &'static str,
        events_table: &'static str,
        rust_name: &'static str,
        tag: &'static str,
        aliases: &'static [&'static str],
        creates: bool,
        destroys: bool,
        doc: &'static str,
        attributes: &'static [AttributeDescriptor],
        app_metadata: Option<AppMetadataDescriptor>,
        apply: ApplyFn,
        schema: SchemaFn,
    ) -> Self {
        Self {
            aggregate_type,
            aggregate,
            events_table,
            rust_name,
            tag,
            aliases,
            creates,
            destroys,
            doc,
            attributes,
            app_metadata,
            apply,
            schema,
        }
    }

    /// The JSON Schema of the event's `data`, derived by schemars from the event struct (serde's
    /// attributes included: a `#[serde(default)]` attribute is not required and shows its
    /// default).
    pub fn data_schema(&self) -> schemars::Schema {
        (self.schema)()
    }

    /// Decodes a record of this event type and applies it to `aggregate`.
    pub fn apply<A: Aggregate>(
        &self,
        aggregate: &mut A,
        record: &RecordedEvent<A::Id>,
    ) -> Result<(), Error> {
        (self.apply)(aggregate, &record.data, &record.context()).map_err(|failure| match failure {
            ApplyFailure::Decode(source) => Error::Decode {
                table: A::EVENTS_TABLE,
                event_id: record.id,
                tag: record.event_type.clone(),
                source,
            },
            ApplyFailure::WrongAggregate => Error::UnknownEventType {
                table: A::EVENTS_TABLE,
                event_id: record.id,
                tag: record.event_type.clone(),
            },
        })
    }
}

impl AttributeDescriptor {
    #[doc(hidden)]
    pub const fn __new(
        name: &'static str,
        key: &'static str,
        rust_type: &'static str,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            key,
            rust_type,
            doc,
        }
    }
}

inventory::collect!(EventDescriptor);

/// Every event type linked into the program, indexed by aggregate and tag.
#[derive(Debug)]
pub struct Registry {
    by_tag: HashMap<(TypeId, &'static str), &'static EventDescriptor>,
    events: Vec<&'static EventDescriptor>,
}

impl Registry {
    /// The registry of this program, built on first use.
    ///
    /// Fails with [`Error::DuplicateTag`] if two events of one aggregate share a tag or alias.
    pub fn global() -> Result<&'static Registry, Error> {
        static REGISTRY: OnceLock<Result<Registry, DuplicateTag>> = OnceLock::new();
        match REGISTRY.get_or_init(|| Self::build(inventory::iter::<EventDescriptor>)) {
            Ok(registry) => Ok(registry),
            Err(duplicate) => Err(duplicate.to_error()),
        }
    }

    pub(crate) fn build(
        descriptors: impl IntoIterator<Item = &'static EventDescriptor>,
    ) -> Result<Self, DuplicateTag> {
        let mut events: Vec<&'static EventDescriptor> = descriptors.into_iter().collect();
        events.sort_by_key(|event| (event.aggregate, event.tag));
        let mut by_tag = HashMap::new();
        for &event in &events {
            for tag in std::iter::once(event.tag).chain(event.aliases.iter().copied()) {
                match by_tag.entry(((event.aggregate_type)(), tag)) {
                    Entry::Vacant(slot) => {
                        slot.insert(event);
                    }
                    Entry::Occupied(slot) => {
                        return Err(DuplicateTag {
                            aggregate: event.aggregate,
                            tag,
                            first: slot.get().rust_name,
                            second: event.rust_name,
                        });
                    }
                }
            }
        }
        Ok(Self { by_tag, events })
    }

    /// The event of aggregate `A` stored under `tag` (its tag or an alias).
    pub fn lookup<A: Aggregate>(&self, tag: &str) -> Option<&'static EventDescriptor> {
        self.by_tag.get(&(TypeId::of::<A>(), tag)).copied()
    }

    /// Every event of aggregate `A`, sorted by tag.
    pub fn events_of<A: Aggregate>(&self) -> impl Iterator<Item = &'static EventDescriptor> + '_ {
        self.events
            .iter()
            .copied()
            .filter(|event| (event.aggregate_type)() == TypeId::of::<A>())
    }

    /// Every event of the program, sorted by aggregate name and tag.
    pub fn events(&self) -> &[&'static EventDescriptor] {
        &self.events
    }

    /// Decodes a stored record of aggregate `A` by its tag and applies it.
    pub fn apply<A: Aggregate>(
        &self,
        aggregate: &mut A,
        record: &RecordedEvent<A::Id>,
    ) -> Result<&'static EventDescriptor, Error> {
        let descriptor =
            self.lookup::<A>(&record.event_type)
                .ok_or_else(|| Error::UnknownEventType {
                    table: A::EVENTS_TABLE,
                    event_id: record.id,
                    tag: record.event_type.clone(),
                })?;
        descriptor.apply(aggregate, record)?;
        Ok(descriptor)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct DuplicateTag {
    aggregate: &'static str,
    tag: &'static str,
    first: &'static str,
    second: &'static str,
}

impl DuplicateTag {
    fn to_error(self) -> Error {
        Error::DuplicateTag {
            aggregate: self.aggregate,
            tag: self.tag,
            first: self.first,
            second: self.second,
        }
    }
}

/// Whether `metadata` carries the application metadata `T` an event declares: the body of the
/// `Event::check_metadata` that `#[derive(Event)]` generates for `#[event(metadata = T)]`.
#[doc(hidden)]
pub fn check_app_metadata<T: serde::de::DeserializeOwned>(
    metadata: &crate::Metadata,
) -> Result<(), serde_json::Error> {
    metadata.app::<T>().map(drop)
}

/// The JSON Schema of the application metadata `T` an event declares, registered by
/// `#[derive(Event)]`.
#[doc(hidden)]
pub fn app_metadata_schema_for<T: crate::__private::AppMetadataSchema>() -> schemars::Schema {
    schemars::SchemaGenerator::default().into_root_schema_for::<T>()
}

/// The JSON Schema of event `E`'s `data`, registered by `#[derive(Event)]`.
#[doc(hidden)]
pub fn schema_for<E: crate::__private::EventSchema>() -> schemars::Schema {
    schemars::SchemaGenerator::default().into_root_schema_for::<E>()
}

/// The erased apply registered for event `E`: decode the data, then run `E`'s calculator.
#[doc(hidden)]
pub fn apply_erased<E: crate::Event>(
    aggregate: &mut dyn Any,
    data: &str,
    context: &EventContext<'_>,
) -> Result<(), ApplyFailure> {
    let event: E = serde_json::from_str(data).map_err(ApplyFailure::Decode)?;
    let aggregate = aggregate
        .downcast_mut::<E::Aggregate>()
        .ok_or(ApplyFailure::WrongAggregate)?;
    crate::Apply::apply(&event, aggregate, context);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct First;
    struct Second;

    fn ignore(_: &mut dyn Any, _: &str, _: &EventContext<'_>) -> Result<(), ApplyFailure> {
        Ok(())
    }

    fn any_data() -> schemars::Schema {
        schemars::Schema::default()
    }

    static A: EventDescriptor = EventDescriptor::__new(
        TypeId::of::<First>,
        "first",
        "first_events",
        "Created",
        "first.created",
        &[],
        true,
        false,
        "",
        &[],
        None,
        ignore,
        any_data,
    );
    static B: EventDescriptor = EventDescriptor::__new(
        TypeId::of::<First>,
        "first",
        "first_events",
        "Renamed",
        "first.renamed",
        &["first.created"],
        false,
        false,
        "",
        &[],
        None,
        ignore,
        any_data,
    );
    static C: EventDescriptor = EventDescriptor::__new(
        TypeId::of::<Second>,
        "second",
        "second_events",
        "Created",
        "first.created",
        &[],
        true,
        false,
        "",
        &[],
        None,
        ignore,
        any_data,
    );

    #[test]
    fn a_tag_shared_by_two_events_of_one_aggregate_is_rejected() {
        let duplicate = Registry::build([&A, &B]).unwrap_err();
        let message = duplicate.to_error().to_string();
        assert_eq!(
            message,
            "events `Created` and `Renamed` of aggregate `first` share the type tag \
             `first.created`; give one of them another `#[event(tag = \"...\")]` or alias"
        );
    }

    #[test]
    fn the_same_tag_on_two_aggregates_is_fine() {
        let registry = Registry::build([&A, &C]).unwrap();
        assert_eq!(registry.events().len(), 2);
        assert_eq!(registry.by_tag.len(), 2);
    }
}
