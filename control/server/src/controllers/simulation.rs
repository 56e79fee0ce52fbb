//! A simulated cluster for the controllers' promises that only show over many steps:
//! rollouts that keep enough pods serving, scale changes and node losses that converge.
//!
//! Each tick runs what the server's runners and the node daemons would do, in the order
//! they would typically get to it: the kubelets (heartbeats; a pod bound in the previous
//! tick is Running and Ready, a terminating one is gone), then the node lifecycle,
//! Deployment and ReplicaSet controllers and the scheduler, each applying its plan as the
//! store would (uids and creation times assigned, deletes of bound pods made graceful).

use std::{
    collections::{BTreeMap, HashSet},
    net::Ipv4Addr,
    time::{Duration, SystemTime},
};

use skiff_api::{
    apps::{DeploymentSpec, REVISION_ANNOTATION, TEMPLATE_HASH_LABEL},
    node::UNREACHABLE_TAINT,
    Condition, Deployment, Node, Pod, PodPhase, PodStatus, ReplicaSet,
};

use super::{
    deployment::{self, rollback_template, template_hash},
    fixtures::{self, reported, rolling},
    is_active, is_controlled_by, node_lifecycle, replicaset,
};
use crate::scheduler::Scheduler;
use skiff_api::time::{parse_rfc3339, rfc3339};

const TICK: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(40);

struct Cluster {
    now: SystemTime,
    nodes: Vec<Node>,
    /// Nodes whose daemon has stopped: no heartbeats, its pods are left as they are.
    silent: HashSet<String>,
    deployment: Deployment,
    replica_sets: Vec<ReplicaSet>,
    pods: Vec<Pod>,
    /// Source of uids, pod name suffixes and pod IPs.
    counter: u32,
}

impl Cluster {
    fn new(nodes: &[&str], deployment: Deployment) -> Cluster {
        let mut cluster = Cluster {
            now: parse_rfc3339("2026-11-22T10:00:00Z").unwrap(),
            nodes: nodes.iter().map(|name| node(name)).collect(),
            silent: HashSet::new(),
            deployment,
            replica_sets: Vec::new(),
            pods: Vec::new(),
            counter: 0,
        };
        cluster.deployment.metadata.uid = Some(cluster.uid());
        cluster
    }

    fn next(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    fn uid(&mut self) -> String {
        format!("uid-{}", self.next())
    }

    fn tick(&mut self) {
        self.now += TICK;
        self.kubelets();
        self.node_lifecycle();
        self.deployment_controller();
        self.replicaset_controller();
        self.scheduler();
    }

    fn kubelets(&mut self) {
        let now = rfc3339(self.now);
        for node in &mut self.nodes {
            if self.silent.contains(&node.metadata.name) {
                continue;
            }
            let status = node.status.as_mut().unwrap();
            let since = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready" && c.is_true())
                .and_then(|c| c.last_transition_time.clone());
            status.conditions = vec![Condition {
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: since.or(Some(now.clone())),
                ..Condition::new("Ready", true, Some("KubeletReady"), None)
            }];
        }
        let silent = &self.silent;
        let alive = |p: &Pod| {
            p.spec
                .node_name
                .as_ref()
                .is_some_and(|n| !silent.contains(n))
        };
        self.pods.retain(|p| !(p.is_terminating() && alive(p)));
        let mut started = Vec::new();
        for (i, pod) in self.pods.iter().enumerate() {
            if alive(pod) && pod.phase() == PodPhase::Pending {
                started.push(i);
            }
        }
        for i in started {
            let ip = Ipv4Addr::from(0x0af4_0000 + self.next());
            self.pods[i].status = Some(PodStatus {
                phase: Some(PodPhase::Running),
                conditions: vec![Condition {
                    last_transition_time: Some(now.clone()),
                    ..Condition::new("Ready", true, None, None)
                }],
                pod_ip: Some(ip),
                ..PodStatus::default()
            });
        }
    }

    fn node_lifecycle(&mut self) {
        let plan = node_lifecycle::reconcile(
            &self.nodes,
            &self.pods,
            self.now,
            SystemTime::UNIX_EPOCH,
            GRACE,
        );
        for updated in plan.node_updates {
            let slot = self
                .nodes
                .iter_mut()
                .find(|n| n.metadata.name == updated.metadata.name)
                .unwrap();
            *slot = updated;
        }
        for (_, name) in plan.evict {
            self.delete_pod(&name);
        }
    }

    fn deployment_controller(&mut self) {
        let d = &self.deployment;
        let rss: Vec<ReplicaSet> = self
            .replica_sets
            .iter()
            .filter(|rs| is_controlled_by(&rs.metadata, "Deployment", &d.metadata))
            .cloned()
            .collect();
        let pods: Vec<Pod> = self
            .pods
            .iter()
            .filter(|p| {
                rss.iter()
                    .any(|rs| is_controlled_by(&p.metadata, "ReplicaSet", &rs.metadata))
            })
            .cloned()
            .collect();
        let plan = deployment::reconcile(d, &rss, &pods, template_hash);
        if let Some(mut rs) = plan.create {
            rs.metadata.uid = Some(self.uid());
            rs.metadata.creation_timestamp = Some(rfc3339(self.now));
            self.replica_sets.push(rs);
        }
        for updated in plan.update {
            let slot = self
                .replica_sets
                .iter_mut()
                .find(|rs| rs.metadata.name == updated.metadata.name)
                .unwrap();
            *slot = updated;
        }
        self.replica_sets
            .retain(|rs| !plan.delete.contains(&rs.metadata.name));
        if let Some(revision) = plan.revision {
            self.deployment
                .metadata
                .annotations
                .insert(REVISION_ANNOTATION.into(), revision.to_string());
        }
        self.deployment.status = Some(plan.status);
    }

    fn replicaset_controller(&mut self) {
        for i in 0..self.replica_sets.len() {
            let rs = &self.replica_sets[i];
            let owned: Vec<Pod> = self
                .pods
                .iter()
                .filter(|p| is_controlled_by(&p.metadata, "ReplicaSet", &rs.metadata))
                .cloned()
                .collect();
            let mut counter = self.counter;
            let plan = replicaset::reconcile(rs, &owned, &mut || {
                counter += 1;
                format!("{counter:05}")
            });
            self.counter = counter;
            for name in &plan.delete {
                self.delete_pod(name);
            }
            for mut pod in plan.create {
                pod.metadata.uid = Some(self.uid());
                pod.metadata.creation_timestamp = Some(rfc3339(self.now));
                self.pods.push(pod);
            }
            self.replica_sets[i].status = Some(plan.status);
        }
    }

    fn scheduler(&mut self) {
        let mut scheduler = Scheduler::new(&self.nodes, &self.pods);
        for pod in &mut self.pods {
            if pod.spec.node_name.is_none() && is_active(pod) {
                pod.spec.node_name = scheduler.schedule(pod).ok();
            }
        }
    }

    /// As the API server deletes: at once when no node runs the pod, else gracefully.
    fn delete_pod(&mut self, name: &str) {
        let now = rfc3339(self.now);
        let i = self
            .pods
            .iter()
            .position(|p| p.metadata.name == name)
            .unwrap();
        if self.pods[i].spec.node_name.is_none() {
            self.pods.remove(i);
        } else {
            self.pods[i].metadata.deletion_timestamp.get_or_insert(now);
        }
    }

    fn update_spec(&mut self, change: impl FnOnce(&mut DeploymentSpec)) {
        change(&mut self.deployment.spec);
        let generation = self.deployment.metadata.generation.get_or_insert(0);
        *generation += 1;
    }

    fn active(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| is_active(p))
    }

    fn ready(&self) -> usize {
        self.active().filter(|p| p.is_ready()).count()
    }

    /// The rollout is complete and every pod left over from it is gone.
    fn settled(&self) -> bool {
        let d = &self.deployment;
        let replicas = d.replicas();
        let new_rs = format!("{}-{}", d.metadata.name, template_hash(&d.spec.template));
        self.deployment.status.as_ref().is_some_and(|s| {
            s.observed_generation == d.metadata.generation.unwrap_or(0)
                && (s.replicas, s.updated_replicas, s.available_replicas)
                    == (replicas, replicas, replicas)
        }) && self.ready() == replicas as usize
            && self
                .replica_sets
                .iter()
                .all(|rs| rs.metadata.name == new_rs || rs.spec.replicas == 0)
            && self.pods.iter().all(|p| {
                !p.is_terminating() || self.silent.contains(p.spec.node_name.as_ref().unwrap())
            })
    }

    /// Ticks until settled, checking `invariant` after every tick; panics after 100 ticks.
    fn settle(&mut self, mut invariant: impl FnMut(&Cluster)) -> usize {
        for ticks in 1..=100 {
            self.tick();
            invariant(self);
            if self.settled() {
                return ticks;
            }
        }
        panic!(
            "not settled after 100 ticks: {} active, {} ready, replica sets {:?}",
            self.active().count(),
            self.ready(),
            self.replica_sets
                .iter()
                .map(|rs| (&rs.metadata.name, rs.spec.replicas))
                .collect::<Vec<_>>()
        );
    }

    /// Active pods per node.
    fn spread(&self) -> BTreeMap<&str, usize> {
        let mut per_node = BTreeMap::new();
        for p in self.active() {
            *per_node
                .entry(p.spec.node_name.as_deref().unwrap_or("none"))
                .or_default() += 1;
        }
        per_node
    }

    fn images(&self) -> Vec<&str> {
        self.active()
            .map(|p| p.spec.containers[0].image.as_deref().unwrap())
            .collect()
    }
}

/// A Ready node of 4 CPUs and 8Gi, heard from at the start of the simulation.
fn node(name: &str) -> Node {
    reported(
        fixtures::node(name, "4", "8Gi", true),
        "2026-11-22T10:00:00Z",
        None,
    )
}

/// Deployment `shop/web` (generation 1) of `replicas` pods requesting 250m and 64Mi,
/// rolled out with `max_surge` and `max_unavailable`.
fn web(replicas: i32, max_surge: i64, max_unavailable: i64) -> Deployment {
    let mut d = fixtures::deployment(replicas, "web:1");
    d.metadata.generation = Some(1);
    d.spec.template.spec.containers = vec![fixtures::container(
        Some("web:1"),
        &[("cpu", "250m"), ("memory", "64Mi")],
    )];
    rolling(d, max_surge, max_unavailable)
}

fn set_image(image: &str) -> impl FnOnce(&mut DeploymentSpec) + '_ {
    move |spec| spec.template.spec.containers[0].image = Some(image.into())
}

#[test]
fn scaling_up_and_down_converges() {
    let mut c = Cluster::new(&["node-a", "node-b", "node-c"], web(1, 1, 0));
    c.settle(|_| {});
    assert_eq!(c.ready(), 1);

    c.update_spec(|s| s.replicas = Some(6));
    c.settle(|c| assert!(c.active().count() <= 6));
    assert_eq!(c.ready(), 6);
    assert_eq!(
        c.spread().into_values().collect::<Vec<_>>(),
        [2, 2, 2],
        "replicas spread over the nodes"
    );

    c.update_spec(|s| s.replicas = Some(2));
    c.settle(|_| {});
    assert_eq!(c.active().count(), 2);
    assert_eq!(c.pods.len(), 2, "scaled-down pods are gone");
    assert_eq!(c.replica_sets.len(), 1);
    assert_eq!(c.replica_sets[0].status.as_ref().unwrap().ready_replicas, 2);
}

/// Replaces every pod of a 4-replica Deployment and checks, after every tick, that no more
/// than `4 + surge` pods run and at least `4 - unavailable` are ready.
fn rolling_update(surge: i64, unavailable: i64) {
    let mut c = Cluster::new(&["node-a", "node-b", "node-c"], web(4, surge, unavailable));
    c.settle(|_| {});
    let old_rs = c.replica_sets[0].metadata.name.clone();

    c.update_spec(set_image("web:2"));
    let (max_pods, min_ready) = ((4 + surge) as usize, (4 - unavailable) as usize);
    let mut lowest_ready = usize::MAX;
    let ticks = c.settle(|c| {
        let (active, ready) = (c.active().count(), c.ready());
        assert!(
            active <= max_pods,
            "{active} pods, at most {max_pods} allowed"
        );
        assert!(
            ready >= min_ready,
            "{ready} ready, at least {min_ready} wanted"
        );
        lowest_ready = lowest_ready.min(ready);
    });
    assert!(ticks > 1, "a rollout takes steps");
    assert_eq!(
        lowest_ready, min_ready,
        "the rollout used its unavailability budget"
    );

    assert_eq!(c.images(), ["web:2"; 4]);
    let new_hash = template_hash(&c.deployment.spec.template);
    assert!(c
        .active()
        .all(|p| p.metadata.labels.get(TEMPLATE_HASH_LABEL) == Some(&new_hash)));
    let old = c
        .replica_sets
        .iter()
        .find(|rs| rs.metadata.name == old_rs)
        .unwrap();
    assert_eq!(old.spec.replicas, 0);
    assert_eq!(
        c.deployment.metadata.annotations.get(REVISION_ANNOTATION),
        Some(&"2".to_string())
    );
}

#[test]
fn rolling_update_with_surge_and_unavailability() {
    rolling_update(1, 1);
}

#[test]
fn rolling_update_without_unavailability() {
    rolling_update(1, 0);
}

#[test]
fn lost_node_pods_are_replaced_elsewhere() {
    let mut c = Cluster::new(&["node-a", "node-b", "node-c"], web(6, 1, 1));
    c.settle(|_| {});
    assert_eq!(c.spread().into_values().collect::<Vec<_>>(), [2, 2, 2]);
    let on_c: Vec<String> = c
        .active()
        .filter(|p| p.spec.node_name.as_deref() == Some("node-c"))
        .map(|p| p.metadata.name.clone())
        .collect();

    c.silent.insert("node-c".into());
    let last_heartbeat = c.now;
    for _ in 0..30 {
        c.tick();
        let silent_for = c.now.duration_since(last_heartbeat).unwrap();
        let evicted = c
            .pods
            .iter()
            .filter(|p| on_c.contains(&p.metadata.name) && p.is_terminating())
            .count();
        if silent_for <= GRACE {
            assert_eq!(evicted, 0, "evicted after only {silent_for:?}");
        } else {
            assert_eq!(evicted, 2, "not evicted after {silent_for:?}");
        }
    }

    assert_eq!(c.ready(), 6);
    assert_eq!(
        c.spread(),
        BTreeMap::from([("node-a", 3), ("node-b", 3)]),
        "replacements run on the remaining nodes"
    );
    let lost = c
        .nodes
        .iter()
        .find(|n| n.metadata.name == "node-c")
        .unwrap();
    let ready = lost.ready_condition().unwrap();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert!(lost.spec.taints.iter().any(|t| t.key == UNREACHABLE_TAINT));
    // The evicted pods stay terminating: only their node could confirm they stopped.
    assert_eq!(c.pods.len(), 8);
}

#[test]
fn rollback_returns_to_the_previous_template() {
    let mut c = Cluster::new(&["node-a", "node-b"], web(3, 1, 0));
    c.settle(|_| {});
    let v1 = c.deployment.spec.template.clone();
    let v1_rs = c.replica_sets[0].metadata.name.clone();
    c.update_spec(set_image("web:2"));
    c.settle(|_| {});
    assert_eq!(c.images(), ["web:2"; 3]);

    let previous = rollback_template(&c.deployment, &c.replica_sets, None).unwrap();
    assert_eq!(previous, v1);
    c.update_spec(|s| s.template = previous);
    c.settle(|c| assert!(c.ready() >= 3));
    assert_eq!(c.images(), ["web:1"; 3]);
    // The first ReplicaSet is reused, now as revision 3.
    let reused = c
        .replica_sets
        .iter()
        .find(|rs| rs.metadata.name == v1_rs)
        .unwrap();
    assert_eq!((reused.spec.replicas, reused.revision()), (3, 3));
    assert_eq!(c.replica_sets.len(), 2);
    assert_eq!(
        rollback_template(&c.deployment, &c.replica_sets, Some(2))
            .unwrap()
            .spec
            .containers[0]
            .image
            .as_deref(),
        Some("web:2")
    );
}
