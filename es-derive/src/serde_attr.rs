//! What serde makes of an event's `#[serde(...)]` attributes, read as serde reads them: which keys
//! are given (`skip`, `with`, `into`, ...) and a field's key in the stored JSON (`rename`,
//! `rename_all`). Serde reports malformed attributes itself, so these read what they understand
//! and pass over the rest. Uses `attr`.

use proc_macro2::TokenTree;
use syn::{Attribute, LitStr, Meta, Token};

use crate::attr::skip_value;

/// Whether serde stores a field by other means than the field type's own `Serialize` and
/// `Deserialize`: a field's `#[serde(with = "...")]` (or `serialize_with`, `deserialize_with`), or
/// the struct's `#[serde(into = "...", from = "...")]` (or `try_from`).
pub(crate) fn has_serde_key(attrs: &[Attribute], keys: &[&str]) -> bool {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("serde"))
        .filter_map(|attr| match &attr.meta {
            Meta::List(list) => Some(list.tokens.clone()),
            _ => None,
        })
        .any(|tokens| {
            // The keys are the identifiers at the start of the list and after each comma.
            let mut at_key = true;
            tokens.into_iter().any(|token| {
                let found = match &token {
                    TokenTree::Ident(ident) => at_key && keys.iter().any(|key| ident == key),
                    _ => false,
                };
                at_key = matches!(&token, TokenTree::Punct(punct) if punct.as_char() == ',');
                found
            })
        })
}

/// The value of serde's `rename` (a field's key) or `rename_all` (a struct's rule) as stored:
/// `#[serde(rename = "key")]` or `#[serde(rename(serialize = "key"))]`.
pub(crate) fn serde_rename(attrs: &[Attribute], key_name: &str) -> Option<String> {
    let mut key = None;
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("serde")) {
        // Serde reports malformed attributes itself.
        let _ = attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident(key_name) {
                return skip_value(&meta).map(drop);
            }
            if meta.input.peek(Token![=]) {
                key = Some(meta.value()?.parse::<LitStr>()?.value());
                return Ok(());
            }
            meta.parse_nested_meta(|side| {
                if side.path.is_ident("serialize") {
                    key = Some(side.value()?.parse::<LitStr>()?.value());
                } else {
                    skip_value(&side)?;
                }
                Ok(())
            })
        });
    }
    key
}

/// A snake-case field name under serde's `rename_all` rule, as serde's `RenameRule` renames
/// fields; an unknown rule (which serde refuses) leaves it as is.
pub(crate) fn serde_field_case(rule: &str, field: &str) -> String {
    let capitalized = |word: &str, upper: bool| -> String {
        let mut chars = word.chars();
        chars.next().map_or_else(String::new, |first| {
            let first = if upper {
                first.to_ascii_uppercase()
            } else {
                first.to_ascii_lowercase()
            };
            first.to_string() + chars.as_str()
        })
    };
    let pascal: String = field
        .split('_')
        .map(|word| capitalized(word, true))
        .collect();
    match rule {
        "UPPERCASE" | "SCREAMING_SNAKE_CASE" => field.to_ascii_uppercase(),
        "PascalCase" => pascal,
        "camelCase" => capitalized(&pascal, false),
        "kebab-case" => field.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => field.to_ascii_uppercase().replace('_', "-"),
        _ => field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_field_is_documented_under_its_stored_key() {
        let field: syn::FieldsNamed = syn::parse_quote!({
            #[serde(default = "usd", rename = "currency_code")]
            a: String,
            #[serde(rename(serialize = "written", deserialize = "read"))]
            b: String,
            #[serde(with = "cents")]
            c: Money,
        });
        let keys: Vec<Option<String>> = field
            .named
            .iter()
            .map(|field| serde_rename(&field.attrs, "rename"))
            .collect();
        assert_eq!(
            keys,
            [
                Some("currency_code".to_owned()),
                Some("written".to_owned()),
                None
            ]
        );
    }

    #[test]
    fn rename_all_renames_fields_as_serde_does() {
        let renamed: Vec<String> = [
            "lowercase",
            "UPPERCASE",
            "PascalCase",
            "camelCase",
            "snake_case",
            "SCREAMING_SNAKE_CASE",
            "kebab-case",
            "SCREAMING-KEBAB-CASE",
        ]
        .iter()
        .map(|rule| serde_field_case(rule, "due_on_day"))
        .collect();
        assert_eq!(
            renamed,
            [
                "due_on_day",
                "DUE_ON_DAY",
                "DueOnDay",
                "dueOnDay",
                "due_on_day",
                "DUE_ON_DAY",
                "due-on-day",
                "DUE-ON-DAY",
            ]
        );
    }
}
