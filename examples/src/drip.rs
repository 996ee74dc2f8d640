//! Drip, from the blog post "Event Sourcing made Simple": supporters subscribe to a creator's
//! Drip; the payment platform's webhook activates the subscription (its notification id travels in
//! the metadata); two emails go out asynchronously; commands validate their attributes and do
//! nothing when nothing would change; and only one post of a Drip is pinned, kept so by a trigger
//! reactor that unpins the previous one in the same transaction.

use std::io::Write;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use es_core::{Aggregate, Transactional};
use es_core::{
    AppendOptions, Apply, Command, Event, EventContext, EventStore, Metadata, NewEvent, Rejection,
};
use es_diesel::cli::Cli;
use es_diesel::{
    AggregateTable, Database, DieselStore, Dispatches, JobContext, ReactorError, Recorded, Stores,
    TriggerContext, Worker, WorkerOptions, dispatcher, with_connection,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::db::{OUTBOX_TABLE, outbox, record_in_outbox};
use crate::print_history;

/// Where the app's event catalog is committed (`es_core::catalog`): the reference the data team
/// reads, written at boot by the example and checked by the tests.
pub const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/drip");

/// The app's aggregates, whose events its catalog lists.
pub const AGGREGATES: &[&str] = &[
    <Subscription as Aggregate>::NAME,
    <Drip as Aggregate>::NAME,
    <Post as Aggregate>::NAME,
];

/// The diesel schema of the app.
#[allow(missing_docs)]
pub mod schema {
    diesel::table! {
        subscriptions (id) {
            id -> BigInt,
            user_id -> Text,
            reward -> Text,
            currency -> Text,
            status -> Text,
            stripe_key -> Nullable<Text>,
            activated_at -> Nullable<Timestamp>,
            deactivated_at -> Nullable<Timestamp>,
        }
    }

    diesel::table! {
        drips (id) {
            id -> BigInt,
            creator -> Text,
            pinned_post -> Nullable<BigInt>,
        }
    }

    diesel::table! {
        posts (id) {
            id -> BigInt,
            drip_id -> BigInt,
            title -> Text,
            pinned -> Bool,
        }
    }
}

/// The app's own tables, one statement each (the framework creates its own).
pub const TABLES: &[&str] = &[
    "CREATE TABLE subscriptions (id BIGINT PRIMARY KEY NOT NULL, user_id TEXT NOT NULL, \
     reward TEXT NOT NULL, currency TEXT NOT NULL, status TEXT NOT NULL, stripe_key TEXT, \
     activated_at TIMESTAMP, deactivated_at TIMESTAMP)",
    "CREATE TABLE drips (id BIGINT PRIMARY KEY NOT NULL, creator TEXT NOT NULL, \
     pinned_post BIGINT)",
    "CREATE TABLE posts (id BIGINT PRIMARY KEY NOT NULL, drip_id BIGINT NOT NULL, \
     title TEXT NOT NULL, pinned BOOLEAN NOT NULL)",
    OUTBOX_TABLE,
];

/// A supporter's subscription to a Drip: an ordinary diesel model.
#[derive(
    Aggregate, Queryable, Selectable, Insertable, Serialize, Default, Clone, Debug, PartialEq,
)]
#[aggregate(table = schema::subscriptions)]
#[diesel(table_name = schema::subscriptions)]
pub struct Subscription {
    /// The subscription's id.
    pub id: i64,
    /// The supporter.
    pub user_id: String,
    /// The reward tier subscribed to.
    pub reward: String,
    /// The currency of the payments.
    pub currency: String,
    /// `pending`, `active` or `inactive`.
    pub status: String,
    /// The payment platform's subscription key.
    pub stripe_key: Option<String>,
    /// When it was activated (the event's time).
    pub activated_at: Option<NaiveDateTime>,
    /// When it was deactivated.
    pub deactivated_at: Option<NaiveDateTime>,
}

/// A creator's Drip: it knows which of its posts is pinned.
#[derive(
    Aggregate, Queryable, Selectable, Insertable, Serialize, Default, Clone, Debug, PartialEq,
)]
#[aggregate(table = schema::drips)]
#[diesel(table_name = schema::drips)]
pub struct Drip {
    /// The Drip's id.
    pub id: i64,
    /// Its creator.
    pub creator: String,
    /// Its pinned post.
    pub pinned_post: Option<i64>,
}

/// A post on a Drip.
#[derive(
    Aggregate, Queryable, Selectable, Insertable, Serialize, Default, Clone, Debug, PartialEq,
)]
#[aggregate(table = schema::posts)]
#[diesel(table_name = schema::posts)]
pub struct Post {
    /// The post's id.
    pub id: i64,
    /// The Drip it is posted on.
    pub drip_id: i64,
    /// Its title.
    pub title: String,
    /// Whether it is the Drip's pinned post.
    pub pinned: bool,
}

/// A supporter subscribed to a reward.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Subscription)]
#[event(creates)]
pub struct Created {
    /// The supporter.
    #[data_attributes]
    pub user_id: String,
    /// The reward tier.
    #[data_attributes]
    pub reward: String,
    /// The currency; subscriptions created before it was recorded were all in US dollars.
    #[data_attributes]
    #[serde(default = "usd")]
    pub currency: String,
}

fn usd() -> String {
    "USD".to_owned()
}

/// Which notification of the payment platform's webhook an event came from: Drip's own
/// metadata, typed (`Metadata::with_app`), checked on every activation and listed in the catalog.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
pub struct WebhookNotification {
    /// The platform's id of the notification (a retried delivery has a new one).
    pub notification_id: i64,
}

/// The payment platform activated the subscription (from its webhook).
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Subscription)]
#[event(metadata = WebhookNotification)]
pub struct Activated {
    /// The payment platform's subscription key.
    #[data_attributes]
    pub stripe_key: String,
}

/// The subscription was deactivated.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Subscription)]
pub struct Deactivated {
    /// Why, as the supporter or the platform said.
    #[data_attributes]
    pub reason: String,
}

/// A creator opened their Drip.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Drip)]
#[event(creates)]
pub struct Opened {
    /// The creator.
    #[data_attributes]
    pub creator: String,
}

/// The Drip's pinned post changed.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Drip)]
pub struct PinMoved {
    /// The newly pinned post.
    #[data_attributes]
    pub post: i64,
}

/// A post was published on a Drip.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Post)]
#[event(creates)]
pub struct Posted {
    /// The Drip.
    #[data_attributes]
    pub drip_id: i64,
    /// The title.
    #[data_attributes]
    pub title: String,
}

/// A post was pinned.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Post)]
pub struct Pinned {}

/// A post was unpinned.
#[derive(Event, Serialize, Deserialize, Debug, JsonSchema)]
#[aggregate(Post)]
pub struct Unpinned {}

impl Apply<Subscription> for Created {
    fn apply(&self, subscription: &mut Subscription, _: &EventContext<'_>) {
        subscription.user_id.clone_from(&self.user_id);
        subscription.reward.clone_from(&self.reward);
        subscription.currency.clone_from(&self.currency);
        subscription.status = "pending".to_owned();
    }
}

impl Apply<Subscription> for Activated {
    fn apply(&self, subscription: &mut Subscription, event: &EventContext<'_>) {
        subscription.stripe_key = Some(self.stripe_key.clone());
        subscription.status = "active".to_owned();
        subscription.activated_at = Some(event.created_at.naive_utc());
    }
}

impl Apply<Subscription> for Deactivated {
    fn apply(&self, subscription: &mut Subscription, event: &EventContext<'_>) {
        subscription.status = "inactive".to_owned();
        subscription.deactivated_at = Some(event.created_at.naive_utc());
    }
}

impl Apply<Drip> for Opened {
    fn apply(&self, drip: &mut Drip, _: &EventContext<'_>) {
        drip.creator.clone_from(&self.creator);
    }
}

impl Apply<Drip> for PinMoved {
    fn apply(&self, drip: &mut Drip, _: &EventContext<'_>) {
        drip.pinned_post = Some(self.post);
    }
}

impl Apply<Post> for Posted {
    fn apply(&self, post: &mut Post, _: &EventContext<'_>) {
        post.drip_id = self.drip_id;
        post.title.clone_from(&self.title);
    }
}

impl Apply<Post> for Pinned {
    fn apply(&self, post: &mut Post, _: &EventContext<'_>) {
        post.pinned = true;
    }
}

impl Apply<Post> for Unpinned {
    fn apply(&self, post: &mut Post, _: &EventContext<'_>) {
        post.pinned = false;
    }
}

/// Subscribes a supporter.
#[derive(Validate, Debug)]
pub struct Subscribe {
    /// The new subscription's id.
    pub subscription: i64,
    /// The supporter.
    #[validate(length(min = 1, message = "is required"))]
    pub user_id: String,
    /// The reward tier.
    #[validate(length(min = 1, message = "is required"))]
    pub reward: String,
}

impl Command for Subscribe {
    type Aggregate = Subscription;

    fn aggregate_id(&self) -> i64 {
        self.subscription
    }

    fn decide(
        &self,
        current: Option<&Subscription>,
    ) -> Result<Vec<NewEvent<Subscription>>, Rejection> {
        if current.is_some() {
            return Err(Rejection::AlreadyExists);
        }
        Ok(vec![
            Created {
                user_id: self.user_id.clone(),
                reward: self.reward.clone(),
                currency: usd(),
            }
            .into(),
        ])
    }
}

/// Activates a subscription: the blog post's command.
#[derive(Validate, Debug)]
pub struct Activate {
    /// The subscription.
    pub subscription: i64,
    /// The payment platform's subscription key.
    #[validate(length(min = 1, message = "is required"))]
    pub stripe_key: String,
}

impl Command for Activate {
    type Aggregate = Subscription;

    fn aggregate_id(&self) -> i64 {
        self.subscription
    }

    fn decide(
        &self,
        current: Option<&Subscription>,
    ) -> Result<Vec<NewEvent<Subscription>>, Rejection> {
        let subscription = current.ok_or(Rejection::NotFound)?;
        match subscription.status.as_str() {
            "active" => Ok(Vec::new()),
            "inactive" => Err(Rejection::not_allowed("it was deactivated")),
            _ => Ok(vec![
                Activated {
                    stripe_key: self.stripe_key.clone(),
                }
                .into(),
            ]),
        }
    }
}

/// Deactivates a subscription.
#[derive(Validate, Debug)]
pub struct Deactivate {
    /// The subscription.
    pub subscription: i64,
    /// Why.
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    pub reason: String,
}

impl Command for Deactivate {
    type Aggregate = Subscription;

    fn aggregate_id(&self) -> i64 {
        self.subscription
    }

    fn decide(
        &self,
        current: Option<&Subscription>,
    ) -> Result<Vec<NewEvent<Subscription>>, Rejection> {
        let subscription = current.ok_or(Rejection::NotFound)?;
        if subscription.status == "inactive" {
            return Ok(Vec::new());
        }
        Ok(vec![
            Deactivated {
                reason: self.reason.clone(),
            }
            .into(),
        ])
    }
}

/// Pins a post (its trigger unpins the Drip's previous pinned post).
#[derive(Validate, Debug)]
pub struct Pin {
    /// The post.
    pub post: i64,
}

impl Command for Pin {
    type Aggregate = Post;

    fn aggregate_id(&self) -> i64 {
        self.post
    }

    fn decide(&self, current: Option<&Post>) -> Result<Vec<NewEvent<Post>>, Rejection> {
        let post = current.ok_or(Rejection::NotFound)?;
        Ok(if post.pinned {
            Vec::new()
        } else {
            vec![Pinned {}.into()]
        })
    }
}

/// Emails the supporter that their subscription is active (async: a worker runs it after commit).
pub fn send_subscription_confirmation<C: Database>(
    job: &mut JobContext<'_, C>,
    activated: Recorded<'_, Activated>,
) -> Result<(), ReactorError> {
    let key = job.idempotency_key();
    let text = format!(
        "email to the supporter: subscription {} is active",
        activated.aggregate_id()
    );
    record_in_outbox(job.connection(), &key, &text)?;
    Ok(())
}

/// Emails the creator about their new subscriber.
pub fn notify_creator_of_new_subscriber<C: Database>(
    job: &mut JobContext<'_, C>,
    activated: Recorded<'_, Activated>,
) -> Result<(), ReactorError> {
    let key = job.idempotency_key();
    let text = format!(
        "email to the creator: new subscriber (subscription {})",
        activated.aggregate_id()
    );
    record_in_outbox(job.connection(), &key, &text)?;
    Ok(())
}

/// Only one pinned post per Drip: unpins the posts of the Drip pinned before (a typed diesel query
/// of the reactor's own, on whichever backend the app runs) and moves the Drip's pin, in the
/// transaction of the `Pinned` event — all of it or nothing.
pub fn unpin_other_posts<C: Stores<Post> + Stores<Drip>>(
    ctx: &mut TriggerContext<'_, C>,
    pinned: Recorded<'_, Pinned>,
) -> Result<(), ReactorError> {
    use schema::posts;
    let post_id = *pinned.aggregate_id();
    let post = Post::load(ctx.connection(), &post_id)?.ok_or("the pinned post exists")?;
    let pinned_before: Vec<i64> = with_connection!(ctx.connection(), |conn| {
        posts::table
            .filter(posts::drip_id.eq(post.drip_id))
            .filter(posts::pinned.eq(true))
            .filter(posts::id.ne(post_id))
            .select(posts::id)
            .load(conn)
    })?;
    let none = AppendOptions::default();
    for previous in pinned_before {
        ctx.append::<Post>(&previous, Unpinned {}, &none)?;
    }
    ctx.append::<Drip>(&post.drip_id, PinMoved { post: post_id }, &none)?;
    Ok(())
}

/// A database Drip runs on, whichever backend it is: the one bound of the app's code.
pub trait DripDatabase:
    Database + Stores<Subscription> + Stores<Drip> + Stores<Post> + Dispatches<DripDispatcher>
{
}

impl<C> DripDatabase for C where
    C: Database + Stores<Subscription> + Stores<Drip> + Stores<Post> + Dispatches<DripDispatcher>
{
}

dispatcher! {
    /// Drip's routes, as in the blog post (on the backends the examples run on).
    pub struct DripDispatcher for sqlite, postgres;
    Activated => async: [send_subscription_confirmation, notify_creator_of_new_subscriber];
    Pinned => trigger: [unpin_other_posts];
}

/// The operator command line of Drip (`es_diesel::cli`): `cargo run --example drip -- log
/// subscription 12`, `jobs dead`, ...
pub fn cli<C: DripDatabase>() -> Cli<'static, C> {
    Cli::new("drip")
        .aggregate::<Subscription>()
        .aggregate::<Drip>()
        .aggregate::<Post>()
        .dispatcher(&DripDispatcher)
        .catalog(CATALOG)
}

/// The story, printed to `out`: on any connection of the app.
pub fn run<C: DripDatabase>(
    conn: &mut C,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    crate::create_tables(conn, TABLES)?;
    es_diesel::create_tables::<_, Subscription>(conn)?;
    es_diesel::create_tables::<_, Drip>(conn)?;
    es_diesel::create_tables::<_, Post>(conn)?;
    let mut store = DieselStore::new(conn).with_dispatcher(&DripDispatcher);
    let supporter = AppendOptions::with_metadata(Metadata::by_actor("supporter-7"));
    let webhook = |notification_id: i64| -> Result<AppendOptions, serde_json::Error> {
        let notification = WebhookNotification { notification_id };
        let metadata = Metadata::by_actor("stripe-webhook").with_app(&notification)?;
        Ok(AppendOptions::with_metadata(metadata))
    };

    writeln!(out, "== Subscriptions")?;
    let subscribe = Subscribe {
        subscription: 12,
        user_id: "supporter-7".into(),
        reward: "monthly-comic".into(),
    };
    store.execute(&subscribe, &supporter)?;
    let missing_key = Activate {
        subscription: 12,
        stripe_key: String::new(),
    };
    match store.execute(&missing_key, &webhook(33455)?) {
        Err(error) => writeln!(out, "refused: {error}")?,
        Ok(_) => return Err("an activation without a key must be refused".into()),
    }
    let activate = Activate {
        subscription: 12,
        stripe_key: "sub_66123".into(),
    };
    let activated = store.execute(&activate, &webhook(33456)?)?;
    writeln!(
        out,
        "webhook 33456 activated subscription 12: {} event(s), {} job(s) queued",
        activated.events.len(),
        activated.reactions.len()
    )?;
    let again = store.execute(&activate, &webhook(33457)?)?;
    writeln!(
        out,
        "webhook 33457 (a retry) activated it again: no-op = {}, {} job(s) queued",
        again.is_noop(),
        again.reactions.len()
    )?;
    let worker = Worker::new(&DripDispatcher, WorkerOptions::default().worker_id("drip"));
    let ran = worker.run_once(store.connection())?;
    writeln!(out, "a worker ran {} job(s); the outbox:", ran.completed)?;
    for message in outbox(store.connection())? {
        writeln!(out, "  {message}")?;
    }
    let subscription: Subscription = store.load(&12)?.ok_or("subscription 12 exists")?;
    writeln!(
        out,
        "subscription 12: {} with {}, {}",
        subscription.status,
        subscription.stripe_key.as_deref().unwrap_or("no key"),
        subscription.currency
    )?;
    writeln!(out, "its history:")?;
    print_history(out, &store.history::<Subscription>(&12)?)?;

    writeln!(out, "== Only one pinned post")?;
    let creator = AppendOptions::with_metadata(Metadata::by_actor("creator-1"));
    store.transaction(|store| {
        store.append(
            &1,
            Opened {
                creator: "creator-1".into(),
            },
            &creator,
        )?;
        for (post, title) in [(1, "Chapter 1"), (2, "Chapter 2")] {
            let title = title.to_owned();
            store.append(&post, Posted { drip_id: 1, title }, &creator)?;
        }
        Ok::<_, es_core::Error>(())
    })?;
    store.execute(&Pin { post: 1 }, &creator)?;
    let pinned = store.execute(&Pin { post: 2 }, &creator)?;
    writeln!(out, "pinning post 2 ran:")?;
    for reaction in &pinned.reactions {
        writeln!(
            out,
            "  {:?} {} for {}",
            reaction.kind, reaction.reactor, reaction.event_type
        )?;
    }
    for id in [1, 2] {
        let post: Post = store.load(&id)?.ok_or("the post exists")?;
        writeln!(out, "post {id} pinned: {}", post.pinned)?;
    }
    let unpinned = store.history::<Post>(&1)?;
    let unpinned = unpinned.last().ok_or("post 1 has events")?;
    writeln!(
        out,
        "post 1's {} was caused by the pin of post 2: {}",
        unpinned.event_type,
        unpinned.metadata.causation_id == Some(pinned.events[0].id)
    )?;

    writeln!(out, "== Deactivation")?;
    let deactivate = Deactivate {
        subscription: 12,
        reason: "moving on".into(),
    };
    store.execute(&deactivate, &supporter)?;
    match store.execute(&activate, &webhook(33458)?) {
        Err(error) => writeln!(out, "refused: {error}")?,
        Ok(_) => return Err("a deactivated subscription must not be activated".into()),
    }
    Ok(())
}
