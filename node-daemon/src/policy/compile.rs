//! Compiles a [`ClusterState`] into what the kernel looks up (see `skiff_common::policy`):
//! `IPCACHE` prefixes with identities and CIDR identities, and `POLICY` entries per subject
//! identity. The result also keeps the names behind every number, for flow events, metrics
//! and `skiff policy explain`, which judges with [`Compiled::judge`] over these same entries.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv4Addr,
};

use skiff_api::{
    Cidr, IpBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, PolicyType, PortRef,
};
use skiff_common::{
    identity, prefix, AddressIdentity, PolicyEntry, PolicyKey, RuleRef, POLICY_EGRESS,
    POLICY_ENTRY_ALLOW, POLICY_ENTRY_SELECTED, POLICY_INGRESS,
};

use super::{
    cluster::{ClusterState, PodName, PodRecord},
    ids::stable_ids,
};

/// A `POLICY` trie key: the key data (bits past `len` zeroed) and its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyPrefix {
    pub key: PolicyKey,
    pub len: u32,
}

impl PolicyPrefix {
    pub fn new(key: PolicyKey, len: u32) -> PolicyPrefix {
        PolicyPrefix {
            key: mask_key(&key, len),
            len,
        }
    }
}

/// The key's bytes as the kernel compares them (its memory image).
fn key_bytes(key: &PolicyKey) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&key.subject.to_ne_bytes());
    b[4] = key.direction;
    b[8..12].copy_from_slice(&key.peer.to_ne_bytes());
    b[12] = key.proto;
    b[14..16].copy_from_slice(&key.dport.to_ne_bytes());
    b
}

fn mask_key(key: &PolicyKey, len: u32) -> PolicyKey {
    let mut b = key_bytes(key);
    for (i, byte) in b.iter_mut().enumerate() {
        let bits_kept = len.saturating_sub(i as u32 * 8).min(8);
        *byte &= (0xff00u16 >> bits_kept) as u8;
    }
    PolicyKey {
        subject: u32::from_ne_bytes(b[0..4].try_into().unwrap()),
        direction: b[4],
        _pad0: [0; 3],
        peer: u32::from_ne_bytes(b[8..12].try_into().unwrap()),
        proto: b[12],
        _pad1: 0,
        dport: u16::from_ne_bytes(b[14..16].try_into().unwrap()),
    }
}

/// A pod identity: the namespace and labels it stands for, and the pods that have it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityInfo {
    pub namespace: String,
    pub labels: skiff_api::Labels,
    pub pods: Vec<PodName>,
}

/// What a packed rule reference stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    pub policy: PodName,
    pub rule: RuleRef,
}

impl RuleInfo {
    /// The rule within its policy: `ingress[0]`, or `ingress:selection` for the selection
    /// behind a default deny (the `rule` label of the metrics).
    pub fn label(&self) -> String {
        let direction = direction_name(self.rule.direction);
        if self.rule.index == RuleRef::SELECTION {
            format!("{direction}:selection")
        } else {
            format!("{direction}[{}]", self.rule.index)
        }
    }
}

impl fmt::Display for RuleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = direction_name(self.rule.direction);
        if self.rule.index == RuleRef::SELECTION {
            write!(f, "{} (selects the pod for {direction})", self.policy)
        } else {
            write!(f, "{} {direction}[{}]", self.policy, self.rule.index)
        }
    }
}

pub fn direction_name(direction: u8) -> &'static str {
    if direction == POLICY_EGRESS {
        "egress"
    } else {
        "ingress"
    }
}

/// The compiled policy of a whole cluster.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub ipcache: BTreeMap<Cidr, AddressIdentity>,
    /// Entries of every subject identity; the reconciler writes those of local pods.
    pub entries: BTreeMap<PolicyPrefix, PolicyEntry>,
    pub identities: BTreeMap<u32, IdentityInfo>,
    /// CIDR identity -> the `ipBlock`s its addresses fall in.
    pub cidr_sets: BTreeMap<u32, Vec<String>>,
    pub rules: BTreeMap<u32, RuleInfo>,
    /// Every policy selecting an identity for a direction, by name.
    pub selected_by: BTreeMap<(u32, u8), Vec<PodName>>,
    pub pods: BTreeMap<Ipv4Addr, PodName>,
    pub pod_identity: BTreeMap<PodName, u32>,
    /// The identities `entries` was emitted for.
    pub subjects: BTreeSet<u32>,
    /// What was compiled, to emit more subjects' entries on demand.
    state: std::sync::Arc<ClusterState>,
    policy_ids: BTreeMap<PodName, u32>,
    blocks: Vec<IpBlock>,
    block_index: BTreeMap<String, usize>,
    block_cidr_ids: Vec<BTreeSet<u32>>,
}

/// One NetworkPolicy's verdict for a flow, as the kernel reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub allowed: bool,
    /// The allowing rule, or the selection behind a default deny; `None` when no policy
    /// selects the pod for the direction (or the peer is the node).
    pub rule: Option<u32>,
    pub subject: u32,
    pub peer: AddressIdentity,
}

/// Where a rule's peers are: every address, pods of an identity, or an ipBlock (by index).
enum PeerTarget {
    Any,
    Identity(u32),
    Block(usize),
}

/// A compiled port spec: every protocol and port, every port of one protocol, or a range.
#[derive(Clone, Copy)]
enum PortTarget {
    All,
    Protocol(u8),
    Range(u8, u16, u16),
}

/// Compiles `state` for a node whose own addresses are `host_addrs` and whose pods have the
/// addresses `local_pods`: `POLICY` entries are emitted for those pods' identities only.
pub fn compile(state: &ClusterState, host_addrs: &[Ipv4Addr], local_pods: &[Ipv4Addr]) -> Compiled {
    let mut out = Compiled::default();

    // Identities: one per (namespace, labels).
    let identity_name = |pod: &PodRecord| {
        let labels: Vec<String> = pod.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}\0{}", pod.name.namespace, labels.join(","))
    };
    let identity_ids = stable_ids(
        state
            .pods
            .values()
            .map(identity_name)
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
        identity::FIRST_POD,
        identity::CIDR_BIT - identity::FIRST_POD,
    );
    for pod in state.pods.values() {
        let id = identity_ids[&identity_name(pod)];
        out.identities
            .entry(id)
            .or_insert_with(|| IdentityInfo {
                namespace: pod.name.namespace.clone(),
                labels: pod.labels.clone(),
                pods: Vec::new(),
            })
            .pods
            .push(pod.name.clone());
        out.pods.insert(pod.ip, pod.name.clone());
        out.pod_identity.insert(pod.name.clone(), id);
    }

    // CIDR identities: every ipBlock boundary becomes a prefix whose addresses all fall in the
    // same set of ipBlocks, so one longest-prefix lookup answers "which ipBlocks match".
    let blocks: Vec<&IpBlock> = {
        let mut seen = BTreeSet::new();
        let mut blocks = Vec::new();
        for policy in state.policies.values() {
            for peer in all_peers(policy) {
                if let Some(block) = &peer.ip_block {
                    if seen.insert(block_name(block)) {
                        blocks.push(block);
                    }
                }
            }
        }
        blocks
    };
    let mut prefixes: BTreeMap<Cidr, u32> = BTreeMap::new();
    prefixes.insert(Cidr::new(Ipv4Addr::UNSPECIFIED, 0), identity::WORLD);
    for block in &blocks {
        prefixes.entry(block.cidr).or_insert(identity::WORLD);
        for except in &block.except {
            prefixes.entry(*except).or_insert(identity::WORLD);
        }
    }
    for pod in state.pods.values() {
        prefixes.insert(Cidr::new(pod.ip, 32), out.pod_identity[&pod.name]);
    }
    for addr in host_addrs {
        prefixes.insert(Cidr::new(*addr, 32), identity::HOST);
    }
    let set_of = |p: &Cidr| -> Vec<usize> {
        blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.cidr.covers(p) && !b.except.iter().any(|e| e.covers(p)))
            .map(|(i, _)| i)
            .collect()
    };
    let set_name = |set: &[usize]| -> String {
        set.iter()
            .map(|i| block_name(blocks[*i]))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let sets: BTreeMap<Cidr, Vec<usize>> = prefixes.keys().map(|p| (*p, set_of(p))).collect();
    let set_ids = stable_ids(
        sets.values()
            .filter(|s| !s.is_empty())
            .map(|s| set_name(s))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
        identity::CIDR_BIT | 1,
        identity::CIDR_BIT - 2,
    );
    let mut block_cidr_ids: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); blocks.len()];
    for (prefix, id) in &prefixes {
        let set = &sets[prefix];
        let cidr_identity = if set.is_empty() {
            0
        } else {
            let cid = set_ids[&set_name(set)];
            for i in set {
                block_cidr_ids[*i].insert(cid);
            }
            out.cidr_sets
                .entry(cid)
                .or_insert_with(|| set.iter().map(|i| block_name(blocks[*i])).collect());
            cid
        };
        out.ipcache.insert(
            *prefix,
            AddressIdentity {
                identity: *id,
                cidr_identity,
            },
        );
    }
    let block_index: BTreeMap<String, usize> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| (block_name(b), i))
        .collect();

    // Policies, in name order: the first selecting policy names a subject's default deny.
    out.policy_ids = stable_ids(
        state
            .policies
            .keys()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
        1,
        RuleRef::MAX_POLICY,
    )
    .into_iter()
    .map(|(name, id)| (name.parse().expect("a policy name"), id))
    .collect();
    for (name, policy) in &state.policies {
        let policy_id = out.policy_ids[name];
        for (direction, policy_type, count) in [
            (
                POLICY_INGRESS,
                PolicyType::Ingress,
                policy.spec.ingress.len(),
            ),
            (POLICY_EGRESS, PolicyType::Egress, policy.spec.egress.len()),
        ] {
            if !policy.applies_to(policy_type) {
                continue;
            }
            for index in (0..count as u16).chain([RuleRef::SELECTION]) {
                let rule = RuleRef {
                    policy: policy_id,
                    direction,
                    index,
                };
                out.rules.insert(
                    rule.pack(),
                    RuleInfo {
                        policy: name.clone(),
                        rule,
                    },
                );
            }
        }
    }
    out.blocks = blocks.into_iter().cloned().collect();
    out.block_index = block_index;
    out.block_cidr_ids = block_cidr_ids;
    let subjects: BTreeSet<u32> = local_pods
        .iter()
        .filter(|ip| out.pods.contains_key(ip))
        .map(|ip| out.address_identity(*ip).identity)
        .collect();
    out.state = std::sync::Arc::new(state.clone());
    out.add_subjects(&subjects);
    out
}

impl Compiled {
    /// A copy that also holds the entries of `subjects` (for explaining pods of other nodes).
    pub fn with_subjects(&self, subjects: &[u32]) -> Compiled {
        let mut compiled = self.clone();
        compiled.add_subjects(&subjects.iter().copied().collect());
        compiled
    }

    /// Emits the `POLICY` entries of `subjects`. Policies selecting none of them are skipped,
    /// so a node pays for the policies of its own pods, not the cluster's.
    fn add_subjects(&mut self, subjects: &BTreeSet<u32>) {
        let new: BTreeSet<u32> = subjects.difference(&self.subjects).copied().collect();
        if new.is_empty() {
            return;
        }
        let state = self.state.clone();
        for (name, policy) in &state.policies {
            let policy_id = self.policy_ids[name];
            let selected: Vec<u32> = new
                .iter()
                .copied()
                .filter(|id| {
                    let info = &self.identities[id];
                    info.namespace == name.namespace
                        && policy.spec.pod_selector.matches(&info.labels)
                })
                .collect();
            if selected.is_empty() {
                continue;
            }
            for (direction, policy_type) in [
                (POLICY_INGRESS, PolicyType::Ingress),
                (POLICY_EGRESS, PolicyType::Egress),
            ] {
                if !policy.applies_to(policy_type) {
                    continue;
                }
                let selection = RuleRef {
                    policy: policy_id,
                    direction,
                    index: RuleRef::SELECTION,
                };
                for subject in &selected {
                    self.selected_by
                        .entry((*subject, direction))
                        .or_default()
                        .push(name.clone());
                    let marker = PolicyPrefix::new(
                        PolicyKey {
                            subject: *subject,
                            direction,
                            ..PolicyKey::default()
                        },
                        prefix::SELECTED,
                    );
                    self.entries.entry(marker).or_insert(PolicyEntry {
                        rule: selection.pack(),
                        kind: POLICY_ENTRY_SELECTED,
                        _pad0: [0; 3],
                    });
                }
                let rules: Vec<(&[NetworkPolicyPeer], &[NetworkPolicyPort])> = match policy_type {
                    PolicyType::Ingress => policy
                        .spec
                        .ingress
                        .iter()
                        .map(|r| (r.from.as_slice(), r.ports.as_slice()))
                        .collect(),
                    PolicyType::Egress => policy
                        .spec
                        .egress
                        .iter()
                        .map(|r| (r.to.as_slice(), r.ports.as_slice()))
                        .collect(),
                };
                for (index, (peers, ports)) in rules.into_iter().enumerate() {
                    let rule = RuleRef {
                        policy: policy_id,
                        direction,
                        index: index as u16,
                    };
                    let targets = peer_targets(&state, self, &name.namespace, peers);
                    for subject in &selected {
                        for target in &targets {
                            for (peer, port) in
                                rule_keys(&state, self, ports, direction, *subject, target)
                            {
                                let peers: Vec<u32> = match peer {
                                    KeyPeer::Id(id) => vec![id],
                                    KeyPeer::Block(i) => {
                                        self.block_cidr_ids[i].iter().copied().collect()
                                    }
                                };
                                for peer in peers {
                                    add_allow(
                                        &mut self.entries,
                                        *subject,
                                        direction,
                                        peer,
                                        port,
                                        rule,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        self.subjects.extend(new);
    }
}

fn all_peers(policy: &NetworkPolicy) -> impl Iterator<Item = &NetworkPolicyPeer> {
    policy
        .spec
        .ingress
        .iter()
        .flat_map(|r| &r.from)
        .chain(policy.spec.egress.iter().flat_map(|r| &r.to))
}

fn block_name(block: &IpBlock) -> String {
    let mut name = block.cidr.to_string();
    let mut excepts: Vec<String> = block.except.iter().map(Cidr::to_string).collect();
    excepts.sort();
    if !excepts.is_empty() {
        name.push_str(&format!(" except {}", excepts.join(",")));
    }
    name
}

fn peer_targets(
    state: &ClusterState,
    out: &Compiled,
    policy_namespace: &str,
    peers: &[NetworkPolicyPeer],
) -> Vec<PeerTarget> {
    if peers.is_empty() {
        return vec![PeerTarget::Any];
    }
    let mut identities = BTreeSet::new();
    let mut blocks = BTreeSet::new();
    for peer in peers {
        if let Some(block) = &peer.ip_block {
            blocks.insert(out.block_index[&block_name(block)]);
            continue;
        }
        for (id, info) in &out.identities {
            let namespace_ok = match &peer.namespace_selector {
                None => info.namespace == policy_namespace,
                Some(selector) => state
                    .namespaces
                    .get(&info.namespace)
                    .is_some_and(|labels| selector.matches(labels)),
            };
            let pod_ok = peer
                .pod_selector
                .as_ref()
                .is_none_or(|selector| selector.matches(&info.labels));
            if namespace_ok && pod_ok {
                identities.insert(*id);
            }
        }
    }
    identities
        .into_iter()
        .map(PeerTarget::Identity)
        .chain(blocks.into_iter().map(PeerTarget::Block))
        .collect()
}

/// The peer field of entries: an identity (or `ANY`), or every CIDR identity of an ipBlock.
#[derive(Clone, Copy)]
enum KeyPeer {
    Id(u32),
    Block(usize),
}

/// A rule's (peer, port) pairs for one subject and peer target. Named ports resolve against
/// the destination pods: the subject's own for ingress; for egress the peer identity's, and
/// for egress to any peer or to an ipBlock, each pod identity's (those with a pod in the
/// block), since a name only means something on a pod.
fn rule_keys(
    state: &ClusterState,
    out: &Compiled,
    ports: &[NetworkPolicyPort],
    direction: u8,
    subject: u32,
    target: &PeerTarget,
) -> Vec<(KeyPeer, PortTarget)> {
    let peer = match target {
        PeerTarget::Any => KeyPeer::Id(identity::ANY),
        PeerTarget::Identity(id) => KeyPeer::Id(*id),
        PeerTarget::Block(i) => KeyPeer::Block(*i),
    };
    if ports.is_empty() {
        return vec![(peer, PortTarget::All)];
    }
    let resolve = |identity: u32, name: &str, protocol| -> Vec<u16> {
        let numbers: BTreeSet<u16> = out.identities[&identity]
            .pods
            .iter()
            .filter_map(|pod| {
                state.pods[pod]
                    .named_ports
                    .get(&(name.to_string(), protocol))
                    .copied()
            })
            .collect();
        numbers.into_iter().collect()
    };
    let mut keys = Vec::new();
    for port in ports {
        let proto = port.protocol().number();
        match &port.port {
            None => keys.push((peer, PortTarget::Protocol(proto))),
            Some(PortRef::Number(n)) => keys.push((
                peer,
                PortTarget::Range(proto, *n, port.end_port.unwrap_or(*n)),
            )),
            Some(PortRef::Name(name)) => {
                let destinations: Vec<(KeyPeer, u32)> = match (direction, target) {
                    (POLICY_INGRESS, _) => vec![(peer, subject)],
                    (_, PeerTarget::Identity(id)) => vec![(peer, *id)],
                    (_, PeerTarget::Any) => out
                        .identities
                        .keys()
                        .map(|id| (KeyPeer::Id(*id), *id))
                        .collect(),
                    (_, PeerTarget::Block(i)) => out
                        .identities
                        .iter()
                        .filter(|(_, info)| {
                            info.pods
                                .iter()
                                .any(|pod| out.blocks[*i].contains(state.pods[pod].ip))
                        })
                        .map(|(id, _)| (KeyPeer::Id(*id), *id))
                        .collect(),
                };
                for (peer, destination) in destinations {
                    for n in resolve(destination, name, port.protocol()) {
                        keys.push((peer, PortTarget::Range(proto, n, n)));
                    }
                }
            }
        }
    }
    keys
}

fn add_allow(
    entries: &mut BTreeMap<PolicyPrefix, PolicyEntry>,
    subject: u32,
    direction: u8,
    peer: u32,
    port: PortTarget,
    rule: RuleRef,
) {
    let base = PolicyKey {
        subject,
        direction,
        peer,
        ..PolicyKey::default()
    };
    let entry = PolicyEntry {
        rule: rule.pack(),
        kind: POLICY_ENTRY_ALLOW,
        _pad0: [0; 3],
    };
    let mut add = |key: PolicyKey, len: u32| {
        entries.entry(PolicyPrefix::new(key, len)).or_insert(entry);
    };
    match port {
        PortTarget::All => add(base, prefix::PEER),
        PortTarget::Protocol(proto) => add(PolicyKey { proto, ..base }, prefix::PROTOCOL),
        PortTarget::Range(proto, first, last) => {
            for (start, len) in port_blocks(first, last) {
                add(
                    PolicyKey {
                        proto,
                        dport: start.to_be(),
                        ..base
                    },
                    len,
                );
            }
        }
    }
}

/// Splits `first..=last` into prefix-aligned blocks: (start, prefix length of the key).
pub fn port_blocks(first: u16, last: u16) -> Vec<(u16, u32)> {
    let mut blocks = Vec::new();
    let (mut start, last) = (first as u32, last as u32);
    while start <= last {
        let mut size_bits = 0;
        while size_bits < 16 {
            let size = 1u32 << (size_bits + 1);
            if start % size != 0 || start + size - 1 > last {
                break;
            }
            size_bits += 1;
        }
        blocks.push((start as u16, prefix::PORT - size_bits));
        start += 1 << size_bits;
    }
    blocks
}

impl Compiled {
    /// The `IPCACHE` answer for an address (longest prefix; `/0` always exists).
    pub fn address_identity(&self, addr: Ipv4Addr) -> AddressIdentity {
        (0..=32u8)
            .rev()
            .find_map(|len| self.ipcache.get(&Cidr::new(addr, len)).copied())
            .unwrap_or(AddressIdentity {
                identity: identity::WORLD,
                cidr_identity: 0,
            })
    }

    /// The `POLICY` trie's answer for a full key (longest matching prefix).
    pub fn lookup(&self, key: &PolicyKey) -> Option<PolicyEntry> {
        (0..=prefix::PORT)
            .rev()
            .find_map(|len| self.entries.get(&PolicyPrefix::new(*key, len)).copied())
    }

    /// Judges a flow exactly as the kernel's `judge` does: subject identity, peer identity,
    /// then up to three lookups (peer, CIDR identity, any peer); the first allow wins.
    pub fn judge(
        &self,
        pod: Ipv4Addr,
        peer: Ipv4Addr,
        direction: u8,
        proto: u8,
        dport: u16,
    ) -> Judgement {
        let peer = self.address_identity(peer);
        let subject = self.address_identity(pod);
        let mut judgement = Judgement {
            allowed: true,
            rule: None,
            subject: subject.identity,
            peer,
        };
        if subject.identity < identity::FIRST_POD || peer.identity == identity::HOST {
            return judgement;
        }
        let mut selected_by = None;
        for (i, peer_id) in [peer.identity, peer.cidr_identity, identity::ANY]
            .into_iter()
            .enumerate()
        {
            if i == 1 && peer_id == identity::ANY {
                continue;
            }
            let key = PolicyKey {
                subject: subject.identity,
                direction,
                peer: peer_id,
                proto,
                dport: dport.to_be(),
                ..PolicyKey::default()
            };
            match self.lookup(&key) {
                Some(entry) if entry.kind == POLICY_ENTRY_ALLOW => {
                    judgement.rule = Some(entry.rule);
                    return judgement;
                }
                Some(entry) => selected_by = Some(entry.rule),
                None => {}
            }
        }
        if let Some(rule) = selected_by {
            judgement.allowed = false;
            judgement.rule = Some(rule);
        }
        judgement
    }

    /// A peer's identity in words (pod identity, node, outside world, ipBlocks).
    pub fn describe_identity(&self, id: u32) -> String {
        match id {
            identity::HOST => "this node".into(),
            identity::WORLD => "outside the cluster".into(),
            identity::ANY => "any".into(),
            id if id & identity::CIDR_BIT != 0 => self
                .cidr_sets
                .get(&id)
                .map_or_else(|| format!("cidr#{id}"), |s| s.join(" + ")),
            id => match self.identities.get(&id) {
                Some(info) => {
                    let labels: Vec<String> = info
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!("{} {{{}}}", info.namespace, labels.join(","))
                }
                None => format!("identity#{id}"),
            },
        }
    }

    pub fn rule_name(&self, packed: u32) -> Option<String> {
        self.rules.get(&packed).map(RuleInfo::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_split_into_aligned_blocks() {
        assert_eq!(port_blocks(80, 80), vec![(80, 128)]);
        assert_eq!(port_blocks(80, 81), vec![(80, 127)]);
        assert_eq!(port_blocks(81, 82), vec![(81, 128), (82, 128)]);
        assert_eq!(port_blocks(0, 65535), vec![(0, 112)]);
        let blocks = port_blocks(1000, 2000);
        let covered: u32 = blocks.iter().map(|(_, len)| 1u32 << (128 - len)).sum();
        assert_eq!(covered, 1001);
        assert!(blocks.len() <= 30);
    }

    #[test]
    fn masking_keeps_prefix_bits_only() {
        let key = PolicyKey {
            subject: 0x01020304,
            direction: POLICY_EGRESS,
            peer: 99,
            proto: 6,
            dport: 81u16.to_be(),
            ..PolicyKey::default()
        };
        let marker = PolicyPrefix::new(key, prefix::SELECTED).key;
        assert_eq!(
            (marker.subject, marker.direction, marker.peer),
            (key.subject, 2, 0)
        );
        assert_eq!(PolicyPrefix::new(key, 127).key.dport, 80u16.to_be());
        assert_eq!(PolicyPrefix::new(key, prefix::PORT).key, key);
    }
}
