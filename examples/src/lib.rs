//! The domains of the examples, shared by their programs.

pub mod todo;
