//! Behaviour suites shared by the test binaries in `tests/`, and the README's doctests.

pub mod backend;
pub mod command_contract;
pub mod commands;
pub mod contract;
pub mod domain;
pub mod generative;
pub mod reactors;

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
