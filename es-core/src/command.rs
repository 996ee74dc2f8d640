//! Commands: the one way a request changes an aggregate. A command validates its attributes,
//! decides — under the aggregate's write lock — whether the action is allowed and which events it
//! makes, and makes none when nothing would change.

use std::borrow::Cow;

use validator::{Validate, ValidationErrors};

use crate::aggregate::Aggregate;
use crate::error::Error;
use crate::event::NewEvent;

/// A request to change one aggregate: typed attributes, their validation, and the decision.
///
/// Running a command ([`EventStore::execute`](crate::EventStore::execute)) goes through three
/// steps, always in this order and all of them every time, so that no step can be forgotten:
///
/// 1. **Validate the attributes** ([`Validate`], usually `#[derive(Validate)]` from the
///    [`validator`] crate: presence, length, ranges, formats, custom checks). A failure is
///    [`CommandError::Invalid`] with an error per field, before anything is locked or read.
/// 2. **Decide** under the write lock: [`decide`](Command::decide) gets the aggregate as stored
///    now (`None` if it does not exist), and either rejects the action ([`Rejection`]), or returns
///    the events it makes — only for what changes (see [`changed`]).
/// 3. **No events is a no-op**: nothing is written, no reactor runs, and the result says so
///    ([`Committed::is_noop`](crate::Committed::is_noop)). Otherwise the events are applied, stored
///    and dispatched in the same transaction, as by [`append`](crate::EventStore::append).
///
/// ```
/// use validator::Validate;
/// use es_core::{Aggregate, AppendOptions, Apply, Command, CommandError, Event, EventContext};
/// use es_core::{EventStore, InMemoryStore, NewEvent, Rejection};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Aggregate, Default, Clone, Debug)]
/// pub struct Subscription {
///     pub id: i64,
///     pub stripe_key: Option<String>,
///     pub active: bool,
/// }
///
/// /// A subscription was activated (from the payment platform's webhook).
/// #[derive(Event, Serialize, Deserialize, JsonSchema)]
/// #[aggregate(Subscription)]
/// pub struct Activated {
///     #[data_attributes]
///     pub stripe_key: String,
/// }
///
/// impl Apply<Subscription> for Activated {
///     fn apply(&self, subscription: &mut Subscription, _: &EventContext<'_>) {
///         subscription.stripe_key = Some(self.stripe_key.clone());
///         subscription.active = true;
///     }
/// }
///
/// /// Activates a subscription.
/// #[derive(Validate)]
/// pub struct Activate {
///     pub subscription: i64,
///     #[validate(length(min = 1, message = "is required"))]
///     pub stripe_key: String,
/// }
///
/// impl Command for Activate {
///     type Aggregate = Subscription;
///
///     fn aggregate_id(&self) -> i64 {
///         self.subscription
///     }
///
///     fn decide(&self, current: Option<&Subscription>) -> Result<Vec<NewEvent<Subscription>>, Rejection> {
///         let subscription = current.ok_or(Rejection::NotFound)?;
///         if subscription.active {
///             return Ok(vec![]); // already active: a no-op
///         }
///         Ok(vec![Activated { stripe_key: self.stripe_key.clone() }.into()])
///     }
/// }
/// # /// A subscription was created.
/// # #[derive(Event, Serialize, Deserialize, JsonSchema)]
/// # #[aggregate(Subscription)]
/// # #[event(creates)]
/// # pub struct Created {}
/// # impl Apply<Subscription> for Created {
/// #     fn apply(&self, _: &mut Subscription, _: &EventContext<'_>) {}
/// # }
///
/// let mut store = InMemoryStore::new();
/// store.append(&12, Created {}, &AppendOptions::default())?;
///
/// let activate = Activate { subscription: 12, stripe_key: "sub_66123".into() };
/// let done = store.execute(&activate, &AppendOptions::default())?;
/// assert_eq!(done.events[0].event_type, "subscription.activated");
/// assert!(store.execute(&activate, &AppendOptions::default())?.is_noop());
///
/// let missing_key = Activate { subscription: 12, stripe_key: String::new() };
/// let error = store.execute(&missing_key, &AppendOptions::default()).unwrap_err();
/// assert_eq!(error.to_string(), "invalid `Activate`: stripe_key: is required");
/// # Ok::<(), CommandError>(())
/// ```
pub trait Command: Validate {
    /// The aggregate the command changes.
    type Aggregate: Aggregate;

    /// The command's name in errors; by default its type's name (`Activate`).
    fn name(&self) -> &'static str {
        short_type_name::<Self>()
    }

    /// The id of the aggregate the command changes (or creates).
    fn aggregate_id(&self) -> <Self::Aggregate as Aggregate>::Id;

    /// Decides, given the aggregate as stored now (`None` if it does not exist), whether the
    /// action is allowed and which events it makes: none when nothing would change.
    ///
    /// It runs under the aggregate's write lock, so the state it sees is the state the events are
    /// applied to. Like a calculator it should not read the clock: the events carry their time.
    fn decide(
        &self,
        current: Option<&Self::Aggregate>,
    ) -> Result<Vec<NewEvent<Self::Aggregate>>, Rejection>;
}

/// Why [`Command::decide`] refused an action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The command needs an existing aggregate.
    NotFound,
    /// The command creates an aggregate that exists already.
    AlreadyExists,
    /// The action is not allowed in the aggregate's current state.
    NotAllowed(Cow<'static, str>),
}

impl Rejection {
    /// The action is not allowed in the current state, for this reason ("the meeting was
    /// cancelled").
    pub fn not_allowed(reason: impl Into<Cow<'static, str>>) -> Self {
        Rejection::NotAllowed(reason.into())
    }

    /// The error of command `command` rejected on aggregate `id`.
    pub fn into_error<A: Aggregate>(self, command: &'static str, id: &A::Id) -> CommandError {
        let aggregate = A::NAME;
        let aggregate_id = id.to_string();
        match self {
            Rejection::NotFound => CommandError::NotFound {
                aggregate,
                aggregate_id,
            },
            Rejection::AlreadyExists => CommandError::AlreadyExists {
                aggregate,
                aggregate_id,
            },
            Rejection::NotAllowed(reason) => CommandError::NotAllowed {
                command,
                aggregate,
                aggregate_id,
                reason,
            },
        }
    }
}

/// Why a command did not run: each variant is something a caller handles differently (a form
/// with field errors, a 404, a 409, a retry, a 500).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// Attributes failed validation; nothing was read or written.
    #[error("invalid `{command}`: {errors}")]
    Invalid {
        /// The command.
        command: &'static str,
        /// The errors, per field (`errors.field_errors()`).
        errors: ValidationErrors,
    },

    /// The aggregate does not exist.
    #[error("{aggregate} {aggregate_id} not found")]
    NotFound {
        /// The aggregate.
        aggregate: &'static str,
        /// The aggregate id.
        aggregate_id: String,
    },

    /// The command creates an aggregate that exists already.
    #[error("{aggregate} {aggregate_id} already exists")]
    AlreadyExists {
        /// The aggregate.
        aggregate: &'static str,
        /// The aggregate id.
        aggregate_id: String,
    },

    /// The action is not allowed in the aggregate's current state.
    #[error("`{command}` is not allowed on {aggregate} {aggregate_id}: {reason}")]
    NotAllowed {
        /// The command.
        command: &'static str,
        /// The aggregate.
        aggregate: &'static str,
        /// The aggregate id.
        aggregate_id: String,
        /// Why.
        reason: Cow<'static, str>,
    },

    /// A concurrent write got there first ([`Error::Conflict`]: the expected version is stale) or
    /// collided with this one ([`Error::Contention`]); reload and retry.
    #[error(transparent)]
    Conflict(Error),

    /// Storage, a reactor, or stored data failed; nothing of the transaction was kept.
    #[error(transparent)]
    Store(Error),
}

impl From<Error> for CommandError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound {
                aggregate,
                aggregate_id,
            } => CommandError::NotFound {
                aggregate,
                aggregate_id,
            },
            Error::AlreadyExists {
                aggregate,
                aggregate_id,
                ..
            } => CommandError::AlreadyExists {
                aggregate,
                aggregate_id,
            },
            error if error.is_collision() => CommandError::Conflict(error),
            error => CommandError::Store(error),
        }
    }
}

/// `?` on a diesel query of the application's own in a function that returns a `CommandError`
/// (feature `diesel`): [`Error::Query`], a conflict if it is contention.
#[cfg(feature = "diesel")]
impl From<diesel::result::Error> for CommandError {
    fn from(error: diesel::result::Error) -> Self {
        Error::from(error).into()
    }
}

/// Change detection for update commands whose attributes are all optional (the `updatePost`
/// story): the requested value if one was given and it differs from the current one.
///
/// ```
/// use es_core::changed;
///
/// let current = String::from("Same title");
/// assert_eq!(changed(&Some("New title".to_owned()), &current), Some(&"New title".to_owned()));
/// assert_eq!(changed(&Some("Same title".to_owned()), &current), None);
/// assert_eq!(changed(&None, &current), None);
/// ```
pub fn changed<'a, T: PartialEq>(requested: &'a Option<T>, current: &T) -> Option<&'a T> {
    requested.as_ref().filter(|requested| *requested != current)
}

/// The last segment of a type's path: `Activate` for `app::commands::Activate`.
fn short_type_name<T: ?Sized>() -> &'static str {
    let name = std::any::type_name::<T>();
    let path = name.split('<').next().unwrap_or(name);
    path.rsplit("::").next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    mod app {
        pub(super) struct Activate;
    }

    #[test]
    fn a_commands_default_name_is_its_type_name() {
        assert_eq!(short_type_name::<app::Activate>(), "Activate");
        assert_eq!(short_type_name::<Vec<app::Activate>>(), "Vec");
    }
}
