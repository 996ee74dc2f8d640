//! `#[derive(Aggregate)]`: the model of an aggregate struct, its checks, and the generated code.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Field, Fields, Ident, LitStr, Meta, Token};

use crate::attr::{Errors, check_once, one_of};
use crate::case::{is_sql_identifier, snake_case};
use crate::symbol::{AGGREGATE, AGGREGATE_KEYS, EVENTS_TABLE, ID, NAME};

struct AggregateModel<'a> {
    ident: &'a Ident,
    id: &'a Field,
    name: String,
    events_table: String,
}

pub(crate) fn expand(input: &DeriveInput) -> Result<TokenStream, syn::Error> {
    let model = parse(input)?;
    Ok(generate(&model))
}

fn parse(input: &DeriveInput) -> Result<AggregateModel<'_>, syn::Error> {
    let mut errors = Errors::default();
    let fields: Vec<&Field> = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named.named.iter().collect(),
            other => {
                errors.error(
                    other,
                    "an aggregate needs named fields, one of them its id: \
                     `struct Task { id: i64, ... }`",
                );
                Vec::new()
            }
        },
        Data::Enum(data) => {
            errors.error(data.enum_token, "`#[derive(Aggregate)]` only supports structs");
            Vec::new()
        }
        Data::Union(data) => {
            errors.error(data.union_token, "`#[derive(Aggregate)]` only supports structs");
            Vec::new()
        }
    };
    if !input.generics.params.is_empty() {
        errors.error(&input.generics, "an aggregate cannot be generic");
    }

    let mut name: Option<LitStr> = None;
    let mut events_table: Option<LitStr> = None;
    for attr in input.attrs.iter().filter(|attr| attr.path().is_ident(AGGREGATE)) {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.clone();
            if key.is_ident(NAME) || key.is_ident(EVENTS_TABLE) {
                let value: LitStr = meta.value()?.parse()?;
                if !is_sql_identifier(&value.value()) {
                    errors.error(
                        &value,
                        format!(
                            "invalid {} {:?}: use lowercase letters, digits and underscores, \
                             starting with a letter, like \"task_events\"",
                            if key.is_ident(NAME) { "name" } else { "events table" },
                            value.value()
                        ),
                    );
                }
                if key.is_ident(NAME) {
                    check_once(&mut errors, &mut name, value, &key, NAME, AGGREGATE);
                } else {
                    check_once(&mut errors, &mut events_table, value, &key, EVENTS_TABLE, AGGREGATE);
                }
            } else {
                let written = quote!(#key).to_string().replace(' ', "");
                errors.error(
                    &key,
                    format!(
                        "unknown `aggregate` key `{written}`, expected one of {}",
                        one_of(AGGREGATE_KEYS)
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

    let mut marked: Vec<&Field> = Vec::new();
    for field in &fields {
        for attr in field.attrs.iter().filter(|attr| attr.path().is_ident(AGGREGATE)) {
            match &attr.meta {
                Meta::List(list) if list.parse_args::<Ident>().is_ok_and(|key| key == ID) => {
                    if marked.is_empty() {
                        marked.push(field);
                    } else {
                        errors.error(attr, "an aggregate has one id: `#[aggregate(id)]` is already on another field");
                    }
                }
                _ => errors.error(
                    attr,
                    "on a field, `aggregate` only accepts `id`: write `#[aggregate(id)]`",
                ),
            }
        }
    }
    let id = marked.first().copied().or_else(|| {
        fields
            .iter()
            .copied()
            .find(|field| field.ident.as_ref().is_some_and(|ident| ident == ID))
    });
    if id.is_none() && !fields.is_empty() {
        errors.error(
            &input.ident,
            "an aggregate needs an id: add a field `id`, or mark one `#[aggregate(id)]`",
        );
    }
    errors.finish()?;
    let id = id.expect("a missing id is reported as an error");
    let name = name.map_or_else(|| snake_case(&input.ident.to_string()), |name| name.value());
    let events_table = events_table.map_or_else(|| format!("{name}_events"), |table| table.value());
    Ok(AggregateModel {
        ident: &input.ident,
        id,
        name,
        events_table,
    })
}

fn generate(model: &AggregateModel<'_>) -> TokenStream {
    let AggregateModel {
        ident,
        id,
        name,
        events_table,
    } = model;
    let id_field = &id.ident;
    let id_type = &id.ty;
    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::es_core::Aggregate for #ident {
                type Id = #id_type;
                const NAME: &'static str = #name;
                const EVENTS_TABLE: &'static str = #events_table;

                fn new(id: Self::Id) -> Self {
                    Self {
                        #id_field: id,
                        ..::core::default::Default::default()
                    }
                }

                fn id(&self) -> &Self::Id {
                    &self.#id_field
                }
            }
        };
    }
}
