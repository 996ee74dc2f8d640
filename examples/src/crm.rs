//! A small CRM, from "Event Sourcing in the Small": contacts and the meetings planned with them.
//! The UI reads projections keyed by natural keys (account and name), never the event stream: a
//! contact list, and a queue of "meeting notes" emails sent on the morning of a meeting. When the
//! contact list's handler learns to render the notes' Markdown, the projection is rebuilt from the
//! events; and every projection records the last event it has seen, so that a page can tell
//! whether it already shows the result of a given event.

use std::io::Write;

use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use es_core::{
    Aggregate, AppendOptions, Apply, Event, EventContext, EventStore, Metadata, RecordedEvent,
    Transactional,
};
use es_diesel::cli::Cli;
use es_diesel::{
    AggregateTable, Database, DieselStore, Dispatches, ReactorError, Stores, dispatcher,
    rebuild_projection,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::db::{OUTBOX_TABLE, outbox, record_in_outbox};

/// Where the app's event catalog is committed (`es_core::catalog`): the reference the data team
/// reads, written at boot by the example and checked by the tests.
pub const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/crm");

/// The app's aggregates, whose events its catalog lists.
pub const AGGREGATES: &[&str] = &[<Contact as Aggregate>::NAME];

/// The diesel schema of the app.
#[allow(missing_docs)]
pub mod schema {
    diesel::table! {
        contacts (id) {
            id -> BigInt,
            account_id -> Text,
            name -> Text,
            contact_method -> Text,
        }
    }

    diesel::table! {
        projected_contacts (account_id, name) {
            account_id -> Text,
            name -> Text,
            contact_method -> Text,
            next_meeting_on -> Nullable<Text>,
            notes_html -> Nullable<Text>,
        }
    }

    diesel::table! {
        projected_meeting_notes_emails (account_id, name, meeting_on) {
            contact_id -> BigInt,
            account_id -> Text,
            name -> Text,
            meeting_on -> Text,
            notes -> Text,
        }
    }

    diesel::table! {
        projections (name) {
            name -> Text,
            last_event_id -> BigInt,
        }
    }
}

/// The app's own tables, one statement each: the aggregate, the two projections keyed by natural
/// keys, and the freshness of each projection.
pub const TABLES: &[&str] = &[
    "CREATE TABLE contacts (id BIGINT PRIMARY KEY NOT NULL, account_id TEXT NOT NULL, \
     name TEXT NOT NULL, contact_method TEXT NOT NULL)",
    "CREATE TABLE projected_contacts (account_id VARCHAR(64) NOT NULL, name VARCHAR(128) NOT NULL, \
     contact_method TEXT NOT NULL, next_meeting_on TEXT, notes_html TEXT, \
     PRIMARY KEY (account_id, name))",
    "CREATE TABLE projected_meeting_notes_emails (contact_id BIGINT NOT NULL, \
     account_id VARCHAR(64) NOT NULL, \
     name VARCHAR(128) NOT NULL, meeting_on VARCHAR(10) NOT NULL, notes TEXT NOT NULL, \
     PRIMARY KEY (account_id, name, meeting_on))",
    "CREATE TABLE projections (name VARCHAR(64) PRIMARY KEY NOT NULL, \
     last_event_id BIGINT NOT NULL)",
    OUTBOX_TABLE,
];

/// The contact list projection, in the `projections` table.
pub const CONTACT_LIST: &str = "contact_list";
/// The meeting notes emails projection, in the `projections` table.
pub const NOTES_EMAILS: &str = "meeting_notes_emails";

/// A contact of an account holder: an ordinary diesel model.
#[derive(
    Aggregate, Queryable, Selectable, Insertable, Serialize, Default, Clone, Debug, PartialEq,
)]
#[aggregate(table = schema::contacts)]
#[diesel(table_name = schema::contacts)]
pub struct Contact {
    /// The contact's id.
    pub id: i64,
    /// The account holder whose contact it is.
    pub account_id: String,
    /// The contact's name, unique within the account.
    pub name: String,
    /// However the contact should be contacted: an email, a URL, a handle.
    pub contact_method: String,
}

/// A row of the contact list, keyed by account and name.
#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = schema::projected_contacts)]
pub struct ProjectedContact {
    /// The account holder.
    pub account_id: String,
    /// The contact's name.
    pub name: String,
    /// How to reach them.
    pub contact_method: String,
    /// The day of the next meeting planned with them.
    pub next_meeting_on: Option<String>,
    /// The notes of that meeting, rendered from Markdown.
    pub notes_html: Option<String>,
}

/// A meeting notes email to send on the morning of a meeting.
#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = schema::projected_meeting_notes_emails)]
pub struct NotesEmail {
    /// The contact's aggregate, which records that the email was sent.
    pub contact_id: i64,
    /// The account holder to send it to.
    pub account_id: String,
    /// The contact the meeting is with.
    pub name: String,
    /// The day of the meeting.
    pub meeting_on: String,
    /// The notes, as written.
    pub notes: String,
}

/// A contact was added to an account.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Contact)]
#[event(creates)]
pub struct Added {
    /// The account holder.
    #[data_attributes]
    pub account_id: String,
    /// The contact's name.
    #[data_attributes]
    pub name: String,
    /// How to reach them.
    #[data_attributes]
    pub contact_method: String,
}

/// The way to reach a contact changed.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Contact)]
pub struct ContactMethodChanged {
    /// How to reach them now.
    #[data_attributes]
    pub contact_method: String,
}

/// A meeting with the contact was planned, with notes to prepare it.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Contact)]
pub struct MeetingPlanned {
    /// The day (`YYYY-MM-DD`).
    #[data_attributes]
    pub meeting_on: String,
    /// Notes, in Markdown.
    #[data_attributes]
    pub notes: String,
}

/// The meeting notes email was sent to the account holder.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Contact)]
pub struct NotesEmailSent {
    /// The day of the meeting.
    #[data_attributes]
    pub meeting_on: String,
}

impl Apply<Contact> for Added {
    fn apply(&self, contact: &mut Contact, _: &EventContext<'_>) {
        contact.account_id.clone_from(&self.account_id);
        contact.name.clone_from(&self.name);
        contact.contact_method.clone_from(&self.contact_method);
    }
}

impl Apply<Contact> for ContactMethodChanged {
    fn apply(&self, contact: &mut Contact, _: &EventContext<'_>) {
        contact.contact_method.clone_from(&self.contact_method);
    }
}

impl Apply<Contact> for MeetingPlanned {
    fn apply(&self, _: &mut Contact, _: &EventContext<'_>) {}
}

impl Apply<Contact> for NotesEmailSent {
    fn apply(&self, _: &mut Contact, _: &EventContext<'_>) {}
}

/// The queries of the projections, on any connection of the app: a trait implemented per
/// connection type, because diesel writes their upserts (`ON CONFLICT ... DO UPDATE`) for SQLite
/// and PostgreSQL only (a body for `es_diesel::with_connection!` must compile on every backend
/// `es-diesel` enables).
pub trait CrmConnection: Database + Stores<Contact> {
    /// Inserts or replaces a contact list row.
    fn put_contact(&mut self, row: &ProjectedContact) -> QueryResult<()>;
    /// The contact list row of a contact.
    fn projected_contact(
        &mut self,
        account: &str,
        name: &str,
    ) -> QueryResult<Option<ProjectedContact>>;
    /// The contact list, by account and name.
    fn contact_list(&mut self) -> QueryResult<Vec<ProjectedContact>>;
    /// Queues a meeting notes email (once).
    fn queue_notes_email(&mut self, email: &NotesEmail) -> QueryResult<()>;
    /// Removes a queued email.
    fn forget_notes_email(&mut self, account: &str, name: &str, day: &str) -> QueryResult<()>;
    /// The queued emails of meetings on `day` (all of them for `None`).
    fn notes_emails(&mut self, day: Option<&str>) -> QueryResult<Vec<NotesEmail>>;
    /// Empties a projection's table and its freshness.
    fn reset_projection(&mut self, projection: &str) -> QueryResult<()>;
    /// Records that `projection` has seen every event up to `event_id`.
    fn projected_up_to(&mut self, projection: &str, event_id: i64) -> QueryResult<()>;
    /// The last event `projection` has seen (0 if none).
    fn last_projected(&mut self, projection: &str) -> QueryResult<i64>;
}

macro_rules! crm_connection {
    ($conn:ty) => {
        impl CrmConnection for $conn {
            fn put_contact(&mut self, row: &ProjectedContact) -> QueryResult<()> {
                use schema::projected_contacts::dsl::*;
                diesel::insert_into(projected_contacts)
                    .values(row)
                    .on_conflict((account_id, name))
                    .do_update()
                    .set((
                        contact_method.eq(&row.contact_method),
                        next_meeting_on.eq(&row.next_meeting_on),
                        notes_html.eq(&row.notes_html),
                    ))
                    .execute(self)
                    .map(drop)
            }

            fn projected_contact(
                &mut self,
                account: &str,
                contact: &str,
            ) -> QueryResult<Option<ProjectedContact>> {
                use schema::projected_contacts::dsl::*;
                projected_contacts
                    .find((account, contact))
                    .select(ProjectedContact::as_select())
                    .first(self)
                    .optional()
            }

            fn contact_list(&mut self) -> QueryResult<Vec<ProjectedContact>> {
                use schema::projected_contacts::dsl::*;
                projected_contacts
                    .order((account_id, name))
                    .select(ProjectedContact::as_select())
                    .load(self)
            }

            fn queue_notes_email(&mut self, email: &NotesEmail) -> QueryResult<()> {
                use schema::projected_meeting_notes_emails::dsl::*;
                diesel::insert_into(projected_meeting_notes_emails)
                    .values(email)
                    .on_conflict_do_nothing()
                    .execute(self)
                    .map(drop)
            }

            fn forget_notes_email(
                &mut self,
                account: &str,
                contact: &str,
                day: &str,
            ) -> QueryResult<()> {
                use schema::projected_meeting_notes_emails::dsl::*;
                diesel::delete(projected_meeting_notes_emails.find((account, contact, day)))
                    .execute(self)
                    .map(drop)
            }

            fn notes_emails(&mut self, day: Option<&str>) -> QueryResult<Vec<NotesEmail>> {
                use schema::projected_meeting_notes_emails::dsl::*;
                let mut query = projected_meeting_notes_emails
                    .order((meeting_on, account_id, name))
                    .select(NotesEmail::as_select())
                    .into_boxed();
                if let Some(day) = day {
                    query = query.filter(meeting_on.eq(day.to_owned()));
                }
                query.load(self)
            }

            fn reset_projection(&mut self, projection: &str) -> QueryResult<()> {
                match projection {
                    CONTACT_LIST => diesel::delete(schema::projected_contacts::table).execute(self),
                    NOTES_EMAILS => {
                        diesel::delete(schema::projected_meeting_notes_emails::table).execute(self)
                    }
                    _ => Err(diesel::result::Error::NotFound),
                }?;
                self.projected_up_to(projection, 0)
            }

            fn projected_up_to(&mut self, projection: &str, event_id: i64) -> QueryResult<()> {
                use schema::projections::dsl::*;
                diesel::insert_into(projections)
                    .values((name.eq(projection), last_event_id.eq(event_id)))
                    .on_conflict(name)
                    .do_update()
                    .set(last_event_id.eq(event_id))
                    .execute(self)
                    .map(drop)
            }

            fn last_projected(&mut self, projection: &str) -> QueryResult<i64> {
                use schema::projections::dsl::*;
                projections
                    .find(projection)
                    .select(last_event_id)
                    .first(self)
                    .optional()
                    .map(Option::unwrap_or_default)
            }
        }
    };
}

crm_connection!(SqliteConnection);
crm_connection!(PgConnection);

/// Whether `projection` already shows the result of event `event_id`: what a page checks before
/// rendering after a write (the post's "Processing…" page). Projections here run in the write
/// transaction, so a committed event is always projected; a projection fed later (by a job, or a
/// rebuild) would report `false` until it catches up.
pub fn shows<C: CrmConnection>(conn: &mut C, projection: &str, event_id: i64) -> QueryResult<bool> {
    Ok(conn.last_projected(projection)? >= event_id)
}

/// The contact a stored event is about, for its natural key.
fn contact_of<C: CrmConnection>(
    conn: &mut C,
    event: &RecordedEvent<i64>,
) -> Result<Contact, ReactorError> {
    let contact = Contact::load(conn, &event.aggregate_id)?;
    Ok(contact.ok_or_else(|| format!("contact {} has no row", event.aggregate_id))?)
}

/// The contact list, as written by last month's handler, which kept no notes.
pub mod last_month {
    use super::*;

    /// Last month's contact list handler: contacts and their next meeting, without notes.
    pub fn contact_list<C: CrmConnection>(
        conn: &mut C,
        event: &RecordedEvent<i64>,
    ) -> Result<(), ReactorError> {
        project_contact(conn, event, |_| None)
    }
}

/// The contact list handler: contacts, their next meeting, and its notes rendered from Markdown.
pub fn contact_list<C: CrmConnection>(
    conn: &mut C,
    event: &RecordedEvent<i64>,
) -> Result<(), ReactorError> {
    project_contact(conn, event, |notes| {
        let mut html = String::new();
        pulldown_cmark::html::push_html(&mut html, pulldown_cmark::Parser::new(notes));
        Some(html)
    })
}

fn project_contact<C: CrmConnection>(
    conn: &mut C,
    event: &RecordedEvent<i64>,
    render_notes: impl Fn(&str) -> Option<String>,
) -> Result<(), ReactorError> {
    let contact = contact_of(conn, event)?;
    let current = conn.projected_contact(&contact.account_id, &contact.name)?;
    let mut row = current.unwrap_or_else(|| ProjectedContact {
        account_id: contact.account_id.clone(),
        name: contact.name.clone(),
        contact_method: String::new(),
        next_meeting_on: None,
        notes_html: None,
    });
    if let Ok(added) = Added::decode(event) {
        row.contact_method = added.contact_method;
    } else if let Ok(changed) = ContactMethodChanged::decode(event) {
        row.contact_method = changed.contact_method;
    } else if let Ok(planned) = MeetingPlanned::decode(event) {
        row.notes_html = render_notes(&planned.notes);
        row.next_meeting_on = Some(planned.meeting_on);
    }
    conn.put_contact(&row)?;
    conn.projected_up_to(CONTACT_LIST, event.id)?;
    Ok(())
}

/// The queue of meeting notes emails: a row when a meeting is planned, gone once it is sent.
pub fn meeting_notes_emails<C: CrmConnection>(
    conn: &mut C,
    event: &RecordedEvent<i64>,
) -> Result<(), ReactorError> {
    if let Ok(planned) = MeetingPlanned::decode(event) {
        let contact = contact_of(conn, event)?;
        conn.queue_notes_email(&NotesEmail {
            contact_id: contact.id,
            account_id: contact.account_id,
            name: contact.name,
            meeting_on: planned.meeting_on,
            notes: planned.notes,
        })?;
    } else if let Ok(sent) = NotesEmailSent::decode(event) {
        let contact = contact_of(conn, event)?;
        conn.forget_notes_email(&contact.account_id, &contact.name, &sent.meeting_on)?;
    }
    conn.projected_up_to(NOTES_EMAILS, event.id)?;
    Ok(())
}

dispatcher! {
    /// The CRM as deployed last month.
    pub struct LastMonthDispatcher for sqlite, postgres;
    Contact::* => project: [last_month::contact_list, meeting_notes_emails];
}

dispatcher! {
    /// The CRM now: the contact list renders meeting notes.
    pub struct CrmDispatcher for sqlite, postgres;
    Contact::* => project: [contact_list, meeting_notes_emails];
}

/// The morning job: sends the notes email of every meeting on `day` (to the outbox) and records
/// it with a `NotesEmailSent` event — whose projection handler takes it off the queue — in one
/// transaction per email.
pub fn send_notes_emails<C: CrmConnection>(
    store: &mut DieselStore<'_, C>,
    day: &str,
) -> Result<usize, Box<dyn std::error::Error>> {
    let due = store.connection().notes_emails(Some(day))?;
    let job = AppendOptions::with_metadata(Metadata::by_actor("morning-job"));
    for email in &due {
        store.transaction(|store| {
            let key = format!("notes:{}:{}", email.contact_id, email.meeting_on);
            let text = format!(
                "email to {}: notes for your meeting with {} today: {}",
                email.account_id, email.name, email.notes
            );
            record_in_outbox(store.connection(), &key, &text)?;
            let meeting_on = email.meeting_on.clone();
            store.append(&email.contact_id, NotesEmailSent { meeting_on }, &job)?;
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
    }
    Ok(due.len())
}

fn print_contact_list<C: CrmConnection>(
    conn: &mut C,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    for row in conn.contact_list()? {
        writeln!(
            out,
            "  {}/{} ({}) next meeting {} notes {}",
            row.account_id,
            row.name,
            row.contact_method,
            row.next_meeting_on.as_deref().unwrap_or("none"),
            row.notes_html
                .as_deref()
                .map_or("none".to_owned(), |html| html.trim().to_owned()),
        )?;
    }
    Ok(())
}

/// The operator command line of the CRM (`es_diesel::cli`): `cargo run --example crm --
/// rebuild-projection contact_list`, `log contact 1`, ...
pub fn cli<C: CrmConnection + Dispatches<CrmDispatcher>>() -> Cli<'static, C> {
    Cli::new("crm")
        .aggregate::<Contact>()
        .dispatcher(&CrmDispatcher)
        .projection(CONTACT_LIST, |conn: &mut C| {
            Ok(conn.reset_projection(CONTACT_LIST)?)
        })
        .projection(NOTES_EMAILS, |conn: &mut C| {
            Ok(conn.reset_projection(NOTES_EMAILS)?)
        })
        .catalog(CATALOG)
}

/// The story, printed to `out`: on any connection of the app.
pub fn run<C>(conn: &mut C, out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>>
where
    C: CrmConnection + Dispatches<LastMonthDispatcher> + Dispatches<CrmDispatcher>,
{
    crate::create_tables(conn, TABLES)?;
    es_diesel::create_tables::<_, Contact>(conn)?;
    let dave = AppendOptions::with_metadata(Metadata::by_actor("dave"));

    writeln!(out, "== Last month")?;
    let mut store = DieselStore::new(&mut *conn).with_dispatcher(&LastMonthDispatcher);
    store.append(
        &1,
        Added {
            account_id: "dave".into(),
            name: "Pat Smith".into(),
            contact_method: "pat@example.com".into(),
        },
        &dave,
    )?;
    store.append(
        &2,
        Added {
            account_id: "dave".into(),
            name: "Sam Jones".into(),
            contact_method: "@sam".into(),
        },
        &dave,
    )?;
    for (contact, day, notes) in [
        (1, "2026-05-04", "Ask about the *move*"),
        (2, "2026-05-05", "Bring the **contract**"),
    ] {
        let planned = MeetingPlanned {
            meeting_on: day.into(),
            notes: notes.into(),
        };
        store.append(&contact, planned, &dave)?;
    }
    writeln!(out, "contact list:")?;
    print_contact_list(store.connection(), out)?;

    writeln!(
        out,
        "== Today: the contact list renders the notes' Markdown"
    )?;
    let rebuilt = rebuild_projection(store.connection(), &CrmDispatcher, "contact_list", |conn| {
        Ok(conn.reset_projection(CONTACT_LIST)?)
    })?;
    writeln!(
        out,
        "rebuilt contact_list from {rebuilt} events; contact list:"
    )?;
    print_contact_list(store.connection(), out)?;

    let mut store = DieselStore::new(&mut *conn).with_dispatcher(&CrmDispatcher);
    let changed = store.append(
        &1,
        ContactMethodChanged {
            contact_method: "pat@work.example".into(),
        },
        &dave,
    )?;
    let event = changed.events[0].id;
    writeln!(
        out,
        "after editing Pat (event {event}), the contact list shows it: {}",
        shows(store.connection(), CONTACT_LIST, event)?
    )?;
    let pat = store
        .connection()
        .projected_contact("dave", "Pat Smith")?
        .ok_or("Pat is listed")?;
    writeln!(out, "Pat is reached at {}", pat.contact_method)?;

    writeln!(out, "== The morning of May 4th")?;
    let queued = store.connection().notes_emails(None)?.len();
    let sent = send_notes_emails(&mut store, "2026-05-04")?;
    writeln!(out, "{queued} notes email(s) queued, {sent} sent today:")?;
    for message in outbox(store.connection())? {
        writeln!(out, "  {message}")?;
    }
    let left: Vec<String> = store
        .connection()
        .notes_emails(None)?
        .into_iter()
        .map(|email| format!("{} on {}", email.name, email.meeting_on))
        .collect();
    writeln!(out, "still queued: {left:?}")?;

    let rebuilt = rebuild_projection(
        store.connection(),
        &CrmDispatcher,
        "meeting_notes_emails",
        |conn| Ok(conn.reset_projection(NOTES_EMAILS)?),
    )?;
    let again: Vec<String> = store
        .connection()
        .notes_emails(None)?
        .into_iter()
        .map(|email| format!("{} on {}", email.name, email.meeting_on))
        .collect();
    writeln!(
        out,
        "rebuilt meeting_notes_emails from {rebuilt} events: the same queue = {}",
        again == left
    )?;
    writeln!(out, "Pat's history:")?;
    crate::print_history(out, &store.history::<Contact>(&1)?)?;
    Ok(())
}
