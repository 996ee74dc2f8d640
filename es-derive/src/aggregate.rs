//! `#[derive(Aggregate)]`: the model of an aggregate struct, its checks, and the generated code.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Field, Fields, Ident, LitStr, Meta, Path, Token};

use crate::attr::{Errors, check_once, one_of};
use crate::case::{is_sql_identifier, snake_case};
use crate::symbol::{
    AGGREGATE, AGGREGATE_KEYS, COLUMN_NAME, DIESEL, EVENTS_TABLE, ID, NAME, TABLE,
};

struct AggregateModel<'a> {
    ident: &'a Ident,
    id: &'a Field,
    name: String,
    events_table: String,
    /// The diesel table (`crate::schema::tasks`) and every (field, column), id first.
    table: Option<(Path, Vec<(Ident, Ident)>)>,
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
            errors.error(
                data.enum_token,
                "`#[derive(Aggregate)]` only supports structs",
            );
            Vec::new()
        }
        Data::Union(data) => {
            errors.error(
                data.union_token,
                "`#[derive(Aggregate)]` only supports structs",
            );
            Vec::new()
        }
    };
    if !input.generics.params.is_empty() {
        errors.error(&input.generics, "an aggregate cannot be generic");
    }

    let mut name: Option<LitStr> = None;
    let mut events_table: Option<LitStr> = None;
    let mut table: Option<Path> = None;
    for attr in input
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident(AGGREGATE))
    {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.clone();
            if key.is_ident(TABLE) {
                let path: Path = meta.value()?.parse()?;
                check_once(&mut errors, &mut table, path, &key, TABLE, AGGREGATE);
            } else if key.is_ident(NAME) || key.is_ident(EVENTS_TABLE) {
                let value: LitStr = meta.value()?.parse()?;
                if !is_sql_identifier(&value.value()) {
                    errors.error(
                        &value,
                        format!(
                            "invalid {} {:?}: use lowercase letters, digits and underscores, \
                             starting with a letter, like \"task_events\"",
                            if key.is_ident(NAME) {
                                "name"
                            } else {
                                "events table"
                            },
                            value.value()
                        ),
                    );
                }
                if key.is_ident(NAME) {
                    check_once(&mut errors, &mut name, value, &key, NAME, AGGREGATE);
                } else {
                    check_once(
                        &mut errors,
                        &mut events_table,
                        value,
                        &key,
                        EVENTS_TABLE,
                        AGGREGATE,
                    );
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
        for attr in field
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident(AGGREGATE))
        {
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
    let table = table.map(|table| {
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
    })
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
    } = model;
    let diesel_tables = table
        .as_ref()
        .map(|(table, columns)| generate_table(ident, table, columns));
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

/// `es_diesel::AggregateTable` for each backend feature enabled in `es-diesel`: concrete diesel
/// queries per connection type, so that row locking and batch upserts stay typed.
fn generate_table(ident: &Ident, table: &Path, columns: &[(Ident, Ident)]) -> TokenStream {
    let table_name = table
        .segments
        .last()
        .map(|segment| segment.ident.to_string())
        .unwrap_or_default();
    let ((_, id_column), others) = columns.split_first().expect("the id is the first column");
    let other_fields: Vec<&Ident> = others.iter().map(|(field, _)| field).collect();
    let other_columns: Vec<&Ident> = others.iter().map(|(_, column)| column).collect();
    let backends = [
        (
            quote!(::es_diesel::__with_sqlite),
            quote!(::es_diesel::__private::diesel::sqlite::SqliteConnection),
            quote!(::es_diesel::__private::diesel::sqlite::Sqlite),
            false,
            false,
            quote!(.on_conflict(#table::#id_column)),
        ),
        (
            quote!(::es_diesel::__with_postgres),
            quote!(::es_diesel::__private::diesel::pg::PgConnection),
            quote!(::es_diesel::__private::diesel::pg::Pg),
            true,
            true,
            quote!(.on_conflict(#table::#id_column)),
        ),
        (
            quote!(::es_diesel::__with_mysql),
            quote!(::es_diesel::__private::diesel::mysql::MysqlConnection),
            quote!(::es_diesel::__private::diesel::mysql::Mysql),
            true,
            false,
            quote!(.on_conflict(::es_diesel::__private::diesel::dsl::DuplicatedKeys)),
        ),
    ];
    let impls = backends.into_iter().map(|(with, connection, backend, locks, batch_upsert, on_conflict)| {
        let for_update = locks.then(|| quote!(.for_update()));
        let lock_many = if locks {
            quote! {
                #table::table
                    .filter(#table::#id_column.eq_any(ids))
                    .select(#table::#id_column)
                    .for_update()
                    .load::<Self::Id>(conn)
                    .map(|_| ())
            }
        } else {
            quote!({
                let _ = (conn, ids);
                ::core::result::Result::Ok(())
            })
        };
        let batch_update = quote!(.set((
            #(#table::#other_columns.eq(
                ::es_diesel::__private::diesel::upsert::excluded(#table::#other_columns)
            ),)*
        )));
        let row_update = quote!(.set((#(#table::#other_columns.eq(&aggregate.#other_fields),)*)));
        // diesel expresses a multi-row upsert on PostgreSQL only; elsewhere one statement per row,
        // inside the caller's transaction.
        let save = match (batch_upsert, other_columns.is_empty()) {
            (_, true) => quote! {
                ::es_diesel::__private::diesel::insert_into(#table::table)
                    .values(aggregates)
                    #on_conflict
                    .do_nothing()
                    .execute(conn)
                    .map(|_| ())
            },
            (true, false) => quote! {
                ::es_diesel::__private::diesel::insert_into(#table::table)
                    .values(aggregates)
                    #on_conflict
                    .do_update()
                    #batch_update
                    .execute(conn)
                    .map(|_| ())
            },
            (false, false) => quote! {
                for aggregate in aggregates {
                    ::es_diesel::__private::diesel::insert_into(#table::table)
                        .values(aggregate)
                        #on_conflict
                        .do_update()
                        #row_update
                        .execute(conn)?;
                }
                ::core::result::Result::Ok(())
            },
        };
        quote! {
            #with! {
                #[automatically_derived]
                impl ::es_diesel::AggregateTable<#connection> for #ident {
                    const TABLE: &'static str = #table_name;

                    fn load(
                        conn: &mut #connection,
                        id: &Self::Id,
                    ) -> ::es_diesel::__private::diesel::QueryResult<::core::option::Option<Self>> {
                        use ::es_diesel::__private::diesel::prelude::*;
                        #table::table
                            .find(::core::clone::Clone::clone(id))
                            .select(<Self as SelectableHelper<#backend>>::as_select())
                            .first(conn)
                            .optional()
                    }

                    fn lock(
                        conn: &mut #connection,
                        id: &Self::Id,
                    ) -> ::es_diesel::__private::diesel::QueryResult<::core::option::Option<Self>> {
                        use ::es_diesel::__private::diesel::prelude::*;
                        #table::table
                            .find(::core::clone::Clone::clone(id))
                            .select(<Self as SelectableHelper<#backend>>::as_select())
                            #for_update
                            .first(conn)
                            .optional()
                    }

                    fn lock_many(
                        conn: &mut #connection,
                        ids: &[Self::Id],
                    ) -> ::es_diesel::__private::diesel::QueryResult<()> {
                        use ::es_diesel::__private::diesel::prelude::*;
                        #lock_many
                    }

                    fn save(
                        conn: &mut #connection,
                        aggregates: &[Self],
                    ) -> ::es_diesel::__private::diesel::QueryResult<()> {
                        use ::es_diesel::__private::diesel::prelude::*;
                        #save
                    }

                    fn delete(
                        conn: &mut #connection,
                        ids: &[Self::Id],
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
