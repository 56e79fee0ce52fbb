//! The demo application on a fresh cluster, and what the scenarios ask of it.

#![allow(dead_code)] // each scenario uses a different part

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;
use skiff_local_cluster::{Binaries, Cluster, Options, Runtime, Store};

pub const DEMO_NAMESPACE: &str = "demo";
/// The demo's NodePort (examples/demo/front.yaml).
pub const FRONT_NODE_PORT: u16 = 30080;

pub fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/demo")
}

/// A cluster and the temporary folder holding its state (dropped after it).
pub struct Demo {
    pub cluster: Cluster,
    _state: tempfile::TempDir,
}

impl std::ops::Deref for Demo {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for Demo {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

/// A fresh 3-node cluster with the demo application applied and every pod Ready.
pub fn demo(runtime: Runtime, store: Store) -> Demo {
    demo_with(runtime, store, 5)
}

/// [`demo`] with the control plane's node grace period (seconds without a heartbeat before a
/// node counts as lost).
pub fn demo_with(runtime: Runtime, store: Store, node_grace_seconds: u32) -> Demo {
    let state = tempfile::Builder::new()
        .prefix("skiff-scenario-")
        .tempdir()
        .unwrap();
    let binaries = Binaries::beside_current_exe().expect("binaries (cargo xtask build)");
    let mut options = Options::new(binaries, state.path().to_path_buf());
    options.runtime = runtime;
    options.store = store;
    options.log_filter = "info".into();
    options.node_grace_seconds = node_grace_seconds;
    let cluster = Cluster::start(options, &mut |step| eprintln!("cluster: {step}"))
        .unwrap_or_else(|e| panic!("cluster did not come up: {e}"));
    let demo = Demo {
        cluster,
        _state: state,
    };
    let dir = demo_dir().display().to_string();
    demo.skiff_ok(&["apply", "-f", &dir])
        .expect("apply the demo");
    for (deployment, replicas) in [("front", 3), ("api", 2), ("data", 1), ("worker", 1)] {
        wait_ready(&demo, deployment, replicas, Duration::from_secs(60));
    }
    demo
}

/// Waits until the deployment has exactly `replicas` pods, all Ready.
pub fn wait_ready(cluster: &Cluster, deployment: &str, replicas: usize, timeout: Duration) {
    eventually(
        timeout,
        &format!("{replicas} ready {deployment} pods"),
        || {
            let pods = tier_pods(cluster, deployment);
            (pods.len() == replicas && pods.iter().all(|p| p.ready)).then_some(())
        },
    );
}

#[derive(Clone, Debug)]
pub struct PodInfo {
    pub name: String,
    pub node: String,
    pub ip: String,
    pub ready: bool,
}

/// Names of a tier's pods, also those being deleted.
pub fn all_pod_names(cluster: &Cluster, tier: &str) -> Vec<String> {
    let pods = cluster
        .admin
        .get(&format!(
            "/api/v1/namespaces/{DEMO_NAMESPACE}/pods?labelSelector=tier={tier}"
        ))
        .expect("list pods");
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// The pods of a demo tier that are not being deleted.
pub fn tier_pods(cluster: &Cluster, tier: &str) -> Vec<PodInfo> {
    let pods = cluster
        .admin
        .get(&format!(
            "/api/v1/namespaces/{DEMO_NAMESPACE}/pods?labelSelector=tier={tier}"
        ))
        .expect("list pods");
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| PodInfo {
            name: p["metadata"]["name"].as_str().unwrap_or("").to_string(),
            node: p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            ip: p["status"]["podIP"].as_str().unwrap_or("").to_string(),
            ready: skiff_local_cluster::has_condition(p, "Ready"),
        })
        .collect()
}

/// `skiff-probe ARGS` run inside `pod` (through `skiff exec`): the probe's JSON line and
/// whether it succeeded.
pub fn probe_in_pod(cluster: &Cluster, pod: &str, args: &[&str]) -> (Value, bool) {
    let mut command = vec![
        "exec",
        "-n",
        DEMO_NAMESPACE,
        "--timeout",
        "2m",
        pod,
        "--",
        "skiff-probe",
    ];
    command.extend_from_slice(args);
    let output = cluster.skiff(&command).expect("skiff exec");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        Value::String(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    });
    (value, output.status.success())
}

/// One HTTP GET from inside `pod` to `target` (NAME:PORT or IP:PORT).
pub fn http_from_pod(cluster: &Cluster, pod: &str, target: &str) -> (Value, bool) {
    probe_in_pod(
        cluster,
        pod,
        &["connect", target, "--proto", "http", "--timeout", "2s"],
    )
}

/// One HTTP GET from outside the cluster to `address:port`.
pub fn http_from_outside(cluster: &Cluster, target: &str) -> (Value, bool) {
    let output = cluster
        .probe_from_outside(&["connect", target, "--proto", "http", "--timeout", "2s"])
        .expect("probe from outside");
    let stdout = String::from_utf8_lossy(&output.stdout);
    (
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        output.status.success(),
    )
}

/// The tiers an answer went through, e.g. ["front", "api", "data"] for
/// "front-x 1.2.3.4:5 -> api-y ... -> data-z ...".
pub fn hops(answer: &Value) -> Vec<String> {
    answer["answer"]
        .as_str()
        .unwrap_or("")
        .split(" -> ")
        .filter_map(|hop| hop.split('-').next())
        .map(str::to_string)
        .collect()
}

pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Continuous traffic from outside the cluster: a new HTTP connection every 20 ms to
/// `target` until [`OutsideLoad::stop`], which returns {attempts, failures, errors}.
pub struct OutsideLoad(skiff_local_cluster::PipedProcess);

impl OutsideLoad {
    pub fn start(cluster: &mut Cluster, target: &str) -> OutsideLoad {
        OutsideLoad(
            cluster
                .spawn_probe_outside(&["load", target, "--proto", "http", "--interval-ms", "20"])
                .expect("load from outside"),
        )
    }

    pub fn stop(mut self) -> Value {
        use std::io::Read as _;
        drop(self.0.stdin.take());
        let mut text = String::new();
        self.0.stdout.read_to_string(&mut text).unwrap();
        serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("load summary: {text:?}"))
    }
}

/// GET `path` of node `i`'s daemon API, from inside that node.
pub fn node_api(cluster: &Cluster, i: usize, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let node = &cluster.nodes[i];
    let address = (node.address, skiff_local_cluster::NODE_API_PORT);
    cluster.lab.node(node.id).netns.run(|| {
        let Ok(mut stream) = std::net::TcpStream::connect(address) else {
            return String::new();
        };
        let request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        if stream.write_all(request.as_bytes()).is_ok() {
            let _ = stream.read_to_string(&mut text);
        }
        text
    })
}
