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
    let state = tempfile::Builder::new()
        .prefix("skiff-scenario-")
        .tempdir()
        .unwrap();
    let binaries = Binaries::beside_current_exe().expect("binaries (cargo xtask build)");
    let mut options = Options::new(binaries, state.path().to_path_buf());
    options.runtime = runtime;
    options.store = store;
    options.log_filter = "info".into();
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
    let mut command = vec!["exec", "-n", DEMO_NAMESPACE, pod, "--", "skiff-probe"];
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
