//! `#[derive(Event)]`: the model of an event struct, its checks, and the generated code.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Expr, ExprLit, Fields, Ident, Lit, LitStr, Meta, Path, Token,
    Type,
};

use crate::attr::{Errors, check_once, doc_comment, one_of, skip_value, string_value, type_name};
use crate::case::{is_tag, snake_case};
use crate::serde_attr::{has_serde_key, serde_field_case, serde_rename};
use crate::symbol::{
    AGGREGATE, ALIAS, CREATES, DATA_ATTRIBUTES, DESTROYS, EVENT, EVENT_KEYS, METADATA, TAG,
};

/// What the derive understood of an event struct.
struct EventModel<'a> {
    ident: &'a Ident,
    aggregate: Path,
    tag: String,
    aliases: Vec<String>,
    creates: bool,
    destroys: bool,
    /// The application metadata type of `#[event(metadata = Type)]`.
    app_metadata: Option<Type>,
    doc: String,
    attributes: Vec<DataAttribute<'a>>,
}

struct DataAttribute<'a> {
    ident: &'a Ident,
    /// Its key in the `data` JSON: the field name or its `#[serde(rename = "...")]`.
    key: String,
    ty: &'a Type,
    doc: String,
    /// Whether the field is stored through its type's own serde implementations (rather than
    /// `#[serde(with = "...")]`), so that the type must implement them.
    own_serde: bool,
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
            errors.error(
                data.union_token,
                "`#[derive(Event)]` only supports structs, like `struct Completed { ... }`",
            );
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

    let serde_through_proxy = has_serde_key(&input.attrs, &["into", "from", "try_from"]);
    let rename_all = serde_rename(&input.attrs, "rename_all");
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
                    errors.error(
                        duplicate,
                        format!("duplicate `#[data_attributes]` on field `{ident}`: mark it once"),
                    );
                }
            }
        }
        if has_serde_key(
            &field.attrs,
            &["skip", "skip_serializing", "skip_deserializing"],
        ) {
            errors.error(
                ident,
                format!(
                    "data attribute `{ident}` is skipped by serde, so replaying the event would \
                     lose it; store it, or give old events a value with `#[serde(default)]`"
                ),
            );
        }
        attributes.push(DataAttribute {
            ident,
            key: serde_rename(&field.attrs, "rename").unwrap_or_else(|| {
                let name = ident.unraw().to_string();
                match &rename_all {
                    Some(rule) => serde_field_case(rule, &name),
                    None => name,
                }
            }),
            ty: &field.ty,
            doc: doc_comment(&field.attrs),
            own_serde: !serde_through_proxy
                && !has_serde_key(
                    &field.attrs,
                    &["with", "serialize_with", "deserialize_with"],
                ),
        });
    }

    // The default tag needs the aggregate; without it, the missing aggregate is the error.
    let tag = match (&options.tag, &aggregate) {
        (Some(tag), _) => Some(tag.value()),
        (None, Some(aggregate)) => Some(default_tag(aggregate, &input.ident)),
        (None, None) => None,
    };
    if let Some(tag) = &tag {
        check_aliases(tag, &options.aliases, &mut errors);
    }
    errors.finish()?;
    let aggregate = aggregate.expect("a missing aggregate is reported as an error");
    let tag = tag.expect("the tag is known once the aggregate is");
    Ok(EventModel {
        ident: &input.ident,
        aggregate,
        tag,
        aliases: options.aliases.iter().map(LitStr::value).collect(),
        creates: options.creates,
        destroys: options.destroys,
        app_metadata: options.app_metadata,
        doc: doc_comment(&input.attrs),
        attributes,
    })
}

/// `{aggregate}.{event}` in snake case: `task.completed`.
fn default_tag(aggregate: &Path, event: &Ident) -> String {
    let aggregate_name = aggregate
        .segments
        .last()
        .map(|segment| snake_case(&segment.ident.to_string()))
        .unwrap_or_default();
    format!("{aggregate_name}.{}", snake_case(&event.to_string()))
}

/// `Task` for `#[aggregate = "Task"]`, to suggest `#[aggregate(Task)]`.
fn aggregate_hint(value: &Expr) -> String {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(value),
            ..
        }) if value.parse::<Path>().is_ok() => value.value(),
        Expr::Path(path) => type_name(path),
        _ => "Task".to_owned(),
    }
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
        let list = match &attr.meta {
            Meta::List(list) => list,
            Meta::Path(_) => {
                errors.error(
                    attr,
                    "missing the aggregate's type: write `#[aggregate(Task)]`",
                );
                continue;
            }
            Meta::NameValue(name_value) => {
                errors.error(
                    attr,
                    format!(
                        "write the aggregate's type in parentheses: `#[aggregate({})]`, not \
                         `#[aggregate = ...]`",
                        aggregate_hint(&name_value.value)
                    ),
                );
                continue;
            }
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

/// An alias is a former tag: neither the tag itself nor given twice (the registry would refuse
/// both at run time).
fn check_aliases(tag: &str, aliases: &[LitStr], errors: &mut Errors) {
    for (index, alias) in aliases.iter().enumerate() {
        let value = alias.value();
        if value == tag {
            errors.error(
                alias,
                format!(
                    "alias {value:?} is the event's tag: an alias is a former tag that still \
                     decodes to this event, so remove it"
                ),
            );
        } else if aliases[..index]
            .iter()
            .any(|earlier| earlier.value() == value)
        {
            errors.error(
                alias,
                format!("duplicate alias {value:?}: list each former tag once"),
            );
        }
    }
}

#[derive(Default)]
struct EventOptions {
    tag: Option<LitStr>,
    aliases: Vec<LitStr>,
    creates: bool,
    destroys: bool,
    app_metadata: Option<Type>,
}

/// `#[event(tag = "...", alias = "...", creates, destroys, metadata = Type)]`, possibly over
/// several attributes.
fn parse_event_options(attrs: &[Attribute], errors: &mut Errors) -> EventOptions {
    let mut tag: Option<LitStr> = None;
    let mut app_metadata: Option<Type> = None;
    let mut aliases: Vec<LitStr> = Vec::new();
    let mut creates: Option<Path> = None;
    let mut destroys: Option<Path> = None;
    // Whichever of `creates` and `destroys` comes second is the one reported.
    let mut second_of_creates_destroys: Option<Path> = None;
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(EVENT)) {
        if !matches!(attr.meta, Meta::List(_)) {
            errors.error(
                attr,
                format!(
                    "write the options of `#[event]` in parentheses, like `#[event(creates)]` or \
                     `#[event(tag = \"task.completed\")]`; its keys are {}",
                    one_of(EVENT_KEYS)
                ),
            );
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.clone();
            let name = quote!(#key).to_string().replace(' ', "");
            if key.is_ident(TAG) || key.is_ident(ALIAS) {
                let example = if key.is_ident(TAG) {
                    "task.completed"
                } else {
                    "task.finished"
                };
                let Some(value) = string_value(&meta, EVENT, &name, example, errors)? else {
                    return Ok(());
                };
                if !is_tag(&value.value()) {
                    errors.error(
                        &value,
                        format!(
                            "invalid {name} {:?}: a tag is identifiers separated by dots, like \
                             \"{example}\"",
                            value.value()
                        ),
                    );
                }
                if key.is_ident(ALIAS) {
                    aliases.push(value);
                } else if tag.is_some() {
                    errors.error(
                        &key,
                        "duplicate `event` key `tag`: an event has one tag; keep a former tag \
                         as `alias = \"...\"`",
                    );
                } else {
                    tag = Some(value);
                }
            } else if key.is_ident(CREATES) || key.is_ident(DESTROYS) {
                if let Some(value) = skip_value(&meta)? {
                    errors.error(
                        value,
                        format!("`{name}` takes no value: write `#[event({name})]`"),
                    );
                }
                let (slot, other) = if key.is_ident(CREATES) {
                    (&mut creates, &destroys)
                } else {
                    (&mut destroys, &creates)
                };
                if other.is_some() && second_of_creates_destroys.is_none() {
                    second_of_creates_destroys = Some(key.clone());
                }
                check_once(errors, slot, key.clone(), &key, &name, EVENT);
            } else if key.is_ident(METADATA) {
                if !meta.input.peek(Token![=]) {
                    let rest = skip_value(&meta)?;
                    errors.error(
                        quote!(#key #rest),
                        "`metadata` names the application metadata type its events carry: \
                         write `#[event(metadata = WebhookContext)]`",
                    );
                    return Ok(());
                }
                let ty: Type = meta.value()?.parse()?;
                check_once(errors, &mut app_metadata, ty, &key, &name, EVENT);
            } else {
                errors.error(
                    &key,
                    format!(
                        "unknown `event` key `{name}`, expected one of {}",
                        one_of(EVENT_KEYS)
                    ),
                );
                skip_value(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
    if let Some(second) = second_of_creates_destroys {
        errors.error(
            second,
            "an event cannot both create and destroy its aggregate: keep either `creates` or \
             `destroys`",
        );
    }
    EventOptions {
        tag,
        aliases,
        creates: creates.is_some(),
        destroys: destroys.is_some(),
        app_metadata,
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
        app_metadata,
        doc,
        attributes,
    } = model;
    let rust_name = ident.to_string();
    let checks = attributes
        .iter()
        .filter(|attribute| attribute.own_serde)
        .map(|attribute| {
            let ty = attribute.ty;
            quote_spanned!(ty.span()=> ::es_core::__private::assert_data_attribute::<#ty>();)
        });
    let descriptors = attributes.iter().map(|attribute| {
        let name = attribute.ident.to_string();
        let key = &attribute.key;
        let rust_type = type_name(attribute.ty);
        let doc = &attribute.doc;
        quote!(::es_core::AttributeDescriptor::__new(#name, #key, #rust_type, #doc))
    });
    // Spanned at the metadata type, where a missing `Deserialize` or `JsonSchema` is reported.
    let (check_metadata, app_metadata_descriptor) = match app_metadata {
        Some(ty) => {
            let rust_type = quote!(#ty).to_string().replace(' ', "");
            (
                quote_spanned! {ty.span()=>
                    fn check_metadata(
                        metadata: &::es_core::Metadata,
                    ) -> ::core::result::Result<(), ::es_core::__private::serde_json::Error> {
                        ::es_core::__private::check_app_metadata::<#ty>(metadata)
                    }
                },
                quote_spanned! {ty.span()=>
                    ::core::option::Option::Some(::es_core::AppMetadataDescriptor::__new(
                        #rust_type,
                        ::es_core::__private::app_metadata_schema_for::<#ty>,
                    ))
                },
            )
        }
        None => (TokenStream::new(), quote!(::core::option::Option::None)),
    };
    // Spanned at the event, where a missing `JsonSchema` is reported.
    let schema = quote_spanned!(ident.span()=> ::es_core::__private::schema_for::<#ident>);
    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::es_core::Event for #ident {
                type Aggregate = #aggregate;
                const TAG: &'static str = #tag;
                const ALIASES: &'static [&'static str] = &[#(#aliases),*];
                const CREATES: bool = #creates;
                const DESTROYS: bool = #destroys;
                #check_metadata
            }

            #(#checks)*

            // Through `Event` rather than naming the aggregate again, so that an aggregate type
            // that is not an `Aggregate` is reported once, at `#[aggregate(...)]`.
            const fn aggregate_name<E: ::es_core::Event>() -> &'static str {
                <E::Aggregate as ::es_core::Aggregate>::NAME
            }
            const fn events_table<E: ::es_core::Event>() -> &'static str {
                <E::Aggregate as ::es_core::Aggregate>::EVENTS_TABLE
            }

            ::es_core::__private::inventory::submit! {
                ::es_core::EventDescriptor::__new(
                    ::core::any::TypeId::of::<#aggregate>,
                    aggregate_name::<#ident>(),
                    events_table::<#ident>(),
                    #rust_name,
                    #tag,
                    &[#(#aliases),*],
                    #creates,
                    #destroys,
                    #doc,
                    &[#(#descriptors),*],
                    #app_metadata_descriptor,
                    ::es_core::__private::apply_erased::<#ident>,
                    #schema,
                )
            }
        };
    }
}
