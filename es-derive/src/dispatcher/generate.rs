//! The code `dispatcher!` generates: the `ROUTES` it declares, and one `Dispatches` impl per chosen
//! [`Backend`], which coerces each reactor to the function-pointer type of its kind so that a
//! wrong signature is reported at the reactor. Uses `input`, `route_type` and `crate::backend`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::Path;
use syn::spanned::Spanned;

use super::input::{
    DispatcherInput, Kind, PatternInput, RouteInput, names_of, reactor_name, reactors_of,
};
use super::route_type::route_types;
use crate::backend::Backend;

pub(super) fn generate(input: &DispatcherInput) -> TokenStream {
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
                impl ::es_diesel::Dispatches<#ident> for #connection {
                    fn dispatch(
                        _: &#ident,
                        __ctx: &mut ::es_diesel::TriggerContext<'_, #connection>,
                        __event: &::es_diesel::__private::Dispatched<'_>,
                    ) -> ::core::result::Result<(), ::es_core::Error> {
                        #(#dispatch)*
                        ::core::result::Result::Ok(())
                    }

                    fn project(
                        _: &#ident,
                        __conn: &mut #connection,
                        __projection: &str,
                        __event: &::es_diesel::AnyEvent,
                    ) -> ::core::result::Result<(), ::es_core::Error> {
                        #(#project)*
                        ::core::result::Result::Ok(())
                    }

                    fn run_job(
                        _: &#ident,
                        __ctx: &mut ::es_diesel::JobContext<'_, #connection>,
                    ) -> ::core::result::Result<(), ::es_core::Error> {
                        #(#run_job)*
                        ::core::result::Result::Err(__ctx.unrouted())
                    }

                    fn routes(_: &#ident) -> &'static [::es_core::Route] {
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
    let subscriptions = names_of(route, Kind::Subscribe);
    quote! {
        ::es_core::Route {
            pattern: #pattern,
            triggers: &[#(#triggers),*],
            asyncs: &[#(#asyncs),*],
            projections: &[#(#projections),*],
            subscriptions: &[#(#subscriptions),*],
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
                // A subscriber runs it after commit, in its feed's order (`project`).
                Kind::Subscribe => TokenStream::new(),
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
    if calls.iter().all(TokenStream::is_empty) {
        return TokenStream::new();
    }
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
            let needs_input = route
                .steps
                .iter()
                .any(|step| matches!(step.kind, Kind::Trigger | Kind::Project));
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
    let handlers = reactors_of(route, Kind::Project)
        .chain(reactors_of(route, Kind::Subscribe))
        .map(|reactor| &reactor.path);
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
