//! Reading what users type about kinds and names, and naming objects the way kubectl does.

use anyhow::bail;
use skiff_api::{Kind, LabelSelector, Labels, SelectorOperator};

/// kubectl's name for a kind in messages: `deployment.apps`, `service`,
/// `networkpolicy.networking.k8s.io`.
pub fn resource(kind: Kind) -> String {
    let name = kind.name().to_ascii_lowercase();
    match kind.api_version().split_once('/') {
        Some((group, _)) => format!("{name}.{group}"),
        None => name,
    }
}

pub fn parse_kind(text: &str) -> anyhow::Result<Kind> {
    match Kind::parse(text) {
        Some(kind) => Ok(kind),
        None => {
            let known: Vec<String> = Kind::ALL
                .iter()
                .map(|k| match k.short_names().first() {
                    Some(short) => format!("{} ({short})", k.plural()),
                    None => k.plural().to_string(),
                })
                .collect();
            bail!(
                "unknown resource type {text:?}: expected one of {}",
                known.join(", ")
            )
        }
    }
}

/// What to act on, from `KIND[,KIND...] [NAME...]` or `KIND/NAME...`: each kind with its
/// names (none: every object of the kind).
pub fn targets(args: &[String]) -> anyhow::Result<Vec<(Kind, Vec<String>)>> {
    let Some(first) = args.first() else {
        bail!("expected KIND [NAME...] or KIND/NAME..., e.g. `deployments web` or `deploy/web`");
    };
    if !first.contains('/') {
        if let Some(slashed) = args[1..].iter().find(|a| a.contains('/')) {
            bail!("{slashed:?}: after a KIND, give plain names (or only KIND/NAME forms)");
        }
        // `deploy,svc web`: each kind, with the same names.
        return first
            .split(',')
            .map(|kind| Ok((parse_kind(kind)?, args[1..].to_vec())))
            .collect();
    }
    let mut groups: Vec<(Kind, Vec<String>)> = Vec::new();
    for arg in args {
        let Some((kind, name)) = arg
            .split_once('/')
            .filter(|(k, n)| !k.is_empty() && !n.is_empty())
        else {
            bail!("{arg:?}: expected KIND/NAME (all arguments in this form), e.g. deploy/web");
        };
        let kind = parse_kind(kind)?;
        match groups.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, names)) => names.push(name.to_string()),
            None => groups.push((kind, vec![name.to_string()])),
        }
    }
    Ok(groups)
}

/// An object's name without the namespace part of `namespace/name`.
pub fn base_name(key_name: &str) -> &str {
    key_name.rsplit('/').next().unwrap_or(key_name)
}

/// A selector in kubectl's syntax (`app=web,tier in (a,b)`), `<none>` when empty.
pub fn selector_text(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in &selector.match_expressions {
        parts.push(match r.operator {
            SelectorOperator::In => format!("{} in ({})", r.key, r.values.join(",")),
            SelectorOperator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
            SelectorOperator::Exists => r.key.clone(),
            SelectorOperator::DoesNotExist => format!("!{}", r.key),
        });
    }
    none_if_empty(parts.join(","))
}

/// `k=v,k2=v2`, `<none>` when empty.
pub fn labels_text(labels: &Labels) -> String {
    none_if_empty(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

pub fn none_if_empty(text: String) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn kinds_are_named_like_kubectl() {
        assert_eq!(resource(Kind::Deployment), "deployment.apps");
        assert_eq!(resource(Kind::Service), "service");
        assert_eq!(
            resource(Kind::HorizontalPodAutoscaler),
            "horizontalpodautoscaler.autoscaling"
        );
        let e = parse_kind("gizmos").unwrap_err().to_string();
        assert!(e.contains("deployments (deploy)"), "{e}");
    }

    #[test]
    fn targets_read_both_forms() {
        assert_eq!(
            targets(&strings(&["deploy", "web", "api"])).unwrap(),
            vec![(Kind::Deployment, strings(&["web", "api"]))]
        );
        assert_eq!(
            targets(&strings(&["po"])).unwrap(),
            vec![(Kind::Pod, vec![])]
        );
        assert_eq!(
            targets(&strings(&["deploy/web", "svc/web", "deployment/api"])).unwrap(),
            vec![
                (Kind::Deployment, strings(&["web", "api"])),
                (Kind::Service, strings(&["web"]))
            ]
        );
        assert_eq!(
            targets(&strings(&["deploy,svc", "web"])).unwrap(),
            vec![
                (Kind::Deployment, strings(&["web"])),
                (Kind::Service, strings(&["web"]))
            ]
        );
        assert!(targets(&strings(&["deploy,gizmo"])).is_err());
        assert!(targets(&strings(&["deploy/web", "api"])).is_err());
        assert!(targets(&strings(&["deploy", "svc/web"])).is_err());
        assert!(targets(&[]).is_err());
    }

    #[test]
    fn selectors_print_in_kubectl_syntax() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(selector_text(&selector), "app=web,tier in (a,b),!canary");
        assert_eq!(selector_text(&LabelSelector::default()), "<none>");
    }
}
