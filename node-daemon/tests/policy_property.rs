//! Property test: random clusters, labels and NetworkPolicies; for random probes, the kernel's
//! verdict (the real `from_pod`/`to_pod` programs run on packets with BPF_PROG_TEST_RUN) must
//! equal a plain evaluator written from the Kubernetes specification
//! (`support/netpol_reference.rs`), and so must `explain`'s twin of the kernel lookup.
//!
//! The seed is printed; `SKIFF_PROPTEST_SEED=N` replays a run, `SKIFF_PROPTEST_CASES=N`
//! changes its length.

mod support;

use std::{collections::BTreeMap, net::Ipv4Addr};

use skiff_api::{
    Cidr, IpBlock, LabelSelector, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
    NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, ObjectMeta, PolicyType, PortRef,
    Protocol, Requirement, SelectorOperator,
};
use skiff_common::{POLICY_EGRESS, POLICY_INGRESS};
use skiff_lab::packet::Ipv4Packet;
use skiff_node::{
    dataplane::{AttachMode, DataPlane, TcProgram},
    policy::{compile, ClusterState, PodName, PolicyReconciler},
};
use support::netpol_reference::{Labels, RefCluster, RefPod};

const LOOPBACK: u32 = 1;
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const PORTS: [u16; 5] = [53, 80, 81, 5432, 8080];
const OUTSIDERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 244, 1, 200),
    Ipv4Addr::new(192, 168, 5, 5),
    Ipv4Addr::new(10, 200, 0, 9),
];

/// xorshift64*: small, seedable, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn random_selector(rng: &mut Rng) -> LabelSelector {
    match rng.below(4) {
        0 => LabelSelector::default(),
        1 => LabelSelector {
            match_labels: labels(&[("app", rng.pick(&["web", "api", "db"]))]),
            ..Default::default()
        },
        2 => LabelSelector {
            match_labels: labels(&[("tier", rng.pick(&["front", "back"]))]),
            ..Default::default()
        },
        _ => {
            let operator = rng.pick(&[
                SelectorOperator::In,
                SelectorOperator::NotIn,
                SelectorOperator::Exists,
                SelectorOperator::DoesNotExist,
            ]);
            let key = rng.pick(&["app", "tier"]).to_string();
            let values = match operator {
                SelectorOperator::In | SelectorOperator::NotIn => {
                    let pool: &[&str] = if key == "app" {
                        &["web", "api", "db"]
                    } else {
                        &["front", "back"]
                    };
                    vec![rng.pick(pool).to_string()]
                }
                _ => Vec::new(),
            };
            LabelSelector {
                match_expressions: vec![Requirement {
                    key,
                    operator,
                    values,
                }],
                ..Default::default()
            }
        }
    }
}

fn random_peer(rng: &mut Rng, pods: &[RefPod]) -> NetworkPolicyPeer {
    let namespace_selector = |rng: &mut Rng| {
        if rng.chance(30) {
            LabelSelector::default()
        } else {
            LabelSelector {
                match_labels: labels(&[("team", rng.pick(&["red", "blue"]))]),
                ..Default::default()
            }
        }
    };
    match rng.below(4) {
        0 => NetworkPolicyPeer {
            pod_selector: Some(random_selector(rng)),
            ..Default::default()
        },
        1 => NetworkPolicyPeer {
            namespace_selector: Some(namespace_selector(rng)),
            ..Default::default()
        },
        2 => NetworkPolicyPeer {
            pod_selector: Some(random_selector(rng)),
            namespace_selector: Some(namespace_selector(rng)),
            ..Default::default()
        },
        _ => {
            let pod_ip = pods[rng.below(pods.len())].ip;
            let cidr: Cidr = match rng.below(5) {
                0 => "10.244.0.0/16".parse().unwrap(),
                1 => "10.244.1.0/24".parse().unwrap(),
                2 => Cidr::new(pod_ip, 32),
                3 => "0.0.0.0/0".parse().unwrap(),
                _ => "192.168.0.0/16".parse().unwrap(),
            };
            let mut except = Vec::new();
            if cidr.len < 32 && rng.chance(50) {
                let inside: Vec<Cidr> = [
                    Cidr::new(pods[rng.below(pods.len())].ip, 32),
                    "10.244.1.0/25".parse().unwrap(),
                    "10.244.2.0/24".parse().unwrap(),
                ]
                .into_iter()
                .filter(|e| cidr.covers(e) && e.len > cidr.len)
                .collect();
                if !inside.is_empty() {
                    except.push(inside[rng.below(inside.len())]);
                }
            }
            NetworkPolicyPeer {
                ip_block: Some(IpBlock { cidr, except }),
                ..Default::default()
            }
        }
    }
}

fn random_ports(rng: &mut Rng, named: bool) -> Vec<NetworkPolicyPort> {
    (0..rng.below(3))
        .map(|_| {
            let protocol = match rng.below(3) {
                0 => None,
                1 => Some(Protocol::Tcp),
                _ => Some(Protocol::Udp),
            };
            let (port, end_port) = match rng.below(if named { 4 } else { 3 }) {
                0 => (None, None),
                1 => (Some(PortRef::Number(rng.pick(&PORTS))), None),
                2 => {
                    let start = rng.pick(&PORTS);
                    (
                        Some(PortRef::Number(start)),
                        Some(start.saturating_add(rng.pick(&[1, 100, 8000]))),
                    )
                }
                _ => (
                    Some(PortRef::Name(rng.pick(&["http", "dns", "sql"]).to_string())),
                    None,
                ),
            };
            NetworkPolicyPort {
                protocol,
                port,
                end_port,
            }
        })
        .collect()
}

/// A rule's peers and ports. Named ports are left out of rules with ipBlock peers: there the
/// compiler knowingly widens to the pod identities in the block (docs/network-policy.md).
fn random_rule(rng: &mut Rng, pods: &[RefPod]) -> (Vec<NetworkPolicyPeer>, Vec<NetworkPolicyPort>) {
    let peers: Vec<NetworkPolicyPeer> = (0..rng.below(3)).map(|_| random_peer(rng, pods)).collect();
    let named = peers.iter().all(|p| p.ip_block.is_none());
    (peers, random_ports(rng, named))
}

fn random_cluster(rng: &mut Rng) -> RefCluster {
    let mut namespaces = BTreeMap::new();
    for ns in ["ns0", "ns1", "ns2"] {
        let mut l = labels(&[("team", rng.pick(&["red", "blue"]))]);
        l.insert("kubernetes.io/metadata.name".into(), ns.into());
        namespaces.insert(ns.to_string(), l);
    }
    let pods: Vec<RefPod> = (0..8)
        .map(|i| {
            let app = rng.pick(&["web", "api", "db"]);
            let mut l = labels(&[("app", app)]);
            if rng.chance(50) {
                l.insert("tier".into(), rng.pick(&["front", "back"]).to_string());
            }
            // Named ports follow the app label, so pods sharing an identity share them.
            let named_ports = match app {
                "web" => vec![("http".to_string(), Protocol::Tcp, 80)],
                "api" => vec![
                    ("http".to_string(), Protocol::Tcp, 8080),
                    ("dns".to_string(), Protocol::Udp, 53),
                ],
                _ => vec![("sql".to_string(), Protocol::Tcp, 5432)],
            };
            RefPod {
                namespace: rng.pick(&["ns0", "ns1", "ns2"]).to_string(),
                labels: l,
                ip: Ipv4Addr::new(10, 244, 1 + (i % 2) as u8, 10 + i as u8),
                named_ports,
            }
        })
        .collect();
    let mut policies = Vec::new();
    for i in 0..1 + rng.below(4) {
        let policy_types = match rng.below(4) {
            0 => None,
            1 => Some(vec![PolicyType::Ingress]),
            2 => Some(vec![PolicyType::Egress]),
            _ => Some(vec![PolicyType::Ingress, PolicyType::Egress]),
        };
        let ingress = (0..rng.below(3))
            .map(|_| {
                let (from, ports) = random_rule(rng, &pods);
                NetworkPolicyIngressRule { from, ports }
            })
            .collect();
        let egress = (0..rng.below(3))
            .map(|_| {
                let (to, ports) = random_rule(rng, &pods);
                NetworkPolicyEgressRule { to, ports }
            })
            .collect();
        let policy = NetworkPolicy {
            api_version: "networking.k8s.io/v1".into(),
            kind: "NetworkPolicy".into(),
            metadata: ObjectMeta {
                name: format!("p{i}"),
                namespace: Some(rng.pick(&["ns0", "ns1", "ns2"]).to_string()),
                ..Default::default()
            },
            spec: NetworkPolicySpec {
                pod_selector: random_selector(rng),
                policy_types,
                ingress,
                egress,
            },
        };
        if policy.validate().is_empty() {
            policies.push(policy);
        }
    }
    RefCluster {
        namespaces,
        pods,
        policies,
    }
}

fn cluster_state(r: &RefCluster) -> ClusterState {
    let mut state = ClusterState {
        namespaces: r.namespaces.clone(),
        ..Default::default()
    };
    for (i, pod) in r.pods.iter().enumerate() {
        let name = PodName {
            namespace: pod.namespace.clone(),
            name: format!("pod{i}"),
        };
        state.pods.insert(
            name.clone(),
            skiff_node::policy::cluster::PodRecord {
                name,
                labels: pod.labels.clone(),
                ip: pod.ip,
                named_ports: pod
                    .named_ports
                    .iter()
                    .map(|(n, p, num)| ((n.clone(), *p), *num))
                    .collect(),
            },
        );
    }
    for p in &r.policies {
        let name = PodName {
            namespace: p.metadata.namespace().to_string(),
            name: p.metadata.name.clone(),
        };
        state.policies.insert(name, p.clone());
    }
    state
}

#[test]
fn kernel_verdicts_equal_the_specification() {
    if !skiff_lab::privileged() {
        return;
    }
    let seed = std::env::var("SKIFF_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let cases: usize = std::env::var("SKIFF_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    eprintln!("policy property test: seed {seed} (SKIFF_PROPTEST_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let mut plane = DataPlane::load(AttachMode::detect()).expect("load data plane");
    let mut reconciler =
        PolicyReconciler::new(plane.take_policy_maps().unwrap()).expect("policy reconciler");
    let mut sport: u16 = 20000;
    let (mut probes, mut denied) = (0, 0);
    for case in 0..cases {
        let cluster = random_cluster(&mut rng);
        let subject = &cluster.pods[rng.below(cluster.pods.len())];
        let compiled = compile(&cluster_state(&cluster), &[], &[subject.ip]);
        reconciler.reconcile(&compiled).expect("reconcile");
        plane
            .endpoints()
            .unwrap()
            .upsert(LOOPBACK, subject.ip)
            .unwrap();
        for _ in 0..24 {
            let peer = if rng.chance(75) {
                cluster.pods[rng.below(cluster.pods.len())].ip
            } else {
                rng.pick(&OUTSIDERS)
            };
            if peer == subject.ip {
                continue;
            }
            let ingress = rng.chance(50);
            let proto = rng.pick(&[Protocol::Tcp, Protocol::Udp]);
            let port = rng.pick(&PORTS);
            sport = if sport >= 60000 { 20000 } else { sport + 1 };
            let (src, dst) = if ingress {
                (peer, subject.ip)
            } else {
                (subject.ip, peer)
            };
            let packet = match proto {
                Protocol::Tcp => Ipv4Packet::tcp_syn(src, sport, dst, port),
                _ => Ipv4Packet::udp(src, sport, dst, port).with_payload(b"probe"),
            }
            .build();
            let program = if ingress {
                TcProgram::ToPod
            } else {
                TcProgram::FromPod
            };
            let verdict = plane
                .test_run(program, &packet, LOOPBACK, 1)
                .expect("test run")
                .verdict;
            assert!(
                verdict == TC_ACT_OK || verdict == TC_ACT_SHOT,
                "verdict {verdict}"
            );
            let kernel = verdict == TC_ACT_OK;
            let spec = cluster.allows(subject.ip, peer, ingress, proto, port);
            let direction = if ingress {
                POLICY_INGRESS
            } else {
                POLICY_EGRESS
            };
            let twin = compiled
                .judge(subject.ip, peer, direction, proto.number(), port)
                .allowed;
            let what = format!(
                "seed {seed} case {case}: {} {src}:{sport} -> {dst}:{port}/{} \
                 (subject {} in {} {:?})\npolicies: {}",
                if ingress { "ingress" } else { "egress" },
                proto.name(),
                subject.ip,
                subject.namespace,
                subject.labels,
                serde_json::to_string_pretty(&cluster.policies).unwrap(),
            );
            assert_eq!(
                kernel, spec,
                "kernel disagrees with the specification: {what}"
            );
            assert_eq!(twin, kernel, "explain disagrees with the kernel: {what}");
            probes += 1;
            denied += !kernel as usize;
        }
    }
    eprintln!("{cases} random clusters, {probes} probes, {denied} denied: all equal");
    assert!(
        denied > probes / 10 && denied < probes * 9 / 10,
        "a useless mix: {denied}/{probes}"
    );
}
