//! The type each route names, as the generated code uses it: through local traits, so that a
//! pattern naming a type that is not an event (or not an aggregate) is reported once, at the
//! pattern. Uses `input`; used by `generate`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Ident, Path};

use super::input::{PatternInput, RouteInput};

impl PatternInput {
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
    pub(super) fn checked(&self, index: usize) -> TokenStream {
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
    pub(super) fn check(&self, index: usize) -> TokenStream {
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
pub(super) fn route_types(routes: &[RouteInput]) -> TokenStream {
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

#[cfg(test)]
mod tests {
    use crate::attr::type_name;
    use crate::dispatcher::input::DispatcherInput;

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
