//! Name and label rules shared by every kind, as Kubernetes states them.

use crate::{meta::ObjectMeta, FieldError};

/// RFC 1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric, at most
/// 63 characters (namespace names, service names, container and port names).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters (most object names).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A label value: empty, or at most 63 of [A-Za-z0-9-_.] starting and ending alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

/// A label key: an optional DNS-subdomain prefix and '/', then a name like a label value.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// The rules every object's metadata follows. `namespaced` says whether the kind lives in a
/// namespace (a namespace given for a cluster-scoped kind is an error, not ignored).
pub fn metadata(meta: &ObjectMeta, kind: &str, namespaced: bool, errors: &mut Vec<FieldError>) {
    let name_ok = if kind == "Namespace" || kind == "Service" {
        is_dns_label(&meta.name)
    } else {
        is_dns_subdomain(&meta.name)
    };
    if !name_ok {
        errors.push(FieldError::new(
            "metadata.name",
            format!("{:?}", meta.name),
            "lower-case letters, digits and '-' (a DNS name), starting and ending with a letter or digit",
        ));
    }
    match (&meta.namespace, namespaced) {
        (Some(ns), true) if !is_dns_label(ns) => errors.push(FieldError::new(
            "metadata.namespace",
            format!("{ns:?}"),
            "a namespace name (lower-case letters, digits and '-')",
        )),
        (Some(ns), false) => errors.push(FieldError::new(
            "metadata.namespace",
            format!("{ns:?}"),
            format!("no namespace: {kind} is cluster-scoped"),
        )),
        _ => {}
    }
    for (key, value) in &meta.labels {
        if !is_label_key(key) {
            errors.push(FieldError::new(
                format!("metadata.labels[{key:?}]"),
                format!("{key:?}"),
                "a label key ([prefix/]name of letters, digits, '-', '_', '.')",
            ));
        }
        if !is_label_value(value) {
            errors.push(FieldError::new(
                format!("metadata.labels[{key:?}]"),
                format!("{value:?}"),
                "a label value (at most 63 letters, digits, '-', '_', '.')",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_1123() {
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label("Web"));
        assert!(!is_dns_label("-web"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("web.v1"));
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(!is_label_key("app/"));
        assert!(is_label_value(""));
        assert!(!is_label_value("a b"));
    }
}
