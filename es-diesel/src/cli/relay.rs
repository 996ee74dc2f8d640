//! `relay`: the NATS JetStream relay's status, a relay run until Ctrl-C or caught up, a reset.
//!
//! Calls `cli` (the mounted command line), `cli::args`, `cli::error`, `cli::subscriptions` (the
//! status line) and `relay`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Cli;
use super::args::RelayCommand;
use super::error::CliError;
use super::subscriptions::list;
use crate::database::Database;
use crate::relay::{Relay, relay_status, reset_relay};

impl<C: Database> Cli<'_, C> {
    pub(super) fn relay_command(
        &self,
        conn: &mut C,
        command: &RelayCommand,
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        let options = self.relay.as_ref().ok_or(CliError::NoRelay)?;
        match command {
            RelayCommand::Status => {
                writeln!(
                    out,
                    "relay to NATS stream {} at {}",
                    options.stream, options.url
                )?;
                list(&[relay_status(conn, options)?], out)
            }
            RelayCommand::Reset { to } => {
                let position = reset_relay(conn, options, *to)?;
                writeln!(out, "{} reset to after {position}", options.checkpoint())?;
                Ok(())
            }
            RelayCommand::Run { catch_up } => {
                let options = options.clone().subscriber(self.subscriber(false));
                let relay = Relay::new(options)?;
                let stats = if *catch_up {
                    relay.catch_up(conn)?
                } else {
                    let connect = self.connect.as_ref().ok_or(CliError::NoConnect {
                        command: "relay run",
                    })?;
                    let stop = Arc::new(AtomicBool::new(false));
                    let on_signal = Arc::clone(&stop);
                    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))?;
                    writeln!(
                        out,
                        "relaying {} to NATS (Ctrl-C to stop)",
                        relay.checkpoint()
                    )?;
                    out.flush()?;
                    relay.run(connect, &stop)?
                };
                let published = relay.stats();
                writeln!(
                    out,
                    "{}: {} events published ({} already in the stream) in {} batches, {} errors",
                    relay.checkpoint(),
                    published.published,
                    published.duplicates,
                    stats.batches,
                    stats.errors
                )?;
                Ok(())
            }
        }
    }
}
