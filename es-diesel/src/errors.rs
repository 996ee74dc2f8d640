//! How failures become the store's errors: a storage error naming its table, lock contention
//! told from every other failure (with the one retry loop of whole transactions), and a
//! reactor's failure naming the reactor and its event.
//!
//! The bottom of the crate: it calls nothing of it.

pub(crate) use es_core::is_contention;
use es_core::{Aggregate, Error};

/// Runs `transaction` again, up to `attempts` times in all, while it fails with contention
/// ([`is_contention`]: a deadlock, a serialization failure, a busy SQLite), after a random pause
/// that doubles with each attempt (up to 10 ms, 20 ms, ... 500 ms); it must be safe to repeat (a
/// whole transaction, rolled back when it failed).
pub(crate) fn retry_contention<T>(
    attempts: u32,
    mut transaction: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    let mut attempt = 1;
    loop {
        match transaction() {
            Err(Error::Storage { source, .. })
                if attempt < attempts
                    && source
                        .downcast_ref::<diesel::result::Error>()
                        .is_some_and(is_contention) =>
            {
                tracing::debug!(attempt, "a transaction collided with another, retrying");
                let longest = longest_contention_pause_ms(attempt);
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(fastrand::u64(1..=longest)));
            }
            other => return other,
        }
    }
}

/// The longest pause before the attempt after `attempt` (from 1): 10 ms, doubling, at most 500 ms.
fn longest_contention_pause_ms(attempt: u32) -> u64 {
    (10u64 << (attempt.max(1) - 1).min(6)).min(500)
}

/// A diesel error of a statement on `table` as the store's [`Error::Storage`] naming it.
pub(crate) fn storage(table: &'static str) -> impl FnOnce(diesel::result::Error) -> Error {
    move |source| Error::Storage {
        table,
        source: Box::new(source),
    }
}

/// Lock contention between concurrent writers ([`is_contention`]: a deadlock, a serialization
/// failure, a lock wait timeout, SQLite's busy database when the caller's deferred transaction
/// cannot become the writer) is [`Error::Contention`]: running the transaction again is the
/// answer, and `retry_on_conflict` does.
pub(crate) fn contended<A: Aggregate>(
    id: &dyn std::fmt::Display,
) -> impl FnOnce(Error) -> Error + '_ {
    move |error| match error {
        Error::Storage { table, source } => {
            let contention = source
                .downcast_ref::<diesel::result::Error>()
                .is_some_and(is_contention);
            if contention {
                Error::Contention {
                    aggregate: A::NAME,
                    aggregate_id: id.to_string(),
                    source,
                }
            } else {
                Error::Storage { table, source }
            }
        }
        other => other,
    }
}

/// Names the failing reactor in its error — unless the error comes from deeper in the cascade (a
/// reactor of an event this one created, or the cascade limit), which already says where, or is
/// a collision with another writer (a deadlock, a busy database: [`Error::Contention`]), which
/// makes the whole write one to run again, as `retry_on_conflict` does.
pub(crate) fn reactor_error(
    reactor: &'static str,
    event: (&str, i64, &str),
    source: Box<dyn std::error::Error + Send + Sync>,
) -> Error {
    match source.downcast::<Error>() {
        Ok(inner)
            if matches!(
                *inner,
                Error::Reactor { .. } | Error::CascadeTooDeep { .. } | Error::Contention { .. }
            ) =>
        {
            *inner
        }
        Ok(inner) => wrap(reactor, event, inner),
        Err(source) => wrap(reactor, event, source),
    }
}

/// The error of reactor `reactor` on the event `(events table, event id, tag)`.
fn wrap(
    reactor: &'static str,
    (events_table, event_id, tag): (&str, i64, &str),
    source: Box<dyn std::error::Error + Send + Sync>,
) -> Error {
    Error::Reactor {
        reactor,
        table: events_table.to_owned(),
        event_id,
        tag: tag.to_owned(),
        source,
    }
}

/// The message of a panic's payload (a `&str` or a `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

/// An error with its sources, `: `-separated (sources already in the message are not repeated).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::*;

    fn failure(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    fn deadlock() -> Error {
        storage("tasks")(failure(DatabaseErrorKind::Unknown, "deadlock detected"))
    }

    #[test]
    fn collisions_are_contention_and_other_failures_are_not() {
        for message in [
            "deadlock detected",
            "Lock wait timeout exceeded; try restarting transaction",
            "database is locked",
            "database table is locked",
            "database schema is locked",
        ] {
            assert!(
                is_contention(&failure(DatabaseErrorKind::Unknown, message)),
                "{message}"
            );
        }
        assert!(is_contention(&failure(
            DatabaseErrorKind::SerializationFailure,
            ""
        )));
        assert!(!is_contention(&failure(
            DatabaseErrorKind::Unknown,
            "syntax error"
        )));
        assert!(!is_contention(&failure(
            DatabaseErrorKind::UniqueViolation,
            "deadlock detected"
        )));
        assert!(!is_contention(&DieselError::NotFound));
    }

    #[test]
    fn contention_is_retried_up_to_the_attempts_in_all() {
        let tries = Cell::new(0);
        let result: Result<(), Error> = retry_contention(3, || {
            tries.set(tries.get() + 1);
            Err(deadlock())
        });
        assert!(matches!(result, Err(Error::Storage { .. })));
        assert_eq!(tries.get(), 3);
    }

    #[test]
    fn a_success_ends_the_retries() {
        let tries = Cell::new(0);
        let result = retry_contention(5, || {
            tries.set(tries.get() + 1);
            if tries.get() < 2 {
                Err(deadlock())
            } else {
                Ok(tries.get())
            }
        });
        assert_eq!(result.unwrap(), 2);
    }

    #[test]
    fn other_failures_are_never_retried() {
        let tries = Cell::new(0);
        let result: Result<(), Error> = retry_contention(5, || {
            tries.set(tries.get() + 1);
            Err(storage("tasks")(failure(
                DatabaseErrorKind::Unknown,
                "syntax error",
            )))
        });
        assert!(result.is_err());
        assert_eq!(tries.get(), 1);
    }

    #[test]
    fn the_pause_doubles_up_to_half_a_second() {
        let pauses: Vec<u64> = (1..=8).map(longest_contention_pause_ms).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 500, 500]);
    }

    /// The event a reactor failed on in these tests.
    const CREATED: (&str, i64, &str) = ("task_events", 7, "task.created");

    #[test]
    fn a_reactors_own_failure_names_the_reactor_and_the_event() {
        let not_found = Error::NotFound {
            aggregate: "project",
            aggregate_id: "3".into(),
        };
        for source in [
            Box::<dyn std::error::Error + Send + Sync>::from(not_found),
            "mail server down".into(),
        ] {
            let error = reactor_error("notify", CREATED, source);
            let Error::Reactor {
                reactor,
                table,
                event_id,
                tag,
                ..
            } = error
            else {
                panic!("not a reactor error: {error:?}");
            };
            assert_eq!(
                (reactor, table.as_str(), event_id, tag.as_str()),
                ("notify", "task_events", 7, "task.created")
            );
        }
    }

    #[test]
    fn a_collision_or_a_deeper_failure_passes_through() {
        let contention = Error::Contention {
            aggregate: "project",
            aggregate_id: "3".into(),
            source: "deadlock detected".into(),
        };
        let error = reactor_error("notify", CREATED, contention.into());
        assert!(matches!(error, Error::Contention { .. }), "{error:?}");
        let deeper = Error::Reactor {
            reactor: "audit",
            table: "project_events".into(),
            event_id: 8,
            tag: "project.started".into(),
            source: "disk full".into(),
        };
        let error = reactor_error("notify", CREATED, deeper.into());
        assert!(
            matches!(
                error,
                Error::Reactor {
                    reactor: "audit",
                    event_id: 8,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_failed_attempt_keeps_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer failed")]
        struct Outer(#[source] Middle);
        #[derive(Debug, thiserror::Error)]
        #[error("middle failed: the root")]
        struct Middle(#[source] Root);
        #[derive(Debug, thiserror::Error)]
        #[error("the root")]
        struct Root;
        assert_eq!(
            error_chain(&Outer(Middle(Root))),
            "outer failed: middle failed: the root"
        );
        assert_eq!(error_chain(&Root), "the root");
    }

    #[test]
    fn a_panic_is_told_by_its_message() {
        let message = |payload: Box<dyn std::any::Any + Send>| panic_message(&*payload);
        assert_eq!(message(Box::new("static")), "static");
        assert_eq!(message(Box::new(String::from("formatted"))), "formatted");
        assert_eq!(message(Box::new(7)), "(a panic without a message)");
    }
}
