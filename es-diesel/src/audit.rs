//! Auditing what is stored against the events: [`verify`] replays every aggregate in memory and
//! compares it with its row, field by field; [`event_counts`] counts events per type and day.
//!
//! Calls `store` (the replay batch size), `events`, `table`, `database` and `errors`.

use std::collections::HashMap;

use es_core::{Aggregate, Error, Rebuild};
use serde::Serialize;
use serde_json::Value;

use crate::DEFAULT_REPLAY_BATCH;
use crate::database::Database;
use crate::errors::storage;
use crate::events::{BadRow, EventCount, Selection, aggregate_ids, select_events};
use crate::table::AggregateTable;

/// How many events of each type the events table of `A` holds per day (UTC), by day then type:
/// one `GROUP BY` query.
pub fn event_counts<C: Database, A: AggregateTable<C>>(
    conn: &mut C,
) -> Result<Vec<EventCount>, Error> {
    crate::events::event_counts(conn, A::EVENTS_TABLE)
}

/// An aggregate whose stored row is not what its events build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// The aggregate's id.
    pub aggregate_id: String,
    /// How the row and the replay differ.
    pub kind: DriftKind,
}

/// How a stored row and the replay of its events differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The events build the aggregate, but its table has no row for it.
    MissingRow,
    /// The events destroyed the aggregate, but its row is still there.
    UnexpectedRow,
    /// The row and the replay disagree on these fields.
    Fields(Vec<FieldDrift>),
    /// The events cannot be replayed (data that does not decode, an unknown tag, a version gap,
    /// a row with a column that cannot be read), so replay cannot rewrite the row either.
    Unreplayable {
        /// The replay's error, naming the table, event id, tag (and column).
        error: String,
    },
}

/// One field on which a stored row and the replay of its events disagree, as JSON values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDrift {
    /// The field's name (empty when the aggregate does not serialize to a JSON object).
    pub field: String,
    /// The value in the aggregate's table.
    pub stored: Value,
    /// The value the events build.
    pub replayed: Value,
}

/// How far [`verify`] has come, and what it found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Aggregates compared.
    pub aggregates: u64,
    /// Events replayed.
    pub events: u64,
    /// Aggregates whose row is not what their events build, including the unreplayable ones.
    pub drifted: u64,
    /// Of the drifted aggregates, those whose events cannot be replayed
    /// ([`DriftKind::Unreplayable`]): a replay leaves their rows as they are.
    pub unreplayable: u64,
}

/// Replays every aggregate of type `A` in memory and compares it with its stored row, through
/// `serde_json` (the aggregate's `Serialize`), calling `on_drift` for each one that differs and
/// `progress` after each batch. Nothing is written: this is the audit to run before a replay,
/// and after it.
///
/// Aggregates are read [`DEFAULT_REPLAY_BATCH`] at a time, each batch's rows and events from one
/// consistent snapshot (a read-only transaction), so that a concurrent write never shows up as
/// drift; it takes no row lock, so that it never blocks, deadlocks or aborts an application's
/// write. Rows that
/// have no event at all are not looked at. An aggregate whose events cannot be replayed, or one
/// of whose event rows cannot be read, is reported ([`DriftKind::Unreplayable`]) and the audit
/// goes on; only a row whose aggregate cannot be read either stops it, with that row's error.
pub fn verify<C: Database, A: AggregateTable<C> + Serialize>(
    conn: &mut C,
    on_drift: &mut dyn FnMut(&Drift),
    progress: &mut dyn FnMut(&VerifyReport),
) -> Result<VerifyReport, Error> {
    let span = tracing::info_span!("verify", aggregate = A::NAME);
    let _entered = span.enter();
    let mut report = VerifyReport::default();
    let mut after: Option<A::Id> = None;
    loop {
        let ids = aggregate_ids(conn, A::EVENTS_TABLE, after.as_ref(), DEFAULT_REPLAY_BATCH)?;
        let Some(last) = ids.last() else {
            return Ok(report);
        };
        after = Some(last.clone());
        conn.snapshot_transaction(|conn| verify_batch::<C, A>(conn, &ids, &mut report, on_drift))?;
        progress(&report);
    }
}

/// An aggregate being replayed: so far so good, or stopped by the error of one of its events.
type Replaying<A> = Result<Rebuild<A>, (<A as Aggregate>::Id, Error)>;

fn verify_batch<C: Database, A: AggregateTable<C> + Serialize>(
    conn: &mut C,
    ids: &[A::Id],
    report: &mut VerifyReport,
    on_drift: &mut dyn FnMut(&Drift),
) -> Result<(), Error> {
    let mut rows: HashMap<A::Id, A> = A::load_many(conn, ids)
        .map_err(storage(A::TABLE))?
        .into_iter()
        .map(|row| (row.id().clone(), row))
        .collect();
    let mut records = select_events(conn, A::EVENTS_TABLE, Selection::Aggregates(ids))?;
    let mut current: Option<Replaying<A>> = None;
    while let Some(row) = records.next_row() {
        let record = match row {
            Ok(record) => Ok(record),
            Err(BadRow {
                aggregate_id: Some(id),
                error,
            }) => Err((id, error)),
            Err(BadRow {
                aggregate_id: None,
                error,
            }) => return Err(error),
        };
        let id = match &record {
            Ok(record) => &record.aggregate_id,
            Err((id, _)) => id,
        };
        let replaying = match &current {
            Some(Ok(rebuild)) => Some(rebuild.id()),
            Some(Err((id, _))) => Some(id),
            None => None,
        };
        if replaying != Some(id) {
            if let Some(done) = current.take() {
                check(done, &mut rows, report, on_drift)?;
            }
            current = Some(Ok(Rebuild::new(id.clone())?));
        }
        if let Some(Ok(rebuild)) = &mut current {
            match record {
                Ok(record) => match rebuild.apply(&record) {
                    Ok(()) => report.events += 1,
                    Err(error) => current = Some(Err((record.aggregate_id, error))),
                },
                Err(bad) => current = Some(Err(bad)),
            }
        }
    }
    drop(records);
    if let Some(done) = current {
        check(done, &mut rows, report, on_drift)?;
    }
    Ok(())
}

/// Compares one replayed aggregate with its row (taken out of `rows`) and reports any drift.
fn check<A: Aggregate + Serialize>(
    done: Replaying<A>,
    rows: &mut HashMap<A::Id, A>,
    report: &mut VerifyReport,
    on_drift: &mut dyn FnMut(&Drift),
) -> Result<(), Error> {
    let (id, drift) = match done {
        Ok(rebuild) => {
            let id = rebuild.id().clone();
            let row = rows.remove(&id);
            let drift = compare(row.as_ref(), rebuild.finish().as_ref())?;
            (id, drift)
        }
        Err((id, error)) => {
            report.unreplayable += 1;
            let error = error.to_string();
            (id, Some(DriftKind::Unreplayable { error }))
        }
    };
    report.aggregates += 1;
    if let Some(kind) = drift {
        report.drifted += 1;
        on_drift(&Drift {
            aggregate_id: id.to_string(),
            kind,
        });
    }
    Ok(())
}

/// How a stored row differs from the replayed state, if it does.
fn compare<A: Aggregate + Serialize>(
    stored: Option<&A>,
    replayed: Option<&A>,
) -> Result<Option<DriftKind>, Error> {
    let (stored, replayed) = match (stored, replayed) {
        (None, None) => return Ok(None),
        (None, Some(_)) => return Ok(Some(DriftKind::MissingRow)),
        (Some(_), None) => return Ok(Some(DriftKind::UnexpectedRow)),
        (Some(stored), Some(replayed)) => (state_json(stored)?, state_json(replayed)?),
    };
    let fields = field_drift(stored, replayed);
    Ok((!fields.is_empty()).then_some(DriftKind::Fields(fields)))
}

/// The fields on which two states differ, as JSON: field by field when both are objects (a field
/// missing on one side is `null` there), else the whole value under an empty field name.
fn field_drift(stored: Value, replayed: Value) -> Vec<FieldDrift> {
    match (stored, replayed) {
        (Value::Object(stored), Value::Object(mut replayed)) => {
            let mut fields: Vec<FieldDrift> = stored
                .into_iter()
                .filter_map(|(field, stored)| {
                    let replayed = replayed.remove(&field).unwrap_or(Value::Null);
                    (stored != replayed).then_some(FieldDrift {
                        field,
                        stored,
                        replayed,
                    })
                })
                .collect();
            fields.extend(replayed.into_iter().map(|(field, replayed)| FieldDrift {
                field,
                stored: Value::Null,
                replayed,
            }));
            fields
        }
        (stored, replayed) if stored != replayed => vec![FieldDrift {
            field: String::new(),
            stored,
            replayed,
        }],
        _ => Vec::new(),
    }
}

/// An aggregate's state as JSON, through its `Serialize`.
pub(crate) fn state_json<A: Aggregate + Serialize>(state: &A) -> Result<Value, Error> {
    serde_json::to_value(state).map_err(|source| Error::EncodeState {
        aggregate: A::NAME,
        aggregate_id: state.id().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{FieldDrift, field_drift};

    fn drift(field: &str, stored: serde_json::Value, replayed: serde_json::Value) -> FieldDrift {
        FieldDrift {
            field: field.to_owned(),
            stored,
            replayed,
        }
    }

    #[test]
    fn objects_differ_field_by_field() {
        let stored = json!({"id": 1, "title": "a", "done": false, "gone": 3});
        let replayed = json!({"id": 1, "title": "b", "done": false, "new": 4});
        let mut fields = field_drift(stored, replayed);
        fields.sort_by(|a, b| a.field.cmp(&b.field));
        assert_eq!(
            fields,
            vec![
                drift("gone", json!(3), json!(null)),
                drift("new", json!(null), json!(4)),
                drift("title", json!("a"), json!("b")),
            ]
        );
        let same = json!({"id": 1, "title": "a"});
        assert_eq!(field_drift(same.clone(), same), Vec::new());
    }

    #[test]
    fn other_values_differ_as_a_whole() {
        assert_eq!(
            field_drift(json!([1, 2]), json!([1, 3])),
            vec![drift("", json!([1, 2]), json!([1, 3]))]
        );
        assert_eq!(field_drift(json!("a"), json!({"a": 1})).len(), 1);
        assert_eq!(field_drift(json!(7), json!(7)), Vec::new());
    }
}
