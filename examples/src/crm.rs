//! A small CRM, from "Event Sourcing in the Small": contacts and the meetings planned with them.
//! The UI reads read models keyed by natural keys (account and name), never the event stream: a
//! contact list, kept by a subscription after commit (a page asks whether it has handled a given
//! event yet), and a queue of "meeting notes" emails sent on the morning of a meeting, a
//! projection kept in the write transaction (the morning job must see every planned meeting).
//! When the contact list's handler learns to render the notes' Markdown, its next version is
//! rebuilt blue/green: a second subscription fills version 2 beside the version 1 the UI reads,
//! catches up, and the UI switches to it in the transaction of its last batch.

use std::io::Write;

use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use es_core::{
    Aggregate, AppendOptions, Apply, Event, EventContext, EventStore, Metadata, RecordedEvent,
    Transactional,
};
use es_diesel::cli::Cli;
use es_diesel::{
    AggregateTable, Database, DieselStore, Dispatches, ReactorError, Stores, Subscriber,
    SubscriberOptions, dispatcher, has_handled, rebuild_projection, retire_subscription,
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
        projected_contacts (version, account_id, name) {
            version -> Integer,
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
        live_read_models (name) {
            name -> Text,
            version -> Integer,
        }
    }

    diesel::allow_tables_to_appear_in_same_query!(projected_contacts, live_read_models);
}

/// The app's own tables, one statement each: the aggregate, the two read models keyed by natural
/// keys (the contact list's rows of every version it is built in), and the version of each read
/// model the UI reads.
pub const TABLES: &[&str] = &[
    "CREATE TABLE contacts (id BIGINT PRIMARY KEY NOT NULL, account_id TEXT NOT NULL, \
     name TEXT NOT NULL, contact_method TEXT NOT NULL)",
    "CREATE TABLE projected_contacts (version INTEGER NOT NULL, \
     account_id VARCHAR(64) NOT NULL, name VARCHAR(128) NOT NULL, \
     contact_method TEXT NOT NULL, next_meeting_on TEXT, notes_html TEXT, \
     PRIMARY KEY (version, account_id, name))",
    "CREATE TABLE projected_meeting_notes_emails (contact_id BIGINT NOT NULL, \
     account_id VARCHAR(64) NOT NULL, \
     name VARCHAR(128) NOT NULL, meeting_on VARCHAR(10) NOT NULL, notes TEXT NOT NULL, \
     PRIMARY KEY (account_id, name, meeting_on))",
    "CREATE TABLE live_read_models (name VARCHAR(64) PRIMARY KEY NOT NULL, \
     version INTEGER NOT NULL)",
    "INSERT INTO live_read_models (name, version) VALUES ('contact_list', 1)",
    OUTBOX_TABLE,
];

/// The contact list read model, in `live_read_models`; version 1's subscription.
pub const CONTACT_LIST: &str = "contact_list";
/// The subscription building version 2 of the contact list.
pub const CONTACT_LIST_V2: &str = "contact_list_v2";
/// The meeting notes emails projection.
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

/// A row of one version of the contact list, keyed by account and name.
#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq)]
#[diesel(table_name = schema::projected_contacts)]
pub struct ProjectedContact {
    /// The version of the contact list it belongs to.
    pub version: i32,
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
    /// Inserts or replaces a contact list row (of its version).
    fn put_contact(&mut self, row: &ProjectedContact) -> QueryResult<()>;
    /// The row of a contact in version `version` of the contact list.
    fn projected_contact(
        &mut self,
        version: i32,
        account: &str,
        name: &str,
    ) -> QueryResult<Option<ProjectedContact>>;
    /// The contact list the UI reads (its live version), by account and name.
    fn contact_list(&mut self) -> QueryResult<Vec<ProjectedContact>>;
    /// Makes `version` the live version of read model `read_model`.
    fn switch_read_model(&mut self, read_model: &str, version: i32) -> QueryResult<()>;
    /// Deletes the rows of version `version` of the contact list.
    fn drop_contact_list(&mut self, version: i32) -> QueryResult<()>;
    /// Queues a meeting notes email (once).
    fn queue_notes_email(&mut self, email: &NotesEmail) -> QueryResult<()>;
    /// Removes a queued email.
    fn forget_notes_email(&mut self, account: &str, name: &str, day: &str) -> QueryResult<()>;
    /// The queued emails of meetings on `day` (all of them for `None`).
    fn notes_emails(&mut self, day: Option<&str>) -> QueryResult<Vec<NotesEmail>>;
    /// Empties the queue of meeting notes emails.
    fn clear_notes_emails(&mut self) -> QueryResult<()>;
}

macro_rules! crm_connection {
    ($conn:ty) => {
        impl CrmConnection for $conn {
            fn put_contact(&mut self, row: &ProjectedContact) -> QueryResult<()> {
                use schema::projected_contacts::dsl::*;
                diesel::insert_into(projected_contacts)
                    .values(row)
                    .on_conflict((version, account_id, name))
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
                of: i32,
                account: &str,
                contact: &str,
            ) -> QueryResult<Option<ProjectedContact>> {
                use schema::projected_contacts::dsl::*;
                projected_contacts
                    .find((of, account, contact))
                    .select(ProjectedContact::as_select())
                    .first(self)
                    .optional()
            }

            fn contact_list(&mut self) -> QueryResult<Vec<ProjectedContact>> {
                use schema::live_read_models::dsl as live;
                use schema::projected_contacts::dsl::*;
                let live_version = live::live_read_models
                    .filter(live::name.eq(CONTACT_LIST))
                    .select(live::version)
                    .single_value();
                projected_contacts
                    .filter(version.nullable().eq(live_version))
                    .order((account_id, name))
                    .select(ProjectedContact::as_select())
                    .load(self)
            }

            fn switch_read_model(&mut self, read_model: &str, to: i32) -> QueryResult<()> {
                use schema::live_read_models::dsl::*;
                diesel::update(live_read_models.find(read_model))
                    .set(version.eq(to))
                    .execute(self)
                    .map(drop)
            }

            fn drop_contact_list(&mut self, of: i32) -> QueryResult<()> {
                use schema::projected_contacts::dsl::*;
                diesel::delete(projected_contacts.filter(version.eq(of)))
                    .execute(self)
                    .map(drop)
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

            fn clear_notes_emails(&mut self) -> QueryResult<()> {
                diesel::delete(schema::projected_meeting_notes_emails::table)
                    .execute(self)
                    .map(drop)
            }
        }
    };
}

crm_connection!(SqliteConnection);
crm_connection!(PgConnection);

/// The contact a stored event is about, for its natural key.
fn contact_of<C: CrmConnection>(
    conn: &mut C,
    event: &RecordedEvent<i64>,
) -> Result<Contact, ReactorError> {
    let contact = Contact::load(conn, &event.aggregate_id)?;
    Ok(contact.ok_or_else(|| format!("contact {} has no row", event.aggregate_id))?)
}

/// Version 1 of the contact list, as last month's handler writes it: contacts and their next
/// meeting, without notes.
pub fn contact_list<C: CrmConnection>(
    conn: &mut C,
    event: &RecordedEvent<i64>,
) -> Result<(), ReactorError> {
    project_contact(conn, 1, event, |_| None)
}

/// Version 2 of the contact list: contacts, their next meeting, and its notes rendered from
/// Markdown.
pub fn contact_list_v2<C: CrmConnection>(
    conn: &mut C,
    event: &RecordedEvent<i64>,
) -> Result<(), ReactorError> {
    project_contact(conn, 2, event, |notes| {
        let mut html = String::new();
        pulldown_cmark::html::push_html(&mut html, pulldown_cmark::Parser::new(notes));
        Some(html)
    })
}

fn project_contact<C: CrmConnection>(
    conn: &mut C,
    version: i32,
    event: &RecordedEvent<i64>,
    render_notes: impl Fn(&str) -> Option<String>,
) -> Result<(), ReactorError> {
    let contact = contact_of(conn, event)?;
    let current = conn.projected_contact(version, &contact.account_id, &contact.name)?;
    let mut row = current.unwrap_or_else(|| ProjectedContact {
        version,
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
    Ok(())
}

dispatcher! {
    /// The CRM as deployed last month: version 1 of the contact list.
    pub struct LastMonthDispatcher for sqlite, postgres;
    Contact::* => subscribe: [contact_list], project: [meeting_notes_emails];
}

dispatcher! {
    /// The CRM today, while version 2 of the contact list is built beside version 1 (the next
    /// deploy drops `contact_list`).
    pub struct CrmDispatcher for sqlite, postgres;
    Contact::* => subscribe: [contact_list, contact_list_v2], project: [meeting_notes_emails];
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
/// subscriptions`, `rebuild-projection meeting_notes_emails`, `log contact 1`, ...
pub fn cli<C: CrmConnection + Dispatches<CrmDispatcher>>() -> Cli<'static, C> {
    Cli::new("crm")
        .aggregate::<Contact>()
        .dispatcher(&CrmDispatcher)
        .projection(NOTES_EMAILS, |conn: &mut C| Ok(conn.clear_notes_emails()?))
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
    let sam = store.history::<Contact>(&2)?;
    let planned = sam.last().map_or(0, |event| event.id);
    let sam_handled = |conn: &mut C| has_handled(conn, &LastMonthDispatcher, CONTACT_LIST, planned);
    writeln!(
        out,
        "before its subscriber runs, the contact list has handled Sam's meeting (event \
         {planned}): {}",
        sam_handled(store.connection())?
    )?;
    let options = SubscriberOptions::default().subscriber_id("crm-example");
    let version_1 = Subscriber::new(&LastMonthDispatcher, CONTACT_LIST, options.clone())?;
    let caught_up = version_1.catch_up(store.connection())?;
    writeln!(
        out,
        "its subscriber handled {} events; now: {}",
        caught_up.handled,
        sam_handled(store.connection())?
    )?;
    writeln!(out, "contact list:")?;
    print_contact_list(store.connection(), out)?;

    writeln!(
        out,
        "== Today: version 2 of the contact list renders the notes' Markdown, built blue/green"
    )?;
    let mut store = DieselStore::new(&mut *conn).with_dispatcher(&CrmDispatcher);
    let version_2 = Subscriber::new(&CrmDispatcher, CONTACT_LIST_V2, options.clone())?;
    let built = version_2.catch_up(store.connection())?;
    writeln!(
        out,
        "version 2 built from {} events beside version 1, which the contact list still shows:",
        built.handled
    )?;
    print_contact_list(store.connection(), out)?;
    let changed = store.append(
        &1,
        ContactMethodChanged {
            contact_method: "pat@work.example".into(),
        },
        &dave,
    )?;
    let event = changed.events[0].id;
    let version_1 = Subscriber::new(&CrmDispatcher, CONTACT_LIST, options)?;
    version_1.catch_up(store.connection())?;
    let (last, ()) = version_2.catch_up_then(store.connection(), |conn| {
        Ok(conn.switch_read_model(CONTACT_LIST, 2)?)
    })?;
    writeln!(
        out,
        "version 2 caught up on {} more event(s), and the contact list switched to it in the \
         transaction of that last batch:",
        last.handled
    )?;
    print_contact_list(store.connection(), out)?;
    retire_subscription(store.connection(), CONTACT_LIST)?;
    store.connection().drop_contact_list(1)?;
    writeln!(
        out,
        "version 1 retired: its checkpoint and its rows deleted"
    )?;
    writeln!(
        out,
        "after editing Pat (event {event}), the contact list has handled it: {}",
        has_handled(store.connection(), &CrmDispatcher, CONTACT_LIST_V2, event)?
    )?;
    let pat = store
        .connection()
        .projected_contact(2, "dave", "Pat Smith")?
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

    let rebuilt = rebuild_projection(store.connection(), &CrmDispatcher, NOTES_EMAILS, |conn| {
        Ok(conn.clear_notes_emails()?)
    })?;
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
