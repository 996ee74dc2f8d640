//! Naming conventions for generated tags and tables.

/// `TitleUpdated` → `title_updated`, `HTTPRequest` → `http_request`.
pub(crate) fn snake_case(ident: &str) -> String {
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::with_capacity(ident.len() + 4);
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

/// Whether `name` is a valid snake-case SQL identifier: `[a-z_][a-z0-9_]*`, at most 63 bytes
/// (PostgreSQL's limit).
pub(crate) fn is_sql_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= 63
}

/// Whether `tag` is a valid type tag: identifiers (`[A-Za-z_][A-Za-z0-9_]*`) separated by dots.
pub(crate) fn is_tag(tag: &str) -> bool {
    tag.split('.').all(|segment| {
        let mut chars = segment.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_splits_words_and_acronyms() {
        assert_eq!(snake_case("Task"), "task");
        assert_eq!(snake_case("TitleUpdated"), "title_updated");
        assert_eq!(snake_case("HTTPRequestSent"), "http_request_sent");
        assert_eq!(snake_case("Step2Done"), "step2_done");
    }

    #[test]
    fn tags_are_dotted_identifiers() {
        assert!(is_tag("task.completed"));
        assert!(is_tag("Task.Completed_2"));
        assert!(!is_tag(""));
        assert!(!is_tag("task..completed"));
        assert!(!is_tag("task completed"));
        assert!(!is_tag("2task"));
    }

    #[test]
    fn sql_identifiers_are_snake_case() {
        assert!(is_sql_identifier("task_events"));
        assert!(!is_sql_identifier("Task_events"));
        assert!(!is_sql_identifier("task_events; drop table x"));
        assert!(!is_sql_identifier(""));
    }
}
