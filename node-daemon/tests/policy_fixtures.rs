//! BPF_PROG_TEST_RUN fixtures for policy on odd packets: truncated, fragmented, malformed,
//! portless, and replies. A pod selected by a policy for both directions may only receive
//! TCP port 80 from one peer and may send nothing; no odd packet may slip past that, and
//! none may crash a program (the verifier rules that out; the verdicts are checked here).

use std::net::Ipv4Addr;

use skiff_common::DropReason;
use skiff_lab::packet::{arp_request, checksum, Ipv4Packet, ETH_HDR_LEN};
use skiff_node::{
    dataplane::{AttachMode, DataPlane, TcProgram},
    policy::{cluster_from_manifest, compile, PolicyReconciler},
};

const LOOPBACK: u32 = 1;
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const FRIEND: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const STRANGER: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);

const MANIFEST: &str = "
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: x, labels: {app: server}}
spec: {containers: [{name: main, image: skiff-probe}]}
status: {podIP: 10.244.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: friend, namespace: x, labels: {app: friend}}
spec: {containers: [{name: main, image: skiff-probe}]}
status: {podIP: 10.244.1.3}
---
apiVersion: v1
kind: Pod
metadata: {name: stranger, namespace: x, labels: {app: stranger}}
spec: {containers: [{name: main, image: skiff-probe}]}
status: {podIP: 10.244.1.4}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: x}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: friend}}}]
    ports: [{port: 80}]
";

/// Rewrites the IPv4 flags/fragment offset field (and the header checksum).
fn with_fragment(mut frame: Vec<u8>, more_fragments: bool, offset_words: u16) -> Vec<u8> {
    let field = ((more_fragments as u16) << 13) | offset_words;
    frame[ETH_HDR_LEN + 6..ETH_HDR_LEN + 8].copy_from_slice(&field.to_be_bytes());
    fix_ip_checksum(frame)
}

fn with_protocol(mut frame: Vec<u8>, protocol: u8) -> Vec<u8> {
    frame[ETH_HDR_LEN + 9] = protocol;
    fix_ip_checksum(frame)
}

fn fix_ip_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    frame[ETH_HDR_LEN + 10..ETH_HDR_LEN + 12].copy_from_slice(&[0, 0]);
    let sum = checksum(&frame[ETH_HDR_LEN..ETH_HDR_LEN + 20]);
    frame[ETH_HDR_LEN + 10..ETH_HDR_LEN + 12].copy_from_slice(&sum.to_be_bytes());
    frame
}

fn syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    Ipv4Packet::tcp_syn(src, sport, dst, dport).build()
}

/// Name, program, packet, expected verdict, expected drop reason.
type Row = (&'static str, TcProgram, Vec<u8>, i32, Option<DropReason>);

#[test]
fn odd_packets_never_slip_past_a_deny() {
    if !skiff_lab::privileged() {
        return;
    }
    use TcProgram::{FromPod, ToPod};
    let mut plane = DataPlane::load(AttachMode::detect()).expect("load data plane");
    let mut policy = PolicyReconciler::new(plane.take_policy_maps().unwrap()).unwrap();
    let compiled = compile(&cluster_from_manifest(MANIFEST).unwrap(), &[], &[POD]);
    policy.reconcile(&compiled).unwrap();
    plane.endpoints().unwrap().upsert(LOOPBACK, POD).unwrap();

    let mut truncated_tcp = syn(STRANGER, 40000, POD, 80);
    truncated_tcp.truncate(ETH_HDR_LEN + 20 + 2);
    let mut bad_ihl = syn(FRIEND, 40001, POD, 80);
    bad_ihl[ETH_HDR_LEN] = 0x44;
    let rows: Vec<Row> = vec![
        (
            "allowed: friend, tcp/80",
            ToPod,
            syn(FRIEND, 40002, POD, 80),
            TC_ACT_OK,
            None,
        ),
        (
            "reply to the friend passes egress",
            FromPod,
            Ipv4Packet::tcp_syn(POD, 80, FRIEND, 40002).build(),
            TC_ACT_OK,
            None,
        ),
        (
            "friend on another port",
            ToPod,
            syn(FRIEND, 40003, POD, 81),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedIngress),
        ),
        (
            "friend over udp/80",
            ToPod,
            Ipv4Packet::udp(FRIEND, 40004, POD, 80).build(),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedIngress),
        ),
        (
            "stranger, tcp/80",
            ToPod,
            syn(STRANGER, 40005, POD, 80),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedIngress),
        ),
        (
            "stranger's reply-shaped packet with no flow",
            FromPod,
            syn(POD, 80, STRANGER, 40006),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedEgress),
        ),
        (
            "first fragment from the friend: ports not trusted",
            ToPod,
            with_fragment(syn(FRIEND, 40007, POD, 80), true, 0),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedIngress),
        ),
        (
            "later fragment from the friend",
            ToPod,
            with_fragment(syn(FRIEND, 40008, POD, 80), false, 64),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedIngress),
        ),
        (
            "later fragment from a stranger",
            ToPod,
            with_fragment(syn(STRANGER, 40009, POD, 80), true, 8),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedIngress),
        ),
        (
            "icmp from the friend (no port)",
            ToPod,
            with_protocol(Ipv4Packet::udp(FRIEND, 8, POD, 0).build(), 1),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedIngress),
        ),
        (
            "unknown protocol 99 from a stranger",
            ToPod,
            with_protocol(Ipv4Packet::udp(STRANGER, 1, POD, 2).build(), 99),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedIngress),
        ),
        (
            "tcp header cut off",
            ToPod,
            truncated_tcp,
            TC_ACT_SHOT,
            Some(DropReason::MalformedPacket),
        ),
        (
            "ihl below five words",
            ToPod,
            bad_ihl,
            TC_ACT_SHOT,
            Some(DropReason::MalformedPacket),
        ),
        (
            "egress to anyone",
            FromPod,
            syn(POD, 40010, FRIEND, 80),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedEgress),
        ),
        (
            "egress fragment",
            FromPod,
            with_fragment(Ipv4Packet::udp(POD, 40011, FRIEND, 53).build(), false, 100),
            TC_ACT_SHOT,
            Some(DropReason::PolicyDeniedEgress),
        ),
        (
            "spoofed source is refused before policy",
            FromPod,
            syn(STRANGER, 40012, FRIEND, 80),
            TC_ACT_SHOT,
            Some(DropReason::SpoofedSource),
        ),
        (
            "arp still passes",
            ToPod,
            arp_request(FRIEND, POD),
            TC_ACT_OK,
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (name, program, packet, verdict, drop) in rows {
        let before = plane.drop_counts().unwrap();
        let outcome = plane
            .test_run(program, &packet, LOOPBACK, 1)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let after = plane.drop_counts().unwrap();
        let counted: Vec<DropReason> = before
            .iter()
            .zip(&after)
            .filter(|((_, b), (_, a))| a > b)
            .map(|((r, _), _)| *r)
            .collect();
        if outcome.verdict != verdict || counted != drop.into_iter().collect::<Vec<_>>() {
            failures.push(format!(
                "{name}: verdict {} (want {verdict}), drops counted {counted:?} (want {drop:?})",
                outcome.verdict
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
