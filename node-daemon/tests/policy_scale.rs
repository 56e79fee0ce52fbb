//! Policy at scale: 1,000 NetworkPolicies over 10,000 pods compile and load, and the kernel's
//! verdicts there agree with `explain`. Then the per-packet cost of the policy path, measured
//! with BPF_PROG_TEST_RUN repeat at 10, 100 and 1,000 policies (informational: speed is judged
//! by benchmarks, not asserted here; docs/network-policy.md reports the figures).

use std::{fmt::Write as _, net::Ipv4Addr, time::Instant};

use skiff_lab::packet::Ipv4Packet;
use skiff_node::{
    dataplane::{AttachMode, DataPlane, TcProgram},
    policy::{cluster_from_manifest, compile, PolicyReconciler},
};

const LOOPBACK: u32 = 1;
const NAMESPACES: usize = 100;
const PODS_PER_NAMESPACE: usize = 100;
const APPS: usize = 20;

fn pod_ip(ns: usize, i: usize) -> Ipv4Addr {
    let n = ns * PODS_PER_NAMESPACE + i;
    Ipv4Addr::new(10, 244, (n / 250) as u8, (n % 250 + 2) as u8)
}

/// 10,000 pods in 100 namespaces, and `policies` policies spread over the namespaces: each
/// selects one app and lets in the next app of its namespace on TCP 80-81, the pods of a
/// team's namespaces on "http", and a CIDR; every tenth also limits egress.
fn manifest(policies: usize) -> String {
    let mut m = String::new();
    for ns in 0..NAMESPACES {
        let _ = writeln!(
            m,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{ns}, labels: {{team: t{}}}}}",
            ns % 5
        );
        for i in 0..PODS_PER_NAMESPACE {
            let _ = writeln!(
                m,
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: ns{ns}, labels: {{app: a{}, tier: t{}}}}}\n\
                 spec: {{containers: [{{name: main, image: skiff-probe, ports: [{{name: http, containerPort: 8080}}]}}]}}\n\
                 status: {{podIP: {}}}",
                i % APPS,
                i % 2,
                pod_ip(ns, i)
            );
        }
    }
    for p in 0..policies {
        let ns = p % NAMESPACES;
        let app = (p / NAMESPACES) % APPS;
        let _ = writeln!(
            m,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np{p}, namespace: ns{ns}}}\n\
             spec:\n  podSelector: {{matchLabels: {{app: a{app}}}}}\n  ingress:\n\
             \x20 - from: [{{podSelector: {{matchLabels: {{app: a{}}}}}}}]\n    ports: [{{port: 80, endPort: 81}}]\n\
             \x20 - from: [{{namespaceSelector: {{matchLabels: {{team: t{}}}}}}}]\n    ports: [{{port: http}}]\n\
             \x20 - from: [{{ipBlock: {{cidr: 192.168.{}.0/24, except: [192.168.{}.7/32]}}}}]",
            (app + 1) % APPS,
            p % 5,
            p % 250,
            p % 250
        );
        if p % 10 == 0 {
            let _ = writeln!(
                m,
                "  egress:\n  - to: [{{namespaceSelector: {{}}, podSelector: {{matchLabels: {{tier: t0}}}}}}]"
            );
        }
    }
    m
}

#[test]
fn thousand_policies_over_ten_thousand_pods() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut plane = DataPlane::load(AttachMode::detect()).expect("load data plane");
    let mut reconciler = PolicyReconciler::new(plane.take_policy_maps().unwrap()).unwrap();
    // This node's pods: the first namespace's hundred.
    let local_ips: Vec<Ipv4Addr> = (0..PODS_PER_NAMESPACE).map(|i| pod_ip(0, i)).collect();
    let subject_ip = pod_ip(0, 0); // app a0 in ns0: selected by np0 (and np100, np200, ...)
    plane
        .endpoints()
        .unwrap()
        .upsert(LOOPBACK, subject_ip)
        .unwrap();
    let allowed_peer = pod_ip(0, 1); // app a1: np0 lets it in on 80-81
    let denied_peer = pod_ip(0, 2);

    let mut report = String::from(
        "policies  parse_ms  compile_ms  load_ms  entries  denied_ns  established_ns  unselected_ns\n",
    );
    for policies in [10, 100, 1000] {
        let text = manifest(policies);
        let started = Instant::now();
        let state = cluster_from_manifest(&text).expect("manifest");
        let parse_ms = started.elapsed().as_millis();
        let started = Instant::now();
        let compiled = compile(&state, &[], &local_ips);
        let compile_ms = started.elapsed().as_millis();
        assert_eq!(state.pods.len(), NAMESPACES * PODS_PER_NAMESPACE);
        assert_eq!(state.policies.len(), policies);
        let started = Instant::now();
        reconciler.reconcile(&compiled).expect("load");
        let load_ms = started.elapsed().as_millis();

        // Verdicts agree with explain's lookup on a sample of peers and ports.
        for (peer, port) in [
            (allowed_peer, 80),
            (allowed_peer, 81),
            (allowed_peer, 82),
            (denied_peer, 80),
        ] {
            let packet = Ipv4Packet::tcp_syn(peer, 30000 + port, subject_ip, port).build();
            let kernel = plane
                .test_run(TcProgram::ToPod, &packet, LOOPBACK, 1)
                .unwrap()
                .verdict
                == 0;
            let twin = compiled
                .judge(subject_ip, peer, skiff_common::POLICY_INGRESS, 6, port)
                .allowed;
            assert_eq!(
                kernel, twin,
                "{policies} policies: {peer} -> {subject_ip}:{port}"
            );
            assert_eq!(kernel, peer == allowed_peer && port <= 81);
        }

        // Per-packet cost. Denied: every lookup, every time (no flow is recorded). Established:
        // an allowed flow's later packets (one conntrack hit). Unselected: egress of a pod no
        // policy selects for egress (np0 has no egress rules).
        let repeat = 100_000;
        let denied = Ipv4Packet::tcp_syn(denied_peer, 41000, subject_ip, 80).build();
        let established = Ipv4Packet::tcp_syn(allowed_peer, 41001, subject_ip, 80).build();
        let unselected = Ipv4Packet::tcp_syn(subject_ip, 41002, denied_peer, 80).build();
        // The best of five runs: the machine is shared, and noise only ever adds time.
        let cost = |plane: &mut DataPlane, program, packet: &[u8]| {
            (0..5)
                .map(|_| {
                    plane
                        .test_run(program, packet, LOOPBACK, repeat)
                        .unwrap()
                        .duration
                        .as_nanos()
                })
                .min()
                .unwrap()
        };
        let denied_ns = cost(&mut plane, TcProgram::ToPod, &denied);
        let established_ns = cost(&mut plane, TcProgram::ToPod, &established);
        let unselected_ns = cost(&mut plane, TcProgram::FromPod, &unselected);
        let _ = writeln!(
            report,
            "{policies:>8}  {parse_ms:>8}  {compile_ms:>10}  {load_ms:>7}  {:>7}  {denied_ns:>9}  {established_ns:>14}  {unselected_ns:>13}",
            reconciler.entry_count()
        );
    }
    eprintln!("{report}");
}
