//! Scheduler throughput: the control plane's scheduler placing pods onto simulated nodes,
//! the decisions alone (the same `Scheduler` the control plane's scheduling pass runs, with
//! resource fit, spreading of a ReplicaSet's replicas and scoring), without the store writes
//! that bind each pod.
//!
//! The pods belong to ten ReplicaSets and request 100m CPU and 128 MiB each, so every
//! decision walks all nodes for fit and the spread of the pod's siblings.

use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;
use skiff_api::{Node, Pod};
use skiff_control::scheduler::Scheduler;

use crate::{
    results::{Benchmark, Run},
    Sizes,
};

const REPLICA_SETS: usize = 10;

fn node(i: usize) -> anyhow::Result<Node> {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{i:05}"), "labels": {"zone": format!("z{}", i % 3)}},
        "spec": {},
        "status": {"capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .context("a simulated node")
}

fn pod(i: usize) -> anyhow::Result<Pod> {
    let rs = i % REPLICA_SETS;
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("web-{rs}-{i:06}"), "namespace": "bench",
            "uid": format!("pod-{i}"), "labels": {"app": format!("web-{rs}")},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("web-{rs}"), "uid": format!("rs-{rs}"), "controller": true}]},
        "spec": {"containers": [{"name": "web", "image": "skiff-probe",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    }))
    .context("a pending pod")
}

pub fn run(sizes: &Sizes) -> anyhow::Result<Vec<Run>> {
    let (pods, nodes) = sizes.scheduler;
    let node_objects = (0..nodes).map(node).collect::<anyhow::Result<Vec<_>>>()?;
    let pod_objects = (0..pods).map(pod).collect::<anyhow::Result<Vec<_>>>()?;
    let mut samples = Vec::new();
    for _ in 0..sizes.samples {
        let started = Instant::now();
        let mut scheduler = Scheduler::new(&node_objects, &[]);
        for pod in &pod_objects {
            scheduler
                .schedule(pod)
                .map_err(|why| anyhow::anyhow!("{}: {why}", pod.metadata.name))?;
        }
        samples.push(pods as f64 / started.elapsed().as_secs_f64());
    }
    println!(
        "bench: scheduler, {pods} pods onto {nodes} nodes: {:.0} pods/s",
        crate::results::median(&samples).unwrap_or(f64::NAN)
    );
    let mut run = Run::from_samples(
        Benchmark::Scheduler,
        "skiff",
        (0, 0, 0),
        "pods_per_second",
        "pods/s",
        samples,
    )?;
    run.scale.insert("pods".into(), pods as u64);
    run.scale.insert("nodes".into(), nodes as u64);
    Ok(vec![run])
}
