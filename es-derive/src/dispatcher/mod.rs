//! `dispatcher!`: the grammar of the route table, its checks, and the generated `Dispatch` impls.
//!
//! ```text
//! dispatcher! {
//!     /// docs
//!     pub struct AppDispatcher;                  // or: `pub struct AppDispatcher for postgres;`
//!     task::Completed => trigger: [record_activity], async: [notify_creator];
//!     Pinned => trigger: [unpin_other_posts -> [Unpinned, PinMoved]]; // the events it may create
//!     Subscription::* => async: [forward_to_warehouse];
//!     * => async: [forward_to_event_bus], project: [activity_feed];
//! }
//! ```
//!
//! The rooms: `input` is the route table as written, `parse` reads it from the macro's tokens,
//! `check` applies the rules across routes, and `generate` writes the code, naming each route's
//! type through `route_type`. Each room uses `input`; only `generate` uses another
//! (`route_type`).

mod check;
mod generate;
mod input;
mod parse;
mod route_type;

use proc_macro2::TokenStream;

pub(crate) use input::DispatcherInput;

/// The `Dispatch` impls of `input`, or every error of its routes.
pub(crate) fn expand(input: &DispatcherInput) -> Result<TokenStream, syn::Error> {
    check::check(input)?;
    Ok(generate::generate(input))
}
