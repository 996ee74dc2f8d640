//! How an event travels as a NATS message: its subject, its headers (identity and metadata) and
//! its payload (the data JSON), and back.
//!
//! Calls `events` (`AnyEvent`) only.

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use es_core::{Error, Metadata};

use crate::events::AnyEvent;

/// Header: the events table the event is stored in.
pub const EVENTS_TABLE: &str = "Es-Events-Table";
/// Header: the aggregate id, as text.
pub const AGGREGATE_ID: &str = "Es-Aggregate-Id";
/// Header: the event's version within its aggregate. A consumer checks that each aggregate's
/// versions arrive in order: 1, 2, 3…
pub const VERSION: &str = "Es-Version";
/// Header: the event's type tag.
pub const TAG: &str = "Es-Tag";
/// Header: the event's id in its database (its place in the feed).
pub const EVENT_ID: &str = "Es-Event-Id";
/// Header: the event's place in the subscription feed, `tx_order/event_id`.
pub const POSITION: &str = "Es-Position";
/// Header: when the event was created, RFC 3339 in UTC with microseconds.
pub const CREATED_AT: &str = "Es-Created-At";
/// Header: the whole metadata object, as JSON.
pub const METADATA: &str = "Es-Metadata";
/// Header: the correlation id of the metadata, if it has one (also in [`METADATA`]).
pub const CORRELATION_ID: &str = "Es-Correlation-Id";
/// Header: the causation id of the metadata, if it has one (also in [`METADATA`]).
pub const CAUSATION_ID: &str = "Es-Causation-Id";

/// The stable identity of an event, JetStream's `Nats-Msg-Id`: its events table, aggregate and
/// version — the same every time the event is published, from any relay, so the stream keeps one
/// copy.
pub fn message_id(event: &AnyEvent) -> String {
    format!(
        "{}:{}:{}",
        event.events_table, event.aggregate_id, event.version
    )
}

/// The message of `event` at feed `position`: its headers and payload.
pub(crate) fn encode(
    event: &AnyEvent,
    position: &str,
) -> Result<(HeaderMap, Bytes), serde_json::Error> {
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        message_id(event).as_str(),
    );
    headers.insert(EVENTS_TABLE, event.events_table.as_str());
    headers.insert(AGGREGATE_ID, event.aggregate_id.as_str());
    headers.insert(VERSION, event.version.to_string().as_str());
    headers.insert(TAG, event.event_type.as_str());
    headers.insert(EVENT_ID, event.id.to_string().as_str());
    headers.insert(POSITION, position);
    headers.insert(
        CREATED_AT,
        event
            .created_at
            .to_rfc3339_opts(SecondsFormat::Micros, true)
            .as_str(),
    );
    let metadata = serde_json::to_string(&*event.metadata)?;
    headers.insert(METADATA, metadata.as_str());
    if let Some(correlation) = event.metadata.correlation_id {
        headers.insert(CORRELATION_ID, correlation.to_string().as_str());
    }
    if let Some(causation) = event.metadata.causation_id {
        headers.insert(CAUSATION_ID, causation.to_string().as_str());
    }
    Ok((headers, Bytes::from(event.data.clone())))
}

/// The event of a message relayed to `stream` (its `sequence` there, for errors): its headers
/// and payload read back, [`Error::BadMessage`] for one the relay did not publish.
pub(crate) fn decode(
    stream: &str,
    sequence: u64,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<AnyEvent, Error> {
    let bad = |reason: String| Error::BadMessage {
        stream: stream.to_owned(),
        sequence,
        reason,
    };
    let headers = headers.ok_or_else(|| bad("it has no headers".to_owned()))?;
    let text = |name: &str| {
        headers
            .get(name)
            .map(|value| value.as_str().to_owned())
            .ok_or_else(|| bad(format!("header {name} is missing")))
    };
    let number = |name: &str| {
        text(name)?
            .parse::<i64>()
            .map_err(|error| bad(format!("header {name}: {error}")))
    };
    let events_table = text(EVENTS_TABLE)?;
    let aggregate_id = text(AGGREGATE_ID)?;
    let id = number(EVENT_ID)?;
    let version = number(VERSION)?;
    let event_type = text(TAG)?;
    let created_at = DateTime::parse_from_rfc3339(&text(CREATED_AT)?)
        .map_err(|error| bad(format!("header {CREATED_AT}: {error}")))?
        .with_timezone(&Utc);
    let metadata: Metadata = serde_json::from_str(&text(METADATA)?)
        .map_err(|error| bad(format!("header {METADATA}: {error}")))?;
    let data = std::str::from_utf8(payload)
        .map_err(|error| bad(format!("the payload is not UTF-8: {error}")))?;
    Ok(AnyEvent {
        events_table,
        aggregate_id,
        id,
        version,
        event_type,
        data: data.to_owned(),
        metadata: Arc::new(metadata),
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_the_trip() {
        let mut metadata = Metadata::by_actor("ada");
        metadata.correlation_id = Some(uuid::Uuid::new_v4());
        metadata.causation_id = Some(41);
        let event = AnyEvent {
            events_table: "task_events".to_owned(),
            aggregate_id: "7".to_owned(),
            id: 42,
            version: 3,
            event_type: "task.completed".to_owned(),
            data: r#"{"note":"done ✓"}"#.to_owned(),
            metadata: Arc::new(metadata),
            created_at: DateTime::parse_from_rfc3339("2026-04-20T09:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        let (headers, payload) = encode(&event, "0/42").unwrap();
        assert_eq!(
            headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .unwrap()
                .as_str(),
            "task_events:7:3"
        );
        assert_eq!(headers.get(POSITION).unwrap().as_str(), "0/42");
        assert_eq!(headers.get(CAUSATION_ID).unwrap().as_str(), "41");
        assert_eq!(decode("S", 1, Some(&headers), &payload).unwrap(), event);
    }

    #[test]
    fn a_foreign_message_is_named() {
        let mut headers = HeaderMap::new();
        headers.insert(EVENTS_TABLE, "task_events");
        let error = decode("S", 9, Some(&headers), b"{}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "message 9 of NATS stream `S` is not a relayed event: header Es-Aggregate-Id is missing"
        );
        let error = decode("S", 9, None, b"{}").unwrap_err();
        assert!(error.to_string().ends_with("it has no headers"), "{error}");
    }
}
