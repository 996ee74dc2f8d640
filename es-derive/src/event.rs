//! `#[derive(Event)]`: the model of an event struct, its checks, and the generated code.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, LitStr, Meta, Path, Token, Type};

use crate::attr::{Errors, check_once, doc_comment, one_of, type_name};
use crate::case::{is_tag, snake_case};
use crate::symbol::{
    AGGREGATE, ALIAS, CREATES, DATA_ATTRIBUTES, DESTROYS, EVENT, EVENT_KEYS, TAG,
};

/// What the derive understood of an event struct.
struct EventModel<'a> {
    ident: &'a Ident,
    aggregate: Path,
    tag: String,
    aliases: Vec<String>,
    creates: bool,
    destroys: bool,
    doc: String,
    attributes: Vec<DataAttribute<'a>>,
}

struct DataAttribute<'a> {
    ident: &'a Ident,
    ty: &'a Type,
    doc: String,
}

pub(crate) fn expand(input: &DeriveInput) -> Result<TokenStream, syn::Error> {
    let model = parse(input)?;
    Ok(generate(&model))
}

fn parse(input: &DeriveInput) -> Result<EventModel<'_>, syn::Error> {
    let mut errors = Errors::default();
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named.named.iter().collect(),
            Fields::Unit => Vec::new(),
            Fields::Unnamed(unnamed) => {
                errors.error(
                    unnamed,
                    "an event's data attributes need names: use a struct with named fields, \
                     like `struct Completed { note: String }`",
                );
                Vec::new()
            }
        },
        Data::Enum(data) => {
            errors.error(
                data.enum_token,
                "`#[derive(Event)]` only supports structs: write one struct per event, each \
                 with its own `impl Apply`",
            );
            Vec::new()
        }
        Data::Union(data) => {
            errors.error(data.union_token, "`#[derive(Event)]` only supports structs");
            Vec::new()
        }
    };
    if !input.generics.params.is_empty() {
        errors.error(
            &input.generics,
            "an event cannot be generic: its type tag must name exactly one stored shape",
        );
    }

    let aggregate = parse_aggregate(&input.attrs, &input.ident, &mut errors);
    let options = parse_event_options(&input.attrs, &mut errors);
    for attr in &input.attrs {
        if attr.path().is_ident(DATA_ATTRIBUTES) {
            errors.error(
                attr,
                "`#[data_attributes]` marks fields: put it on each field that is stored in the \
                 event's `data`",
            );
        }
    }

    let mut attributes = Vec::with_capacity(fields.len());
    for field in fields {
        let ident = field.ident.as_ref().expect("named fields have identifiers");
        let markers: Vec<&Attribute> = field
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident(DATA_ATTRIBUTES))
            .collect();
        match markers.as_slice() {
            [] => errors.error(
                ident,
                format!(
                    "field `{ident}` is not marked `#[data_attributes]`; every field of an event \
                     is stored in its `data` JSON, so write `#[data_attributes] {ident}: ...` \
                     (who and from where belongs in `Metadata`, not in a field)"
                ),
            ),
            [marker, rest @ ..] => {
                if !matches!(marker.meta, Meta::Path(_)) {
                    errors.error(
                        &marker.meta,
                        "`#[data_attributes]` takes no arguments: use serde's attributes \
                         (`#[serde(default)]`, `#[serde(rename = \"...\")]`) to shape the JSON",
                    );
                }
                for duplicate in rest {
                    errors.error(duplicate, "duplicate `#[data_attributes]`");
                }
            }
        }
        attributes.push(DataAttribute {
            ident,
            ty: &field.ty,
            doc: doc_comment(&field.attrs),
        });
    }

    errors.finish()?;
    let aggregate = aggregate.expect("a missing aggregate is reported as an error");
    let aggregate_name = aggregate
        .segments
        .last()
        .map(|segment| snake_case(&segment.ident.to_string()))
        .unwrap_or_default();
    let tag = options
        .tag
        .map(|tag| tag.value())
        .unwrap_or_else(|| format!("{aggregate_name}.{}", snake_case(&input.ident.to_string())));
    Ok(EventModel {
        ident: &input.ident,
        aggregate,
        tag,
        aliases: options.aliases.iter().map(LitStr::value).collect(),
        creates: options.creates,
        destroys: options.destroys,
        doc: doc_comment(&input.attrs),
        attributes,
    })
}

/// `#[aggregate(Task)]`: exactly one, with exactly one path.
fn parse_aggregate(attrs: &[Attribute], ident: &Ident, errors: &mut Errors) -> Option<Path> {
    let mut found: Option<Path> = None;
    let mut seen = false;
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(AGGREGATE)) {
        if seen {
            errors.error(
                attr,
                "duplicate `#[aggregate(...)]`: an event belongs to exactly one aggregate",
            );
            continue;
        }
        seen = true;
        let Meta::List(list) = &attr.meta else {
            errors.error(
                attr,
                "write the aggregate in parentheses: `#[aggregate(Task)]`",
            );
            continue;
        };
        match list.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated) {
            Ok(paths) => {
                let mut paths = paths.into_iter();
                match (paths.next(), paths.next()) {
                    (Some(path), None) => found = Some(path),
                    (None, _) => errors.error(
                        attr,
                        "missing the aggregate's type: write `#[aggregate(Task)]`",
                    ),
                    (Some(_), Some(extra)) => errors.error(
                        extra,
                        "an event belongs to exactly one aggregate: write one type, like \
                         `#[aggregate(Task)]`",
                    ),
                }
            }
            Err(error) => errors.push(syn::Error::new(
                error.span(),
                "expected the aggregate's type, like `#[aggregate(Task)]`",
            )),
        }
    }
    if !seen {
        errors.push(syn::Error::new(
            ident.span(),
            format!(
                "missing `#[aggregate(...)]` on event `{ident}`: say which aggregate it belongs \
                 to, like `#[aggregate(Task)]`"
            ),
        ));
    }
    found
}

#[derive(Default)]
struct EventOptions {
    tag: Option<LitStr>,
    aliases: Vec<LitStr>,
    creates: bool,
    destroys: bool,
}

/// `#[event(tag = "...", alias = "...", creates, destroys)]`, possibly over several attributes.
fn parse_event_options(attrs: &[Attribute], errors: &mut Errors) -> EventOptions {
    let mut tag: Option<LitStr> = None;
    let mut aliases: Vec<LitStr> = Vec::new();
    let mut creates: Option<Span> = None;
    let mut destroys: Option<Span> = None;
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(EVENT)) {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.clone();
            if key.is_ident(TAG) || key.is_ident(ALIAS) {
                let value: LitStr = meta.value()?.parse()?;
                if !is_tag(&value.value()) {
                    errors.error(
                        &value,
                        format!(
                            "invalid tag {:?}: a tag is identifiers separated by dots, like \
                             \"task.completed\"",
                            value.value()
                        ),
                    );
                }
                if key.is_ident(TAG) {
                    check_once(errors, &mut tag, value, &key, TAG, EVENT);
                } else {
                    aliases.push(value);
                }
            } else if key.is_ident(CREATES) {
                check_once(errors, &mut creates, key.span(), &key, CREATES, EVENT);
            } else if key.is_ident(DESTROYS) {
                check_once(errors, &mut destroys, key.span(), &key, DESTROYS, EVENT);
            } else {
                let name = quote!(#key).to_string().replace(' ', "");
                errors.error(
                    &key,
                    format!(
                        "unknown `event` key `{name}`, expected one of {}",
                        one_of(EVENT_KEYS)
                    ),
                );
                if meta.input.peek(Token![=]) {
                    meta.value()?.parse::<syn::Expr>()?;
                }
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
    if let (Some(_), Some(span)) = (creates, destroys) {
        errors.push(syn::Error::new(
            span,
            "an event cannot both create and destroy its aggregate",
        ));
    }
    EventOptions {
        tag,
        aliases,
        creates: creates.is_some(),
        destroys: destroys.is_some(),
    }
}

fn generate(model: &EventModel<'_>) -> TokenStream {
    let EventModel {
        ident,
        aggregate,
        tag,
        aliases,
        creates,
        destroys,
        doc,
        attributes,
    } = model;
    let rust_name = ident.to_string();
    let checks = attributes.iter().map(|attribute| {
        let ty = attribute.ty;
        quote_spanned!(ty.span()=> ::es_core::__private::assert_data_attribute::<#ty>();)
    });
    let descriptors = attributes.iter().map(|attribute| {
        let name = attribute.ident.to_string();
        let rust_type = type_name(attribute.ty);
        let doc = &attribute.doc;
        quote!(::es_core::AttributeDescriptor::__new(#name, #rust_type, #doc))
    });
    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::es_core::Event for #ident {
                type Aggregate = #aggregate;
                const TAG: &'static str = #tag;
                const ALIASES: &'static [&'static str] = &[#(#aliases),*];
                const CREATES: bool = #creates;
                const DESTROYS: bool = #destroys;
            }

            #(#checks)*

            ::es_core::__private::inventory::submit! {
                ::es_core::EventDescriptor::__new(
                    ::core::any::TypeId::of::<#aggregate>,
                    <#aggregate as ::es_core::Aggregate>::NAME,
                    <#aggregate as ::es_core::Aggregate>::EVENTS_TABLE,
                    #rust_name,
                    #tag,
                    &[#(#aliases),*],
                    #creates,
                    #destroys,
                    #doc,
                    &[#(#descriptors),*],
                    ::es_core::__private::apply_erased::<#ident>,
                )
            }
        };
    }
}
