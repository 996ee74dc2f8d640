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

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Path, Token, Visibility, bracketed, token};

use crate::attr::{Errors, one_of, type_name};
use crate::backend::Backend;
use crate::symbol::{ASYNC, BACKENDS, PROJECT, TRIGGER};

/// The whole macro input.
pub(crate) struct DispatcherInput {
    attrs: Vec<Attribute>,
    vis: Visibility,
    ident: Ident,
    backends: Vec<Ident>,
    routes: Vec<RouteInput>,
}

/// `pattern => kind: [reactors], ...;`
pub(crate) struct RouteInput {
    /// Its position in the dispatcher, naming its generated items.
    index: usize,
    pattern: PatternInput,
    steps: Vec<StepInput>,
}

/// What a route matches.
#[derive(Clone)]
pub(crate) enum PatternInput {
    /// `task::Completed`
    Event(Path),
    /// `Task::*`
    Aggregate(Path, Token![*]),
    /// `*`
    All(Token![*]),
}

/// `trigger: [a, b -> [Unpinned]]`
pub(crate) struct StepInput {
    kind: Kind,
    kind_span: Span,
    reactors: Vec<ReactorInput>,
    bracket_span: Span,
}

/// `unpin_other_posts` or `unpin_other_posts -> [Unpinned, PinMoved]`
pub(crate) struct ReactorInput {
    path: Path,
    creates: Option<CreatesInput>,
}

/// `-> [Unpinned, PinMoved]`: the events a reactor may create.
pub(crate) struct CreatesInput {
    arrow: Token![->],
    events: Vec<Path>,
    bracket_span: Span,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Trigger,
    Async,
    Project,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Trigger => TRIGGER,
            Kind::Async => ASYNC,
            Kind::Project => PROJECT,
        }
    }
}

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
                        one_of(&[TRIGGER, ASYNC, PROJECT])
                    ),
                )
            })?;
            let kind = match ident.to_string().as_str() {
                TRIGGER => Kind::Trigger,
                PROJECT => Kind::Project,
                other => {
                    return Err(syn::Error::new(
                        ident.span(),
                        format!(
                            "unknown reactor kind `{other}`, expected one of {}: `trigger` runs \
                             in the write transaction, `async` as a job after commit, `project` \
                             in the transaction and on projection rebuilds",
                            one_of(&[TRIGGER, ASYNC, PROJECT])
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

impl PatternInput {
    /// The pattern as written, to compare routes.
    fn written(&self) -> String {
        match self {
            PatternInput::Event(path) => type_name(path),
            PatternInput::Aggregate(path, _) => format!("{}::*", type_name(path)),
            PatternInput::All(_) => "*".to_owned(),
        }
    }

    /// The first and last spans of the path a route names, to underline it as written.
    fn path_spans(path: &Path) -> (Span, Span) {
        let first = path
            .leading_colon
            .as_ref()
            .map_or_else(|| path.segments[0].ident.span(), |colon| colon.spans[0]);
        (first, path.segments[path.segments.len() - 1].ident.span())
    }

    /// The path a route names, the trait that checks it, the bound it checks and the witness.
    fn check_parts(&self, index: usize) -> Option<(&Path, Ident, TokenStream, TokenStream)> {
        let (path, check, bound, witness) = match self {
            PatternInput::Event(path) => (
                path,
                "__EsEventRoute",
                quote!(::es_core::Event),
                quote!(<T as ::es_core::Event>::Aggregate),
            ),
            PatternInput::Aggregate(path, _) => (
                path,
                "__EsAggregateRoute",
                quote!(::es_core::Aggregate),
                quote!(<T as ::es_core::Aggregate>::Id),
            ),
            PatternInput::All(_) => return None,
        };
        let check = Ident::new(&format!("{check}{index}"), Self::path_spans(path).1);
        Some((path, check, bound, witness))
    }

    /// The type route `index` names, as generated code uses it (empty for `*`).
    ///
    /// `Completed` is used as
    /// `<<Completed as __EsEventRoute0>::Witness as __EsRoute<Completed>>::Type`, where
    /// `__EsEventRoute0` ([`Self::check`]) is implemented for every event with `Witness` its
    /// aggregate, and `__EsRoute` ([`route_types`]) is the identity on its parameter. For an
    /// event that is `Completed`. For a type that is not an event, `Witness` fails, once, at the
    /// pattern (`Task: Event` is not satisfied), and leaves an unknown type behind, so that rustc
    /// does not report the route's other uses of `Task` (its reactors' signatures,
    /// `Recorded<Task>`, `Task::TAG`) on top of it. The same for `Task::*`, with `Witness` the
    /// aggregate's id.
    fn checked(&self, index: usize) -> TokenStream {
        let Some((path, check, _, _)) = self.check_parts(index) else {
            return TokenStream::new();
        };
        let (first, last) = Self::path_spans(path);
        let route = Ident::new(ROUTE_TYPE, last);
        // The failed bound is reported at `<Task as __EsEventRoute0>::Witness`: from `<` (the
        // path's first span) to `Witness` (its last).
        let open = quote_spanned!(first=> <);
        quote_spanned! {last=>
            <#open #path as #check>::Witness as #route<#path>>::Type
        }
    }

    /// The trait of [`Self::checked`] for route `index`, spanned at the path's last segment: the
    /// error's note, "required for `Task` to implement `__EsEventRoute0`", points there.
    fn check(&self, index: usize) -> TokenStream {
        let Some((path, check, bound, witness)) = self.check_parts(index) else {
            return TokenStream::new();
        };
        quote_spanned! {Self::path_spans(path).1=>
            trait #check {
                type Witness;
            }
            impl<T: #bound> #check for T {
                type Witness = #witness;
            }
        }
    }
}

/// The identity trait of [`PatternInput::checked`].
const ROUTE_TYPE: &str = "__EsRoute";

/// The definitions of the local traits of [`PatternInput::checked`].
fn route_types(routes: &[RouteInput]) -> TokenStream {
    if routes
        .iter()
        .all(|route| matches!(route.pattern, PatternInput::All(_)))
    {
        return TokenStream::new();
    }
    let route = Ident::new(ROUTE_TYPE, Span::call_site());
    let checks = routes
        .iter()
        .enumerate()
        .map(|(index, route)| route.pattern.check(index));
    quote! {
        trait #route<E> {
            type Type;
        }
        impl<W, E> #route<E> for W {
            type Type = E;
        }
        #(#checks)*
    }
}

/// A reactor's name as recorded in jobs and routes: its path as written.
fn reactor_name(path: &Path) -> String {
    type_name(path)
}

pub(crate) fn expand(input: &DispatcherInput) -> Result<TokenStream, syn::Error> {
    check(input)?;
    Ok(generate(input))
}

/// Every cross-route rule, reported together.
fn check(input: &DispatcherInput) -> Result<(), syn::Error> {
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

/// The events a reactor declares it creates: only triggers and async reactors create events, a
/// list names at least one event, each once.
fn check_creates(kind: Kind, reactor: &ReactorInput, errors: &mut Errors) {
    let Some(creates) = &reactor.creates else {
        return;
    };
    let name = reactor_name(&reactor.path);
    if kind == Kind::Project {
        errors.push(syn::Error::new(
            creates.arrow.spans[0],
            format!(
                "projection `{name}` cannot create events: a projection only writes its read \
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

fn generate(input: &DispatcherInput) -> TokenStream {
    let DispatcherInput {
        attrs,
        vis,
        ident,
        backends,
        routes,
    } = input;
    let route_descriptions = routes.iter().map(describe_route);
    let route_types = route_types(routes);
    let impls = Backend::chosen(backends).map(|chosen| {
        let Backend {
            with, connection, ..
        } = chosen;
        let dispatch = routes
            .iter()
            .map(|route| dispatch_route(route, &connection));
        let run_job = routes.iter().map(|route| job_route(route, &connection));
        let project = routes.iter().map(|route| project_route(route, &connection));
        quote! {
            #with! {
                #[automatically_derived]
                impl ::es_diesel::Dispatch<#connection> for #ident {
                    fn dispatch(
                        &self,
                        __ctx: &mut ::es_diesel::TriggerContext<'_, #connection>,
                        __event: &::es_diesel::__private::Dispatched<'_>,
                    ) -> ::core::result::Result<(), ::es_core::Error> {
                        #(#dispatch)*
                        ::core::result::Result::Ok(())
                    }

                    fn project(
                        &self,
                        __conn: &mut #connection,
                        __projection: &str,
                        __event: &::es_diesel::AnyEvent,
                    ) -> ::core::result::Result<(), ::es_core::Error> {
                        #(#project)*
                        ::core::result::Result::Ok(())
                    }

                    fn run_job(
                        &self,
                        __ctx: &mut ::es_diesel::JobContext<'_, #connection>,
                    ) -> ::core::result::Result<(), ::es_core::Error> {
                        #(#run_job)*
                        ::core::result::Result::Err(__ctx.unrouted())
                    }

                    fn routes(&self) -> &'static [::es_core::Route] {
                        #ident::ROUTES
                    }
                }
            }
        }
    });
    quote! {
        #(#attrs)*
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #ident;

        const _: () = {
            #route_types

            #[automatically_derived]
            impl #ident {
                /// The routes of this dispatcher, as declared: what the event catalog
                /// (`es_core::catalog`) documents.
                pub const ROUTES: &'static [::es_core::Route] = &[#(#route_descriptions),*];
            }

            #(#impls)*
        };
    }
}

fn reactors_of(route: &RouteInput, kind: Kind) -> impl Iterator<Item = &ReactorInput> {
    route
        .steps
        .iter()
        .filter(move |step| step.kind == kind)
        .flat_map(|step| &step.reactors)
}

fn names_of(route: &RouteInput, kind: Kind) -> Vec<String> {
    reactors_of(route, kind)
        .map(|reactor| reactor_name(&reactor.path))
        .collect()
}

/// `::es_core::Reactor { name, creates }` of each reactor of `kind`; each created event is checked
/// to be an event, at its path.
fn describe_reactors(route: &RouteInput, kind: Kind) -> Vec<TokenStream> {
    reactors_of(route, kind)
        .map(|reactor| {
            let name = reactor_name(&reactor.path);
            let creates = reactor.creates.iter().flat_map(|creates| &creates.events).map(
                |event| quote_spanned!(event.span()=> ::es_core::__private::event_ref::<#event>()),
            );
            quote!(::es_core::Reactor { name: #name, creates: &[#(#creates),*] })
        })
        .collect()
}

fn describe_route(route: &RouteInput) -> TokenStream {
    let ty = route.pattern.checked(route.index);
    let pattern = match &route.pattern {
        PatternInput::Event(_) => quote! {
            ::es_core::Pattern::Event {
                tag: <#ty as ::es_core::Event>::TAG,
                events_table: <<#ty as ::es_core::Event>::Aggregate as ::es_core::Aggregate>::EVENTS_TABLE,
            }
        },
        PatternInput::Aggregate(..) => quote! {
            ::es_core::Pattern::Aggregate {
                name: <#ty as ::es_core::Aggregate>::NAME,
                events_table: <#ty as ::es_core::Aggregate>::EVENTS_TABLE,
            }
        },
        PatternInput::All(_) => quote!(::es_core::Pattern::All),
    };
    let triggers = describe_reactors(route, Kind::Trigger);
    let asyncs = describe_reactors(route, Kind::Async);
    let projections = names_of(route, Kind::Project);
    quote! {
        ::es_core::Route {
            pattern: #pattern,
            triggers: &[#(#triggers),*],
            asyncs: &[#(#asyncs),*],
            projections: &[#(#projections),*],
        }
    }
}

/// The type a reactor of `route` receives, and how to get it from the context.
fn input_type(route: &RouteInput) -> TokenStream {
    let ty = route.pattern.checked(route.index);
    match &route.pattern {
        PatternInput::Event(_) => quote!(::es_diesel::Recorded<'_, #ty>),
        PatternInput::Aggregate(..) => quote! {
            &::es_core::RecordedEvent<<#ty as ::es_core::Aggregate>::Id>
        },
        PatternInput::All(_) => quote!(&::es_diesel::AnyEvent),
    }
}

/// `let __reactor: fn(...) = path;` spanned at the path, so a wrong signature is reported there.
/// Being spanned there, clippy takes the type for the user's: its checked event type
/// ([`PatternInput::checked`]) is no complexity of theirs.
fn coerce(path: &Path, context: TokenStream, input: &TokenStream) -> TokenStream {
    quote_spanned! {path.span()=>
        #[allow(clippy::type_complexity)]
        let __reactor: fn(
            #context,
            #input,
        ) -> ::core::result::Result<(), ::es_diesel::ReactorError> = #path;
    }
}

fn dispatch_route(route: &RouteInput, connection: &TokenStream) -> TokenStream {
    let ty = route.pattern.checked(route.index);
    let input = input_type(route);
    let steps = route.steps.iter().flat_map(|step| {
        step.reactors
            .iter()
            .map(move |reactor| (step.kind, &reactor.path))
    });
    let calls: Vec<TokenStream> = steps
        .map(|(kind, reactor)| {
            let name = reactor_name(reactor);
            match kind {
                Kind::Trigger => {
                    let coerce = coerce(
                        reactor,
                        quote!(&mut ::es_diesel::TriggerContext<'_, #connection>),
                        &input,
                    );
                    quote! {
                        __ctx.run_trigger(#name, __event, |__ctx| {
                            #coerce
                            __reactor(__ctx, __input)
                        })?;
                    }
                }
                Kind::Async => quote!(__ctx.enqueue(#name, __event);),
                Kind::Project => {
                    let coerce = coerce(reactor, quote!(&mut #connection), &input);
                    quote! {
                        __ctx.run_projection(#name, __event, |__conn| {
                            #coerce
                            __reactor(__conn, __input)
                        })?;
                    }
                }
            }
        })
        .collect();
    match &route.pattern {
        PatternInput::Event(_) => quote! {
            __event.typed::<#ty, ()>(|__input| {
                #(#calls)*
                ::core::result::Result::Ok(())
            })?;
        },
        PatternInput::Aggregate(..) => quote! {
            if let ::core::option::Option::Some(__input) = __event.record_of::<#ty>() {
                #(#calls)*
            }
        },
        PatternInput::All(_) => {
            let needs_input = route.steps.iter().any(|step| step.kind != Kind::Async);
            let input = needs_input.then(|| {
                quote! {
                    let __any = (__event.erased)();
                    let __input = &__any;
                }
            });
            quote! {
                {
                    #input
                    #(#calls)*
                }
            }
        }
    }
}

fn job_route(route: &RouteInput, connection: &TokenStream) -> TokenStream {
    let ty = route.pattern.checked(route.index);
    let input = input_type(route);
    let reactors = reactors_of(route, Kind::Async).map(|reactor| &reactor.path);
    let arms: Vec<TokenStream> = reactors
        .map(|reactor| {
            let name = reactor_name(reactor);
            let coerce = coerce(
                reactor,
                quote!(&mut ::es_diesel::JobContext<'_, #connection>),
                &input,
            );
            let run = match &route.pattern {
                PatternInput::Event(_) => quote! {
                    if let ::core::option::Option::Some(__record) =
                        __ctx.load::<<#ty as ::es_core::Event>::Aggregate>()?
                    {
                        if <#ty as ::es_core::Event>::has_tag(&__record.event_type) {
                            let __event = <#ty as ::es_core::Event>::decode(&__record)?;
                            let __input = ::es_diesel::Recorded { event: &__event, record: &__record };
                            return __ctx.run(#name, &__record.event_type, |__ctx| {
                                #coerce
                                __reactor(__ctx, __input)
                            });
                        }
                    }
                },
                PatternInput::Aggregate(..) => quote! {
                    if let ::core::option::Option::Some(__record) = __ctx.load::<#ty>()? {
                        let __input = &__record;
                        return __ctx.run(#name, &__record.event_type, |__ctx| {
                            #coerce
                            __reactor(__ctx, __input)
                        });
                    }
                },
                PatternInput::All(_) => quote! {
                    if let ::core::option::Option::Some(__any) = __ctx.load_any()? {
                        let __input = &__any;
                        return __ctx.run(#name, &__any.event_type, |__ctx| {
                            #coerce
                            __reactor(__ctx, __input)
                        });
                    }
                },
            };
            quote! {
                if __ctx.job().reactor == #name {
                    #run
                }
            }
        })
        .collect();
    quote!(#(#arms)*)
}

fn project_route(route: &RouteInput, connection: &TokenStream) -> TokenStream {
    let ty = route.pattern.checked(route.index);
    let input = input_type(route);
    let handlers = reactors_of(route, Kind::Project).map(|reactor| &reactor.path);
    let arms: Vec<TokenStream> = handlers
        .map(|handler| {
            let name = reactor_name(handler);
            let coerce = coerce(handler, quote!(&mut #connection), &input);
            let at = quote!((&__event.events_table, __event.id, &__event.event_type));
            let run = match &route.pattern {
                PatternInput::Event(_) => quote! {
                    ::es_diesel::__private::typed_from_any::<#ty>(__event, |__input| {
                        ::es_diesel::__private::run_projection(__conn, #name, #at, |__conn| {
                            #coerce
                            __reactor(__conn, __input)
                        })
                    })?;
                },
                PatternInput::Aggregate(..) => quote! {
                    if let ::core::option::Option::Some(__record) = __event.record_of::<#ty>() {
                        let __input = &__record;
                        ::es_diesel::__private::run_projection(__conn, #name, #at, |__conn| {
                            #coerce
                            __reactor(__conn, __input)
                        })?;
                    }
                },
                PatternInput::All(_) => quote! {
                    let __input = __event;
                    ::es_diesel::__private::run_projection(__conn, #name, #at, |__conn| {
                        #coerce
                        __reactor(__conn, __input)
                    })?;
                },
            };
            quote! {
                if __projection == #name {
                    #run
                }
            }
        })
        .collect();
    quote!(#(#arms)*)
}

impl ToTokens for PatternInput {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            PatternInput::Event(path) => path.to_tokens(tokens),
            PatternInput::Aggregate(path, star) => {
                path.to_tokens(tokens);
                star.to_tokens(tokens);
            }
            PatternInput::All(star) => star.to_tokens(tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_reads_every_kind_of_route() {
        let input: DispatcherInput = syn::parse_quote! {
            /// The app's routes.
            pub struct AppDispatcher for postgres, sqlite;
            task::Completed => trigger: [record_activity], async: [notify_creator];
            Subscription::* => async: [forward_to_warehouse],;
            * => project: [feed::append, Feed::call];
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
        assert!(check(&input).is_ok());
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
        assert!(check(&input).is_ok());
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

    #[test]
    fn a_typed_route_goes_through_its_check() {
        let input: DispatcherInput = syn::parse_quote! {
            struct D;
            * => async: [a];
            task::Completed => trigger: [b];
            Task::* => project: [c];
        };
        let types: Vec<String> = input
            .routes
            .iter()
            .map(|route| type_name(&route.pattern.checked(route.index)))
            .collect();
        assert_eq!(
            types,
            [
                "",
                "<<task::Completed as __EsEventRoute1>::Witness as __EsRoute<task::Completed>>::Type",
                "<<Task as __EsAggregateRoute2>::Witness as __EsRoute<Task>>::Type",
            ]
        );
    }
}
