//! Derive macros of `es-core`. This crate is an implementation detail: depend on `es-core`, which
//! re-exports them next to the traits they implement and documents every attribute.

mod aggregate;
mod attr;
mod backend;
mod case;
mod dispatcher;
mod event;
mod serde_attr;
mod symbol;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `es_core::Event`; documented in `es-core`.
#[proc_macro_derive(Event, attributes(aggregate, event, data_attributes))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(&input)
        .unwrap_or_else(|errors| errors.to_compile_error())
        .into()
}

/// Derives `es_core::Aggregate`; documented in `es-core`.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    aggregate::expand(&input)
        .unwrap_or_else(|errors| errors.to_compile_error())
        .into()
}

/// Routes events to reactors; re-exported and documented by `es-diesel`.
#[proc_macro]
pub fn dispatcher(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as dispatcher::DispatcherInput);
    dispatcher::expand(&input)
        .unwrap_or_else(|errors| errors.to_compile_error())
        .into()
}
