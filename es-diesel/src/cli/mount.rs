//! The aggregates an app mounts, their types erased ([`Mounted`]): what each command does with
//! one aggregate type.
//!
//! Calls `store`, `events`, `audit`, `table` and the other rooms of `cli`.

use std::marker::PhantomData;

use es_core::{Aggregate, AsOf, Error, EventStore, OnBadHistory, Rebuild, ReplayProgress};
use serde::Serialize;
use serde_json::Value;

use super::error::*;
use super::render::*;
use crate::audit::{Drift, VerifyReport, event_counts, state_json, verify};
use crate::database::Database;
use crate::events::{EventCount, Selection, select_events};
use crate::store::DieselStore;
use crate::table::AggregateTable;

/// What the command line does with one aggregate type, its type erased.
pub(super) trait Mounted<C: Database> {
    fn name(&self) -> &'static str;
    fn history(&self, conn: &mut C, id: &str) -> Result<Vec<Result<Entry, Error>>, CliError>;
    fn show(&self, conn: &mut C, id: &str, as_of: Option<AsOf>) -> Result<Shown, CliError>;
    fn replay_one(&self, conn: &mut C, id: &str) -> Result<Option<Value>, CliError>;
    fn replay_all(
        &self,
        conn: &mut C,
        on_bad: OnBadHistory,
        progress: &mut dyn FnMut(&ReplayProgress),
    ) -> Result<(ReplayProgress, Vec<(String, Error)>), Error>;
    fn verify(
        &self,
        conn: &mut C,
        on_drift: &mut dyn FnMut(&Drift),
        progress: &mut dyn FnMut(&VerifyReport),
    ) -> Result<VerifyReport, Error>;
    fn event_counts(&self, conn: &mut C) -> Result<Vec<EventCount>, Error>;
}

pub(super) struct Typed<A>(pub(super) PhantomData<fn() -> A>);

impl<A: Aggregate> Typed<A> {
    fn parse_id(id: &str) -> Result<A::Id, CliError> {
        id.parse().map_err(|_| CliError::BadId {
            aggregate: A::NAME,
            id: id.to_owned(),
        })
    }
}

impl<C: Database, A: AggregateTable<C> + Serialize> Mounted<C> for Typed<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn history(&self, conn: &mut C, id: &str) -> Result<Vec<Result<Entry, Error>>, CliError> {
        let id = Self::parse_id(id)?;
        let all = Selection::Aggregate {
            id: &id,
            as_of: None,
        };
        let records = select_events(conn, A::EVENTS_TABLE, all)?;
        Ok(records.map(|record| record.map(Entry::new)).collect())
    }

    /// As of a point: the events up to it, and no other. Now: the row, and the replay of every
    /// event to find the version whose state it is.
    fn show(&self, conn: &mut C, id: &str, as_of: Option<AsOf>) -> Result<Shown, CliError> {
        let id = Self::parse_id(id)?;
        let mut rebuild = Rebuild::<A>::new(id.clone())?;
        let Some(as_of) = as_of else {
            let row = EventStore::<A>::load(&mut DieselStore::new(conn), &id)?;
            let row = row.as_ref().map(state_json).transpose()?;
            let (mut matches, mut broken) = (None, None);
            let all = Selection::Aggregate {
                id: &id,
                as_of: None,
            };
            for record in select_events(conn, A::EVENTS_TABLE, all)? {
                if let Err(error) = record.and_then(|record| rebuild.apply(&record)) {
                    broken = Some(error);
                    break;
                }
                if rebuild.state().map(state_json).transpose()? == row {
                    matches = Some(rebuild.version());
                }
            }
            let latest = match broken {
                None => Some(rebuild.version()),
                Some(_) => EventStore::<A>::version(&mut DieselStore::new(conn), &id).ok(),
            };
            return Ok(Shown::Now(Now {
                row,
                matches,
                replayed_to: rebuild.version(),
                builds: rebuild.state().is_some(),
                broken,
                latest,
            }));
        };
        let until = Selection::Aggregate {
            id: &id,
            as_of: Some(as_of),
        };
        for record in select_events(conn, A::EVENTS_TABLE, until)? {
            let record = record?;
            if !as_of.includes(&record) {
                break;
            }
            rebuild.apply(&record)?;
        }
        let version = rebuild.version();
        let state = rebuild.finish().as_ref().map(state_json).transpose()?;
        let latest = EventStore::<A>::version(&mut DieselStore::new(conn), &id)?;
        Ok(Shown::AsOf {
            state,
            version,
            latest,
        })
    }

    fn replay_one(&self, conn: &mut C, id: &str) -> Result<Option<Value>, CliError> {
        let aggregate_id = Self::parse_id(id)?;
        let replayed = DieselStore::new(conn)
            .replay_batch_of::<A>(std::slice::from_ref(&aggregate_id), OnBadHistory::Stop)?;
        if replayed.events == 0 {
            return Err(CliError::NoEvents {
                aggregate: A::NAME,
                id: id.to_owned(),
            });
        }
        let state = replayed.saved.into_iter().next();
        Ok(state.as_ref().map(state_json).transpose()?)
    }

    fn replay_all(
        &self,
        conn: &mut C,
        on_bad: OnBadHistory,
        progress: &mut dyn FnMut(&ReplayProgress),
    ) -> Result<(ReplayProgress, Vec<(String, Error)>), Error> {
        let report =
            EventStore::<A>::replay_all_with(&mut DieselStore::new(conn), on_bad, progress)?;
        let skipped = report
            .skipped
            .into_iter()
            .map(|skipped| (skipped.aggregate_id, skipped.error))
            .collect();
        Ok((report.progress, skipped))
    }

    fn verify(
        &self,
        conn: &mut C,
        on_drift: &mut dyn FnMut(&Drift),
        progress: &mut dyn FnMut(&VerifyReport),
    ) -> Result<VerifyReport, Error> {
        verify::<C, A>(conn, on_drift, progress)
    }

    fn event_counts(&self, conn: &mut C) -> Result<Vec<EventCount>, Error> {
        event_counts::<C, A>(conn)
    }
}
