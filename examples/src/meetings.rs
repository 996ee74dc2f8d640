//! Meetings, from "An Introduction to Event Sourcing for Rubyists": a meeting is scheduled,
//! accepted, rescheduled, cancelled or finished — each allowed only in some states (a cancelled
//! meeting cannot be accepted) — and two people editing the same meeting are told when the other
//! got there first, through the aggregate's version (optimistic concurrency).

use std::io::Write;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use es_core::{
    Aggregate, AppendOptions, Apply, Command, CommandError, Committed, Event, EventContext,
    EventStore, Metadata, NewEvent, Rejection,
};
use es_diesel::cli::Cli;
use es_diesel::{Database, DieselStore, Stores};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use validator::{Validate, ValidationError};

use crate::print_history;

/// Where the app's event catalog is committed (`es_core::catalog`): the reference the data team
/// reads, written at boot by the example and checked by the tests.
pub const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/meetings");

/// The app's aggregates, whose events its catalog lists.
pub const AGGREGATES: &[&str] = &[<Meeting as Aggregate>::NAME];

/// The diesel schema of the app.
#[allow(missing_docs)]
pub mod schema {
    diesel::table! {
        meetings (id) {
            id -> BigInt,
            title -> Text,
            organizer -> Text,
            invitee -> Text,
            starts_at -> Timestamp,
            status -> Text,
        }
    }
}

/// The app's own tables, one statement each.
pub const TABLES: &[&str] = &["CREATE TABLE meetings (id BIGINT PRIMARY KEY NOT NULL, \
     title TEXT NOT NULL, organizer TEXT NOT NULL, invitee TEXT NOT NULL, \
     starts_at TIMESTAMP NOT NULL, status TEXT NOT NULL)"];

/// Where a meeting stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the invitee.
    Scheduled,
    /// The invitee accepted.
    Accepted,
    /// Called off.
    Cancelled,
    /// It took place.
    Finished,
}

impl Status {
    /// The value of the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Accepted => "accepted",
            Status::Cancelled => "cancelled",
            Status::Finished => "finished",
        }
    }
}

/// A meeting: an ordinary diesel model.
#[derive(
    Aggregate, Queryable, Selectable, Insertable, Serialize, Default, Clone, Debug, PartialEq,
)]
#[aggregate(table = schema::meetings)]
#[diesel(table_name = schema::meetings)]
pub struct Meeting {
    /// The meeting's id.
    pub id: i64,
    /// What it is about.
    pub title: String,
    /// Who scheduled it.
    pub organizer: String,
    /// Who is invited.
    pub invitee: String,
    /// When it starts (UTC).
    pub starts_at: NaiveDateTime,
    /// `scheduled`, `accepted`, `cancelled` or `finished`.
    pub status: String,
}

impl Meeting {
    fn is(&self, status: Status) -> bool {
        self.status == status.as_str()
    }
}

/// A meeting was scheduled.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Meeting)]
#[event(creates)]
pub struct Scheduled {
    /// What it is about.
    #[data_attributes]
    pub title: String,
    /// Who scheduled it.
    #[data_attributes]
    pub organizer: String,
    /// Who is invited.
    #[data_attributes]
    pub invitee: String,
    /// When it starts.
    #[data_attributes]
    pub starts_at: DateTime<Utc>,
}

/// The invitee accepted the meeting.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Meeting)]
pub struct Accepted {}

/// The meeting moved to another time; the invitee has to accept it again.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Meeting)]
pub struct Rescheduled {
    /// When it starts now.
    #[data_attributes]
    pub starts_at: DateTime<Utc>,
}

/// The meeting was called off.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Meeting)]
pub struct Cancelled {
    /// Why.
    #[data_attributes]
    pub reason: String,
}

/// The meeting took place.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Meeting)]
pub struct Finished {}

impl Apply<Meeting> for Scheduled {
    fn apply(&self, meeting: &mut Meeting, _: &EventContext<'_>) {
        meeting.title.clone_from(&self.title);
        meeting.organizer.clone_from(&self.organizer);
        meeting.invitee.clone_from(&self.invitee);
        meeting.starts_at = self.starts_at.naive_utc();
        meeting.status = Status::Scheduled.as_str().to_owned();
    }
}

impl Apply<Meeting> for Accepted {
    fn apply(&self, meeting: &mut Meeting, _: &EventContext<'_>) {
        meeting.status = Status::Accepted.as_str().to_owned();
    }
}

impl Apply<Meeting> for Rescheduled {
    fn apply(&self, meeting: &mut Meeting, _: &EventContext<'_>) {
        meeting.starts_at = self.starts_at.naive_utc();
        meeting.status = Status::Scheduled.as_str().to_owned();
    }
}

impl Apply<Meeting> for Cancelled {
    fn apply(&self, meeting: &mut Meeting, _: &EventContext<'_>) {
        meeting.status = Status::Cancelled.as_str().to_owned();
    }
}

impl Apply<Meeting> for Finished {
    fn apply(&self, meeting: &mut Meeting, _: &EventContext<'_>) {
        meeting.status = Status::Finished.as_str().to_owned();
    }
}

fn existing(meeting: Option<&Meeting>) -> Result<&Meeting, Rejection> {
    meeting.ok_or(Rejection::NotFound)
}

/// Schedules a meeting.
#[derive(Validate, Debug)]
#[validate(schema(function = "not_with_oneself"))]
pub struct Schedule {
    /// The new meeting's id.
    pub meeting: i64,
    /// What it is about.
    #[validate(length(min = 1, max = 120, message = "must be 1 to 120 characters"))]
    pub title: String,
    /// Who schedules it.
    #[validate(length(min = 1, message = "is required"))]
    pub organizer: String,
    /// Who is invited.
    #[validate(length(min = 1, message = "is required"))]
    pub invitee: String,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
}

fn not_with_oneself(schedule: &Schedule) -> Result<(), ValidationError> {
    if schedule.organizer == schedule.invitee {
        return Err(ValidationError::new("invitee")
            .with_message("the organizer cannot invite themselves".into()));
    }
    Ok(())
}

impl Command for Schedule {
    type Aggregate = Meeting;

    fn aggregate_id(&self) -> i64 {
        self.meeting
    }

    fn decide(&self, current: Option<&Meeting>) -> Result<Vec<NewEvent<Meeting>>, Rejection> {
        if current.is_some() {
            return Err(Rejection::AlreadyExists);
        }
        Ok(vec![
            Scheduled {
                title: self.title.clone(),
                organizer: self.organizer.clone(),
                invitee: self.invitee.clone(),
                starts_at: self.starts_at,
            }
            .into(),
        ])
    }
}

/// The invitee accepts a meeting.
#[derive(Validate, Debug)]
pub struct Accept {
    /// The meeting.
    pub meeting: i64,
}

impl Command for Accept {
    type Aggregate = Meeting;

    fn aggregate_id(&self) -> i64 {
        self.meeting
    }

    fn decide(&self, current: Option<&Meeting>) -> Result<Vec<NewEvent<Meeting>>, Rejection> {
        let meeting = existing(current)?;
        if meeting.is(Status::Accepted) {
            return Ok(Vec::new());
        }
        if !meeting.is(Status::Scheduled) {
            return Err(Rejection::not_allowed(format!("it is {}", meeting.status)));
        }
        Ok(vec![Accepted {}.into()])
    }
}

/// Moves a meeting to another time.
#[derive(Validate, Debug)]
pub struct Reschedule {
    /// The meeting.
    pub meeting: i64,
    /// When it starts now.
    pub starts_at: DateTime<Utc>,
}

impl Command for Reschedule {
    type Aggregate = Meeting;

    fn aggregate_id(&self) -> i64 {
        self.meeting
    }

    fn decide(&self, current: Option<&Meeting>) -> Result<Vec<NewEvent<Meeting>>, Rejection> {
        let meeting = existing(current)?;
        if meeting.is(Status::Cancelled) || meeting.is(Status::Finished) {
            return Err(Rejection::not_allowed(format!("it is {}", meeting.status)));
        }
        if meeting.starts_at == self.starts_at.naive_utc() {
            return Ok(Vec::new());
        }
        Ok(vec![
            Rescheduled {
                starts_at: self.starts_at,
            }
            .into(),
        ])
    }
}

/// Calls a meeting off.
#[derive(Validate, Debug)]
pub struct Cancel {
    /// The meeting.
    pub meeting: i64,
    /// Why.
    #[validate(length(min = 1, message = "is required"))]
    pub reason: String,
}

impl Command for Cancel {
    type Aggregate = Meeting;

    fn aggregate_id(&self) -> i64 {
        self.meeting
    }

    fn decide(&self, current: Option<&Meeting>) -> Result<Vec<NewEvent<Meeting>>, Rejection> {
        let meeting = existing(current)?;
        if meeting.is(Status::Cancelled) {
            return Ok(Vec::new());
        }
        if meeting.is(Status::Finished) {
            return Err(Rejection::not_allowed("it took place already"));
        }
        Ok(vec![
            Cancelled {
                reason: self.reason.clone(),
            }
            .into(),
        ])
    }
}

/// Records that a meeting took place.
#[derive(Validate, Debug)]
pub struct Finish {
    /// The meeting.
    pub meeting: i64,
}

impl Command for Finish {
    type Aggregate = Meeting;

    fn aggregate_id(&self) -> i64 {
        self.meeting
    }

    fn decide(&self, current: Option<&Meeting>) -> Result<Vec<NewEvent<Meeting>>, Rejection> {
        let meeting = existing(current)?;
        if meeting.is(Status::Finished) {
            return Ok(Vec::new());
        }
        if !meeting.is(Status::Accepted) {
            return Err(Rejection::not_allowed(format!("it is {}", meeting.status)));
        }
        Ok(vec![Finished {}.into()])
    }
}

fn outcome(
    out: &mut impl Write,
    what: &str,
    result: &Result<Committed<Meeting>, CommandError>,
) -> std::io::Result<()> {
    match result {
        Ok(done) if done.is_noop() => writeln!(out, "{what}: nothing to do (no event)"),
        Ok(done) => {
            let made: Vec<&str> = done.events.iter().map(|e| e.event_type.as_str()).collect();
            writeln!(out, "{what}: {}", made.join(", "))
        }
        Err(error) => writeln!(out, "{what}: refused: {error}"),
    }
}

/// The operator command line of the meetings app (`es_diesel::cli`): `cargo run --example
/// meetings -- log meeting 1`, `show meeting 1 --version 2`, ...
pub fn cli<C: Database + Stores<Meeting>>() -> Cli<'static, C> {
    Cli::new("meetings").aggregate::<Meeting>().catalog(CATALOG)
}

/// The story, printed to `out`, on any connection.
pub fn run<C: Database + Stores<Meeting>>(
    conn: &mut C,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    crate::create_tables(conn, TABLES)?;
    es_diesel::create_tables::<_, Meeting>(conn)?;
    let mut store = DieselStore::new(conn);
    let at = |day, hour| -> Result<DateTime<Utc>, Box<dyn std::error::Error>> {
        let time = format!("2026-05-{day:02}T{hour:02}:00:00Z");
        Ok(time.parse::<DateTime<Utc>>()?)
    };
    let ann = AppendOptions::with_metadata(Metadata::by_actor("ann"));
    let bob = AppendOptions::with_metadata(Metadata::by_actor("bob"));

    let with_herself = Schedule {
        meeting: 1,
        title: "Quarterly review".into(),
        organizer: "ann".into(),
        invitee: "ann".into(),
        starts_at: at(4, 10)?,
    };
    let result = store.execute(&with_herself, &ann);
    outcome(out, "ann schedules a meeting with herself", &result)?;
    let review = Schedule {
        invitee: "bob".into(),
        ..with_herself
    };
    let result = store.execute(&review, &ann);
    outcome(out, "ann schedules meeting 1 with bob", &result)?;

    // Ann and Bob both look at the meeting as of version 1.
    let seen = store.history::<Meeting>(&1)?.len() as i64;
    let moved = Reschedule {
        meeting: 1,
        starts_at: at(5, 14)?,
    };
    let result = store.execute(&moved, &ann.clone().expect_version(seen));
    outcome(out, "ann moves it to May 5th, as of version 1", &result)?;
    let result = store.execute(&Accept { meeting: 1 }, &bob.clone().expect_version(seen));
    outcome(out, "bob accepts it, as of version 1", &result)?;
    let seen = store.history::<Meeting>(&1)?.len() as i64;
    let result = store.execute(&Accept { meeting: 1 }, &bob.clone().expect_version(seen));
    outcome(out, "bob reloads and accepts it, as of version 2", &result)?;
    let result = store.execute(&Accept { meeting: 1 }, &bob);
    outcome(out, "bob accepts it again", &result)?;
    let result = store.execute(&Finish { meeting: 1 }, &ann);
    outcome(out, "ann records that it took place", &result)?;
    let cancel = Cancel {
        meeting: 1,
        reason: "too late".into(),
    };
    let result = store.execute(&cancel, &ann);
    outcome(out, "ann cancels it afterwards", &result)?;

    let lunch = Schedule {
        meeting: 2,
        title: "Lunch".into(),
        organizer: "bob".into(),
        invitee: "ann".into(),
        starts_at: at(6, 12)?,
    };
    store.execute(&lunch, &bob)?;
    let cancel = Cancel {
        meeting: 2,
        reason: "rain".into(),
    };
    let result = store.execute(&cancel, &bob);
    outcome(out, "bob cancels meeting 2", &result)?;
    let result = store.execute(&Accept { meeting: 2 }, &ann);
    outcome(out, "ann accepts meeting 2", &result)?;

    let meeting: Meeting = store.load(&1)?.ok_or("meeting 1 exists")?;
    writeln!(
        out,
        "meeting 1 is {} on {}; its history:",
        meeting.status, meeting.starts_at
    )?;
    print_history(out, &store.history::<Meeting>(&1)?)?;
    Ok(())
}
