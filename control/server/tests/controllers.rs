//! The scheduler and controllers of a real `skiff-control`, driven by simulated nodes that
//! speak the node API (join, heartbeat, pod status, final delete, usage samples) the way
//! `skiff-node` does: rollouts keep availability, node loss moves pods, endpoints follow
//! readiness, unschedulable pods say why, and the autoscaler scales one deployment.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use serde_json::{json, Value};
use skiff_api::time::rfc3339;
use support::{eventually, Api, Control};

/// A fake node: heartbeats, runs (pretends to run) its pods, reports usage.
struct SimNode {
    alive: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// CPU millicores each of its pods reports using.
    usage: Arc<AtomicU64>,
}

impl SimNode {
    fn start(admin: &Api, join_token: &str, name: &str) -> SimNode {
        let joiner = admin.with_token(Some(join_token));
        let joined = joiner.expect(
            "POST",
            "/api/v1/join",
            Some(&json!({"nodeName": name})),
            200,
        );
        let api = admin.with_token(joined["token"].as_str());
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
        let created = api.expect("PUT", &format!("/api/v1/nodes/{name}"), Some(&node), 200);
        let cidr = created["spec"]["podCIDR"].as_str().unwrap().to_string();
        let prefix = cidr.rsplit_once('.').unwrap().0.to_string();
        let alive = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let usage = Arc::new(AtomicU64::new(10));
        let (a, s, u, name) = (alive.clone(), stop.clone(), usage.clone(), name.to_string());
        let handle = std::thread::spawn(move || {
            let mut next_ip = 2;
            let mut ips: BTreeMap<String, String> = BTreeMap::new();
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(150));
                if !a.load(Ordering::Relaxed) {
                    continue;
                }
                let Ok((200, mut me)) = api.raw("GET", &format!("/api/v1/nodes/{name}"), None)
                else {
                    continue;
                };
                me["status"] = json!({
                    "capacity": {"cpu": "2", "memory": "4Gi"},
                    "allocatable": {"cpu": "2", "memory": "4Gi"},
                    "addresses": [{"type": "InternalIP", "address": "192.168.50.1"}],
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "lastHeartbeatTime": rfc3339(SystemTime::now())}]});
                let _ = api.raw("PUT", &format!("/api/v1/nodes/{name}/status"), Some(&me));
                let Ok((200, pods)) = api.raw("GET", "/api/v1/pods", None) else {
                    continue;
                };
                let mut samples = Vec::new();
                for pod in pods["items"].as_array().unwrap() {
                    if pod["spec"]["nodeName"] != name.as_str() {
                        continue;
                    }
                    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_string();
                    let ns = pod["metadata"]["namespace"].as_str().unwrap().to_string();
                    let at = format!("/api/v1/namespaces/{ns}/pods/{pod_name}");
                    if pod["metadata"]["deletionTimestamp"].is_string() {
                        let _ = api.raw("DELETE", &format!("{at}?gracePeriodSeconds=0"), None);
                        continue;
                    }
                    samples.push(json!({"namespace": ns, "name": pod_name,
                        "cpuMillicores": u.load(Ordering::Relaxed), "memoryBytes": 1 << 20}));
                    if pod["status"]["phase"] == "Running" {
                        continue;
                    }
                    let ip = ips.entry(pod_name.clone()).or_insert_with(|| {
                        next_ip += 1;
                        format!("{prefix}.{next_ip}")
                    });
                    let mut running = pod.clone();
                    running["status"] = json!({"phase": "Running", "podIP": ip, "hostIP": "192.168.50.1",
                        "conditions": [{"type": "Ready", "status": "True"}]});
                    let _ = api.raw("PUT", &format!("{at}/status"), Some(&running));
                }
                let sample = json!({"node": name, "timestamp": rfc3339(SystemTime::now()),
                    "cpuMillicores": 100, "memoryBytes": 1 << 30, "pods": samples});
                let _ = api.raw(
                    "PUT",
                    &format!("/api/v1/nodes/{name}/metrics"),
                    Some(&sample),
                );
            }
        });
        SimNode {
            alive,
            stop,
            handle: Some(handle),
            usage,
        }
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn cluster() -> (Control, Vec<SimNode>) {
    let control = Control::embedded(&["--node-grace-seconds", "3"]);
    let join = std::fs::read_to_string(control.dir.join("join-token")).unwrap();
    let nodes = ["n1", "n2", "n3"]
        .iter()
        .map(|n| SimNode::start(&control.api, join.trim(), n))
        .collect();
    // Placement is only meaningful once every node has reported Ready.
    eventually(Duration::from_secs(10), "3 Ready nodes", || {
        let list = control.api.expect("GET", "/api/v1/nodes", None, 200);
        let ready = list["items"]
            .as_array()?
            .iter()
            .filter(|n| {
                n["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        (ready == 3).then_some(())
    });
    (control, nodes)
}

fn deployment(name: &str, replicas: u32, version: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
                "name": "app", "image": "skiff/probe", "command": ["skiff-probe", "serve"],
                "env": [{"name": "VERSION", "value": version}],
                "ports": [{"name": "http", "containerPort": 8080}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}})
}

fn pods(api: &Api, app: &str) -> Vec<Value> {
    let list = api.expect(
        "GET",
        &format!("/api/v1/namespaces/default/pods?labelSelector=app%3D{app}"),
        None,
        200,
    );
    list["items"].as_array().unwrap().clone()
}

fn ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn version(pod: &Value) -> String {
    pod["spec"]["containers"][0]["env"][0]["value"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn apply(api: &Api, objects: &[Value]) -> Value {
    api.expect(
        "POST",
        "/api/v1/apply",
        Some(&json!({"objects": objects})),
        200,
    )
}

#[test]
fn deployments_scale_roll_and_survive_node_loss() {
    let (control, nodes) = cluster();
    let api = control.api.clone();
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
    apply(&api, &[deployment("web", 6, "v1"), service]);

    // Six ready pods, spread 2/2/2 over three equal nodes.
    eventually(Duration::from_secs(20), "6 ready pods", || {
        (pods(&api, "web").iter().filter(|p| ready(p)).count() == 6).then_some(())
    });
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in pods(&api, "web") {
        *per_node
            .entry(p["spec"]["nodeName"].as_str().unwrap().into())
            .or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_node:?}"
    );

    // Endpoints: the ready pods' addresses, the named port resolved.
    eventually(Duration::from_secs(10), "endpoints of web", || {
        let slice = api
            .raw("GET", "/api/v1/namespaces/default/endpointslices/web", None)
            .ok()?
            .1;
        let ready = slice["endpoints"]
            .as_array()?
            .iter()
            .filter(|e| e["conditions"]["ready"] == true)
            .count();
        (ready == 6 && slice["ports"][0]["port"] == 8080).then_some(())
    });

    // Scale down and up.
    let mut d = api.expect(
        "GET",
        "/api/v1/namespaces/default/deployments/web",
        None,
        200,
    );
    d["spec"]["replicas"] = json!(2);
    api.expect(
        "PUT",
        "/api/v1/namespaces/default/deployments/web",
        Some(&d),
        200,
    );
    eventually(Duration::from_secs(20), "2 pods", || {
        (pods(&api, "web").len() == 2).then_some(())
    });
    let mut d = api.expect(
        "GET",
        "/api/v1/namespaces/default/deployments/web",
        None,
        200,
    );
    d["spec"]["replicas"] = json!(6);
    api.expect(
        "PUT",
        "/api/v1/namespaces/default/deployments/web",
        Some(&d),
        200,
    );
    eventually(Duration::from_secs(20), "6 ready pods again", || {
        (pods(&api, "web").iter().filter(|p| ready(p)).count() == 6).then_some(())
    });

    // Rolling update: never fewer than replicas - maxUnavailable ready, never more than
    // replicas + maxSurge pods.
    let watching = Arc::new(AtomicBool::new(true));
    let worst = Arc::new(Mutex::new((usize::MAX, 0usize, 0u64)));
    let sampler = {
        let (api, watching, worst) = (api.clone(), watching.clone(), worst.clone());
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                let all = pods(&api, "web");
                let ready_now = all.iter().filter(|p| ready(p)).count();
                // As in Kubernetes, pods already terminating no longer count as replicas.
                let live = all
                    .iter()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                    .count();
                let sets = api.expect(
                    "GET",
                    "/api/v1/namespaces/default/replicasets?labelSelector=app%3Dweb",
                    None,
                    200,
                );
                let planned: u64 = sets["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["spec"]["replicas"].as_u64().unwrap_or(0))
                    .sum();
                let mut w = worst.lock().unwrap();
                w.0 = w.0.min(ready_now);
                w.1 = w.1.max(live);
                w.2 = w.2.max(planned);
            }
        })
    };
    apply(&api, &[deployment("web", 6, "v2")]);
    eventually(Duration::from_secs(40), "all pods on v2", || {
        let all = pods(&api, "web");
        (all.len() == 6 && all.iter().all(|p| ready(p) && version(p) == "v2")).then_some(())
    });
    watching.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let (min_ready, max_pods, max_planned) = *worst.lock().unwrap();
    println!("rolling update: at least {min_ready} ready, at most {max_planned} replicas planned, {max_pods} live pods seen");
    assert!(
        min_ready >= 5,
        "availability fell to {min_ready} ready pods"
    );
    // Kubernetes' surge bound is on the ReplicaSets' replicas; pods lag them by a pass.
    assert!(max_planned <= 7, "surge planned {max_planned} replicas");
    let status = api.expect(
        "GET",
        "/api/v1/namespaces/default/deployments/web",
        None,
        200,
    )["status"]
        .clone();
    assert_eq!(status["updatedReplicas"], 6, "{status}");

    // Node loss: n3 stops heartbeating; its pods come back elsewhere and leave the endpoints.
    nodes[2].alive.store(false, Ordering::Relaxed);
    eventually(Duration::from_secs(20), "n3 NotReady", || {
        let n = api.expect("GET", "/api/v1/nodes/n3", None, 200);
        let cond = n["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        (cond["status"] != "True").then_some(())
    });
    eventually(Duration::from_secs(20), "6 ready pods on n1 and n2", || {
        let all = pods(&api, "web");
        let on: BTreeSet<String> = all
            .iter()
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .collect();
        (all.iter().filter(|p| ready(p)).count() == 6 && !on.contains("n3")).then_some(())
    });
    eventually(Duration::from_secs(10), "endpoints without n3", || {
        let slice = api
            .raw("GET", "/api/v1/namespaces/default/endpointslices/web", None)
            .ok()?
            .1;
        let eps = slice["endpoints"].as_array()?;
        (eps.len() == 6 && eps.iter().all(|e| e["nodeName"] != "n3")).then_some(())
    });
    let n3 = api.expect("GET", "/api/v1/nodes/n3", None, 200);
    assert!(
        n3["spec"]["taints"]
            .to_string()
            .contains("node.kubernetes.io/unreachable"),
        "{n3}"
    );
    drop(nodes);
}

#[test]
fn unschedulable_pods_say_why_and_the_autoscaler_scales_one_deployment() {
    let (control, nodes) = cluster();
    let api = control.api.clone();
    // 100 CPUs fit nowhere.
    let mut huge = deployment("huge", 1, "v1");
    huge["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
        json!("100");
    apply(&api, &[huge]);
    let message = eventually(
        Duration::from_secs(10),
        "an Unschedulable condition",
        || {
            let p = pods(&api, "huge").into_iter().next()?;
            let c = p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "PodScheduled")?
                .clone();
            (c["reason"] == "Unschedulable")
                .then(|| c["message"].as_str().unwrap_or("").to_string())
        },
    );
    assert!(
        message.contains("0/3 nodes are available") && message.contains("Insufficient cpu"),
        "{message}"
    );

    // The worker scales on its own load; the front end next to it does not move.
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "worker"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 2}}}});
    apply(
        &api,
        &[
            deployment("worker", 1, "v1"),
            deployment("front", 2, "v1"),
            hpa,
        ],
    );
    eventually(Duration::from_secs(20), "worker and front ready", || {
        (pods(&api, "worker").iter().filter(|p| ready(p)).count() == 1
            && pods(&api, "front").iter().filter(|p| ready(p)).count() == 2)
            .then_some(())
    });
    // 200m used of 100m requested = 200% against a 50% target: up to the maximum.
    for n in &nodes {
        n.usage.store(200, Ordering::Relaxed);
    }
    eventually(Duration::from_secs(30), "worker scaled up to 4", || {
        let d = api.expect(
            "GET",
            "/api/v1/namespaces/default/deployments/worker",
            None,
            200,
        );
        (d["spec"]["replicas"] == 4).then_some(())
    });
    let front = api.expect(
        "GET",
        "/api/v1/namespaces/default/deployments/front",
        None,
        200,
    );
    assert_eq!(
        front["spec"]["replicas"], 2,
        "the front end does not scale with the worker"
    );
    // Load gone: back down to the minimum after the stabilisation window.
    for n in &nodes {
        n.usage.store(1, Ordering::Relaxed);
    }
    eventually(Duration::from_secs(30), "worker scaled down to 1", || {
        let d = api.expect(
            "GET",
            "/api/v1/namespaces/default/deployments/worker",
            None,
            200,
        );
        (d["spec"]["replicas"] == 1).then_some(())
    });
    let status = api.expect(
        "GET",
        "/api/v1/namespaces/default/horizontalpodautoscalers/worker",
        None,
        200,
    )["status"]
        .clone();
    assert_eq!(status["desiredReplicas"], 1, "{status}");
    drop(nodes);
}
