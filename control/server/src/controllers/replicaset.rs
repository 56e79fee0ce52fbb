//! The ReplicaSet controller: owns the pods of each ReplicaSet (which to create, which to
//! delete) and the ReplicaSet's status.
//!
//! It keeps exactly `spec.replicas` active pods (not finished, not terminating). When there
//! are too many it deletes the ones whose loss hurts least, in Kubernetes' order, so that a
//! Deployment scaling an old ReplicaSet down during a rollout removes the unhealthy pods
//! before the serving ones. A pod that finished under `restartPolicy: Always` is deleted and
//! replaced: it was meant to run forever.

use std::{
    cmp::Reverse,
    collections::{hash_map::RandomState, HashSet},
    hash::{BuildHasher, Hasher},
    time::SystemTime,
};

use skiff_api::{
    apps::ReplicaSetStatus, core::RestartPolicy, meta::ObjectMeta, Pod, PodPhase, ReplicaSet,
};

use skiff_api::time::parse_rfc3339;

use super::{controller_reference, encode_for_names, is_active};

/// The writes that bring one ReplicaSet's pods to its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSetPlan {
    /// Pods to create; the server fills in uid, resourceVersion and creationTimestamp.
    pub create: Vec<Pod>,
    /// Names of pods (in the ReplicaSet's namespace) to delete.
    pub delete: Vec<String>,
    /// The status as observed before the plan is carried out, as Kubernetes reports it.
    pub status: ReplicaSetStatus,
}

/// Plans the pods of `rs`, given `pods`: the pods whose controller is `rs`.
///
/// New pods are named `{rs}-{suffix}` with suffixes from `new_suffix` ([`random_suffix`] in
/// the server; a counter in tests), skipping any name already in `pods`.
pub fn reconcile(
    rs: &ReplicaSet,
    pods: &[Pod],
    new_suffix: &mut dyn FnMut() -> String,
) -> ReplicaSetPlan {
    let restart_always =
        rs.spec.template.spec.restart_policy.unwrap_or_default() == RestartPolicy::Always;
    let mut delete: Vec<String> = pods
        .iter()
        .filter(|p| restart_always && p.is_finished() && !p.is_terminating())
        .map(|p| p.metadata.name.clone())
        .collect();
    delete.sort();

    let mut active: Vec<&Pod> = pods.iter().filter(|p| is_active(p)).collect();
    let wanted = usize::try_from(rs.spec.replicas).unwrap_or(0);
    let mut create = Vec::new();
    if active.len() > wanted {
        active.sort_by_cached_key(|p| deletion_rank(p));
        delete.extend(
            active[..active.len() - wanted]
                .iter()
                .map(|p| p.metadata.name.clone()),
        );
    } else if rs.metadata.deletion_timestamp.is_none() {
        let mut taken: HashSet<String> = pods.iter().map(|p| p.metadata.name.clone()).collect();
        for _ in active.len()..wanted {
            // A clash is unlikely with random suffixes; giving up after a few tries leaves
            // the pod to the next pass rather than looping on a broken generator.
            let Some(name) = (0..10)
                .map(|_| format!("{}-{}", rs.metadata.name, new_suffix()))
                .find(|name| !taken.contains(name))
            else {
                break;
            };
            taken.insert(name.clone());
            create.push(new_pod(rs, name));
        }
    }

    let ready = active.iter().filter(|p| p.is_ready()).count() as i32;
    ReplicaSetPlan {
        create,
        delete,
        status: ReplicaSetStatus {
            observed_generation: rs.metadata.generation.unwrap_or(0),
            replicas: active.len() as i32,
            ready_replicas: ready,
            // ReplicaSets have no minReadySeconds here: a ready pod is available.
            available_replicas: ready,
        },
    }
}

/// Five random characters for a pod name (Kubernetes' alphabet, so no words and nothing
/// that looks like another character).
pub fn random_suffix() -> String {
    // std seeds every RandomState from the OS and varies it per instance: random enough for
    // names, which only need to differ, without a dependency.
    let mut hasher = RandomState::new().build_hasher();
    if let Ok(since_epoch) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(since_epoch.as_nanos());
    }
    encode_for_names(hasher.finish(), 5)
}

fn new_pod(rs: &ReplicaSet, name: String) -> Pod {
    let template = &rs.spec.template;
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: ObjectMeta {
            name,
            namespace: Some(rs.metadata.namespace().to_string()),
            labels: template.metadata.labels.clone(),
            annotations: template.metadata.annotations.clone(),
            owner_references: vec![controller_reference("apps/v1", "ReplicaSet", &rs.metadata)],
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Sort key: the pod to delete first sorts first. Kubernetes' order: not yet on a node,
/// then Pending before Unknown before Running, not ready before ready, ready for a shorter
/// time, restarted more often, created later. The name makes the order total.
fn deletion_rank(pod: &Pod) -> impl Ord {
    let status = pod.status.as_ref();
    let phase = match pod.phase() {
        PodPhase::Pending => 0,
        PodPhase::Unknown => 1,
        _ => 2,
    };
    let ready_since = status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.is_true())
        .and_then(|c| parse_rfc3339(c.last_transition_time.as_deref()?));
    let restarts: u32 = status
        .map(|s| s.container_statuses.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0);
    let created = pod
        .metadata
        .creation_timestamp
        .as_deref()
        .and_then(parse_rfc3339);
    (
        pod.spec.node_name.is_some(),
        phase,
        pod.is_ready(),
        Reverse(ready_since),
        Reverse(restarts),
        // Not created yet (no timestamp) counts as the newest.
        created.is_some(),
        Reverse(created),
        pod.metadata.name.clone(),
    )
}

#[cfg(test)]
mod tests {
    use skiff_api::core::ContainerStatus;

    use super::*;
    use crate::controllers::fixtures::{self, pod_status};

    fn replica_set(replicas: i32) -> ReplicaSet {
        let mut rs = fixtures::replica_set("web-abc", replicas, "web:1");
        rs.metadata.uid = Some("rs-uid".into());
        rs.metadata.generation = Some(3);
        rs
    }

    fn counter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("p{n}")
        }
    }

    /// A pod of `rs` in a given state: `node` bound, `phase`, `ready`, created at
    /// `created` seconds past 10:00.
    fn pod(name: &str, node: bool, phase: PodPhase, ready: bool, created: u32) -> Pod {
        let rs = replica_set(0);
        let mut p = new_pod(&rs, name.into());
        p.metadata.creation_timestamp = Some(format!("2026-11-22T10:00:{created:02}Z"));
        if node {
            p.spec.node_name = Some("n1".into());
        }
        p.status = Some(pod_status(Some(phase), ready));
        p
    }

    #[test]
    fn creates_missing_pods_from_the_template() {
        let rs = replica_set(2);
        let plan = reconcile(&rs, &[], &mut counter());
        assert_eq!(plan.delete, Vec::<String>::new());
        let names: Vec<&str> = plan
            .create
            .iter()
            .map(|p| p.metadata.name.as_str())
            .collect();
        assert_eq!(names, ["web-abc-p1", "web-abc-p2"]);
        let p = &plan.create[0];
        assert_eq!(p.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(p.metadata.labels, rs.spec.template.metadata.labels);
        assert_eq!(p.spec, rs.spec.template.spec);
        assert_eq!(p.status, None);
        let owner = p.metadata.controller().unwrap();
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str()
            ),
            ("apps/v1", "ReplicaSet", "web-abc")
        );
        assert_eq!(owner.uid, "rs-uid");
        assert_eq!(plan.status.replicas, 0);
        assert_eq!(plan.status.observed_generation, 3);

        // Fed its own output, it plans nothing.
        let again = reconcile(&rs, &plan.create, &mut counter());
        assert!(again.create.is_empty() && again.delete.is_empty());
        assert_eq!(again.status.replicas, 2);
    }

    #[test]
    fn skips_names_that_exist() {
        let rs = replica_set(2);
        let existing = pod("web-abc-p1", true, PodPhase::Running, true, 0);
        let plan = reconcile(&rs, &[existing], &mut counter());
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.create[0].metadata.name, "web-abc-p2");
    }

    #[test]
    fn scales_down_the_least_useful_pods_first() {
        let pods = [
            pod("running-old", true, PodPhase::Running, true, 1),
            pod("running-new", true, PodPhase::Running, true, 9),
            pod("running-unready", true, PodPhase::Running, false, 2),
            pod("pending", true, PodPhase::Pending, false, 3),
            pod("unscheduled", false, PodPhase::Pending, false, 4),
        ];
        let delete_order: Vec<String> = (0..5)
            .rev()
            .flat_map(|replicas| reconcile(&replica_set(replicas), &pods, &mut counter()).delete)
            .fold(Vec::new(), |mut order, name| {
                if !order.contains(&name) {
                    order.push(name);
                }
                order
            });
        assert_eq!(
            delete_order,
            [
                "unscheduled",
                "pending",
                "running-unready",
                "running-new",
                "running-old"
            ]
        );
    }

    #[test]
    fn among_ready_pods_prefers_short_readiness_and_many_restarts() {
        let mut long_ready = pod("long-ready", true, PodPhase::Running, true, 9);
        long_ready.status.as_mut().unwrap().conditions[0].last_transition_time =
            Some("2026-11-22T10:00:10Z".into());
        let mut short_ready = pod("short-ready", true, PodPhase::Running, true, 1);
        short_ready.status.as_mut().unwrap().conditions[0].last_transition_time =
            Some("2026-11-22T10:05:00Z".into());
        let plan = reconcile(
            &replica_set(1),
            &[long_ready.clone(), short_ready],
            &mut counter(),
        );
        assert_eq!(plan.delete, ["short-ready"]);

        let mut crashy = pod("crashy", true, PodPhase::Running, true, 1);
        crashy.status.as_mut().unwrap().container_statuses = vec![ContainerStatus {
            name: "app".into(),
            ready: true,
            restart_count: 4,
            ..ContainerStatus::default()
        }];
        let steady = pod("steady", true, PodPhase::Running, true, 9);
        let plan = reconcile(&replica_set(1), &[crashy, steady], &mut counter());
        assert_eq!(plan.delete, ["crashy"]);
    }

    #[test]
    fn replaces_failed_pods_and_ignores_terminating_ones() {
        let failed = pod("failed", true, PodPhase::Failed, false, 0);
        let mut leaving = pod("leaving", true, PodPhase::Running, true, 1);
        leaving.metadata.deletion_timestamp = Some("2026-11-22T10:01:00Z".into());
        let ok = pod("ok", true, PodPhase::Running, true, 2);
        let plan = reconcile(&replica_set(2), &[failed, leaving, ok], &mut counter());
        assert_eq!(plan.delete, ["failed"]);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(
            (plan.status.replicas, plan.status.ready_replicas),
            (1, 1),
            "only `ok` counts"
        );

        // Under restartPolicy Never a failed pod stays for inspection, but is still replaced.
        let mut never = replica_set(1);
        never.spec.template.spec.restart_policy = Some(RestartPolicy::Never);
        let plan = reconcile(
            &never,
            &[pod("failed", true, PodPhase::Failed, false, 0)],
            &mut counter(),
        );
        assert!(plan.delete.is_empty());
        assert_eq!(plan.create.len(), 1);
    }

    #[test]
    fn a_deleted_replica_set_creates_nothing() {
        let mut rs = replica_set(3);
        rs.metadata.deletion_timestamp = Some("2026-11-22T10:00:00Z".into());
        assert!(reconcile(&rs, &[], &mut counter()).create.is_empty());
    }

    #[test]
    fn random_suffixes_are_name_safe_and_differ() {
        let a = random_suffix();
        assert_eq!(a.len(), 5);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        let distinct: HashSet<String> = (0..100).map(|_| random_suffix()).collect();
        assert!(distinct.len() > 95);
    }
}
