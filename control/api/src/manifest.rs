//! Multi-document YAML manifests into typed objects.
//!
//! Every error names the document (1-based, in file order), the line in the whole text, and
//! the field path, so a user finds the mistake without counting `---` separators. Unknown
//! fields are errors, not silently dropped: a typo in a policy must never weaken it.

use serde::de::DeserializeOwned;

use crate::{core::Namespace, core::Pod, network_policy::NetworkPolicy};

/// One object of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Namespace(Namespace),
    Pod(Pod),
    NetworkPolicy(NetworkPolicy),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Pod(_) => "Pod",
            Object::NetworkPolicy(_) => "NetworkPolicy",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("document {document} (line {line}): {message}")]
pub struct ManifestError {
    pub document: usize,
    pub line: usize,
    pub message: String,
}

/// Parses every document of `text`. Empty documents (only comments) are skipped.
pub fn parse_manifests(text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut objects = Vec::new();
    for (index, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
        let document = index + 1;
        let fail = |line: usize, message: String| ManifestError {
            document,
            line,
            message,
        };
        let value: serde_yaml::Value = serde_yaml::from_str(&doc).map_err(|e| {
            let line = e
                .location()
                .map_or(first_line, |l| first_line + l.line() - 1);
            fail(line, strip_location(&e.to_string()))
        })?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let api_version = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or("");
        let object = match (kind, api_version) {
            ("Namespace", "v1") => Object::Namespace(typed(&doc, first_line, document)?),
            ("Pod", "v1") => Object::Pod(typed(&doc, first_line, document)?),
            ("NetworkPolicy", _) => {
                let policy: NetworkPolicy = typed(&doc, first_line, document)?;
                if let Some(e) = policy.validate().into_iter().next() {
                    return Err(fail(
                        first_line,
                        format!("NetworkPolicy {}: {e}", policy.metadata.name),
                    ));
                }
                Object::NetworkPolicy(policy)
            }
            ("", _) => return Err(fail(first_line, "kind: missing".into())),
            (kind, api_version) => {
                return Err(fail(
                    first_line,
                    format!(
                    "kind {kind:?} (apiVersion {api_version:?}): expected one of Namespace (v1), \
                         Pod (v1), NetworkPolicy (networking.k8s.io/v1)"
                ),
                ))
            }
        };
        objects.push(object);
    }
    Ok(objects)
}

/// serde_yaml's messages already start with the field path (`spec.ingress[0]: ...`).
fn typed<T: DeserializeOwned>(
    doc: &str,
    first_line: usize,
    document: usize,
) -> Result<T, ManifestError> {
    serde_yaml::from_str(doc).map_err(|e| ManifestError {
        document,
        line: e
            .location()
            .map_or(first_line, |l| first_line + l.line() - 1),
        message: strip_location(&e.to_string()),
    })
}

/// serde_yaml appends "at line L column C" relative to the document; the caller reports the
/// line in the whole text instead.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Splits on `---` lines, returning each document with the 1-based line it starts on.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push((first_line, std::mem::take(&mut current)));
            first_line = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((first_line, current));
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
# a comment-only document is skipped
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {}}]
    ports: [{port: http}, {port: 8000, endPort: 8100, protocol: UDP}]
";

    #[test]
    fn reads_every_document() {
        let objects = parse_manifests(GOOD).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].kind(), "NetworkPolicy");
    }

    #[test]
    fn unknown_field_names_document_line_and_path() {
        let bad = GOOD.replace("ports: [{port: http}", "portz: [{port: http}");
        let e = parse_manifests(&bad).unwrap_err();
        assert_eq!(e.document, 3);
        assert_eq!(e.line, 14);
        assert!(e.message.contains("spec.ingress[0]"), "{e}");
        assert!(e.message.contains("unknown field `portz`"), "{e}");
    }

    #[test]
    fn invalid_policy_names_field_value_and_expectation() {
        let bad = GOOD.replace("endPort: 8100", "endPort: 7000");
        let e = parse_manifests(&bad).unwrap_err().to_string();
        assert!(
            e.contains("spec.ingress[0].ports[1].endPort: 7000: expected >= port (8000)"),
            "{e}"
        );
        let bad = GOOD.replace("kind: Namespace", "kind: Deployment");
        let e = parse_manifests(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("document 1 (line 1): kind \"Deployment\""),
            "{e}"
        );
    }
}
