//! The grammar of `dispatcher!`: `impl Parse` for each `*Input` type, with messages that quote
//! what was written and show the fix. Uses `input`, and no other room of the dispatcher.

use proc_macro2::Span;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, Path, Token, Visibility, bracketed, token};

use super::input::{
    CreatesInput, DispatcherInput, Kind, PatternInput, ReactorInput, RouteInput, StepInput,
    reactor_name,
};
use crate::attr::{one_of, type_name};
use crate::symbol::{ASYNC, BACKENDS, PROJECT, SUBSCRIBE, TRIGGER};

impl Parse for DispatcherInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let struct_token = input.parse::<Token![struct]>().map_err(|error| {
            syn::Error::new(
                error.span(),
                "a dispatcher starts by naming its type, before its routes: \
                 `pub struct AppDispatcher;`",
            )
        })?;
        let ident: Ident = input.parse().map_err(|error| {
            syn::Error::new(
                next_span(input, struct_token.span, &error),
                "expected the dispatcher's name after `struct`: `pub struct AppDispatcher;`",
            )
        })?;
        let mut written = format!("{}struct {ident}", written_visibility(&vis));
        let mut last = ident.span();
        let mut backends = Vec::new();
        if input.peek(Token![for]) {
            last = input.parse::<Token![for]>()?.span;
            written.push_str(" for");
            loop {
                let backend: Ident = input.parse().map_err(|error| {
                    syn::Error::new(
                        next_span(input, last, &error),
                        format!(
                            "expected a backend after `{written}`, one of {}: \
                             `{}struct {ident} for sqlite;`",
                            one_of(BACKENDS),
                            written_visibility(&vis),
                        ),
                    )
                })?;
                written.push_str(&format!(" {backend}"));
                last = backend.span();
                backends.push(backend);
                if !input.peek(Token![,]) {
                    break;
                }
                last = input.parse::<Token![,]>()?.span;
                written.push(',');
            }
        }
        input.parse::<Token![;]>().map_err(|error| {
            syn::Error::new(
                next_span(input, last, &error),
                format!(
                    "expected `;` after `{written}`: the header `{written};` comes first, then \
                     the routes"
                ),
            )
        })?;
        let mut routes = Vec::new();
        while !input.is_empty() {
            let mut route: RouteInput = input.parse()?;
            route.index = routes.len();
            routes.push(route);
        }
        Ok(Self {
            attrs,
            vis,
            ident,
            backends,
            routes,
        })
    }
}

/// `pub ` or `pub(crate) ` as written, for messages that quote the header.
fn written_visibility(vis: &Visibility) -> String {
    match vis {
        Visibility::Inherited => String::new(),
        vis => format!("{} ", vis.to_token_stream().to_string().replace(" (", "(")),
    }
}

/// Where to report what is missing at `input`: its next token, or `last` (the token before) at
/// the end of the input, where syn would point at the whole macro call.
fn next_span(input: ParseStream<'_>, last: Span, error: &syn::Error) -> Span {
    if input.is_empty() { last } else { error.span() }
}

impl Parse for RouteInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let pattern: PatternInput = input.parse()?;
        let written = pattern.written();
        let arrow = input.parse::<Token![=>]>().map_err(|error| {
            let message = format!(
                "expected `=>` after `{written}`, then its reactors: \
                 `{written} => trigger: [reactor];`"
            );
            if input.is_empty() {
                syn::Error::new_spanned(&pattern, message)
            } else {
                syn::Error::new(error.span(), message)
            }
        })?;
        if input.is_empty() {
            return Err(syn::Error::new(
                arrow.spans[1],
                format!(
                    "expected the reactors of `{written}` after `=>`: \
                     `{written} => trigger: [reactor];`"
                ),
            ));
        }
        let mut steps = Vec::new();
        loop {
            let step: StepInput = input.parse()?;
            let list = step.bracket_span;
            steps.push(step);
            if input.peek(Token![;]) {
                input.parse::<Token![;]>()?;
                break;
            }
            if input.peek(Token![,]) {
                let comma: Token![,] = input.parse()?;
                if input.peek(Token![;]) {
                    input.parse::<Token![;]>()?;
                    break;
                }
                if input.is_empty() {
                    return Err(syn::Error::new(
                        comma.span,
                        "expected `;` to end the route, or another reactor kind after `,`",
                    ));
                }
                continue;
            }
            // `trigger: [a] async: [b]`: the next kind, without the comma before it.
            let next_kind = if input.peek(Token![async]) {
                Some(ASYNC.to_owned())
            } else if input.peek(Ident) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
                Some(input.fork().parse::<Ident>()?.to_string())
            } else {
                None
            };
            return Err(match next_kind {
                Some(kind) => syn::Error::new(
                    input.span(),
                    format!(
                        "expected `,` before `{kind}`: separate the reactor kinds of a route \
                         with commas, like `trigger: [a], async: [b];`"
                    ),
                ),
                None => syn::Error::new(list, "expected `;` after this list to end the route"),
            });
        }
        Ok(Self {
            index: 0,
            pattern,
            steps,
        })
    }
}

impl Parse for PatternInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Token![*]) {
            return Ok(PatternInput::All(input.parse()?));
        }
        let mut path = Path {
            leading_colon: input.parse()?,
            segments: Punctuated::new(),
        };
        loop {
            let segment = input.call(Ident::parse_any_ident)?;
            path.segments.push_value(segment.into());
            if !input.peek(Token![::]) {
                return Ok(PatternInput::Event(path));
            }
            let colons: Token![::] = input.parse()?;
            if input.peek(Token![*]) {
                return Ok(PatternInput::Aggregate(path, input.parse()?));
            }
            path.segments.push_punct(colons);
        }
    }
}

/// `Ident::parse_any` without importing `syn::ext::IdentExt` at every call site.
trait ParseAnyIdent {
    fn parse_any_ident(input: ParseStream<'_>) -> syn::Result<Ident>;
}

impl ParseAnyIdent for Ident {
    fn parse_any_ident(input: ParseStream<'_>) -> syn::Result<Ident> {
        use syn::ext::IdentExt;
        Ident::parse_any(input).map_err(|error| {
            syn::Error::new(
                error.span(),
                "expected an event type (`task::Completed`), an aggregate's events \
                 (`Task::*`) or every event (`*`)",
            )
        })
    }
}

impl Parse for StepInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let (kind, kind_span) = if input.peek(Token![async]) {
            let token: Token![async] = input.parse()?;
            (Kind::Async, token.span)
        } else {
            let ident: Ident = input.parse().map_err(|error| {
                syn::Error::new(
                    error.span(),
                    format!(
                        "expected a reactor kind, one of {}, then its reactors: \
                         `trigger: [reactor]`",
                        one_of(&[TRIGGER, ASYNC, PROJECT, SUBSCRIBE])
                    ),
                )
            })?;
            let kind = match ident.to_string().as_str() {
                TRIGGER => Kind::Trigger,
                PROJECT => Kind::Project,
                SUBSCRIBE => Kind::Subscribe,
                other => {
                    return Err(syn::Error::new(
                        ident.span(),
                        format!(
                            "unknown reactor kind `{other}`, expected one of {}: `trigger` runs \
                             in the write transaction, `async` as a job after commit, `project` \
                             in the transaction and on projection rebuilds, `subscribe` in the \
                             order of a subscription's feed, after commit",
                            one_of(&[TRIGGER, ASYNC, PROJECT, SUBSCRIBE])
                        ),
                    ));
                }
            };
            (kind, ident.span())
        };
        let name = kind.name();
        let colon = input.parse::<Token![:]>().map_err(|error| {
            syn::Error::new(
                next_span(input, kind_span, &error),
                format!("expected `:` after `{name}`: `{name}: [reactor]`"),
            )
        })?;
        if !input.peek(token::Bracket) {
            // `trigger: notify`: teach the brackets with the reactor as written.
            if !input.is_empty() && input.fork().parse::<Path>().is_ok() {
                let path: Path = input.parse()?;
                return Err(syn::Error::new_spanned(
                    &path,
                    format!(
                        "the reactors of `{name}` are a list in brackets: write `{name}: [{}]`",
                        type_name(&path)
                    ),
                ));
            }
            let span = if input.is_empty() {
                colon.span
            } else {
                input.span()
            };
            return Err(syn::Error::new(
                span,
                format!("expected the reactors of `{name}` in brackets: `{name}: [reactor]`"),
            ));
        }
        let content;
        let bracket = bracketed!(content in input);
        let mut reactors = Vec::new();
        while !content.is_empty() {
            reactors.push(content.parse::<ReactorInput>()?);
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>().map_err(|error| {
                syn::Error::new(
                    error.span(),
                    format!(
                        "expected `,` between the reactors of `{name}`: `{name}: [first, second]`"
                    ),
                )
            })?;
        }
        Ok(Self {
            kind,
            kind_span,
            reactors,
            bracket_span: bracket.span.join(),
        })
    }
}

impl Parse for ReactorInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let path = input.parse::<Path>().map_err(|error| {
            syn::Error::new(
                error.span(),
                "expected a reactor: the path of a function, like `notify` or \
                 `reactors::notify`",
            )
        })?;
        if !input.peek(Token![->]) {
            return Ok(Self {
                path,
                creates: None,
            });
        }
        let arrow: Token![->] = input.parse()?;
        let name = reactor_name(&path);
        if !input.peek(token::Bracket) {
            let span = if input.is_empty() {
                arrow.spans[1]
            } else {
                input.span()
            };
            let example = match input.fork().parse::<Path>() {
                Ok(event) => type_name(&event),
                Err(_) => "Unpinned".to_owned(),
            };
            return Err(syn::Error::new(
                span,
                format!(
                    "the events `{name}` may create are a list in brackets: write \
                     `{name} -> [{example}]`"
                ),
            ));
        }
        let content;
        let bracket = bracketed!(content in input);
        let mut events = Vec::new();
        while !content.is_empty() {
            events.push(content.parse::<Path>().map_err(|error| {
                syn::Error::new(
                    error.span(),
                    format!("expected an event `{name}` may create, like `{name} -> [Unpinned]`"),
                )
            })?);
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>().map_err(|error| {
                syn::Error::new(
                    error.span(),
                    format!(
                        "expected `,` between the events `{name}` may create: \
                         `{name} -> [Unpinned, PinMoved]`"
                    ),
                )
            })?;
        }
        Ok(Self {
            path,
            creates: Some(CreatesInput {
                arrow,
                events,
                bracket_span: bracket.span.join(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::input::names_of;

    #[test]
    fn the_grammar_reads_every_kind_of_route() {
        let input: DispatcherInput = syn::parse_quote! {
            /// The app's routes.
            pub struct AppDispatcher for postgres, sqlite;
            task::Completed => trigger: [record_activity], async: [notify_creator];
            Subscription::* => async: [forward_to_warehouse],;
            * => project: [feed::append, Feed::call], subscribe: [search_index];
        };
        assert_eq!(input.ident, "AppDispatcher");
        assert_eq!(input.backends.len(), 2);
        let written: Vec<String> = input.routes.iter().map(|r| r.pattern.written()).collect();
        assert_eq!(written, ["task::Completed", "Subscription::*", "*"]);
        assert_eq!(names_of(&input.routes[0], Kind::Async), ["notify_creator"]);
        assert_eq!(
            names_of(&input.routes[2], Kind::Project),
            ["feed::append", "Feed::call"]
        );
        assert_eq!(
            names_of(&input.routes[2], Kind::Subscribe),
            ["search_index"]
        );
    }

    #[test]
    fn a_reactor_declares_the_events_it_may_create() {
        let input: DispatcherInput = syn::parse_quote! {
            struct D;
            Pinned => trigger: [unpin_other_posts -> [Unpinned, board::PinMoved,], audit];
            Pinged => async: [pong -> [Ponged]];
        };
        let creates = |route: usize, reactor: usize| -> Vec<String> {
            let step = &input.routes[route].steps[0];
            step.reactors[reactor]
                .creates
                .iter()
                .flat_map(|creates| creates.events.iter().map(type_name))
                .collect()
        };
        assert_eq!(creates(0, 0), ["Unpinned", "board::PinMoved"]);
        assert!(input.routes[0].steps[0].reactors[1].creates.is_none());
        assert_eq!(creates(1, 0), ["Ponged"]);
        assert_eq!(
            names_of(&input.routes[0], Kind::Trigger),
            ["unpin_other_posts", "audit"]
        );
    }

    fn parse_error(input: &str) -> String {
        match syn::parse_str::<DispatcherInput>(input) {
            Ok(_) => panic!("`{input}` parsed"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn parse_errors_name_what_was_written() {
        for (input, expected) in [
            (
                "Completed => trigger: [a];",
                "a dispatcher starts by naming its type",
            ),
            (
                "pub struct D for sqlite Completed => trigger: [a];",
                "expected `;` after `pub struct D for sqlite`",
            ),
            (
                "struct D for; Completed => trigger: [a];",
                "expected a backend after `struct D for`",
            ),
            (
                "struct D; Completed trigger: [a];",
                "expected `=>` after `Completed`",
            ),
            (
                "struct D; Completed => trigger: [a] async: [b];",
                "expected `,` before `async`",
            ),
            (
                "struct D; Completed => trigger: [a] project: [b];",
                "expected `,` before `project`",
            ),
            (
                "struct D; Completed => trigger: [a] Task::* => async: [b];",
                "expected `;` after this list",
            ),
            (
                "struct D; Completed => trigger: [a]",
                "expected `;` after this list",
            ),
            (
                "struct D; Completed => trigger: a;",
                "the reactors of `trigger` are a list in brackets: write `trigger: [a]`",
            ),
            (
                "struct D; Completed => sync: [a];",
                "unknown reactor kind `sync`",
            ),
            (
                "struct D; Completed => trigger: [a b];",
                "expected `,` between the reactors of `trigger`",
            ),
            (
                "struct D; Pinned => trigger: [unpin -> Unpinned];",
                "the events `unpin` may create are a list in brackets: write `unpin -> [Unpinned]`",
            ),
            (
                "struct D; Pinned => trigger: [unpin -> [Unpinned PinMoved]];",
                "expected `,` between the events `unpin` may create",
            ),
            (
                "struct D; Pinned => trigger: [unpin -> [42]];",
                "expected an event `unpin` may create",
            ),
        ] {
            let error = parse_error(input);
            assert!(error.starts_with(expected), "`{input}`: {error}");
        }
    }
}
