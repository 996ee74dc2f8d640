//! Shared helpers for reading attributes: an error accumulator, doc comments, key lookup.

use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Meta, Token, token};

/// Collects every error of one derive so that the user sees them all at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn error(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The doc comment of an item or field, lines joined with `\n`, trimmed.
pub(crate) fn doc_comment(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines
        .iter()
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// A type as the user wrote it, without the spaces `to_string` puts between tokens.
pub(crate) fn type_name(ty: &impl ToTokens) -> String {
    let mut name = ty.to_token_stream().to_string();
    for (spaced, tight) in [
        (" :: ", "::"),
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
    ] {
        name = name.replace(spaced, tight);
    }
    name
}

/// `one of `a`, `b``: the keys an attribute accepts, for error messages.
pub(crate) fn one_of(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reports a key given twice, pointing at the second.
pub(crate) fn check_once<T>(
    errors: &mut Errors,
    slot: &mut Option<T>,
    value: T,
    key: &impl ToTokens,
    name: &str,
    attribute: &str,
) {
    if slot.is_some() {
        errors.error(
            key,
            format!("duplicate `{attribute}` key `{name}`: write it once"),
        );
    } else {
        *slot = Some(value);
    }
}

/// The string literal after `key =`. A missing or non-string value is reported, and `None`
/// returned, so that the other keys of the attribute are still checked.
pub(crate) fn string_value(
    meta: &ParseNestedMeta<'_>,
    attribute: &str,
    name: &str,
    example: &str,
    errors: &mut Errors,
) -> syn::Result<Option<LitStr>> {
    let teach = format!("write `#[{attribute}({name} = \"{example}\")]`");
    if !meta.input.peek(Token![=]) {
        let rest = skip_value(meta)?;
        let key = &meta.path;
        errors.error(
            quote!(#key #rest),
            format!("`{name}` needs a value: {teach}"),
        );
        return Ok(None);
    }
    let eq: Token![=] = meta.input.parse()?;
    match meta.input.parse::<Expr>()? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(value),
            ..
        }) => Ok(Some(value)),
        other => {
            errors.error(
                quote!(#eq #other),
                format!("`{name}` is a string literal: {teach}"),
            );
            Ok(None)
        }
    }
}

/// Consumes what follows a key (`= value` or `(...)`), returning it if there was anything.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Option<TokenStream>> {
    if meta.input.peek(Token![=]) {
        let eq: Token![=] = meta.input.parse()?;
        let value: Expr = meta.input.parse()?;
        Ok(Some(quote!(#eq #value)))
    } else if meta.input.peek(token::Paren) {
        let group: TokenTree = meta.input.parse()?;
        Ok(Some(group.into_token_stream()))
    } else {
        Ok(None)
    }
}
