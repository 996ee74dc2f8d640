//! Metadata: who created an event, from where, and as part of which request.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The keys of the named fields of [`Metadata`] in its JSON.
const NAMED_KEYS: [&str; 6] = [
    "actor_id",
    "request_id",
    "ip",
    "user_agent",
    "correlation_id",
    "causation_id",
];

/// The context of an event's creation, stored in the `metadata` JSON column.
///
/// Every field is optional so that old events decode whatever they recorded; keys this struct
/// does not know (a webhook's `notification_id`, say) land in [`Metadata::extra`] and survive a
/// round trip.
///
/// ```
/// use es_core::Metadata;
///
/// let metadata = Metadata::by_actor("42").with_extra("notification_id", 33456);
/// let json = metadata.to_json().unwrap();
/// assert_eq!(json, r#"{"actor_id":"42","notification_id":33456}"#);
/// assert_eq!(Metadata::from_json(&json).unwrap(), metadata);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    description = "The context of an event's creation: who caused it, from where, as \
                          part of which request. Any other key is free-form context."
)]
#[non_exhaustive]
pub struct Metadata {
    /// Who caused the event: a user id, an admin, a webhook sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// The id of the request (HTTP request id, job id) that created the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The IP address the request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The user agent of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Shared by every event that one request caused, directly or through reactors. An append
    /// whose metadata has none gets a new one from the store (a random UUID), so stored metadata
    /// has a correlation id even when the appended one did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id (global position) of the event whose reactor created this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<i64>,
    /// Free-form context: any other key of the stored JSON object.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Metadata {
    /// Metadata naming the actor who caused the event.
    pub fn by_actor(actor_id: impl Into<String>) -> Self {
        Self {
            actor_id: Some(actor_id.into()),
            ..Self::default()
        }
    }

    /// Sets the request id.
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets the IP address of the request.
    #[must_use]
    pub fn with_ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }

    /// Sets the user agent of the request.
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    /// Sets the causation id (the id of the event that caused this one).
    #[must_use]
    pub fn with_causation_id(mut self, causation_id: i64) -> Self {
        self.causation_id = Some(causation_id);
        self
    }

    /// Adds a free-form key to [`Metadata::extra`].
    #[must_use]
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Adds the keys of the application's own metadata `app`, a struct that serializes to a JSON
    /// object (serde + schemars, declared on events with `#[event(metadata = ...)]` so that the
    /// catalog documents it), to [`Metadata::extra`]. A key of `app` that is a named field of
    /// `Metadata` (`actor_id`, ...) is an error: it would be read back as that field.
    ///
    /// ```
    /// use es_core::Metadata;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// struct Webhook {
    ///     notification_id: i64,
    /// }
    ///
    /// let metadata = Metadata::by_actor("stripe").with_app(&Webhook { notification_id: 33456 })?;
    /// assert_eq!(metadata.to_json()?, r#"{"actor_id":"stripe","notification_id":33456}"#);
    /// assert_eq!(metadata.app::<Webhook>()?, Webhook { notification_id: 33456 });
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn with_app(mut self, app: &impl Serialize) -> Result<Self, serde_json::Error> {
        use serde::ser::Error as _;
        let Value::Object(keys) = serde_json::to_value(app)? else {
            return Err(serde_json::Error::custom(
                "application metadata must serialize to a JSON object (a struct with named fields)",
            ));
        };
        for (key, value) in keys {
            if NAMED_KEYS.contains(&key.as_str()) {
                return Err(serde_json::Error::custom(format!(
                    "application metadata key `{key}` is a field of `Metadata`: rename it"
                )));
            }
            self.extra.insert(key, value);
        }
        Ok(self)
    }

    /// The application's own metadata, read from [`Metadata::extra`] as `T` (keys `T` does not
    /// name are ignored unless it denies unknown fields): how `apply`, reactors and jobs read what
    /// [`with_app`](Metadata::with_app) wrote.
    pub fn app<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(Value::Object(self.extra.clone()))
    }

    /// Encodes the metadata as the JSON stored in the `metadata` column.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The JSON Schema of the `metadata` column, derived by schemars from this struct.
    pub fn json_schema() -> schemars::Schema {
        schemars::schema_for!(Metadata)
    }

    /// Decodes the JSON of a `metadata` column.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Webhook {
        notification_id: i64,
    }

    /// Typed keys sit beside untyped ones and the named fields, and read back typed.
    #[test]
    fn application_metadata_reads_back_typed_beside_untyped_extras() {
        let metadata = Metadata::by_actor("stripe")
            .with_extra("attempt", 2)
            .with_app(&Webhook { notification_id: 7 })
            .unwrap();
        let stored = Metadata::from_json(&metadata.to_json().unwrap()).unwrap();
        assert_eq!(stored.app::<Webhook>().unwrap().notification_id, 7);
        assert_eq!(stored.extra["attempt"], 2);
        assert_eq!(stored.actor_id.as_deref(), Some("stripe"));
    }

    /// What cannot be application metadata is refused, and a missing or mistyped key fails the
    /// typed read.
    #[test]
    fn what_is_not_application_metadata_is_an_error() {
        #[derive(Serialize)]
        struct Clash {
            actor_id: String,
        }
        let not_an_object = Metadata::default().with_app(&7).unwrap_err();
        assert!(
            not_an_object.to_string().contains("JSON object"),
            "{not_an_object}"
        );
        let clash = Metadata::default()
            .with_app(&Clash {
                actor_id: "x".into(),
            })
            .unwrap_err();
        assert!(clash.to_string().contains("`actor_id`"), "{clash}");
        assert!(Metadata::default().app::<Webhook>().is_err());
        let mistyped = Metadata::default().with_extra("notification_id", "seven");
        assert!(mistyped.app::<Webhook>().is_err());
    }
}
