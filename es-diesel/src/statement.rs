//! The raw SQL statements of the store and of the generated code: text with bound values, prepared
//! once per connection when short, and the aggregates' multi-row upsert.
//!
//! Calls nothing of the crate: every other room builds its statements here.

use diesel::backend::Backend;
use diesel::connection::Connection;
use diesel::deserialize::{self, FromSql};
use diesel::query_builder::QueryFragment;
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::row::{Row, RowIndex};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Integer, Nullable, Text};
use diesel::{Column, QueryResult, QuerySource, RunQueryDsl, Table};

/// Statements with at most this many parameters are prepared once per connection and reused
/// (diesel's statement cache, keyed by their SQL text); longer ones are batches whose text varies
/// with their length, sent unprepared so that the cache holds only the small fixed shapes.
const MAX_PREPARED_BINDS: usize = 64;

/// A raw SQL statement: text, and values bound where diesel writes the backend's placeholders (`?`
/// or `$1`). Unlike `diesel::sql_query`, which is never prepared ahead, a short one is prepared
/// once per connection (at most 64 parameters). Built only inside the crate; the generated code
/// gets one from [`upsert`].
pub struct Statement<'a, DB: Backend> {
    pieces: Vec<Piece<'a, DB>>,
    binds: usize,
}

enum Piece<'a, DB> {
    Sql(String),
    Bind(Bound<'a, DB>),
}

impl<'a, DB: Backend> Statement<'a, DB> {
    /// A statement starting with `sql`.
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self {
            pieces: vec![Piece::Sql(sql.into())],
            binds: 0,
        }
    }

    /// Appends `sql` to the text.
    pub(crate) fn sql(mut self, sql: &str) -> Self {
        match self.pieces.last_mut() {
            Some(Piece::Sql(text)) => text.push_str(sql),
            _ => self.pieces.push(Piece::Sql(sql.to_owned())),
        }
        self
    }

    /// Appends `other`, its text and its values.
    pub(crate) fn append(mut self, other: Statement<'a, DB>) -> Self {
        for piece in other.pieces {
            match piece {
                Piece::Sql(text) => self = self.sql(&text),
                Piece::Bind(value) => self = self.bind_fragment(value),
            }
        }
        self
    }

    /// Binds `value` as SQL type `ST` where the text has reached (the server backends' times;
    /// SQLite's are text).
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn bind<ST, V>(self, value: V) -> Self
    where
        V: diesel::expression::AsExpression<ST>,
        V::Expression: diesel::query_builder::QueryFragment<DB> + Send + 'a,
        ST: diesel::sql_types::SqlType + diesel::expression::TypedExpressionType,
    {
        self.bind_fragment(Box::new(value.as_expression()))
    }

    /// Binds a 64-bit integer (`BIGINT`).
    pub(crate) fn big_int(self, value: i64) -> Self
    where
        DB: Binds,
    {
        self.bind_fragment(DB::big_int(value))
    }

    /// Binds a 32-bit integer (`INTEGER`).
    pub(crate) fn integer(self, value: i32) -> Self
    where
        DB: Binds,
    {
        self.bind_fragment(DB::integer(value))
    }

    /// Binds a text.
    pub(crate) fn text(self, value: impl Into<String>) -> Self
    where
        DB: Binds,
    {
        self.bind_fragment(DB::text(value.into()))
    }

    /// Binds each of `values`, comma-separated: the inside of an `IN (...)` list (nothing for no
    /// value).
    pub(crate) fn bind_list(mut self, values: impl IntoIterator<Item = Bound<'a, DB>>) -> Self {
        for (index, value) in values.into_iter().enumerate() {
            if index > 0 {
                self = self.sql(", ");
            }
            self = self.bind_fragment(value);
        }
        self
    }

    /// Appends a fragment of SQL that binds nothing, written by diesel: a table's name as its
    /// `FROM` clause writes it (quoted, with its schema, under its `#[sql_name]`).
    pub(crate) fn fragment(mut self, fragment: Bound<'a, DB>) -> Self {
        self.pieces.push(Piece::Bind(fragment));
        self
    }

    /// Binds a value already in its SQL type where the text has reached.
    pub(crate) fn bind_fragment(mut self, value: Bound<'a, DB>) -> Self {
        self.binds += 1;
        self.pieces.push(Piece::Bind(value));
        self
    }
}

impl<DB: Backend> diesel::query_builder::QueryFragment<DB> for Statement<'_, DB> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        if self.binds > MAX_PREPARED_BINDS {
            out.unsafe_to_cache_prepared();
        }
        for piece in &self.pieces {
            match piece {
                Piece::Sql(text) => out.push_sql(text),
                Piece::Bind(value) => value.walk_ast(out.reborrow())?,
            }
        }
        Ok(())
    }
}

/// No static id: diesel keys the prepared statement by its SQL text.
impl<DB: Backend> diesel::query_builder::QueryId for Statement<'_, DB> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend> diesel::query_builder::Query for Statement<'_, DB> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<DB: Backend, C> diesel::RunQueryDsl<C> for Statement<'_, DB> {}

/// A value bound to a statement, in its SQL type.
pub type Bound<'a, DB> = Box<dyn QueryFragment<DB> + Send + 'a>;

/// A backend that binds the store's own value types: every backend diesel has. Implemented once,
/// for each backend that meets the bounds, so that code generic over a backend names this trait
/// instead of repeating them.
pub trait Binds: Backend {
    /// A 64-bit integer (`BIGINT`).
    fn big_int<'a>(value: i64) -> Bound<'a, Self>;
    /// A 32-bit integer (`INTEGER`).
    fn integer<'a>(value: i32) -> Bound<'a, Self>;
    /// A text.
    fn text<'a>(value: String) -> Bound<'a, Self>;
}

impl<DB> Binds for DB
where
    DB: Backend + HasSqlType<BigInt> + HasSqlType<Integer> + HasSqlType<Text>,
    i64: ToSql<BigInt, DB>,
    i32: ToSql<Integer, DB>,
    String: ToSql<Text, DB>,
{
    fn big_int<'a>(value: i64) -> Bound<'a, Self> {
        Box::new(diesel::expression::AsExpression::<BigInt>::as_expression(
            value,
        ))
    }

    fn integer<'a>(value: i32) -> Bound<'a, Self> {
        Box::new(diesel::expression::AsExpression::<Integer>::as_expression(
            value,
        ))
    }

    fn text<'a>(value: String) -> Bound<'a, Self> {
        Box::new(diesel::expression::AsExpression::<Text>::as_expression(
            value,
        ))
    }
}

/// A backend that reads the store's own value types from a row as diesel does: every backend
/// diesel has. Like [`Binds`], implemented once for each backend that meets the bounds.
pub trait Reads: Backend {
    /// A 64-bit integer (`BIGINT`).
    fn get_big_int<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<i64>;
    /// A 32-bit integer (`INTEGER`).
    fn get_integer<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<i32>;
    /// A text.
    fn get_text<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<String>;
    /// A text or `NULL`.
    fn get_optional_text<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<Option<String>>;
}

impl<DB> Reads for DB
where
    DB: Backend + HasSqlType<BigInt> + HasSqlType<Integer> + HasSqlType<Text>,
    i64: FromSql<BigInt, DB>,
    i32: FromSql<Integer, DB>,
    String: FromSql<Text, DB>,
{
    fn get_big_int<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<i64> {
        row.get_value::<BigInt, i64, I>(column)
    }

    fn get_integer<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<i32> {
        row.get_value::<Integer, i32, I>(column)
    }

    fn get_text<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<String> {
        row.get_value::<Text, String, I>(column)
    }

    fn get_optional_text<'a, I>(
        row: &(impl Row<'a, Self> + RowIndex<I>),
        column: I,
    ) -> deserialize::Result<Option<String>> {
        row.get_value::<Nullable<Text>, Option<String>, I>(column)
    }
}

/// SQLite's bound on the parameters of one statement (PostgreSQL allows 65,535).
const MAX_BINDS: usize = 32_766;

/// The columns of one diesel table an upsert writes, key first: a tuple of diesel columns, so that
/// the generated code hands the statement types, never names.
pub trait Columns {
    /// Their table.
    type Table: Table + Default;
    /// Their names, in order.
    const NAMES: &'static [&'static str];
}

/// Implements [`Columns`] for the tuple of the given column types and for each shorter tuple of its
/// last ones (up to diesel's 32 columns).
macro_rules! columns {
    () => {};
    ($first:ident $(, $rest:ident)*) => {
        impl<T: Table + Default, $first: Column<Table = T>, $($rest: Column<Table = T>),*> Columns
            for ($first, $($rest,)*)
        {
            type Table = T;
            const NAMES: &'static [&'static str] = &[$first::NAME, $($rest::NAME),*];
        }
        columns!($($rest),*);
    };
}

columns!(
    C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, C18, C19, C20, C21,
    C22, C23, C24, C25, C26, C27, C28, C29, C30, C31, C32
);

/// The upsert of `rows` into the table of columns `K`: one `INSERT ... ON CONFLICT (key) DO UPDATE
/// SET column = excluded.column` (SQLite, PostgreSQL). The table is named as diesel's `FROM` clause
/// names it (its schema and `#[sql_name]` included); each row binds the values of `K` in order,
/// the first column being the key. `rows` must fit one statement ([`save`] splits a batch).
pub fn upsert<'a, K, DB>(rows: impl IntoIterator<Item = Vec<Bound<'a, DB>>>) -> Statement<'a, DB>
where
    DB: Backend,
    K: Columns,
    <K::Table as QuerySource>::FromClause: QueryFragment<DB> + Send + 'a,
{
    let quoted: Vec<String> = K::NAMES
        .iter()
        .map(|column| format!("\"{column}\""))
        .collect();
    let mut query = Statement::new("INSERT INTO ")
        .fragment(Box::new(K::Table::default().from_clause()))
        .sql(&format!(" ({}) VALUES ", quoted.join(", ")));
    for (index, row) in rows.into_iter().enumerate() {
        query = query.sql(if index == 0 { "(" } else { ", (" });
        for (position, value) in row.into_iter().enumerate() {
            if position > 0 {
                query = query.sql(", ");
            }
            query = query.bind_fragment(value);
        }
        query = query.sql(")");
    }
    let (key, others) = quoted
        .split_first()
        .map_or(("", &[][..]), |(key, others)| (key.as_str(), others));
    query = query.sql(&format!(" ON CONFLICT ({key}) DO "));
    if others.is_empty() {
        return query.sql("NOTHING");
    }
    let updates: Vec<String> = others
        .iter()
        .map(|column| format!("{column} = excluded.{column}"))
        .collect();
    query.sql("UPDATE SET ").sql(&updates.join(", "))
}

/// Upserts `rows` into the table of columns `K` ([`upsert`]), as few statements as SQLite's
/// parameter bound allows: the generated `AggregateTable::save` of SQLite and PostgreSQL.
pub fn save<'a, K, C: Connection>(
    conn: &mut C,
    rows: impl IntoIterator<Item = Vec<Bound<'a, C::Backend>>>,
) -> QueryResult<()>
where
    K: Columns,
    <K::Table as QuerySource>::FromClause: QueryFragment<C::Backend> + Send + 'a,
    Statement<'a, C::Backend>: ExecuteDsl<C>,
{
    for statement in upserts::<K, C::Backend>(rows) {
        statement.execute(conn)?;
    }
    Ok(())
}

/// The statements of [`save`].
fn upserts<'a, K, DB>(rows: impl IntoIterator<Item = Vec<Bound<'a, DB>>>) -> Vec<Statement<'a, DB>>
where
    DB: Backend,
    K: Columns,
    <K::Table as QuerySource>::FromClause: QueryFragment<DB> + Send + 'a,
{
    let per_statement = MAX_BINDS / K::NAMES.len().max(1);
    let mut statements = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        statements.push(upsert::<K, DB>(rows.by_ref().take(per_statement)));
    }
    statements
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use diesel::pg::Pg;
    use diesel::query_builder::QueryFragment;
    use diesel::sql_types::{BigInt, Text};

    use super::{Bound, MAX_PREPARED_BINDS, Statement, upsert, upserts};

    diesel::table! {
        tasks (id) {
            id -> BigInt,
            title -> Text,
        }
    }

    diesel::table! {
        tags (id) {
            id -> BigInt,
        }
    }

    diesel::table! {
        #[sql_name = "task_rows"]
        archive.renamed (id) {
            id -> BigInt,
            title -> Text,
        }
    }

    fn row(id: i64, title: &str) -> Vec<Bound<'static, Pg>> {
        vec![
            Box::new(diesel::expression::AsExpression::<BigInt>::as_expression(
                id,
            )),
            Box::new(diesel::expression::AsExpression::<Text>::as_expression(
                title.to_owned(),
            )),
        ]
    }

    #[test]
    fn an_upsert_binds_every_row_and_updates_every_other_column() {
        let query = upsert::<(tasks::id, tasks::title), _>([row(1, "a"), row(2, "b")]);
        assert_eq!(
            diesel::debug_query::<Pg, _>(&query).to_string(),
            "INSERT INTO \"tasks\" (\"id\", \"title\") VALUES ($1, $2), ($3, $4) \
             ON CONFLICT (\"id\") DO UPDATE SET \"title\" = excluded.\"title\" \
             -- binds: [1, \"a\", 2, \"b\"]"
        );
    }

    #[test]
    fn a_key_only_table_is_left_alone_on_conflict() {
        let mut key = row(1, "a");
        key.truncate(1);
        let query = upsert::<(tags::id,), Pg>([key]);
        assert!(
            diesel::debug_query::<Pg, _>(&query)
                .to_string()
                .starts_with(
                    "INSERT INTO \"tags\" (\"id\") VALUES ($1) ON CONFLICT (\"id\") DO NOTHING"
                )
        );
    }

    #[test]
    fn short_statements_are_prepared_and_batches_are_not() {
        let mut short = Statement::<Pg>::new("SELECT 1 WHERE 1 = ");
        let mut long = Statement::<Pg>::new("SELECT 1 WHERE 1 IN (");
        short = short.bind::<BigInt, _>(1_i64);
        for value in 0..=MAX_PREPARED_BINDS {
            long = long
                .bind::<BigInt, _>(i64::try_from(value).unwrap())
                .sql(", ");
        }
        assert!(short.is_safe_to_cache_prepared(&Pg).unwrap());
        assert!(!long.sql("0)").is_safe_to_cache_prepared(&Pg).unwrap());
    }

    #[test]
    fn a_batch_is_split_below_the_parameter_bound() {
        let rows = (0..20_000).map(|id| row(id, "t"));
        let statements = upserts::<(tasks::id, tasks::title), _>(rows);
        assert_eq!(statements.len(), 2);
    }

    #[test]
    fn an_upsert_names_its_table_as_diesel_does() {
        let query = upsert::<(renamed::id, renamed::title), _>([row(1, "a")]);
        assert!(
            diesel::debug_query::<Pg, _>(&query)
                .to_string()
                .starts_with("INSERT INTO \"archive\".\"task_rows\" (\"id\", \"title\") VALUES"),
            "{}",
            diesel::debug_query::<Pg, _>(&query)
        );
    }
}
