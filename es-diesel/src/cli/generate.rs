//! `generate`: the code and the migration of a new event or aggregate, printed for the developer
//! to paste — the Rust form of the generators of the Kickstarter talk. Nothing is written: the
//! catalog entry follows from the code (`docs`), and the migration's SQL is this connection's
//! backend's.
//!
//! Calls `args` (what it prints from), `error`, `backend` (column types, the events table's DDL)
//! and `sql_types`.

use std::fmt::Write as _;

use super::args::GenerateCommand;
use super::error::CliError;
use crate::backend::SqlDialect;
use crate::sql_types::ColumnType;

/// A field of the generated struct: `name:Type`.
struct Field {
    name: String,
    rust_type: String,
    column: ColumnType,
    nullable: bool,
}

impl Field {
    /// Writes the field's declaration in a struct, its `attributes` (and their indent) first.
    fn declare(&self, code: &mut String, attributes: &str) {
        let _ = writeln!(
            code,
            "    /// Its `{name}`.\n    {attributes}pub {name}: {rust_type},",
            name = self.name,
            rust_type = self.rust_type
        );
    }
}

/// The Rust types a generated field may have, each with its column type.
const TYPES: [(&str, ColumnType); 6] = [
    ("i64", ColumnType::BigInt),
    ("i32", ColumnType::Integer),
    ("bool", ColumnType::Bool),
    ("String", ColumnType::Text),
    ("f64", ColumnType::Double),
    ("UtcDateTime", ColumnType::Time),
];

/// The code (and, for an aggregate, the migration on backend `DB`) that `command` asks for.
pub(super) fn generate<DB: SqlDialect>(command: &GenerateCommand) -> Result<String, CliError> {
    match command {
        GenerateCommand::Event {
            aggregate,
            event,
            fields,
            creates,
            destroys,
        } => {
            let fields = parse_fields(fields)?;
            type_name(aggregate)?;
            type_name(event)?;
            Ok(event_code(aggregate, event, &fields, *creates, *destroys))
        }
        GenerateCommand::Aggregate { aggregate, fields } => {
            type_name(aggregate)?;
            let fields = parse_fields(fields)?;
            Ok(aggregate_code::<DB>(aggregate, &fields))
        }
    }
}

fn invalid(input: &str, reason: impl Into<String>) -> CliError {
    CliError::Generate {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// `name` if it is a type name in upper camel case (`TaskList`).
fn type_name(name: &str) -> Result<(), CliError> {
    let mut chars = name.chars();
    let camel = chars.next().is_some_and(|first| first.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric());
    if camel {
        Ok(())
    } else {
        Err(invalid(
            name,
            "a type name is in upper camel case, like `TaskList`",
        ))
    }
}

/// `name:Type` pairs: snake-case names, types among [`TYPES`] or `Option` of one.
fn parse_fields(specs: &[String]) -> Result<Vec<Field>, CliError> {
    let mut fields: Vec<Field> = Vec::with_capacity(specs.len());
    for spec in specs {
        let Some((name, rust_type)) = spec.split_once(':') else {
            return Err(invalid(
                spec,
                "write a field as `name:Type`, like `title:String`",
            ));
        };
        let snake = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !snake {
            return Err(invalid(
                spec,
                "a field name is in snake case, like `due_on`",
            ));
        }
        if name == "id" || fields.iter().any(|field| field.name == name) {
            return Err(invalid(
                spec,
                format!("field `{name}` is given twice (`id` is implied)"),
            ));
        }
        let (inner, nullable) = match rust_type
            .strip_prefix("Option<")
            .and_then(|rest| rest.strip_suffix('>'))
        {
            Some(inner) => (inner, true),
            None => (rust_type, false),
        };
        let Some((_, column)) = TYPES.iter().find(|(known, _)| *known == inner) else {
            let known: Vec<&str> = TYPES.iter().map(|(known, _)| *known).collect();
            return Err(invalid(
                spec,
                format!(
                    "the type is one of {}, or `Option` of one",
                    known.join(", ")
                ),
            ));
        };
        fields.push(Field {
            name: name.to_owned(),
            rust_type: rust_type.to_owned(),
            column: *column,
            nullable,
        });
    }
    Ok(fields)
}

/// `TitleUpdated` → `title_updated`: the rule of `#[derive(Event)]`'s default tag and
/// `#[derive(Aggregate)]`'s default names.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (index, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && index > 0 {
            let previous = chars[index - 1];
            let next_is_lower = chars.get(index + 1).is_some_and(|n| n.is_lowercase());
            if previous.is_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_uppercase() && next_is_lower)
            {
                out.push('_');
            }
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// `text` with its first letter in upper case.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn event_code(
    aggregate: &str,
    event: &str,
    fields: &[Field],
    creates: bool,
    destroys: bool,
) -> String {
    let variable = snake_case(aggregate);
    let tag = format!("{variable}.{}", snake_case(event));
    let mut code = format!(
        "// Event `{tag}`; after adding it, `docs` refreshes the catalog.\n\
         /// {subject}: {words}.\n\
         #[derive(Event, Serialize, Deserialize, JsonSchema)]\n\
         #[aggregate({aggregate})]\n",
        subject = capitalized(&variable.replace('_', " ")),
        words = snake_case(event).replace('_', " "),
    );
    if creates {
        code.push_str("#[event(creates)]\n");
    } else if destroys {
        code.push_str("#[event(destroys)]\n");
    }
    let _ = writeln!(code, "pub struct {event} {{");
    for field in fields {
        field.declare(&mut code, "#[data_attributes]\n    ");
    }
    let _ = write!(
        code,
        "}}\n\nimpl Apply<{aggregate}> for {event} {{\n    \
         fn apply(&self, {variable}: &mut {aggregate}, _event: &EventContext<'_>) {{\n"
    );
    for field in fields {
        let _ = writeln!(
            code,
            "        {variable}.{name}.clone_from(&self.{name});",
            name = field.name
        );
    }
    if fields.is_empty() {
        let _ = writeln!(code, "        let _ = {variable};");
    }
    code.push_str("    }\n}\n");
    code
}

fn aggregate_code<DB: SqlDialect>(aggregate: &str, fields: &[Field]) -> String {
    let name = snake_case(aggregate);
    let table = format!("{name}s");
    let events_table = format!("{name}_events");
    let mut code = format!(
        "// Aggregate `{name}`: its diesel schema, its model, and the migration of its tables.\n\
         diesel::table! {{\n    use diesel::sql_types::*;\n    use es_diesel::sql_types::UtcTime;\n\n    \
         {table} (id) {{\n        id -> BigInt,\n"
    );
    for field in fields {
        let sql_type = field.column.diesel_type();
        let sql_type = if field.nullable {
            format!("Nullable<{sql_type}>")
        } else {
            sql_type.to_owned()
        };
        let _ = writeln!(code, "        {} -> {sql_type},", field.name);
    }
    let _ = write!(
        code,
        "    }}\n}}\n\n\
         /// A {words}.\n\
         #[derive(Aggregate, Queryable, Selectable, Insertable, Default, Clone, Debug, PartialEq)]\n\
         #[aggregate(table = {table})]\n\
         #[diesel(table_name = {table})]\n\
         pub struct {aggregate} {{\n    /// Its id.\n    pub id: i64,\n",
        words = name.replace('_', " ")
    );
    for field in fields {
        field.declare(&mut code, "");
    }
    code.push_str("}\n\n-- up.sql\n");
    let mut columns = vec![format!(
        "id {} PRIMARY KEY NOT NULL",
        DB::column_type(ColumnType::BigInt)
    )];
    columns.extend(fields.iter().map(|field| {
        let not_null = if field.nullable { "" } else { " NOT NULL" };
        format!("{} {}{not_null}", field.name, DB::column_type(field.column))
    }));
    let _ = writeln!(code, "CREATE TABLE {table} ({});", columns.join(", "));
    for statement in DB::events_table_ddl(&events_table, DB::column_type(ColumnType::BigInt)) {
        let _ = writeln!(code, "{statement};");
    }
    let _ = write!(
        code,
        "\n-- down.sql\nDROP TABLE {events_table};\nDROP TABLE {table};\n"
    );
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_follows_the_derives() {
        for (name, snake) in [
            ("Task", "task"),
            ("TitleUpdated", "title_updated"),
            ("HTTPRequest", "http_request"),
            ("Step2Done", "step2_done"),
        ] {
            assert_eq!(snake_case(name), snake);
        }
    }

    #[test]
    fn bad_fields_and_names_are_refused_with_the_form_to_write() {
        for (spec, says) in [
            ("title", "`name:Type`"),
            ("Title:String", "snake case"),
            ("id:i64", "given twice"),
            ("due:Date", "one of i64"),
        ] {
            let error = parse_fields(&[spec.to_owned()])
                .err()
                .map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|error| error.contains(says)),
                "{spec}: {error:?}"
            );
        }
        assert!(type_name("task_list").is_err());
        assert!(type_name("TaskList").is_ok());
    }
}
