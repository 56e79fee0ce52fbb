//! The scheduler: picks a node for each pod that has none.
//!
//! It owns one field, a pod's `spec.nodeName`, and decides it from a snapshot: the nodes and
//! the pods already placed. [`Scheduler::new`] sums what each node already holds once, and
//! [`Scheduler::schedule`] adds every placement it makes to those sums, so a runner can place
//! thousands of pending pods in a row (each costs one pass over the nodes, never over the
//! pods) and no two of them are counted against the same free capacity.
//!
//! The rules follow Kubernetes' default profile, reduced to what Skiff's API has:
//! - filters: node Ready, not cordoned (`spec.unschedulable`), `nodeSelector`, taints with
//!   effect NoSchedule/NoExecute tolerated, requests fit allocatable minus what is placed;
//! - scores, in order: fewest pods of the same owner on the node (spreading replicas so a
//!   node loss takes few of them), then most free capacity (Kubernetes' LeastAllocated),
//!   then node name, so the same snapshot always gives the same answer.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
};

use skiff_api::{core::TaintEffect, node::Taint, Labels, Node, Pod};

/// Kubernetes scores a pod that requests nothing as if it asked for this much, so such pods
/// spread by load instead of piling onto the node whose name sorts first. Only scoring uses
/// these; a pod's real requests decide whether it fits.
const SCORING_DEFAULT_MILLICORES: u64 = 100;
const SCORING_DEFAULT_BYTES: u64 = 200 * 1024 * 1024;

/// The placement state of a cluster snapshot; see the module documentation.
pub struct Scheduler {
    /// Sorted by name, which is the final tie-breaker.
    nodes: Vec<NodeAccount>,
    /// Per spread group, how many of its running pods each node (by position) holds. Sparse:
    /// most groups touch few nodes.
    siblings: HashMap<SpreadGroup, HashMap<usize, u32>>,
    /// The sibling counts of the pod being scheduled, one per node: indexing this is much
    /// cheaper than a hash lookup per node.
    sibling_counts: Vec<u32>,
}

struct NodeAccount {
    name: String,
    labels: Labels,
    /// Only the taints that keep pods off (NoSchedule, NoExecute).
    blocking_taints: Vec<Taint>,
    ready: bool,
    cordoned: bool,
    allocatable: Amount,
    /// What placed pods request: decides whether another pod fits.
    requested: Amount,
    /// The same with [`SCORING_DEFAULT_MILLICORES`] and [`SCORING_DEFAULT_BYTES`] for pods
    /// that request nothing: decides which fitting node is freest.
    requested_for_scoring: Amount,
}

#[derive(Clone, Copy, Default)]
struct Amount {
    millicores: u64,
    bytes: u64,
}

impl Amount {
    fn add(&mut self, other: Amount) {
        self.millicores += other.millicores;
        self.bytes += other.bytes;
    }
}

/// Pods that should not share a node if it can be helped: the replicas of one controller or,
/// for pods without one, pods with identical labels in one namespace.
#[derive(Clone, PartialEq, Eq, Hash)]
enum SpreadGroup {
    Owner(String),
    Labels(String, Labels),
}

impl SpreadGroup {
    fn of(pod: &Pod) -> Option<SpreadGroup> {
        if let Some(owner) = pod.metadata.controller() {
            return Some(SpreadGroup::Owner(owner.uid.clone()));
        }
        if pod.metadata.labels.is_empty() {
            return None;
        }
        Some(SpreadGroup::Labels(
            pod.metadata.namespace().to_string(),
            pod.metadata.labels.clone(),
        ))
    }
}

/// What one pod asks of a node, computed once per [`Scheduler::schedule`] call.
struct Demand<'a> {
    pod: &'a Pod,
    requested: Amount,
    requested_for_scoring: Amount,
}

impl<'a> Demand<'a> {
    fn of(pod: &'a Pod) -> Demand<'a> {
        let requested = Amount {
            millicores: pod.reserved_millicores(),
            bytes: pod.reserved_bytes(),
        };
        let requested_for_scoring = Amount {
            millicores: match requested.millicores {
                0 => SCORING_DEFAULT_MILLICORES,
                m => m,
            },
            bytes: match requested.bytes {
                0 => SCORING_DEFAULT_BYTES,
                b => b,
            },
        };
        Demand {
            pod,
            requested,
            requested_for_scoring,
        }
    }
}

/// Why a node cannot take a pod; the first failing filter is reported, as Kubernetes does
/// (except that short cpu and short memory are both reported).
enum Misfit<'a> {
    NotReady,
    Cordoned,
    SelectorMismatch,
    UntoleratedTaint(&'a Taint),
    Insufficient { cpu: bool, memory: bool },
}

impl NodeAccount {
    fn misfit(&self, demand: &Demand) -> Option<Misfit<'_>> {
        if !self.ready {
            return Some(Misfit::NotReady);
        }
        if self.cordoned {
            return Some(Misfit::Cordoned);
        }
        let selector = &demand.pod.spec.node_selector;
        if !selector.iter().all(|(k, v)| self.labels.get(k) == Some(v)) {
            return Some(Misfit::SelectorMismatch);
        }
        let tolerations = &demand.pod.spec.tolerations;
        if let Some(taint) = self
            .blocking_taints
            .iter()
            .find(|taint| !tolerations.iter().any(|t| t.tolerates(taint)))
        {
            return Some(Misfit::UntoleratedTaint(taint));
        }
        let cpu =
            self.requested.millicores + demand.requested.millicores > self.allocatable.millicores;
        let memory = self.requested.bytes + demand.requested.bytes > self.allocatable.bytes;
        (cpu || memory).then_some(Misfit::Insufficient { cpu, memory })
    }

    /// Kubernetes' LeastAllocated: the free fraction of cpu plus that of memory once the pod
    /// is placed, in millionths (the sum keeps the order of the mean).
    fn free_score(&self, demand: &Demand) -> u64 {
        fn free_millionths(allocatable: u64, used: u64) -> u64 {
            if allocatable == 0 {
                return 0;
            }
            let free = allocatable.saturating_sub(used);
            match free.checked_mul(1_000_000) {
                Some(scaled) => scaled / allocatable,
                // Only past 18 TB of memory; u128 division is slow, so not the common path.
                None => (u128::from(free) * 1_000_000 / u128::from(allocatable)) as u64,
            }
        }
        let used = &self.requested_for_scoring;
        let adding = &demand.requested_for_scoring;
        free_millionths(
            self.allocatable.millicores,
            used.millicores + adding.millicores,
        ) + free_millionths(self.allocatable.bytes, used.bytes + adding.bytes)
    }
}

impl Scheduler {
    /// Accounts for every pod in `pods` that is bound to one of `nodes` and not finished
    /// (terminating pods still hold their resources until they are gone).
    pub fn new(nodes: &[Node], pods: &[Pod]) -> Scheduler {
        let mut accounts: Vec<NodeAccount> = nodes
            .iter()
            .map(|node| {
                let (millicores, bytes) = node.allocatable();
                NodeAccount {
                    name: node.metadata.name.clone(),
                    labels: node.metadata.labels.clone(),
                    blocking_taints: node
                        .spec
                        .taints
                        .iter()
                        .filter(|t| t.effect != TaintEffect::PreferNoSchedule)
                        .cloned()
                        .collect(),
                    ready: node.is_ready(),
                    cordoned: node.spec.unschedulable == Some(true),
                    allocatable: Amount { millicores, bytes },
                    requested: Amount::default(),
                    requested_for_scoring: Amount::default(),
                }
            })
            .collect();
        accounts.sort_by(|a, b| a.name.cmp(&b.name));
        let position: HashMap<&str, usize> = accounts
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let placed: Vec<(usize, &Pod)> = pods
            .iter()
            .filter(|p| !p.is_finished())
            .filter_map(|p| Some((*position.get(p.spec.node_name.as_deref()?)?, p)))
            .collect();
        let mut scheduler = Scheduler {
            sibling_counts: vec![0; accounts.len()],
            nodes: accounts,
            siblings: HashMap::new(),
        };
        for (node, pod) in placed {
            // A terminating replica is on its way out: it should not push its replacement
            // away from the node it leaves.
            let group = SpreadGroup::of(pod).filter(|_| !pod.is_terminating());
            scheduler.record(node, &Demand::of(pod), group);
        }
        scheduler
    }

    /// Picks the node for `pod` and counts the pod there, so the next call sees it. The
    /// caller writes `spec.nodeName`; if that write fails the caller should build a new
    /// scheduler from a fresh snapshot rather than keep this one.
    pub fn schedule(&mut self, pod: &Pod) -> Result<String, Unschedulable> {
        let demand = Demand::of(pod);
        let group = SpreadGroup::of(pod);
        let siblings = &mut self.sibling_counts;
        siblings.fill(0);
        for (&node, &count) in group
            .as_ref()
            .and_then(|g| self.siblings.get(g))
            .into_iter()
            .flatten()
        {
            siblings[node] = count;
        }
        // (position, siblings there, free score); nodes are visited in name order, so only a
        // strictly better node replaces the best so far.
        let mut best: Option<(usize, u32, u64)> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.misfit(&demand).is_some() {
                continue;
            }
            let count = siblings[i];
            if best.is_some_and(|(_, best_count, _)| count > best_count) {
                continue;
            }
            let free = node.free_score(&demand);
            let better = match best {
                None => true,
                Some((_, best_count, best_free)) => count < best_count || free > best_free,
            };
            if better {
                best = Some((i, count, free));
            }
        }
        match best {
            Some((i, _, _)) => {
                self.record(i, &demand, group);
                Ok(self.nodes[i].name.clone())
            }
            None => Err(self.explain(&demand)),
        }
    }

    fn record(&mut self, node: usize, demand: &Demand, group: Option<SpreadGroup>) {
        let account = &mut self.nodes[node];
        account.requested.add(demand.requested);
        account
            .requested_for_scoring
            .add(demand.requested_for_scoring);
        if let Some(group) = group {
            *self
                .siblings
                .entry(group)
                .or_default()
                .entry(node)
                .or_default() += 1;
        }
    }

    /// Only runs when no node fits, so the hot path never builds strings.
    fn explain(&self, demand: &Demand) -> Unschedulable {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut count = |reason: String| *reasons.entry(reason).or_default() += 1;
        for node in &self.nodes {
            match node.misfit(demand) {
                None => {}
                Some(Misfit::NotReady) => count("node(s) were not ready".into()),
                Some(Misfit::Cordoned) => count("node(s) were unschedulable".into()),
                Some(Misfit::SelectorMismatch) => {
                    count("node(s) didn't match Pod's node affinity/selector".into())
                }
                Some(Misfit::UntoleratedTaint(taint)) => count(format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint.key,
                    taint.value.as_deref().unwrap_or("")
                )),
                Some(Misfit::Insufficient { cpu, memory }) => {
                    if cpu {
                        count("Insufficient cpu".into());
                    }
                    if memory {
                        count("Insufficient memory".into());
                    }
                }
            }
        }
        Unschedulable {
            nodes: self.nodes.len(),
            reasons,
        }
    }
}

/// No node can take the pod: how many nodes there are and, per reason, how many refused.
/// Displays as Kubernetes' scheduler message (`0/3 nodes are available: 1 node(s) were not
/// ready, 2 Insufficient cpu.`), which the runner puts in the pod's PodScheduled condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unschedulable {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available", self.nodes)?;
        // Kubernetes sorts the "count reason" strings themselves; doing the same keeps the
        // message identical to what users know.
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        parts.sort();
        if !parts.is_empty() {
            write!(f, ": {}", parts.join(", "))?;
        } else if self.nodes == 0 {
            // The usual first-run surprise: say what to do, not just that nothing fits.
            f.write_str(
                ": no node has joined the cluster yet (start skiff-node with the join token)",
            )?;
        }
        f.write_str(".")
    }
}

impl std::error::Error for Unschedulable {}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use skiff_api::{
        core::{Toleration, TolerationOperator},
        PodPhase, PodStatus,
    };

    use super::*;
    use crate::controllers::fixtures;

    /// A Ready node with `cpu` and `memory` allocatable.
    fn node(name: &str, cpu: &str, memory: &str) -> Node {
        fixtures::node(name, cpu, memory, true)
    }

    /// A pod of ReplicaSet `owner` (uid `uid-{owner}`) requesting `cpu` and `memory`
    /// (either may be empty).
    fn pod(name: &str, owner: &str, cpu: &str, memory: &str) -> Pod {
        let uid = format!("uid-{owner}");
        fixtures::pod(name, owner, &uid, &[("cpu", cpu), ("memory", memory)])
    }

    fn on(mut pod: Pod, node: &str) -> Pod {
        pod.spec.node_name = Some(node.into());
        pod
    }

    #[test]
    fn explains_why_no_node_fits() {
        let nodes = [
            node("a", "1", "1Gi"),
            node("b", "1", "1Gi"),
            fixtures::node("c", "8", "8Gi", false),
        ];
        let mut scheduler = Scheduler::new(&nodes, &[]);
        let err = scheduler.schedule(&pod("big", "rs", "2", "")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 node(s) were not ready, 2 Insufficient cpu."
        );
        let err = scheduler
            .schedule(&pod("huge", "rs", "2", "2Gi"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 node(s) were not ready, 2 Insufficient cpu, \
             2 Insufficient memory."
        );
        let err = Scheduler::new(&[], &[])
            .schedule(&pod("p", "rs", "", ""))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/0 nodes are available: no node has joined the cluster yet (start skiff-node with the join token)."
        );
    }

    #[test]
    fn placed_pods_use_capacity_until_they_finish() {
        let nodes = [node("a", "1", "1Gi")];
        let running = on(pod("old", "x", "600m", ""), "a");
        let mut done = on(pod("done", "x", "600m", ""), "a");
        done.status = Some(PodStatus {
            phase: Some(PodPhase::Succeeded),
            ..PodStatus::default()
        });
        let mut scheduler = Scheduler::new(&nodes, &[running.clone(), done]);
        assert!(scheduler.schedule(&pod("new", "y", "600m", "")).is_err());
        assert_eq!(
            scheduler.schedule(&pod("small", "y", "400m", "")),
            Ok("a".into())
        );
        // The placement just made counts too.
        assert!(scheduler.schedule(&pod("one-more", "y", "1m", "")).is_err());
    }

    #[test]
    fn taints_need_tolerations_and_cordoned_nodes_are_skipped() {
        let mut tainted = node("a", "4", "4Gi");
        tainted.spec.taints = vec![Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: TaintEffect::NoSchedule,
        }];
        let mut cordoned = node("b", "4", "4Gi");
        cordoned.spec.unschedulable = Some(true);
        let mut preferred = node("c", "1", "1Gi");
        preferred.spec.taints = vec![Taint {
            key: "soft".into(),
            value: None,
            effect: TaintEffect::PreferNoSchedule,
        }];
        let nodes = [tainted.clone(), cordoned.clone()];
        let err = Scheduler::new(&nodes, &[])
            .schedule(&pod("p", "rs", "", ""))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, \
             1 node(s) were unschedulable."
        );
        let mut tolerant = pod("p", "rs", "", "");
        tolerant.spec.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some(TolerationOperator::Equal),
            value: Some("db".into()),
            ..Toleration::default()
        }];
        assert_eq!(
            Scheduler::new(&nodes, &[]).schedule(&tolerant),
            Ok("a".into())
        );
        // PreferNoSchedule does not filter.
        assert_eq!(
            Scheduler::new(&[preferred], &[]).schedule(&pod("p", "rs", "", "")),
            Ok("c".into())
        );
    }

    #[test]
    fn node_selector_must_match_labels() {
        let mut ssd = node("b", "1", "1Gi");
        ssd.metadata.labels.insert("disk".into(), "ssd".into());
        let nodes = [node("a", "8", "8Gi"), ssd];
        let mut wants_ssd = pod("p", "rs", "", "");
        wants_ssd
            .spec
            .node_selector
            .insert("disk".into(), "ssd".into());
        let mut scheduler = Scheduler::new(&nodes, &[]);
        assert_eq!(scheduler.schedule(&wants_ssd), Ok("b".into()));
        wants_ssd
            .spec
            .node_selector
            .insert("disk".into(), "nvme".into());
        assert_eq!(
            scheduler.schedule(&wants_ssd).unwrap_err().to_string(),
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn replicas_spread_before_load_decides() {
        let nodes = [
            node("a", "4", "8Gi"),
            node("b", "4", "8Gi"),
            node("c", "4", "8Gi"),
        ];
        let mut scheduler = Scheduler::new(&nodes, &[]);
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..6 {
            let name = scheduler
                .schedule(&pod(&format!("web-{i}"), "web", "100m", "64Mi"))
                .unwrap();
            *per_node.entry(name).or_default() += 1;
        }
        assert_eq!(per_node.values().collect::<Vec<_>>(), [&2, &2, &2]);

        // Spreading wins over free capacity: a busy node without a replica beats an idle one
        // that has one.
        let busy = on(pod("batch", "batch", "3", ""), "a");
        let sibling = on(pod("api-0", "api", "100m", ""), "b");
        let nodes = [node("a", "4", "8Gi"), node("b", "4", "8Gi")];
        let mut scheduler = Scheduler::new(&nodes, &[busy, sibling]);
        assert_eq!(
            scheduler.schedule(&pod("api-1", "api", "100m", "")),
            Ok("a".into())
        );
        // Then least allocated: another owner goes to the emptier node.
        assert_eq!(
            scheduler.schedule(&pod("other", "other", "100m", "")),
            Ok("b".into())
        );
    }

    #[test]
    fn pods_without_owner_spread_by_labels() {
        let nodes = [node("a", "4", "8Gi"), node("b", "4", "8Gi")];
        let bare = |name: &str| {
            let mut p = pod(name, "", "", "");
            p.metadata.owner_references.clear();
            p.metadata.labels.insert("app".into(), "cache".into());
            p
        };
        let mut scheduler = Scheduler::new(&nodes, &[on(bare("c0"), "a")]);
        assert_eq!(scheduler.schedule(&bare("c1")), Ok("b".into()));
    }

    #[test]
    fn schedules_ten_thousand_pods_onto_a_thousand_nodes() {
        let nodes: Vec<Node> = (0..1000)
            .map(|i| {
                let cpu = if i % 2 == 0 { "4" } else { "2" };
                node(&format!("node-{i:04}"), cpu, "8Gi")
            })
            .collect();
        let pods: Vec<Pod> = (0..10_000)
            .map(|i| {
                pod(
                    &format!("p-{i}"),
                    &format!("rs-{}", i % 100),
                    "250m",
                    "256Mi",
                )
            })
            .collect();
        let mut scheduler = Scheduler::new(&nodes, &[]);
        let started = Instant::now();
        let placements: Vec<String> = pods
            .iter()
            .map(|p| scheduler.schedule(p).expect("capacity is ample"))
            .collect();
        let elapsed = started.elapsed();
        println!(
            "scheduled {} pods onto {} nodes in {elapsed:?}: {:.0} pods/s",
            pods.len(),
            nodes.len(),
            pods.len() as f64 / elapsed.as_secs_f64()
        );

        let placed: Vec<Pod> = pods
            .into_iter()
            .zip(&placements)
            .map(|(p, n)| on(p, n))
            .collect();
        let mut millicores: HashMap<&str, u64> = HashMap::new();
        let mut per_owner_node: HashMap<(&str, &str), u32> = HashMap::new();
        for p in &placed {
            let node = p.spec.node_name.as_deref().unwrap();
            *millicores.entry(node).or_default() += p.reserved_millicores();
            let owner = p.metadata.owner_references[0].name.as_str();
            *per_owner_node.entry((owner, node)).or_default() += 1;
        }
        for n in &nodes {
            let used = millicores
                .get(n.metadata.name.as_str())
                .copied()
                .unwrap_or(0);
            assert!(
                used <= n.allocatable().0,
                "{} over-committed",
                n.metadata.name
            );
        }
        // 100 replicas per owner over 1,000 nodes: no node needs two of them.
        assert!(per_owner_node.values().all(|&n| n == 1));
        // A fresh scheduler over the result agrees that the cluster holds what was placed.
        let mut again = Scheduler::new(&nodes, &placed);
        let full: usize = nodes.iter().map(|n| n.allocatable().0 as usize / 250).sum();
        for i in 0..full - placed.len() {
            again
                .schedule(&pod(&format!("fill-{i}"), "fill", "250m", "1Mi"))
                .expect("room left");
        }
        assert!(again.schedule(&pod("last", "fill", "250m", "1Mi")).is_err());
    }
}
