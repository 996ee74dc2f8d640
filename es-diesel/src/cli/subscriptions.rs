//! `subscriptions`: the checkpoints of the dispatcher's subscriptions listed, reset, subscribers
//! run, and the events they hold back listed and retried.
//!
//! Calls `cli` (the mounted command line), `cli::args`, `cli::error` and `subscription`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;

use super::Cli;
use super::args::SubscriptionsCommand;
use super::error::CliError;
use crate::database::Database;
use crate::subscription::{
    Subscriber, SubscriberOptions, SubscriptionStatus, held_events, reset_subscription,
    subscription_names, subscriptions,
};

impl<C: Database> Cli<'_, C> {
    pub(super) fn subscriptions(
        &self,
        conn: &mut C,
        command: &SubscriptionsCommand,
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        let dispatcher = self.dispatcher.ok_or(CliError::NoDispatcher {
            command: "subscriptions",
        })?;
        match command {
            SubscriptionsCommand::List => list(&subscriptions(conn, dispatcher)?, out),
            SubscriptionsCommand::Reset { name, to } => {
                let position = reset_subscription(conn, dispatcher, name, *to)?;
                writeln!(out, "subscription {name} reset to after {position}")?;
                Ok(())
            }
            SubscriptionsCommand::Held { name } => {
                let held = held_events(conn, name.as_deref())?;
                if held.is_empty() {
                    writeln!(out, "no event held back")?;
                }
                for event in held {
                    writeln!(
                        out,
                        "{} event {} of {} {} (held since {}): {}",
                        event.subscription,
                        event.event_id,
                        event.events_table,
                        event.aggregate_id,
                        event.held_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        event.last_error
                    )?;
                }
                Ok(())
            }
            SubscriptionsCommand::Retry { name } => {
                let subscriber = Subscriber::new(dispatcher, name, self.subscriber(true))?;
                let (handled, still_held) = subscriber.retry_held(conn)?;
                writeln!(
                    out,
                    "subscription {name}: {handled} held event(s) handled, {still_held} still held"
                )?;
                if still_held > 0 {
                    return Err(CliError::StillHeld { count: still_held });
                }
                Ok(())
            }
            SubscriptionsCommand::Run {
                name,
                catch_up,
                hold_back,
                shards,
            } => {
                let names = match name {
                    Some(name) => vec![name.as_str()],
                    None => subscription_names(dispatcher),
                };
                let mut subscribers = Vec::new();
                for name in names {
                    for shard in 0..*shards {
                        let subscriber =
                            Subscriber::new(dispatcher, name, self.subscriber(*hold_back))?;
                        subscribers.push(match *shards {
                            1 => subscriber,
                            count => subscriber.shard(shard, count)?,
                        });
                    }
                }
                if *catch_up {
                    for subscriber in subscribers {
                        let stats = subscriber.catch_up(conn)?;
                        writeln!(
                            out,
                            "subscription {}: {} events handled in {} batches",
                            subscriber.checkpoint(),
                            stats.handled,
                            stats.batches
                        )?;
                    }
                    return Ok(());
                }
                self.run_subscribers(&subscribers, out)
            }
        }
    }

    pub(super) fn subscriber(&self, hold_back: bool) -> SubscriberOptions {
        SubscriberOptions::default()
            .subscriber_id(self.worker.worker_id.clone())
            .hold_back(hold_back)
    }

    /// Runs `subscribers` until Ctrl-C, each in a thread, on connections of its own.
    fn run_subscribers(
        &self,
        subscribers: &[Subscriber<'_, C>],
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        let connect = self.connect.as_ref().ok_or(CliError::NoConnect {
            command: "subscriptions run",
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let on_signal = Arc::clone(&stop);
        ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))?;
        for subscriber in subscribers {
            writeln!(
                out,
                "following {} as {} (Ctrl-C to stop)",
                subscriber.checkpoint(),
                subscriber.owner()
            )?;
        }
        out.flush()?;
        let results: Vec<_> = std::thread::scope(|scope| {
            let running: Vec<_> = subscribers
                .iter()
                .map(|subscriber| scope.spawn(|| subscriber.run(connect, &stop)))
                .collect();
            running
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        for (subscriber, stats) in subscribers.iter().zip(results) {
            let stats = stats?;
            writeln!(
                out,
                "subscription {}: {} events handled in {} batches, {} errors",
                subscriber.checkpoint(),
                stats.handled,
                stats.batches,
                stats.errors
            )?;
        }
        Ok(())
    }
}

/// Prints one line per subscription.
pub(super) fn list(statuses: &[SubscriptionStatus], out: &mut dyn Write) -> Result<(), CliError> {
    let width = statuses
        .iter()
        .map(|status| status.name.len())
        .chain([12])
        .max()
        .unwrap_or(12);
    writeln!(
        out,
        "{:width$}  {:>10}  {:>9}  {:>9}  {:>10}  {:20}  state",
        "subscription", "position", "handled", "behind", "behind for", "owner"
    )?;
    let now = Utc::now();
    for status in statuses {
        let position = status
            .position
            .map_or_else(|| "-".to_owned(), |position| position.to_string());
        let behind_for = status.behind_since.map_or_else(
            || "-".to_owned(),
            |since| {
                let seconds = (now - since).num_seconds().max(0).unsigned_abs();
                humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
            },
        );
        let held = status
            .lease_until
            .is_some_and(|until| until > now && status.owner.is_some());
        let owner = if held {
            status.owner.as_deref().unwrap_or("-")
        } else {
            "-"
        };
        let state = match (&status.last_error, status.position, held) {
            (Some(error), _, _) => format!("failing: {error}"),
            (None, None, _) => "new".to_owned(),
            (None, Some(_), true) => "held".to_owned(),
            (None, Some(_), false) => "idle".to_owned(),
        };
        writeln!(
            out,
            "{:width$}  {position:>10}  {:>9}  {:>9}  {behind_for:>10}  {owner:20}  {state}",
            status.name, status.handled, status.behind
        )?;
    }
    Ok(())
}
