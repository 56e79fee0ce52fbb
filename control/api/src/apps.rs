//! `apps/v1` Deployment and ReplicaSet.
//!
//! As in Kubernetes, a Deployment owns ReplicaSets (one per pod template it has run, which is
//! also its rollout history) and each ReplicaSet owns its pods.

use serde::{Deserialize, Serialize};

use crate::{
    core::{Condition, PodSpec},
    meta::{IntOrString, LabelSelector, ObjectMeta},
    FieldError,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: DeploymentSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeploymentStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplateSpec {
    #[serde(default)]
    pub metadata: TemplateMeta,
    pub spec: PodSpec,
}

/// A pod template's metadata: only labels and annotations mean anything there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "crate::Labels::is_empty")]
    pub labels: crate::Labels,
    #[serde(default, skip_serializing_if = "crate::Labels::is_empty")]
    pub annotations: crate::Labels,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentStrategy {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<StrategyType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StrategyType {
    #[default]
    RollingUpdate,
    Recreate,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollingUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentStatus {
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub updated_replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub available_replicas: i32,
    #[serde(default)]
    pub unavailable_replicas: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaSet {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ReplicaSetSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ReplicaSetStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaSetSpec {
    #[serde(default)]
    pub replicas: i32,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaSetStatus {
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub available_replicas: i32,
}

/// The defaults Kubernetes applies: 25% surge, 25% unavailable.
pub const DEFAULT_MAX_SURGE: &str = "25%";
pub const DEFAULT_MAX_UNAVAILABLE: &str = "25%";
/// The annotation holding a ReplicaSet's (and its Deployment's) rollout revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The label that ties a ReplicaSet's pods to its template.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// `skiff rollout restart` sets this template annotation, as kubectl does.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

impl Deployment {
    pub fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }

    pub fn strategy(&self) -> StrategyType {
        self.spec
            .strategy
            .as_ref()
            .and_then(|s| s.type_)
            .unwrap_or_default()
    }

    /// maxSurge and maxUnavailable resolved against the replica count, with Kubernetes'
    /// rounding and its rule that both cannot be zero (then one may be unavailable).
    pub fn surge_and_unavailable(&self) -> (i32, i32) {
        let replicas = i64::from(self.replicas());
        let rolling = self
            .spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.clone())
            .unwrap_or_default();
        let surge = rolling
            .max_surge
            .unwrap_or(IntOrString::String(DEFAULT_MAX_SURGE.into()))
            .scaled(replicas, true)
            .unwrap_or(1);
        let unavailable = rolling
            .max_unavailable
            .unwrap_or(IntOrString::String(DEFAULT_MAX_UNAVAILABLE.into()))
            .scaled(replicas, false)
            .unwrap_or(0);
        if surge == 0 && unavailable == 0 {
            return (0, 1);
        }
        (surge as i32, unavailable as i32)
    }

    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.replicas() < 0 {
            errors.push(FieldError::new(
                "spec.replicas",
                self.replicas(),
                "0 or more",
            ));
        }
        validate_template(&self.spec.selector, &self.spec.template, errors);
        if let Some(rolling) = self
            .spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
        {
            for (name, value) in [
                ("maxSurge", &rolling.max_surge),
                ("maxUnavailable", &rolling.max_unavailable),
            ] {
                let Some(v) = value else { continue };
                let ok = match v {
                    IntOrString::Int(i) => *i >= 0,
                    IntOrString::String(s) => s
                        .strip_suffix('%')
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|p| name == "maxSurge" || p <= 100),
                };
                if !ok {
                    errors.push(FieldError::new(
                        format!("spec.strategy.rollingUpdate.{name}"),
                        v,
                        "a count (0 or more) or a percentage such as 25%",
                    ));
                }
            }
        }
    }
}

/// A template's labels must satisfy the selector, or the controller could never find the
/// pods it makes (Kubernetes rejects this too).
fn validate_template(
    selector: &LabelSelector,
    template: &PodTemplateSpec,
    errors: &mut Vec<FieldError>,
) {
    selector.validate("spec.selector", errors);
    if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
        errors.push(FieldError::new(
            "spec.selector",
            "{}",
            "a non-empty selector",
        ));
    } else if !selector.matches(&template.metadata.labels) {
        errors.push(FieldError::new(
            "spec.template.metadata.labels",
            format!("{:?}", template.metadata.labels),
            "labels that match spec.selector",
        ));
    }
    template.spec.validate("spec.template.spec", errors);
}

impl ReplicaSet {
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.spec.replicas < 0 {
            errors.push(FieldError::new(
                "spec.replicas",
                self.spec.replicas,
                "0 or more",
            ));
        }
        validate_template(&self.spec.selector, &self.spec.template, errors);
    }

    pub fn revision(&self) -> i64 {
        self.metadata
            .annotations
            .get(REVISION_ANNOTATION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }
}
