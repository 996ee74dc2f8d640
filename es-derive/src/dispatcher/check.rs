//! The rules across routes that `dispatcher!` checks before it generates anything: each backend,
//! route, reactor kind and reactor named once, and what a reactor may create; every error is
//! reported together. Uses `input`, and no other room of the dispatcher.

use super::input::{DispatcherInput, Kind, ReactorInput, reactor_name};
use crate::attr::{Errors, one_of, type_name};
use crate::symbol::BACKENDS;

/// Every cross-route rule, reported together.
pub(super) fn check(input: &DispatcherInput) -> Result<(), syn::Error> {
    let mut errors = Errors::default();
    for (i, backend) in input.backends.iter().enumerate() {
        if !BACKENDS.iter().any(|known| backend == known) {
            errors.error(
                backend,
                format!(
                    "unknown backend `{backend}`, expected one of {}",
                    one_of(BACKENDS)
                ),
            );
        } else if input.backends[..i].contains(backend) {
            errors.error(
                backend,
                format!("backend `{backend}` is listed twice: name each backend once"),
            );
        }
    }
    check_handler_kinds(input, &mut errors);
    let mut seen: Vec<String> = Vec::new();
    for route in &input.routes {
        let written = route.pattern.written();
        if seen.contains(&written) {
            errors.error(
                &route.pattern,
                format!(
                    "route `{written}` is listed twice: put all its reactors in one route, in the \
                     order they run"
                ),
            );
        }
        seen.push(written);
        let mut kinds: Vec<Kind> = Vec::new();
        for step in &route.steps {
            if kinds.contains(&step.kind) {
                errors.push(syn::Error::new(
                    step.kind_span,
                    format!(
                        "`{}` is given twice in this route: list its reactors once, like \
                         `{}: [first, second]`",
                        step.kind.name(),
                        step.kind.name()
                    ),
                ));
            }
            kinds.push(step.kind);
            if step.reactors.is_empty() {
                errors.push(syn::Error::new(
                    step.bracket_span,
                    format!(
                        "`{}` lists no reactor: name at least one, or remove it",
                        step.kind.name()
                    ),
                ));
            }
            let mut names: Vec<String> = Vec::new();
            for reactor in &step.reactors {
                check_creates(step.kind, reactor, &mut errors);
                let name = reactor_name(&reactor.path);
                if names.contains(&name) {
                    errors.error(
                        &reactor.path,
                        format!(
                            "reactor `{name}` is listed twice in this `{}`: name each reactor \
                             once, it runs once per event",
                            step.kind.name()
                        ),
                    );
                }
                names.push(name);
            }
        }
    }
    errors.finish()
}

/// A name is the handler of one projection or of one subscription, never both: rebuilding the one
/// would run the other.
fn check_handler_kinds(input: &DispatcherInput, errors: &mut Errors) {
    let handlers = |kind: Kind| {
        input
            .routes
            .iter()
            .flat_map(|route| &route.steps)
            .filter(move |step| step.kind == kind)
            .flat_map(|step| &step.reactors)
    };
    let projections: Vec<String> = handlers(Kind::Project)
        .map(|reactor| reactor_name(&reactor.path))
        .collect();
    for reactor in handlers(Kind::Subscribe) {
        let name = reactor_name(&reactor.path);
        if projections.contains(&name) {
            errors.error(
                &reactor.path,
                format!(
                    "`{name}` is both a projection and a subscription: rebuilding the \
                     projection would run the subscription's handlers too, so give them \
                     different names"
                ),
            );
        }
    }
}

/// The events a reactor declares it creates: only triggers and async reactors create events, a
/// list names at least one event, each once.
fn check_creates(kind: Kind, reactor: &ReactorInput, errors: &mut Errors) {
    let Some(creates) = &reactor.creates else {
        return;
    };
    let name = reactor_name(&reactor.path);
    let handler = match kind {
        Kind::Project => Some("projection"),
        Kind::Subscribe => Some("subscription"),
        Kind::Trigger | Kind::Async => None,
    };
    if let Some(handler) = handler {
        errors.push(syn::Error::new(
            creates.arrow.spans[0],
            format!(
                "{handler} `{name}` cannot create events: a {handler} only writes its read \
                 model, so remove `-> [...]` (a `trigger` or `async` reactor may create events)"
            ),
        ));
        return;
    }
    if creates.events.is_empty() {
        errors.push(syn::Error::new(
            creates.bracket_span,
            format!(
                "`{name} -> []` lists no event: name the events it may create, or remove `-> []`"
            ),
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for event in &creates.events {
        let written = type_name(event);
        if seen.contains(&written) {
            errors.error(
                event,
                format!("event `{written}` is listed twice after `{name} ->`: name it once"),
            );
        }
        seen.push(written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_routes_pass_the_checks() {
        for input in [
            syn::parse_quote! {
                /// The app's routes.
                pub struct AppDispatcher for postgres, sqlite;
                task::Completed => trigger: [record_activity], async: [notify_creator];
                Subscription::* => async: [forward_to_warehouse],;
                * => project: [feed::append, Feed::call];
            },
            syn::parse_quote! {
                struct D;
                Pinned => trigger: [unpin_other_posts -> [Unpinned, board::PinMoved,], audit];
                Pinged => async: [pong -> [Ponged]];
            },
        ] {
            let input: DispatcherInput = input;
            assert!(check(&input).is_ok());
        }
    }

    #[test]
    fn created_events_are_checked() {
        for (input, expected) in [
            (
                syn::parse_quote! { struct D; Completed => project: [feed -> [Listed]]; },
                "projection `feed` cannot create events",
            ),
            (
                syn::parse_quote! { struct D; Completed => trigger: [notify -> []]; },
                "`notify -> []` lists no event",
            ),
            (
                syn::parse_quote! { struct D; Completed => async: [notify -> [Sent, Sent]]; },
                "event `Sent` is listed twice after `notify ->`",
            ),
        ] {
            let input: DispatcherInput = input;
            let error = check(&input).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn a_route_listed_twice_is_refused() {
        let input: DispatcherInput = syn::parse_quote! {
            struct D;
            Completed => trigger: [a];
            Completed => async: [b];
        };
        let error = check(&input).unwrap_err().to_string();
        assert!(
            error.starts_with("route `Completed` is listed twice"),
            "{error}"
        );
    }

    #[test]
    fn a_backend_listed_twice_is_refused() {
        let input: DispatcherInput = syn::parse_quote! {
            struct D for sqlite, postgres, sqlite;
            Completed => trigger: [a];
        };
        let error = check(&input).unwrap_err().to_string();
        assert!(
            error.starts_with("backend `sqlite` is listed twice"),
            "{error}"
        );
    }
}
