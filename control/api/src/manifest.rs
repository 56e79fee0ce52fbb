//! Multi-document YAML manifests into typed objects.
//!
//! Every error names the document (1-based, in file order), the line in the whole text, and
//! the field path, so a user finds the mistake without counting `---` separators. Unknown
//! fields are errors, not silently dropped: a typo in a policy must never weaken it.

use serde::de::DeserializeOwned;

use crate::object::{Kind, Object};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("document {document} (line {line}): {message}")]
pub struct ManifestError {
    pub document: usize,
    pub line: usize,
    pub message: String,
}

/// Parses and validates every document of `text`. Empty documents (only comments) are
/// skipped; `kind: List` documents contribute their items.
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
        if kind == "List" {
            // What `skiff get -o yaml` prints for several objects applies back as is.
            let items = value.get("items").and_then(|i| i.as_sequence()).cloned();
            for item in items.unwrap_or_default() {
                let text =
                    serde_yaml::to_string(&item).map_err(|e| fail(first_line, e.to_string()))?;
                let mut inner = parse_manifests(&text).map_err(|e| fail(first_line, e.message))?;
                objects.append(&mut inner);
            }
            continue;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or("");
        let object = match Kind::from_name(kind) {
            Some(k) if k.api_version() == api_version => {
                typed_object(k, &doc, first_line, document)?
            }
            Some(k) => {
                return Err(fail(
                    locate(&doc, "apiVersion").map_or(first_line, |l| first_line + l),
                    format!(
                        "apiVersion: {api_version:?}: expected {:?} for {kind}",
                        k.api_version()
                    ),
                ))
            }
            None if kind.is_empty() => return Err(fail(first_line, "kind: missing".into())),
            None => {
                let known: Vec<String> = Kind::ALL
                    .iter()
                    .filter(|k| **k != Kind::ReplicaSet && **k != Kind::EndpointSlice)
                    .map(|k| format!("{k} ({})", k.api_version()))
                    .collect();
                return Err(fail(
                    locate(&doc, "kind").map_or(first_line, |l| first_line + l),
                    format!(
                        "kind {kind:?} (apiVersion {api_version:?}): expected one of {}",
                        known.join(", ")
                    ),
                ));
            }
        };
        if let Some(e) = object.validate().into_iter().next() {
            let line = locate(&doc, &e.path).map_or(first_line, |l| first_line + l);
            return Err(fail(
                line,
                format!("{} {}: {e}", object.kind(), object.metadata().name),
            ));
        }
        objects.push(object);
    }
    Ok(objects)
}

fn typed_object(
    kind: Kind,
    doc: &str,
    first_line: usize,
    document: usize,
) -> Result<Object, ManifestError> {
    Ok(match kind {
        Kind::Namespace => Object::Namespace(typed(doc, first_line, document)?),
        Kind::Node => Object::Node(typed(doc, first_line, document)?),
        Kind::Pod => Object::Pod(typed(doc, first_line, document)?),
        Kind::Deployment => Object::Deployment(typed(doc, first_line, document)?),
        Kind::ReplicaSet => Object::ReplicaSet(typed(doc, first_line, document)?),
        Kind::Service => Object::Service(typed(doc, first_line, document)?),
        Kind::EndpointSlice => Object::EndpointSlice(typed(doc, first_line, document)?),
        Kind::NetworkPolicy => Object::NetworkPolicy(typed(doc, first_line, document)?),
        Kind::HorizontalPodAutoscaler => {
            Object::HorizontalPodAutoscaler(typed(doc, first_line, document)?)
        }
    })
}

/// The 0-based line of a field path (`spec.template.spec.containers[0].ports[1].name`) in a
/// block-style YAML document: each key is searched below the previous one at a deeper
/// indentation, each index counts list items. Flow-style parts (`{...}`) end the search at
/// the deepest line found, which is still the right neighbourhood.
fn locate(doc: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = doc.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut at: Option<usize> = None;
    let mut min_indent = 0usize;
    let mut found = None;
    for segment in path.split('.') {
        let (key, indices) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        let start = at.map_or(0, |a| a + 1);
        let Some(key_line) = (start..lines.len()).find(|&i| {
            let l = lines[i];
            let content = l.trim_start().trim_start_matches("- ");
            let content_indent = l.len() - content.len();
            content_indent >= min_indent
                && (content.starts_with(&format!("{key}:"))
                    || content.starts_with(&format!("\"{key}\":")))
        }) else {
            return found;
        };
        at = Some(key_line);
        found = Some(key_line);
        min_indent = indent(lines[key_line]) + 1;
        for index in indices
            .split(']')
            .filter_map(|p| p.strip_prefix('['))
            .filter_map(|p| p.parse::<usize>().ok())
        {
            let mut seen = 0;
            let mut item_indent = None;
            let mut item = None;
            for (i, l) in lines.iter().enumerate().skip(key_line + 1) {
                let trimmed = l.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                if indent(l) + 1 < min_indent && !trimmed.starts_with("- ") {
                    break;
                }
                if trimmed.starts_with("- ") || trimmed == "-" {
                    let this = indent(l);
                    if *item_indent.get_or_insert(this) == this {
                        if seen == index {
                            item = Some(i);
                            break;
                        }
                        seen += 1;
                    }
                }
            }
            let Some(item) = item else {
                return found;
            };
            at = Some(item.saturating_sub(1));
            found = Some(item);
            min_indent = indent(lines[item]) + 1;
        }
    }
    found
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
    let Some(start) = message.find(" at line ") else {
        return message.to_string();
    };
    // " at line L column C" may sit mid-sentence ("..., while parsing a flow mapping").
    let rest = &message[start + " at line ".len()..];
    let after_numbers = rest
        .find(|c: char| {
            !(c.is_ascii_digit() || c == ' ' || c.is_ascii_alphabetic() && "column".contains(c))
        })
        .map_or("", |i| &rest[i..]);
    format!("{}{after_numbers}", &message[..start])
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
    fn a_list_contributes_its_items() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n";
        let objects = parse_manifests(list).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].metadata().name, "b");
    }

    #[test]
    fn reads_every_document() {
        let objects = parse_manifests(GOOD).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].kind(), crate::Kind::NetworkPolicy);
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
        let bad = GOOD.replace("kind: Namespace", "kind: Gizmo");
        let e = parse_manifests(&bad).unwrap_err().to_string();
        assert!(e.starts_with("document 1 (line 2): kind \"Gizmo\""), "{e}");
    }
}
