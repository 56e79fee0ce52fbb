//! `autoscaling/v2` HorizontalPodAutoscaler (CPU utilisation).

use serde::{Deserialize, Serialize};

use crate::{core::Condition, meta::ObjectMeta, FieldError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HorizontalPodAutoscaler {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: HpaSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<HpaStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaSpec {
    pub scale_target_ref: CrossVersionObjectReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    pub max_replicas: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HpaBehavior>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrossVersionObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricSource>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMetricSource {
    pub name: String,
    pub target: MetricTarget,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricTarget {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaBehavior {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaStatus {
    #[serde(default)]
    pub current_replicas: i32,
    #[serde(default)]
    pub desired_replicas: i32,
    /// Average CPU utilisation of the target's pods, percent of their requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_cpu_utilization_percentage: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Kubernetes' defaults: scale up at once, scale down after 5 minutes of lower
/// recommendations.
pub const DEFAULT_SCALE_DOWN_WINDOW_SECONDS: i32 = 300;
pub const DEFAULT_SCALE_UP_WINDOW_SECONDS: i32 = 0;
/// Kubernetes' tolerance: no change while usage is within 10% of the target.
pub const TOLERANCE: f64 = 0.1;

impl HorizontalPodAutoscaler {
    pub fn min_replicas(&self) -> i32 {
        self.spec.min_replicas.unwrap_or(1)
    }

    /// The CPU utilisation target (percent of requests).
    pub fn cpu_target(&self) -> Option<i32> {
        self.spec
            .metrics
            .iter()
            .find_map(|m| m.resource.as_ref().filter(|r| r.name == "cpu"))
            .and_then(|r| r.target.average_utilization)
    }

    pub fn window(&self, up: bool) -> i32 {
        let rules = self.spec.behavior.as_ref().and_then(|b| {
            if up {
                b.scale_up.as_ref()
            } else {
                b.scale_down.as_ref()
            }
        });
        rules
            .and_then(|r| r.stabilization_window_seconds)
            .unwrap_or(if up {
                DEFAULT_SCALE_UP_WINDOW_SECONDS
            } else {
                DEFAULT_SCALE_DOWN_WINDOW_SECONDS
            })
    }

    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        let target = &self.spec.scale_target_ref;
        if target.kind != "Deployment" {
            errors.push(FieldError::new(
                "spec.scaleTargetRef.kind",
                format!("{:?}", target.kind),
                "Deployment",
            ));
        }
        if self.min_replicas() < 1 {
            errors.push(FieldError::new(
                "spec.minReplicas",
                self.min_replicas(),
                "1 or more",
            ));
        }
        if self.spec.max_replicas < self.min_replicas() {
            errors.push(FieldError::new(
                "spec.maxReplicas",
                self.spec.max_replicas,
                format!(">= minReplicas ({})", self.min_replicas()),
            ));
        }
        for (i, m) in self.spec.metrics.iter().enumerate() {
            let ok = m.type_ == "Resource"
                && m.resource.as_ref().is_some_and(|r| {
                    r.name == "cpu"
                        && r.target.type_ == "Utilization"
                        && r.target.average_utilization.is_some_and(|u| u > 0)
                });
            if !ok {
                errors.push(FieldError::new(
                    format!("spec.metrics[{i}]"),
                    format!("type {}", m.type_),
                    "a Resource metric on cpu with target type Utilization and averageUtilization > 0 (the only metric Skiff supports)",
                ));
            }
        }
        if self.cpu_target().is_none() {
            errors.push(FieldError::new(
                "spec.metrics",
                "no cpu target",
                "a cpu Utilization target",
            ));
        }
    }
}
