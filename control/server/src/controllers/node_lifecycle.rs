//! The node lifecycle controller: owns the Ready condition of nodes that stopped reporting,
//! the `node.kubernetes.io/unreachable` taint, and the eviction of pods from lost nodes.
//!
//! A node's daemon posts its Ready condition with a heartbeat time. When the heartbeat is
//! older than the grace period the node may be down or cut off; nobody can know which, so,
//! as in Kubernetes, its Ready condition becomes Unknown (the scheduler then skips it) and it
//! gets the unreachable NoExecute taint. Its pods are evicted so their controllers replace
//! them elsewhere: a ReplicaSet counts a terminating pod as gone.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use skiff_api::{
    core::TaintEffect,
    node::{Taint, UNREACHABLE_TAINT},
    Condition, Node, Pod,
};

use skiff_api::time::{parse_rfc3339, rfc3339};

/// Kubernetes' taint for nodes whose daemon reports NotReady itself; here only used to
/// match tolerations (pods tolerating it stay on such nodes).
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNKNOWN_REASON: &str = "NodeStatusUnknown";
const UNKNOWN_MESSAGE: &str = "Kubelet stopped posting node status.";

/// The writes for nodes and their pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeLifecyclePlan {
    /// Nodes whose Ready condition or taints changed (whole objects with their
    /// resourceVersion, for a conditional update).
    pub node_updates: Vec<Node>,
    /// Pods to delete, as (namespace, name), sorted.
    pub evict: Vec<(String, String)>,
}

/// Plans node conditions, taints and evictions at `now`, for a controller that has been
/// watching since `watching_since`.
///
/// A node is silent when its last heartbeat (Ready's `lastHeartbeatTime`, else its
/// creation time) is older than `grace`. Heartbeats sent while no controller ran (the
/// control plane down or between leaders) were never recorded, so, as in Kubernetes, a
/// heartbeat counts from `watching_since` at the earliest: a restarted control plane gives
/// every node a full grace period before it calls one lost. Pods are evicted from a node that has not been
/// Ready for longer than `grace` (since its last heartbeat when silent, since the Ready
/// condition's last transition when it reports NotReady itself), or at once when the node
/// object is gone. A pod that tolerates the node's taint (unreachable or not-ready,
/// NoExecute) stays for its `tolerationSeconds` instead, or for good without one.
pub fn reconcile(
    nodes: &[Node],
    pods: &[Pod],
    now: SystemTime,
    watching_since: SystemTime,
    grace: Duration,
) -> NodeLifecyclePlan {
    let mut plan = NodeLifecyclePlan::default();
    // Per node: since when it has not been Ready and the taint that stands for that, or
    // `None` while it is Ready.
    let mut not_ready: HashMap<&str, Option<(SystemTime, Taint)>> = HashMap::new();
    for node in nodes {
        let heartbeat = node
            .ready_condition()
            .and_then(|c| c.last_heartbeat_time.as_deref())
            .or(node.metadata.creation_timestamp.as_deref())
            .and_then(parse_rfc3339)
            .map(|h| h.max(watching_since));
        let silent = heartbeat.is_some_and(|h| elapsed(h, now) > grace);
        let mut updated = node.clone();
        if silent {
            mark_unknown(&mut updated, now);
        } else {
            // Heartbeats arrive again: reachable, whatever the node says of its readiness.
            updated
                .spec
                .taints
                .retain(|t| !(t.key == UNREACHABLE_TAINT && t.effect == TaintEffect::NoExecute));
        }
        if updated != *node {
            plan.node_updates.push(updated);
        }
        let since = match (silent, heartbeat) {
            (true, Some(h)) => Some((h, taint(UNREACHABLE_TAINT))),
            _ if node.is_ready() => None,
            _ => node
                .ready_condition()
                .and_then(|c| c.last_transition_time.as_deref())
                .and_then(parse_rfc3339)
                .or(heartbeat)
                .map(|since| (since, taint(NOT_READY_TAINT))),
        };
        not_ready.insert(&node.metadata.name, since);
    }

    for pod in pods {
        if pod.is_finished() || pod.is_terminating() {
            continue;
        }
        let Some(node) = &pod.spec.node_name else {
            continue;
        };
        let evict = match not_ready.get(node.as_str()) {
            None => true,
            Some(None) => false,
            Some(Some((since, taint))) => {
                eviction_delay(pod, taint, grace).is_some_and(|delay| elapsed(*since, now) > delay)
            }
        };
        if evict {
            plan.evict.push((
                pod.metadata.namespace().to_string(),
                pod.metadata.name.clone(),
            ));
        }
    }
    plan.evict.sort();
    plan
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}

fn taint(key: &str) -> Taint {
    Taint {
        key: key.into(),
        value: None,
        effect: TaintEffect::NoExecute,
    }
}

/// How long a pod may stay on a node that is not Ready: `grace`, or what its toleration of
/// `taint` says (`None`: forever).
fn eviction_delay(pod: &Pod, taint: &Taint, grace: Duration) -> Option<Duration> {
    match pod.spec.tolerations.iter().find(|t| t.tolerates(taint)) {
        None => Some(grace),
        Some(t) => t
            .toleration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64)),
    }
}

/// Ready becomes Unknown (its transition time moving only if it was not Unknown already;
/// the heartbeat stays, as the last sign of life) and the unreachable taint is added.
fn mark_unknown(node: &mut Node, now: SystemTime) {
    let status = node.status.get_or_insert_with(Default::default);
    let ready = match status.conditions.iter().position(|c| c.type_ == "Ready") {
        Some(i) => &mut status.conditions[i],
        None => {
            status.conditions.push(Condition {
                type_: "Ready".into(),
                ..Condition::default()
            });
            status.conditions.last_mut().expect("just pushed")
        }
    };
    if ready.status != "Unknown" {
        ready.status = "Unknown".into();
        ready.last_transition_time = Some(rfc3339(now));
    }
    ready.reason = Some(UNKNOWN_REASON.into());
    ready.message = Some(UNKNOWN_MESSAGE.into());
    let unreachable = taint(UNREACHABLE_TAINT);
    if !node.spec.taints.contains(&unreachable) {
        node.spec.taints.push(unreachable);
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::{
        core::{Toleration, TolerationOperator},
        PodSpec,
    };

    use super::*;
    use crate::controllers::fixtures::{self, reported};

    const T0: &str = "2026-11-22T10:00:00Z";
    const GRACE: Duration = Duration::from_secs(40);

    fn at(offset_seconds: u64) -> SystemTime {
        parse_rfc3339(T0).unwrap() + Duration::from_secs(offset_seconds)
    }

    /// Node `name` (no allocatable resources), last heard from at `heartbeat`, in its state
    /// since `T0`.
    fn node(name: &str, ready: bool, heartbeat: &str) -> Node {
        reported(fixtures::node(name, "", "", ready), heartbeat, Some(T0))
    }

    /// Pod `shop/{name}`, without containers, bound to `node`.
    fn pod(name: &str, node: &str) -> Pod {
        let mut p = fixtures::pod(name, "", "", &[]);
        p.metadata.namespace = Some("shop".into());
        p.spec = PodSpec {
            node_name: Some(node.into()),
            ..PodSpec::default()
        };
        p
    }

    fn evicted(plan: &NodeLifecyclePlan) -> Vec<&str> {
        plan.evict.iter().map(|(_, name)| name.as_str()).collect()
    }

    #[test]
    fn a_restarted_control_plane_gives_every_node_a_full_grace_period() {
        // The last heartbeat is 100 s old only because no control plane ran to record the
        // later ones: the new one has watched for 30 s of its 40 s grace.
        let nodes = [node("a", true, T0)];
        let pods = [pod("p", "a")];
        let plan = reconcile(&nodes, &pods, at(100), at(70), GRACE);
        assert_eq!(plan, NodeLifecyclePlan::default());
        let plan = reconcile(&nodes, &pods, at(111), at(70), GRACE);
        assert_eq!(
            plan.node_updates.len(),
            1,
            "silent for the whole grace period"
        );
    }

    #[test]
    fn fresh_nodes_are_left_alone() {
        let nodes = [node("a", true, T0)];
        let plan = reconcile(&nodes, &[pod("p", "a")], at(40), at(0), GRACE);
        assert_eq!(plan, NodeLifecyclePlan::default());
    }

    #[test]
    fn silent_node_becomes_unknown_tainted_and_loses_its_pods() {
        let nodes = [node("a", true, T0), node("b", true, "2026-11-22T10:00:41Z")];
        let pods = [pod("on-a", "a"), pod("on-b", "b")];
        let plan = reconcile(&nodes, &pods, at(41), at(0), GRACE);
        assert_eq!(plan.node_updates.len(), 1);
        let a = &plan.node_updates[0];
        let ready = a.ready_condition().unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some(UNKNOWN_MESSAGE));
        assert_eq!(
            ready.last_transition_time.as_deref(),
            Some("2026-11-22T10:00:41Z")
        );
        assert_eq!(ready.last_heartbeat_time.as_deref(), Some(T0));
        assert_eq!(a.spec.taints, [taint(UNREACHABLE_TAINT)]);
        assert_eq!(plan.evict, [("shop".to_string(), "on-a".to_string())]);

        // Idempotent: once marked, nothing more to write (the pod, now terminating, is not
        // evicted twice).
        let mut leaving = pods[0].clone();
        leaving.metadata.deletion_timestamp = Some(rfc3339(at(41)));
        let marked = [a.clone(), nodes[1].clone()];
        let again = reconcile(&marked, &[leaving, pods[1].clone()], at(45), at(0), GRACE);
        assert_eq!(again, NodeLifecyclePlan::default());

        // The daemon comes back: it reports Ready and the taint goes.
        let mut back = a.clone();
        back.status.as_mut().unwrap().conditions =
            node("a", true, &rfc3339(at(60))).status.unwrap().conditions;
        let plan = reconcile(&[back], &[], at(61), at(0), GRACE);
        assert!(plan.node_updates[0].spec.taints.is_empty());
        assert!(plan.node_updates[0].is_ready());
    }

    #[test]
    fn not_before_the_grace_period() {
        let nodes = [node("a", true, T0)];
        let plan = reconcile(&nodes, &[pod("p", "a")], at(40), at(0), GRACE);
        assert!(plan.node_updates.is_empty() && plan.evict.is_empty());
    }

    #[test]
    fn pods_of_deleted_nodes_go_at_once() {
        let plan = reconcile(&[], &[pod("orphan", "gone")], at(0), at(0), GRACE);
        assert_eq!(evicted(&plan), ["orphan"]);
        // Unscheduled pods are no concern of this controller.
        let mut pending = pod("pending", "");
        pending.spec.node_name = None;
        assert!(reconcile(&[], &[pending], at(0), at(0), GRACE)
            .evict
            .is_empty());
    }

    #[test]
    fn reported_not_ready_evicts_after_grace_from_the_transition() {
        // The daemon is alive (fresh heartbeat) but says NotReady since T0.
        let nodes = [node("a", false, "2026-11-22T10:01:00Z")];
        let pods = [pod("p", "a")];
        let plan = reconcile(&nodes, &pods, at(30), at(0), GRACE);
        assert!(plan.evict.is_empty() && plan.node_updates.is_empty());
        let plan = reconcile(&nodes, &pods, at(61), at(0), GRACE);
        assert_eq!(evicted(&plan), ["p"]);
        assert!(
            plan.node_updates.is_empty(),
            "no unreachable taint: it answers"
        );
    }

    #[test]
    fn tolerations_keep_pods_on_unreachable_nodes() {
        let nodes = [node("a", true, T0)];
        let tolerating = |name: &str, seconds: Option<i64>| {
            let mut p = pod(name, "a");
            p.spec.tolerations = vec![Toleration {
                key: Some(UNREACHABLE_TAINT.into()),
                operator: Some(TolerationOperator::Exists),
                effect: Some(TaintEffect::NoExecute),
                toleration_seconds: seconds,
                ..Toleration::default()
            }];
            p
        };
        let pods = [
            pod("plain", "a"),
            tolerating("forever", None),
            tolerating("five-minutes", Some(300)),
        ];
        let plan = reconcile(&nodes, &pods, at(100), at(0), GRACE);
        assert_eq!(evicted(&plan), ["plain"]);
        let plan = reconcile(&nodes, &pods, at(301), at(0), GRACE);
        assert_eq!(evicted(&plan), ["five-minutes", "plain"]);
    }
}
