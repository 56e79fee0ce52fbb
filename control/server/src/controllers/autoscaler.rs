//! The horizontal pod autoscaler: owns `spec.replicas` of each Deployment an HPA targets
//! (users and `skiff scale` should leave it alone while the HPA exists) and the HPA's status.
//!
//! Kubernetes' rule for a CPU utilisation target: utilisation is the pods' summed CPU usage
//! over their summed CPU requests; the wanted count is `ceil(current * utilisation /
//! target)`, unchanged while utilisation is within 10% of the target, kept within
//! [minReplicas, maxReplicas]. Metrics are noisy, so recommendations are stabilised: scaling
//! down follows the highest recommendation of the scale-down window (5 minutes by default),
//! scaling up the lowest of the scale-up window (none by default). Only ready pods with a
//! metric sample count; pods still starting would drag the average down.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use skiff_api::{
    autoscaling::{HpaStatus, TOLERANCE},
    Condition, Deployment, HorizontalPodAutoscaler, NodeMetrics, Pod,
};

use skiff_api::time::rfc3339;

use super::is_active;

/// The recommendations an HPA made recently, kept by its runner between calls (in memory:
/// after a restart the windows simply start empty, as in Kubernetes).
#[derive(Clone, Debug, Default)]
pub struct Recommendations {
    history: Vec<(SystemTime, i32)>,
}

/// What to write: the Deployment's new replica count (if it changes) and the HPA status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoscalePlan {
    pub replicas: Option<i32>,
    pub status: HpaStatus,
}

/// Plans the replica count of `deployment` (the HPA's target) at `now`, given `pods` (the
/// Deployment's pods) and the latest `metrics` of every node.
pub fn reconcile(
    hpa: &HorizontalPodAutoscaler,
    deployment: &Deployment,
    pods: &[Pod],
    metrics: &[NodeMetrics],
    history: &mut Recommendations,
    now: SystemTime,
) -> AutoscalePlan {
    let current = deployment.replicas();
    let (min, max) = (hpa.min_replicas(), hpa.spec.max_replicas);
    let mut conditions = Vec::new();
    let mut utilization = None;
    let desired = if current == 0 {
        conditions.push(Condition::new(
            "ScalingActive",
            false,
            Some("ScalingDisabled"),
            Some("scaling is disabled since the replica count of the target is zero".into()),
        ));
        current
    } else if current > max || current < min {
        let (reason, message) = if current > max {
            ("TooManyReplicas", "above maxReplicas")
        } else {
            ("TooFewReplicas", "below minReplicas")
        };
        conditions.push(Condition::new(
            "ScalingLimited",
            true,
            Some(reason),
            Some(format!("the current replica count is {message}")),
        ));
        current.clamp(min, max)
    } else {
        match measure(hpa, deployment, pods, metrics) {
            Err(Failure { reason, message }) => {
                conditions.push(Condition::new(
                    "ScalingActive",
                    false,
                    Some(reason),
                    Some(message),
                ));
                current
            }
            Ok(measured) => {
                utilization = Some(measured.percent);
                let ratio = measured.percent / f64::from(measured.target);
                let recommended = if (ratio - 1.0).abs() <= TOLERANCE {
                    current
                } else {
                    (f64::from(current) * ratio).ceil() as i32
                };
                let stabilized = history.stabilize(hpa, recommended, current, now);
                let clamped = stabilized.clamp(min, max);
                conditions.push(Condition::new(
                    "AbleToScale",
                    true,
                    Some(match stabilized {
                        s if s < recommended => "ScaleUpStabilized",
                        s if s > recommended => "ScaleDownStabilized",
                        _ if clamped != current => "SucceededRescale",
                        _ => "ReadyForNewScale",
                    }),
                    Some(format!(
                        "recommended {recommended}, stabilized {stabilized}"
                    )),
                ));
                conditions.push(Condition::new(
                    "ScalingActive",
                    true,
                    Some("ValidMetricFound"),
                    Some(measured.note),
                ));
                conditions.push(match clamped {
                    c if c > stabilized => Condition::new(
                        "ScalingLimited",
                        true,
                        Some("TooFewReplicas"),
                        Some(format!(
                            "the desired replica count is below minReplicas ({min})"
                        )),
                    ),
                    c if c < stabilized => Condition::new(
                        "ScalingLimited",
                        true,
                        Some("TooManyReplicas"),
                        Some(format!(
                            "the desired replica count is above maxReplicas ({max})"
                        )),
                    ),
                    _ => Condition::new(
                        "ScalingLimited",
                        false,
                        Some("DesiredWithinRange"),
                        Some("the desired count is within the acceptable range".into()),
                    ),
                });
                clamped
            }
        }
    };

    let previous = hpa.status.clone().unwrap_or_default();
    let stamp = rfc3339(now);
    for c in &mut conditions {
        // The transition time only moves when the condition's status does.
        c.last_transition_time = previous
            .conditions
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
            .and_then(|p| p.last_transition_time.clone())
            .or_else(|| Some(stamp.clone()));
    }
    let changed = desired != current;
    AutoscalePlan {
        replicas: changed.then_some(desired),
        status: HpaStatus {
            current_replicas: current,
            desired_replicas: desired,
            current_cpu_utilization_percentage: utilization.map(|u| u.round() as i32),
            last_scale_time: if changed {
                Some(stamp)
            } else {
                previous.last_scale_time
            },
            conditions,
        },
    }
}

struct Measured {
    /// Usage as a percentage of requests.
    percent: f64,
    target: i32,
    /// For the ScalingActive condition: what was measured, and which pods were left out.
    note: String,
}

/// Why no utilisation could be measured: the reason and message of the ScalingActive=False
/// condition.
struct Failure {
    reason: &'static str,
    message: String,
}

/// The utilisation of the ready pods that have metrics, or why there is none.
fn measure(
    hpa: &HorizontalPodAutoscaler,
    deployment: &Deployment,
    pods: &[Pod],
    metrics: &[NodeMetrics],
) -> Result<Measured, Failure> {
    let failed = |reason, message| Failure { reason, message };
    let Some(target) = hpa.cpu_target().filter(|t| *t > 0) else {
        return Err(failed(
            "InvalidMetricSourceType",
            "the HPA has no cpu utilization target".into(),
        ));
    };
    let usage: HashMap<(&str, &str), u64> = metrics
        .iter()
        .flat_map(|n| &n.pods)
        .map(|p| ((p.namespace.as_str(), p.name.as_str()), p.cpu_millicores))
        .collect();
    let (mut used, mut requested, mut counted) = (0u64, 0u64, 0usize);
    let mut without_metrics = Vec::new();
    for pod in pods.iter().filter(|p| is_active(p) && p.is_ready()) {
        let key = (pod.metadata.namespace(), pod.metadata.name.as_str());
        let Some(cpu) = usage.get(&key) else {
            without_metrics.push(pod.metadata.name.as_str());
            continue;
        };
        let request = pod.reserved_millicores();
        if request == 0 {
            return Err(failed(
                "FailedGetResourceMetric",
                format!(
                    "missing request for cpu in pod {:?}: utilization needs requests",
                    pod.metadata.name
                ),
            ));
        }
        used += cpu;
        requested += request;
        counted += 1;
    }
    without_metrics.sort_unstable();
    if counted == 0 {
        return Err(failed(
            "FailedGetResourceMetric",
            format!(
                "no cpu metrics for any ready pod of deployment {:?} ({} without metrics)",
                deployment.metadata.name,
                without_metrics.len()
            ),
        ));
    }
    let percent = used as f64 * 100.0 / requested as f64;
    let mut note = format!(
        "cpu utilization {percent:.0}% of requests over {counted} ready pod(s), target {target}%"
    );
    if !without_metrics.is_empty() {
        note += &format!(
            "; ignored {} pod(s) without metrics: {}",
            without_metrics.len(),
            without_metrics.join(", ")
        );
    }
    Ok(Measured {
        percent,
        target,
        note,
    })
}

impl Recommendations {
    /// Kubernetes' `stabilizeRecommendationWithBehaviors`: scale up no further than the
    /// lowest recommendation of the scale-up window, down no further than the highest of the
    /// scale-down window. Records `recommended` for later calls.
    fn stabilize(
        &mut self,
        hpa: &HorizontalPodAutoscaler,
        recommended: i32,
        current: i32,
        now: SystemTime,
    ) -> i32 {
        let window = |up| Duration::from_secs(hpa.window(up).max(0) as u64);
        let (up_window, down_window) = (window(true), window(false));
        let within = |t: SystemTime, w: Duration| now.duration_since(t).is_ok_and(|age| age < w);
        self.history
            .retain(|(t, _)| within(*t, up_window.max(down_window)));
        let mut up = recommended;
        let mut down = recommended;
        for (t, r) in &self.history {
            if within(*t, up_window) {
                up = up.min(*r);
            }
            if within(*t, down_window) {
                down = down.max(*r);
            }
        }
        self.history.push((now, recommended));
        current.max(up).min(down)
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::{
        autoscaling::{
            CrossVersionObjectReference, HpaBehavior, HpaSpec, MetricSpec, MetricTarget,
            ResourceMetricSource, ScalingRules,
        },
        meta::ObjectMeta,
        node::PodMetrics,
    };

    use super::*;
    use crate::controllers::fixtures::{self, pod_status};

    fn hpa(min: i32, max: i32, target: i32) -> HorizontalPodAutoscaler {
        HorizontalPodAutoscaler {
            api_version: "autoscaling/v2".into(),
            kind: "HorizontalPodAutoscaler".into(),
            metadata: ObjectMeta {
                name: "web".into(),
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            spec: HpaSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name: "web".into(),
                },
                min_replicas: Some(min),
                max_replicas: max,
                metrics: vec![MetricSpec {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".into(),
                        target: MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(target),
                        },
                    }),
                }],
                behavior: None,
            },
            status: None,
        }
    }

    /// The scale target: Deployment `shop/web` (only its name and replicas matter).
    fn deployment(replicas: i32) -> Deployment {
        fixtures::deployment(replicas, "web:1")
    }

    /// Ready pods `shop/web-{i}` requesting `request` CPU (none if empty).
    fn pods(count: usize, request: &str) -> Vec<Pod> {
        (0..count)
            .map(|i| {
                let mut p = fixtures::pod(&format!("web-{i}"), "", "", &[("cpu", request)]);
                p.metadata.namespace = Some("shop".into());
                p.status = Some(pod_status(None, true));
                p
            })
            .collect()
    }

    /// One node's metrics: pod `web-{i}` uses `usage[i]` millicores.
    fn metrics(usage: &[u64]) -> Vec<NodeMetrics> {
        vec![NodeMetrics {
            node: "a".into(),
            pods: usage
                .iter()
                .enumerate()
                .map(|(i, cpu)| PodMetrics {
                    namespace: "shop".into(),
                    name: format!("web-{i}"),
                    cpu_millicores: *cpu,
                    memory_bytes: 0,
                })
                .collect(),
            ..NodeMetrics::default()
        }]
    }

    fn t(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_341_600 + seconds)
    }

    /// Plans for `replicas` ready pods requesting 100m each, pod `web-{i}` using `usage[i]`
    /// millicores, `seconds` into the test.
    fn scale(
        hpa: &HorizontalPodAutoscaler,
        replicas: usize,
        usage: &[u64],
        history: &mut Recommendations,
        seconds: u64,
    ) -> AutoscalePlan {
        reconcile(
            hpa,
            &deployment(replicas as i32),
            &pods(replicas, "100m"),
            &metrics(usage),
            history,
            t(seconds),
        )
    }

    /// Plans for a Deployment of `replicas` without pods or metrics, `seconds` into the test.
    fn without_pods(hpa: &HorizontalPodAutoscaler, replicas: i32, seconds: u64) -> AutoscalePlan {
        reconcile(
            hpa,
            &deployment(replicas),
            &[],
            &[],
            &mut Recommendations::default(),
            t(seconds),
        )
    }

    fn condition<'a>(plan: &'a AutoscalePlan, type_: &str) -> &'a Condition {
        plan.status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
    }

    fn message<'a>(plan: &'a AutoscalePlan, type_: &str) -> &'a str {
        condition(plan, type_).message.as_deref().unwrap()
    }

    #[test]
    fn scales_up_to_meet_the_target() {
        // 2 pods at 90% of 100m against a 50% target: ceil(2 * 1.8) = 4.
        let plan = scale(
            &hpa(1, 10, 50),
            2,
            &[90, 90],
            &mut Recommendations::default(),
            0,
        );
        assert_eq!(plan.replicas, Some(4));
        assert_eq!(plan.status.current_replicas, 2);
        assert_eq!(plan.status.desired_replicas, 4);
        assert_eq!(plan.status.current_cpu_utilization_percentage, Some(90));
        assert_eq!(
            plan.status.last_scale_time.as_deref(),
            Some("2026-11-22T10:00:00Z")
        );
        assert!(condition(&plan, "ScalingActive").is_true());
    }

    #[test]
    fn stays_within_tolerance_and_limits() {
        let mut history = Recommendations::default();
        let within = scale(&hpa(1, 10, 50), 4, &[54, 54, 54, 54], &mut history, 0);
        assert_eq!(within.replicas, None);
        let capped = scale(
            &hpa(1, 3, 50),
            2,
            &[500, 500],
            &mut Recommendations::default(),
            0,
        );
        assert_eq!(capped.replicas, Some(3));
        assert_eq!(
            condition(&capped, "ScalingLimited").reason.as_deref(),
            Some("TooManyReplicas")
        );
        // A target below minReplicas is raised at once, metrics or not.
        let raised = without_pods(&hpa(3, 5, 50), 1, 0);
        assert_eq!(raised.replicas, Some(3));
    }

    #[test]
    fn scale_down_waits_for_the_window() {
        let hpa = hpa(1, 10, 50);
        let mut history = Recommendations::default();
        let busy = scale(&hpa, 4, &[50, 50, 50, 50], &mut history, 0);
        assert_eq!(busy.replicas, None);
        // Load drops: the recommendation is 1, but 4 was recommended within 5 minutes.
        let plan = scale(&hpa, 4, &[5, 5, 5, 5], &mut history, 60);
        assert_eq!(plan.replicas, None);
        assert_eq!(
            condition(&plan, "AbleToScale").reason.as_deref(),
            Some("ScaleDownStabilized")
        );
        let plan = scale(&hpa, 4, &[5, 5, 5, 5], &mut history, 301);
        assert_eq!(plan.replicas, Some(1));
    }

    #[test]
    fn scale_up_window_takes_the_lowest_recent_recommendation() {
        let mut hpa = hpa(1, 10, 50);
        hpa.spec.behavior = Some(HpaBehavior {
            scale_up: Some(ScalingRules {
                stabilization_window_seconds: Some(60),
            }),
            scale_down: None,
        });
        let mut history = Recommendations::default();
        let calm = scale(&hpa, 2, &[50, 50], &mut history, 0);
        assert_eq!(calm.replicas, None);
        let plan = scale(&hpa, 2, &[200, 200], &mut history, 30);
        assert_eq!(plan.replicas, None, "2 was recommended 30 s ago");
        let plan = scale(&hpa, 2, &[200, 200], &mut history, 61);
        assert_eq!(plan.replicas, Some(8));
    }

    #[test]
    fn pods_without_metrics_or_requests_are_explained() {
        let hpa = hpa(1, 10, 50);
        let mut not_ready = pods(3, "100m");
        not_ready[2].status.as_mut().unwrap().conditions.clear();
        let plan = reconcile(
            &hpa,
            &deployment(3),
            &not_ready,
            &metrics(&[100]),
            &mut Recommendations::default(),
            t(0),
        );
        // web-0 at 100% counts; web-1 has no sample; web-2 is not ready. ceil(3 * 2) = 6.
        assert_eq!(plan.replicas, Some(6));
        assert!(message(&plan, "ScalingActive").contains("1 pod(s) without metrics: web-1"));

        let plan = reconcile(
            &hpa,
            &deployment(2),
            &pods(2, ""),
            &metrics(&[100, 100]),
            &mut Recommendations::default(),
            t(0),
        );
        assert_eq!(plan.replicas, None);
        assert!(!condition(&plan, "ScalingActive").is_true());
        assert!(message(&plan, "ScalingActive").contains("missing request for cpu"));

        let plan = reconcile(
            &hpa,
            &deployment(2),
            &pods(2, "100m"),
            &[],
            &mut Recommendations::default(),
            t(0),
        );
        assert_eq!(plan.replicas, None);
        assert_eq!(
            condition(&plan, "ScalingActive").reason.as_deref(),
            Some("FailedGetResourceMetric")
        );
    }

    #[test]
    fn zero_replicas_disable_scaling_and_times_carry_over() {
        let mut hpa = hpa(1, 10, 50);
        let plan = without_pods(&hpa, 0, 0);
        assert_eq!(plan.replicas, None);
        assert_eq!(
            condition(&plan, "ScalingActive").reason.as_deref(),
            Some("ScalingDisabled")
        );
        hpa.status = Some(plan.status);
        let later = without_pods(&hpa, 0, 90);
        assert_eq!(
            condition(&later, "ScalingActive")
                .last_transition_time
                .as_deref(),
            Some("2026-11-22T10:00:00Z")
        );
    }
}
