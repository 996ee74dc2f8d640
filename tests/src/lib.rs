//! Behaviour suites shared by the test binaries in `tests/`, and the README's doctests.

pub mod backend;
pub mod bench;
pub mod command_contract;
pub mod commands;
pub mod contract;
pub mod domain;
pub mod generative;
#[cfg(feature = "nats")]
pub mod nats;
pub mod reactors;
pub mod subscriptions;

/// Ends this process once the process that started it is gone: the tests' worker and writer
/// processes call it first, so that a test run that ends abruptly (a timeout, a fail-fast exit)
/// never leaves them running. (Unix only; elsewhere it does nothing.)
pub fn exit_with_parent() {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        std::thread::spawn(move || {
            while std::os::unix::process::parent_id() == parent {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            std::process::exit(0);
        });
    }
}

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
