//! `dispatcher!`: the grammar of the route table, its checks, and the generated `Dispatch` impls.
//!
//! ```text
//! dispatcher! {
//!     /// docs
//!     pub struct AppDispatcher;                  // or: `pub struct AppDispatcher for postgres;`
//!     task::Completed => trigger: [record_activity], async: [notify_creator];
//!     Subscription::* => async: [forward_to_warehouse];
//!     * => async: [forward_to_event_bus], project: [activity_feed];
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Path, Token, Visibility, bracketed};

use crate::attr::{Errors, one_of, type_name};
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

/// `trigger: [a, b]`
pub(crate) struct StepInput {
    kind: Kind,
    kind_span: Span,
    reactors: Vec<Path>,
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
        input.parse::<Token![struct]>().map_err(|error| {
            syn::Error::new(
                error.span(),
                "a dispatcher starts by naming its type: `pub struct AppDispatcher;`",
            )
        })?;
        let ident: Ident = input.parse()?;
        let mut backends = Vec::new();
        if input.peek(Token![for]) {
            input.parse::<Token![for]>()?;
            let list = Punctuated::<Ident, Token![,]>::parse_separated_nonempty(input)?;
            backends = list.into_iter().collect();
        }
        input.parse::<Token![;]>()?;
        let mut routes = Vec::new();
        while !input.is_empty() {
            routes.push(input.parse()?);
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

impl Parse for RouteInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let pattern = input.parse()?;
        input.parse::<Token![=>]>()?;
        let mut steps = Vec::new();
        loop {
            steps.push(input.parse()?);
            if input.peek(Token![;]) {
                input.parse::<Token![;]>()?;
                break;
            }
            input.parse::<Token![,]>().map_err(|error| {
                syn::Error::new(
                    error.span(),
                    "expected `,` before the next reactor kind, or `;` to end the route",
                )
            })?;
            if input.peek(Token![;]) {
                input.parse::<Token![;]>()?;
                break;
            }
        }
        Ok(Self { pattern, steps })
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
                        "expected a reactor kind: {}",
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
        input.parse::<Token![:]>()?;
        let content;
        let bracket = bracketed!(content in input);
        let reactors = Punctuated::<Path, Token![,]>::parse_terminated(&content)?;
        Ok(Self {
            kind,
            kind_span,
            reactors: reactors.into_iter().collect(),
            bracket_span: bracket.span.join(),
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

    fn span(&self) -> Span {
        match self {
            PatternInput::Event(path) => path.span(),
            PatternInput::Aggregate(path, _) => path.span(),
            PatternInput::All(star) => star.span,
        }
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
    for backend in &input.backends {
        if !BACKENDS.iter().any(|known| backend == known) {
            errors.error(
                backend,
                format!(
                    "unknown backend `{backend}`, expected one of {}",
                    one_of(BACKENDS)
                ),
            );
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for route in &input.routes {
        let written = route.pattern.written();
        if seen.contains(&written) {
            errors.push(syn::Error::new(
                route.pattern.span(),
                format!(
                    "route `{written}` is listed twice: put all its reactors in one route, in the \
                     order they run"
                ),
            ));
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
                let name = reactor_name(reactor);
                if names.contains(&name) {
                    errors.error(
                        reactor,
                        format!(
                            "reactor `{name}` is listed twice in this `{}`",
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

fn generate(input: &DispatcherInput) -> TokenStream {
    let DispatcherInput {
        attrs,
        vis,
        ident,
        backends,
        routes,
    } = input;
    let route_descriptions = routes.iter().map(describe_route);
    let backends_table = [
        (
            "sqlite",
            quote!(::es_diesel::__with_sqlite),
            quote!(::es_diesel::__private::diesel::sqlite::SqliteConnection),
        ),
        (
            "postgres",
            quote!(::es_diesel::__with_postgres),
            quote!(::es_diesel::__private::diesel::pg::PgConnection),
        ),
        (
            "mysql",
            quote!(::es_diesel::__with_mysql),
            quote!(::es_diesel::__private::diesel::mysql::MysqlConnection),
        ),
    ];
    let impls = backends_table
        .into_iter()
        .filter(|(name, _, _)| backends.is_empty() || backends.iter().any(|b| b == name))
        .map(|(_, with, connection)| {
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

                        fn routes(&self) -> &'static [::es_diesel::Route] {
                            __ROUTES
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
            static __ROUTES: &[::es_diesel::Route] = &[#(#route_descriptions),*];
            #(#impls)*
        };
    }
}

fn names_of(route: &RouteInput, kind: Kind) -> Vec<String> {
    route
        .steps
        .iter()
        .filter(|step| step.kind == kind)
        .flat_map(|step| step.reactors.iter().map(reactor_name))
        .collect()
}

fn describe_route(route: &RouteInput) -> TokenStream {
    let pattern = match &route.pattern {
        PatternInput::Event(event) => quote! {
            ::es_diesel::Pattern::Event {
                tag: <#event as ::es_core::Event>::TAG,
                events_table: <<#event as ::es_core::Event>::Aggregate as ::es_core::Aggregate>::EVENTS_TABLE,
            }
        },
        PatternInput::Aggregate(aggregate, _) => quote! {
            ::es_diesel::Pattern::Aggregate {
                name: <#aggregate as ::es_core::Aggregate>::NAME,
                events_table: <#aggregate as ::es_core::Aggregate>::EVENTS_TABLE,
            }
        },
        PatternInput::All(_) => quote!(::es_diesel::Pattern::All),
    };
    let triggers = names_of(route, Kind::Trigger);
    let asyncs = names_of(route, Kind::Async);
    let projections = names_of(route, Kind::Project);
    quote! {
        ::es_diesel::Route {
            pattern: #pattern,
            triggers: &[#(#triggers),*],
            asyncs: &[#(#asyncs),*],
            projections: &[#(#projections),*],
        }
    }
}

/// The type a reactor of `route` receives, and how to get it from the context.
fn input_type(route: &RouteInput) -> TokenStream {
    match &route.pattern {
        PatternInput::Event(event) => quote!(::es_diesel::Recorded<'_, #event>),
        PatternInput::Aggregate(aggregate, _) => quote! {
            &::es_core::RecordedEvent<<#aggregate as ::es_core::Aggregate>::Id>
        },
        PatternInput::All(_) => quote!(&::es_diesel::AnyEvent),
    }
}

/// `let __reactor: fn(...) = path;` spanned at the path, so a wrong signature is reported there.
fn coerce(path: &Path, context: TokenStream, input: &TokenStream) -> TokenStream {
    quote_spanned! {path.span()=>
        let __reactor: fn(
            #context,
            #input,
        ) -> ::core::result::Result<(), ::es_diesel::ReactorError> = #path;
    }
}

fn dispatch_route(route: &RouteInput, connection: &TokenStream) -> TokenStream {
    let input = input_type(route);
    let steps = route.steps.iter().flat_map(|step| {
        step.reactors
            .iter()
            .map(move |reactor| (step.kind, reactor))
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
        PatternInput::Event(event) => quote! {
            __event.typed::<#event, ()>(|__input| {
                #(#calls)*
                ::core::result::Result::Ok(())
            })?;
        },
        PatternInput::Aggregate(aggregate, _) => quote! {
            if let ::core::option::Option::Some(__input) = __event.record_of::<#aggregate>() {
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
    let input = input_type(route);
    let reactors = route
        .steps
        .iter()
        .filter(|step| step.kind == Kind::Async)
        .flat_map(|step| &step.reactors);
    let arms: Vec<TokenStream> = reactors
        .map(|reactor| {
            let name = reactor_name(reactor);
            let coerce = coerce(
                reactor,
                quote!(&mut ::es_diesel::JobContext<'_, #connection>),
                &input,
            );
            let run = match &route.pattern {
                PatternInput::Event(event) => quote! {
                    if let ::core::option::Option::Some(__record) =
                        __ctx.load::<<#event as ::es_core::Event>::Aggregate>()?
                    {
                        if <#event as ::es_core::Event>::has_tag(&__record.event_type) {
                            let __event = <#event as ::es_core::Event>::decode(&__record)?;
                            let __input = ::es_diesel::Recorded { event: &__event, record: &__record };
                            return __ctx.run(#name, &__record.event_type, |__ctx| {
                                #coerce
                                __reactor(__ctx, __input)
                            });
                        }
                    }
                },
                PatternInput::Aggregate(aggregate, _) => quote! {
                    if let ::core::option::Option::Some(__record) = __ctx.load::<#aggregate>()? {
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
    let input = input_type(route);
    let handlers = route
        .steps
        .iter()
        .filter(|step| step.kind == Kind::Project)
        .flat_map(|step| &step.reactors);
    let arms: Vec<TokenStream> = handlers
        .map(|handler| {
            let name = reactor_name(handler);
            let coerce = coerce(handler, quote!(&mut #connection), &input);
            let at = quote!((&__event.events_table, __event.id, &__event.event_type));
            let run = match &route.pattern {
                PatternInput::Event(event) => quote! {
                    ::es_diesel::__private::typed_from_any::<#event>(__event, |__input| {
                        ::es_diesel::__private::run_projection(__conn, #name, #at, |__conn| {
                            #coerce
                            __reactor(__conn, __input)
                        })
                    })?;
                },
                PatternInput::Aggregate(aggregate, _) => quote! {
                    if let ::core::option::Option::Some(__record) = __event.record_of::<#aggregate>() {
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
}
