//! `#[derive(Aggregate)]`: the model of an aggregate struct, its checks, and the generated code.

use proc_macro2::TokenStream;
use quote::ToTokens;
use quote::quote;
use syn::{Attribute, Data, DeriveInput, Field, Fields, Ident, LitStr, Meta, Path, Token};

use crate::attr::{Errors, check_once, one_of, skip_value, string_value};
use crate::backend::{Backend, Upsert};
use crate::case::{is_sql_identifier, snake_case};
use crate::symbol::{
    AGGREGATE, AGGREGATE_KEYS, BACKEND, BACKENDS, COLUMN_NAME, DIESEL, EVENTS_TABLE, ID, NAME,
    TABLE,
};

struct AggregateModel<'a> {
    ident: &'a Ident,
    id: &'a Field,
    name: String,
    events_table: String,
    /// The diesel table (`crate::schema::tasks`) and every (field, column), id first.
    table: Option<(Path, Vec<(Ident, Ident)>)>,
    /// The backends to generate the table's queries for (all enabled in `es-diesel` if empty).
    backends: Vec<String>,
}

pub(crate) fn expand(input: &DeriveInput) -> Result<TokenStream, syn::Error> {
    let model = parse(input)?;
    Ok(generate(&model))
}

fn parse(input: &DeriveInput) -> Result<AggregateModel<'_>, syn::Error> {
    let mut errors = Errors::default();
    let fields: Option<Vec<&Field>> = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Some(named.named.iter().collect()),
            Fields::Unnamed(unnamed) => {
                errors.error(
                    unnamed,
                    "an aggregate needs named fields, one of them its id: \
                     `struct Task { id: i64, ... }`",
                );
                None
            }
            Fields::Unit => {
                errors.error(
                    &input.ident,
                    "an aggregate needs named fields, one of them its id: \
                     `struct Task { id: i64, ... }`",
                );
                None
            }
        },
        Data::Enum(data) => {
            errors.error(
                data.enum_token,
                "`#[derive(Aggregate)]` only supports structs: an aggregate is one record, like \
                 `struct Task { id: i64, ... }`",
            );
            None
        }
        Data::Union(data) => {
            errors.error(
                data.union_token,
                "`#[derive(Aggregate)]` only supports structs, like `struct Task { id: i64, ... }`",
            );
            None
        }
    };
    if !input.generics.params.is_empty() {
        errors.error(
            &input.generics,
            "an aggregate cannot be generic: it is stored in one table with one events table",
        );
    }
    let options = parse_options(&input.attrs, &mut errors);
    let id = fields
        .as_deref()
        .and_then(|fields| find_id(fields, &input.ident, &mut errors));

    errors.finish()?;
    let fields = fields.expect("a struct without named fields is reported as an error");
    let id = id.expect("a missing id is reported as an error");
    let name = options
        .name
        .map_or_else(|| snake_case(&input.ident.to_string()), |name| name.value());
    let events_table = options
        .events_table
        .map_or_else(|| format!("{name}_events"), |table| table.value());
    let backends = options.backends.iter().map(Ident::to_string).collect();
    let table = options.table.map(|table| {
        let columns = std::iter::once(id)
            .chain(
                fields
                    .iter()
                    .copied()
                    .filter(|field| !std::ptr::eq(*field, id)),
            )
            .map(|field| {
                let ident = field.ident.clone().expect("named fields have identifiers");
                (ident, column_of(field))
            })
            .collect();
        (table, columns)
    });
    Ok(AggregateModel {
        ident: &input.ident,
        id,
        name,
        events_table,
        table,
        backends,
    })
}

#[derive(Default)]
struct AggregateOptions {
    name: Option<LitStr>,
    events_table: Option<LitStr>,
    table: Option<Path>,
    backends: Vec<Ident>,
}

/// `#[aggregate(name = "...", events_table = "...", table = path)]` on the struct.
fn parse_options(attrs: &[Attribute], errors: &mut Errors) -> AggregateOptions {
    let mut options = AggregateOptions::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(AGGREGATE)) {
        if !matches!(attr.meta, Meta::List(_)) {
            errors.error(
                attr,
                format!(
                    "write the options of `#[aggregate]` in parentheses, like \
                     `#[aggregate(table = crate::schema::tasks)]`; its keys are {}",
                    one_of(AGGREGATE_KEYS)
                ),
            );
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.clone();
            if key.is_ident(TABLE) {
                if !meta.input.peek(Token![=]) {
                    let rest = skip_value(&meta)?;
                    errors.error(
                        quote!(#key #rest),
                        "`table` needs the diesel table: write \
                         `#[aggregate(table = crate::schema::tasks)]`",
                    );
                    return Ok(());
                }
                let path: Path = meta.value()?.parse()?;
                check_once(errors, &mut options.table, path, &key, TABLE, AGGREGATE);
            } else if key.is_ident(NAME) || key.is_ident(EVENTS_TABLE) {
                let (label, example) = if key.is_ident(NAME) {
                    ("name", "task")
                } else {
                    ("events table", "task_events")
                };
                let written = if key.is_ident(NAME) {
                    NAME
                } else {
                    EVENTS_TABLE
                };
                let Some(value) = string_value(&meta, AGGREGATE, written, example, errors)? else {
                    return Ok(());
                };
                if !is_sql_identifier(&value.value()) {
                    errors.error(
                        &value,
                        format!(
                            "invalid {label} {:?}: use lowercase letters, digits and \
                             underscores, starting with a letter, like \"{example}\"",
                            value.value()
                        ),
                    );
                }
                let slot = if key.is_ident(NAME) {
                    &mut options.name
                } else {
                    &mut options.events_table
                };
                check_once(errors, slot, value, &key, written, AGGREGATE);
            } else if key.is_ident(BACKEND) {
                let backend: Ident = meta.value()?.parse()?;
                if !BACKENDS.iter().any(|known| backend == known) {
                    errors.error(
                        &backend,
                        format!(
                            "unknown backend `{backend}`, expected one of {}",
                            one_of(BACKENDS)
                        ),
                    );
                } else if options.backends.contains(&backend) {
                    errors.error(
                        &backend,
                        format!("duplicate backend `{backend}`: list it once"),
                    );
                } else {
                    options.backends.push(backend);
                }
            } else if key.is_ident(ID) {
                skip_value(&meta)?;
                errors.error(
                    &key,
                    "`id` marks a field, not the struct: write `#[aggregate(id)]` on the \
                     identifier field",
                );
            } else {
                let written = quote!(#key).to_string().replace(' ', "");
                skip_value(&meta)?;
                errors.error(
                    &key,
                    format!(
                        "unknown `aggregate` key `{written}`, expected one of {}",
                        one_of(AGGREGATE_KEYS)
                    ),
                );
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
    if let (Some(backend), None) = (options.backends.first(), &options.table) {
        errors.error(
            backend,
            "`backend` chooses which backends get the diesel table's queries: add \
             `table = crate::schema::tasks`",
        );
    }
    options
}

/// The id field: the one marked `#[aggregate(id)]`, else the one named `id`. A malformed field
/// attribute is reported on its own (and not also as a missing id).
fn find_id<'a>(fields: &[&'a Field], ident: &Ident, errors: &mut Errors) -> Option<&'a Field> {
    let mut marked: Option<&'a Field> = None;
    let mut malformed = false;
    for &field in fields {
        for attr in field
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident(AGGREGATE))
        {
            let written = match &attr.meta {
                Meta::List(list) => list.tokens.clone(),
                Meta::Path(_) => quote!(),
                Meta::NameValue(nv) => {
                    let value = &nv.value;
                    quote!(= #value)
                }
            };
            let is_id = matches!(&attr.meta, Meta::List(list)
                if list.parse_args::<Ident>().is_ok_and(|key| key == ID));
            if !is_id {
                malformed = true;
                let span_of: &dyn ToTokens = match &attr.meta {
                    Meta::List(list) => &list.tokens,
                    _ => attr,
                };
                errors.error(
                    span_of,
                    format!(
                        "on a field, `aggregate` only accepts `id`, found `{}`: write \
                         `#[aggregate(id)]`",
                        written.to_string().replace(' ', "")
                    ),
                );
            } else if marked.is_some() {
                errors.error(
                    attr,
                    "an aggregate has one id: `#[aggregate(id)]` is already on another field",
                );
            } else {
                marked = Some(field);
            }
        }
    }
    let id = marked.or_else(|| {
        fields
            .iter()
            .copied()
            .find(|field| field.ident.as_ref().is_some_and(|ident| ident == ID))
    });
    if id.is_none() && !malformed {
        errors.error(
            ident,
            "an aggregate needs an id: add a field `id`, or mark one `#[aggregate(id)]`",
        );
    }
    id
}

/// The column a field maps to: diesel's `#[diesel(column_name = ...)]`, else the field's name.
fn column_of(field: &Field) -> Ident {
    let mut column = None;
    for attr in field
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident(DIESEL))
    {
        // Other diesel keys are diesel's business (it reports their errors): stop at the first
        // one this derive cannot read.
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident(COLUMN_NAME) {
                column = Some(meta.value()?.parse::<Ident>()?);
            } else if meta.input.peek(Token![=]) {
                meta.value()?.parse::<syn::Expr>()?;
            }
            Ok(())
        });
    }
    column.unwrap_or_else(|| field.ident.clone().expect("named fields have identifiers"))
}

fn generate(model: &AggregateModel<'_>) -> TokenStream {
    let AggregateModel {
        ident,
        id,
        name,
        events_table,
        table,
        backends,
    } = model;
    let diesel_tables = table
        .as_ref()
        .map(|(table, columns)| generate_table(ident, table, columns, backends));
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

            #diesel_tables
        };
    }
}

/// `es_diesel::Stores<Aggregate>` for the connection type of each backend feature enabled in `es-diesel`: concrete diesel
/// queries per connection type, so that row locking and batch upserts stay typed.
fn generate_table(
    ident: &Ident,
    table: &Path,
    columns: &[(Ident, Ident)],
    only: &[String],
) -> TokenStream {
    let table_name = table
        .segments
        .last()
        .map(|segment| segment.ident.to_string())
        .unwrap_or_default();
    let ((id_field, id_column), others) =
        columns.split_first().expect("the id is the first column");
    let other_fields: Vec<&Ident> = others.iter().map(|(field, _)| field).collect();
    let other_columns: Vec<&Ident> = others.iter().map(|(_, column)| column).collect();
    let all_fields: Vec<&Ident> = columns.iter().map(|(field, _)| field).collect();
    let all_columns: Vec<&Ident> = columns.iter().map(|(_, column)| column).collect();
    let impls = Backend::chosen(only).map(|chosen| {
        let Backend {
            with,
            connection,
            backend,
            locks_rows,
            head_in_lock,
            upsert,
            ..
        } = chosen;
        let for_update = locks_rows.then(|| quote!(.for_update()));
        let (head, into_locked) = if head_in_lock {
            (
                quote!(, ::es_diesel::__private::HeadColumns::<#ident, #connection, #table::table>::new()),
                quote!(::es_diesel::__private::locked),
            )
        } else {
            (TokenStream::new(), quote!(::es_diesel::Locked::Row))
        };
        let lock = quote! {
            #table::table
                .find(::core::clone::Clone::clone(id))
                .select((<#ident as SelectableHelper<#backend>>::as_select() #head))
                #for_update
                .first(conn)
                .optional()
                .map(#into_locked)
        };
        let lock_many = if locks_rows {
            quote! {
                #table::table
                    .filter(#table::#id_column.eq_any(ids))
                    .select(#table::#id_column)
                    .for_update()
                    .load::<<#ident as ::es_core::Aggregate>::Id>(conn)
                    .map(|_| ())
            }
        } else {
            quote!({
                let _ = (conn, ids);
                ::core::result::Result::Ok(())
            })
        };
        // A table of the id alone sets it to itself: the `UPDATE` still says whether the row is
        // there.
        let row_update = if other_columns.is_empty() {
            quote!(.set(#table::#id_column.eq(#table::#id_column)))
        } else {
            quote!(.set((#(#table::#other_columns.eq(&aggregate.#other_fields),)*)))
        };
        let columns = quote!((#table::#id_column, #(#table::#other_columns,)*));
        let row = quote! {
            |aggregate| {
                ::std::vec![
                    #(::std::boxed::Box::new(
                        ::es_diesel::__private::diesel::expression::AsExpression::<
                            ::es_diesel::__private::diesel::dsl::SqlTypeOf<#table::#all_columns>,
                        >::as_expression(&aggregate.#all_fields),
                    ) as ::es_diesel::__private::Bound<'_, #backend>,)*
                ]
            }
        };
        let (save, upsert) = match upsert {
            Upsert::Statement => (
                quote! {
                    ::es_diesel::__private::save::<#columns, _>(
                        conn,
                        aggregates.iter().map(#row),
                    )
                },
                quote! {
                    fn upsert(
                        aggregate: &#ident,
                    ) -> ::core::option::Option<::es_diesel::__private::Statement<'_, #backend>> {
                        ::core::option::Option::Some(::es_diesel::__private::upsert::<#columns, _>(
                            ::core::iter::once(aggregate).map(#row),
                        ))
                    }
                },
            ),
            Upsert::UpdateOrInsert => (
                quote! {
                    for aggregate in aggregates {
                        let __matched = ::es_diesel::__private::diesel::update(
                            #table::table.find(::core::clone::Clone::clone(&aggregate.#id_field)),
                        )
                        #row_update
                        .execute(conn)?;
                        if __matched == 0 {
                            ::es_diesel::__private::diesel::insert_into(#table::table)
                                .values(aggregate)
                                .execute(conn)?;
                        }
                    }
                    ::core::result::Result::Ok(())
                },
                TokenStream::new(),
            ),
        };
        quote! {
            #with! {
                ::es_core::__private::inventory::submit! {
                    ::es_diesel::__private::EventsTableOn::new(
                        <#ident as ::es_core::Aggregate>::EVENTS_TABLE,
                        ::core::any::TypeId::of::<#connection>,
                    )
                }

                #[automatically_derived]
                impl ::es_diesel::Stores<#ident> for #connection {
                    const TABLE: &'static str = #table_name;
                    const ID_COLUMN: &'static str =
                        <#table::#id_column as ::es_diesel::__private::diesel::Column>::NAME;

                    fn load(
                        conn: &mut #connection,
                        id: &<#ident as ::es_core::Aggregate>::Id,
                    ) -> ::es_diesel::__private::diesel::QueryResult<::core::option::Option<#ident>> {
                        use ::es_diesel::__private::diesel::prelude::*;
                        #table::table
                            .find(::core::clone::Clone::clone(id))
                            .select(<#ident as SelectableHelper<#backend>>::as_select())
                            .first(conn)
                            .optional()
                    }

                    fn load_many(
                        conn: &mut #connection,
                        ids: &[<#ident as ::es_core::Aggregate>::Id],
                    ) -> ::es_diesel::__private::diesel::QueryResult<::std::vec::Vec<#ident>> {
                        use ::es_diesel::__private::diesel::prelude::*;
                        #table::table
                            .filter(#table::#id_column.eq_any(ids))
                            .select(<#ident as SelectableHelper<#backend>>::as_select())
                            .load(conn)
                    }

                    fn lock(
                        conn: &mut #connection,
                        id: &<#ident as ::es_core::Aggregate>::Id,
                    ) -> ::es_diesel::__private::diesel::QueryResult<::es_diesel::Locked<#ident>> {
                        use ::es_diesel::__private::diesel::prelude::*;
                        #lock
                    }

                    fn lock_many(
                        conn: &mut #connection,
                        ids: &[<#ident as ::es_core::Aggregate>::Id],
                    ) -> ::es_diesel::__private::diesel::QueryResult<()> {
                        use ::es_diesel::__private::diesel::prelude::*;
                        #lock_many
                    }

                    fn save(
                        conn: &mut #connection,
                        aggregates: &[#ident],
                    ) -> ::es_diesel::__private::diesel::QueryResult<()> {
                        use ::es_diesel::__private::diesel::prelude::*;
                        #save
                    }

                    #upsert

                    fn delete(
                        conn: &mut #connection,
                        ids: &[<#ident as ::es_core::Aggregate>::Id],
                    ) -> ::es_diesel::__private::diesel::QueryResult<()> {
                        use ::es_diesel::__private::diesel::prelude::*;
                        ::es_diesel::__private::diesel::delete(
                            #table::table.filter(#table::#id_column.eq_any(ids)),
                        )
                        .execute(conn)
                        .map(|_| ())
                    }
                }
            }
        }
    });
    quote!(#(#impls)*)
}
