//! End-to-end scenarios: each starts a fresh three-node cluster (real control plane, real
//! node daemons with their eBPF data planes, real pods) in a lab, deploys the demo
//! application of examples/demo with `skiff apply`, and drives it as a user would.
//!
//! One scenario runs at a time: each cluster is a dozen processes on a small machine.

mod support;

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

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

#[test]
fn scenario_2_the_worker_scales_1_6_2_under_traffic_without_a_failed_request() {
    if !skiff_lab::privileged() {
        return;
    }
    let _one = serial();
    let demo = demo(Runtime::Embedded, Store::Embedded);
    // While its autoscaler exists it owns the worker's replica count; this is a manual scale.
    demo.skiff_ok(&["delete", "hpa", "worker", "-n", DEMO_NAMESPACE])
        .unwrap();
    let client = tier_pods(&demo, "front")[0].name.clone();
    let load_seconds = 40;
    let started = Instant::now();
    let (summary, scaled_within) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            probe_in_pod(
                &demo,
                &client,
                &[
                    "load",
                    "worker:8080",
                    "--proto",
                    "http",
                    "--interval-ms",
                    "20",
                    "--for",
                    &format!("{load_seconds}s"),
                ],
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        for replicas in [6, 2] {
            demo.skiff_ok(&[
                "scale",
                "deployment",
                "worker",
                "--replicas",
                &replicas.to_string(),
                "-n",
                DEMO_NAMESPACE,
            ])
            .unwrap();
            wait_ready(&demo, "worker", replicas, Duration::from_secs(30));
        }
        // The pods scaled away must be gone (not just terminating) while the load still runs.
        eventually(Duration::from_secs(20), "scaled-down workers gone", || {
            (all_pod_names(&demo, "worker").len() == 2).then_some(())
        });
        let scaled_within = started.elapsed();
        (load.join().unwrap(), scaled_within)
    });
    assert!(
        scaled_within < Duration::from_secs(load_seconds - 2),
        "scaling took {scaled_within:?}, longer than the traffic ran"
    );
    let (summary, ok) = summary;
    assert!(ok, "requests failed while scaling: {summary}");
    assert_eq!(summary["failures"], 0, "{summary}");
    assert!(summary["attempts"].as_u64().unwrap() > 200, "{summary}");
    // What makes the scale-down clean: each pod left the services before it was stopped.
    let drained: usize = demo
        .nodes
        .iter()
        .map(|n| {
            std::fs::read_to_string(&n.daemon.log)
                .unwrap_or_default()
                .matches("drained from the services before stopping")
                .count()
        })
        .sum();
    assert!(
        drained >= 4,
        "{drained} of the 4 scaled-away workers were drained"
    );
}

#[test]
fn scenario_3_a_rolling_update_of_the_front_end_under_traffic_fails_no_request() {
    if !skiff_lab::privileged() {
        return;
    }
    let _one = serial();
    let mut demo = demo(Runtime::Embedded, Store::Embedded);
    let entry = format!("{}:{FRONT_NODE_PORT}", demo.nodes[0].address);
    let old = all_pod_names(&demo, "front");
    let load = OutsideLoad::start(&mut demo, &entry);
    std::thread::sleep(Duration::from_secs(2));
    demo.skiff_ok(&[
        "rollout",
        "restart",
        "deployment",
        "front",
        "-n",
        DEMO_NAMESPACE,
    ])
    .unwrap();
    demo.skiff_ok(&[
        "rollout",
        "status",
        "deployment",
        "front",
        "-n",
        DEMO_NAMESPACE,
        "--timeout",
        "90s",
    ])
    .unwrap();
    eventually(Duration::from_secs(30), "the old front pods gone", || {
        let now = all_pod_names(&demo, "front");
        now.iter().all(|p| !old.contains(p)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let summary = load.stop();
    assert_eq!(
        summary["failures"], 0,
        "requests failed in the rollout: {summary}"
    );
    assert!(summary["attempts"].as_u64().unwrap() > 100, "{summary}");
    let new = tier_pods(&demo, "front");
    assert_eq!(new.len(), 3);
    assert!(new.iter().all(|p| !old.contains(&p.name)), "{new:?}");
}

#[test]
fn scenario_4_after_node_loss_pods_come_back_elsewhere_and_traffic_recovers_within_10_s() {
    if !skiff_lab::privileged() {
        return;
    }
    let _one = serial();
    let demo = demo_with(Runtime::Embedded, Store::Embedded, 3);
    // Lose a node that is not the NodePort entry (n1) and does not hold the data tier, so a
    // client and a server of the other endpoints stay up.
    let data = tier_pods(&demo, "data")[0].clone();
    let lost = (1..demo.nodes.len())
        .find(|&i| demo.nodes[i].name != data.node)
        .expect("three nodes");
    let lost_name = demo.nodes[lost].name.clone();
    let client = ["api", "worker"]
        .iter()
        .flat_map(|tier| tier_pods(&demo, tier))
        .find(|p| p.node != lost_name)
        .unwrap_or_else(|| panic!("no api or worker pod outside {lost_name}"));
    let entry = format!("{}:{FRONT_NODE_PORT}", demo.nodes[0].address);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (samples, direct, lost_at, replaced_within) = std::thread::scope(|s| {
        // Service traffic: through the NodePort, from outside, one request every 50 ms.
        let service = s.spawn(|| {
            let mut samples = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (_, ok) = http_from_outside(&demo, &entry);
                samples.push((Instant::now(), ok));
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        });
        // Traffic to an endpoint on a surviving node, from a pod on a surviving node.
        let direct = s.spawn(|| {
            probe_in_pod(
                &demo,
                &client.name,
                &[
                    "load",
                    "data:8080",
                    "--proto",
                    "http",
                    "--interval-ms",
                    "20",
                    "--for",
                    "25s",
                ],
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        let lost_at = Instant::now();
        demo.kill_daemon(lost);
        demo.set_link(lost, false).unwrap();
        // Its pods are replaced on the other nodes.
        for (tier, replicas) in [("front", 3), ("api", 2), ("data", 1), ("worker", 1)] {
            eventually(
                Duration::from_secs(20),
                &format!("{tier} back elsewhere"),
                || {
                    let pods = tier_pods(&demo, tier);
                    (pods.len() == replicas && pods.iter().all(|p| p.ready && p.node != lost_name))
                        .then_some(())
                },
            );
        }
        let replaced_within = lost_at.elapsed();
        // Enough traffic after the 10 s mark to see that it recovered.
        std::thread::sleep(Duration::from_secs(14).saturating_sub(lost_at.elapsed()));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (
            service.join().unwrap(),
            direct.join().unwrap(),
            lost_at,
            replaced_within,
        )
    });
    eprintln!("pods replaced {replaced_within:?} after the loss of {lost_name}");
    let before: Vec<_> = samples.iter().filter(|(t, _)| *t < lost_at).collect();
    assert!(before.iter().all(|(_, ok)| *ok), "failures before the loss");
    let last_failure = samples
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(t, _)| t.duration_since(lost_at))
        .max();
    eprintln!(
        "service traffic: {} requests, {} failed, the last {last_failure:?} after the loss",
        samples.len(),
        samples.iter().filter(|(_, ok)| !ok).count()
    );
    if let Some(last) = last_failure {
        assert!(
            last <= Duration::from_secs(10),
            "service traffic still failed {last:?} after the node loss"
        );
    }
    let after = samples
        .iter()
        .filter(|(t, _)| t.duration_since(lost_at) > Duration::from_secs(10));
    assert!(
        after.count() > 10,
        "too few requests after recovery to judge it"
    );
    let (direct, ok) = direct;
    assert!(ok, "traffic between surviving endpoints failed: {direct}");
    assert_eq!(direct["failures"], 0, "{direct}");
}

#[test]
fn scenario_5_a_daemon_killed_and_restarted_under_traffic_breaks_no_established_connection() {
    if !skiff_lab::privileged() {
        return;
    }
    let _one = serial();
    let mut demo = demo(Runtime::Embedded, Store::Embedded);
    // Both through n1, whose daemon dies: kept-alive connections, and new ones every 20 ms.
    let entry = format!("{}:{FRONT_NODE_PORT}", demo.nodes[0].address);
    let fresh = OutsideLoad::start(&mut demo, &entry);
    let mut kept = demo
        .spawn_probe_outside(&[
            "load",
            &entry,
            "--proto",
            "http",
            "--mode",
            "rr",
            "--concurrency",
            "2",
            "--duration",
            "10s",
            "--timeout",
            "2s",
        ])
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    demo.kill_daemon(0);
    // Down for 2 s (less than the node grace period: a restart, not a node loss).
    std::thread::sleep(Duration::from_secs(2));
    demo.restart_daemon(0).unwrap();
    let kept = {
        use std::io::Read as _;
        let mut text = String::new();
        kept.stdout.read_to_string(&mut text).unwrap();
        serde_json::from_str::<serde_json::Value>(text.trim())
            .unwrap_or_else(|_| panic!("rr summary: {text:?}"))
    };
    let fresh = fresh.stop();
    assert_eq!(kept["errors"], 0, "a kept-alive request failed: {kept}");
    assert_eq!(
        kept["connections"], 2,
        "a kept-alive connection was reopened: {kept}"
    );
    assert!(kept["requests"].as_u64().unwrap() > 100, "{kept}");
    assert_eq!(fresh["failures"], 0, "a new connection failed: {fresh}");
    // The restarted daemon adopted the node's pods instead of restarting them.
    let (answer, ok) = http_from_outside(&demo, &entry);
    assert!(ok, "{answer}");
}

/// Every object of the demo namespace (and the nodes) as (kind, name, uid, spec).
fn snapshot(demo: &Demo) -> Vec<(String, String, String, String)> {
    let mut objects = Vec::new();
    for kind in [
        "deployments",
        "services",
        "networkpolicies",
        "hpa",
        "pods",
        "nodes",
    ] {
        let text = demo
            .skiff_ok(&["get", kind, "-n", DEMO_NAMESPACE, "-o", "json"])
            .unwrap();
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        for item in list["items"].as_array().into_iter().flatten() {
            objects.push((
                kind.to_string(),
                item["metadata"]["name"].as_str().unwrap().to_string(),
                item["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                item["spec"].to_string(),
            ));
        }
    }
    objects.sort();
    objects
}

#[test]
fn scenario_6_with_the_control_plane_killed_traffic_flows_and_a_restart_loses_nothing() {
    if !skiff_lab::privileged() {
        return;
    }
    let _one = serial();
    let mut demo = demo(Runtime::Embedded, Store::Embedded);
    let before = snapshot(&demo);
    assert!(before.len() >= 7 + 4 + 2 + 1 + 3, "{before:?}");
    let entry = format!("{}:{FRONT_NODE_PORT}", demo.nodes[2].address);
    demo.kill_control();
    let load = OutsideLoad::start(&mut demo, &entry);
    std::thread::sleep(Duration::from_secs(5));
    let summary = load.stop();
    assert_eq!(summary["failures"], 0, "without a control plane: {summary}");
    assert!(summary["attempts"].as_u64().unwrap() > 50, "{summary}");
    demo.restart_control().unwrap();
    let after = snapshot(&demo);
    let lost: Vec<_> = before.iter().filter(|o| !after.contains(o)).collect();
    let new: Vec<_> = after.iter().filter(|o| !before.contains(o)).collect();
    assert!(
        lost.is_empty() && new.is_empty(),
        "objects changed across the control-plane restart:\nbefore: {lost:#?}\nafter: {new:#?}"
    );
    let (answer, ok) = http_from_outside(&demo, &entry);
    assert!(ok, "{answer}");
}

#[test]
fn scenario_7_a_policy_change_reaches_every_node_within_1_s() {
    if !skiff_lab::privileged() {
        return;
    }
    let _one = serial();
    let demo = demo(Runtime::Embedded, Store::Embedded);
    let front = tier_pods(&demo, "front")[0].name.clone();
    let api = tier_pods(&demo, "api")[0].name.clone();
    let explain = format!("/explain?from=demo/{front}&to=demo/{api}&port=8080&proto=tcp");
    let verdicts = || -> Vec<bool> {
        (0..demo.nodes.len())
            .map(|i| node_api(&demo, i, &explain).contains("\"verdict\":\"denied\""))
            .collect()
    };
    assert_eq!(verdicts(), [false; 3], "front -> api is allowed at first");
    // The API tier now takes only the workers.
    let mut policy: serde_json::Value = demo
        .admin
        .get("/api/v1/namespaces/demo/networkpolicies/api-from-front")
        .unwrap();
    policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["tier"] = "worker".into();
    policy["metadata"] = serde_json::json!({"name": "api-from-front", "namespace": "demo"});
    policy.as_object_mut().unwrap().remove("status");
    let written = Instant::now();
    demo.admin.apply(&[policy]).unwrap();
    let everywhere = eventually(Duration::from_secs(5), "the change on every node", || {
        verdicts()
            .iter()
            .all(|denied| *denied)
            .then(|| written.elapsed())
    });
    eprintln!("the policy change reached all 3 nodes {everywhere:?} after the write");
    assert!(
        everywhere <= Duration::from_secs(1),
        "the policy change took {everywhere:?} to reach every node"
    );
    let (answer, ok) = http_from_pod(&demo, &front, "api:8080");
    assert!(!ok, "front -> api must now be denied: {answer}");
}

#[test]
fn scenario_8_the_worker_autoscaler_scales_up_under_load_and_back_down() {
    if !skiff_lab::privileged() {
        return;
    }
    let _one = serial();
    let demo = demo(Runtime::Embedded, Store::Embedded);
    let load = demo_dir().join("../demo-load.yaml").display().to_string();
    demo.skiff_ok(&["apply", "-f", &load]).unwrap();
    let peak = eventually(Duration::from_secs(90), "the worker scaled up", || {
        let pods = tier_pods(&demo, "worker");
        (pods.len() > 1 && pods.iter().all(|p| p.ready)).then_some(pods.len())
    });
    eprintln!("the autoscaler scaled the worker to {peak}");
    let hpa = demo
        .skiff_ok(&["get", "hpa", "worker", "-n", DEMO_NAMESPACE])
        .unwrap();
    eprintln!("{hpa}");
    demo.skiff_ok(&["delete", "-f", &load]).unwrap();
    // The demo's scale-down window is 20 s.
    wait_ready(&demo, "worker", 1, Duration::from_secs(90));
    // The rest of the stack did not move.
    for (tier, replicas) in [("front", 3), ("api", 2), ("data", 1)] {
        assert_eq!(tier_pods(&demo, tier).len(), replicas, "{tier}");
    }
}

#[test]
fn scenario_9_the_demo_on_the_docker_runtime() {
    if !skiff_lab::privileged() {
        return;
    }
    let _one = serial();
    let demo = demo(Runtime::Docker, Store::Embedded);
    demo_answers_and_policies_hold(&demo);
}

#[test]
fn scenario_9_the_demo_on_the_etcd_store() {
    if !skiff_lab::privileged() {
        return;
    }
    let _one = serial();
    let demo = demo(Runtime::Embedded, Store::Etcd);
    demo_answers_and_policies_hold(&demo);
}
