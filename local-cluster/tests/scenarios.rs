//! End-to-end scenarios: each starts a fresh three-node cluster (real control plane, real
//! node daemons with their eBPF data planes, real pods) in a lab, deploys the demo
//! application of examples/demo with `skiff apply`, and drives it as a user would.
//!
//! One scenario runs at a time: each cluster is a dozen processes on a small machine.

mod support;

use std::sync::Mutex;

use skiff_local_cluster::{Runtime, Store};
use support::*;

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Scenario 1 and 9: every tier answers through its service, and the policies deny exactly
/// the flows they do not allow.
fn demo_answers_and_policies_hold(demo: &Demo) {
    // The front end through the NodePort of every node, from outside the cluster: each
    // answer went front -> api -> data.
    for node in &demo.nodes {
        let target = format!("{}:{FRONT_NODE_PORT}", node.address);
        let (answer, ok) = http_from_outside(demo, &target);
        assert!(ok, "front through {target}: {answer}");
        assert_eq!(hops(&answer), ["front", "api", "data"], "{answer}");
    }
    let front = &tier_pods(demo, "front")[0].name;
    let api = &tier_pods(demo, "api")[0].name;
    let worker = &tier_pods(demo, "worker")[0].name;
    let data = &tier_pods(demo, "data")[0].name;
    // Allowed: front -> api, api -> data, worker -> data; and anyone -> worker (its job
    // intake has no policy). Names resolve through cluster DNS.
    for (from, to, path) in [
        (front, "api:8080", vec!["api", "data"]),
        (api, "data:8080", vec!["data"]),
        (worker, "data:8080", vec!["data"]),
        (front, "worker:8080", vec!["worker", "data"]),
    ] {
        let (answer, ok) = http_from_pod(demo, from, to);
        assert!(ok, "{from} -> {to} must be allowed: {answer}");
        assert_eq!(hops(&answer), path, "{from} -> {to}: {answer}");
    }
    // Denied: everything else into api and data.
    for (from, to) in [
        (front, "data:8080"),
        (worker, "api:8080"),
        (data, "api:8080"),
    ] {
        let (answer, ok) = http_from_pod(demo, from, to);
        assert!(!ok, "{from} -> {to} must be denied: {answer}");
    }
    // Some node's data plane recorded those drops, and `skiff observe` shows them with the
    // pods on both sides.
    let denied: String = demo
        .nodes
        .iter()
        .map(|node| {
            let api = format!("{}:{}", node.address, skiff_local_cluster::NODE_API_PORT);
            demo.skiff_ok(&["--node", &api, "observe", "--verdict", "denied", "--json"])
                .expect("skiff observe")
        })
        .collect();
    for policy in ["demo/api-from-front", "demo/data-from-api-and-worker"] {
        assert!(
            denied.contains(&format!("\"policy\":\"{policy}")),
            "no drop names {policy}: {denied}"
        );
    }
}

#[test]
fn scenario_1_the_demo_answers_through_every_service_and_policies_deny_the_rest() {
    if !skiff_lab::privileged() {
        return;
    }
    let _one = serial();
    let demo = demo(Runtime::Embedded, Store::Embedded);
    demo_answers_and_policies_hold(&demo);
}
