//! End-to-end programming latency: an endpoint change written to the API until every node's
//! data plane holds it, on a 3-node local cluster (control plane and three real node daemons
//! in the lab).
//!
//! The change is an EndpointSlice of a selector-less Service moving to a new address, applied
//! through the API as `skiff apply` does; the clock stops when the service maps each daemon
//! pinned (read straight from bpffs) send the frontend to that address on all three nodes.
//! Each sample is the p50 and p99 of a round of changes.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use skiff_local_cluster::{Binaries, Cluster, Options};
use skiff_node::dataplane::ServiceMaps;

use crate::{
    results::{percentile, Benchmark, Run},
    Sizes,
};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 77, 7);

fn slice(address: Ipv4Addr) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "latency-1", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "latency"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

/// Whether every node's pinned service maps send the VIP to `address`.
fn everywhere(maps: &[ServiceMaps], address: Ipv4Addr) -> anyhow::Result<bool> {
    for node in maps {
        let snapshot = node.snapshot()?;
        let has = snapshot.frontends.iter().any(|(frontend, entry)| {
            frontend.addr == VIP
                && entry
                    .backend_ids
                    .iter()
                    .any(|id| snapshot.backends.get(id).is_some_and(|b| b.ip == address))
        });
        if !has {
            return Ok(false);
        }
    }
    Ok(true)
}

fn change(cluster: &Cluster, maps: &[ServiceMaps], address: Ipv4Addr) -> anyhow::Result<Duration> {
    let started = Instant::now();
    cluster.admin.apply(&[slice(address)])?;
    let deadline = started + Duration::from_secs(10);
    while !everywhere(maps, address)? {
        if Instant::now() > deadline {
            bail!("{address} did not reach every node's data plane within 10 s");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(started.elapsed())
}

pub fn run(sizes: &Sizes) -> anyhow::Result<Vec<Run>> {
    let state = tempfile::tempdir()?;
    let mut options = Options::new(Binaries::beside_current_exe()?, state.path().to_path_buf());
    options.nodes = 3;
    options.log_filter = "warn".into();
    println!("bench: e2e_latency: starting a 3-node local cluster");
    let cluster = Cluster::start(options, &mut |step| println!("bench:   {step}"))?;
    cluster.admin.apply(&[json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "latency", "namespace": "default"},
        "spec": {"clusterIP": VIP.to_string(), "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})])?;
    let maps = cluster
        .nodes
        .iter()
        .map(|node| {
            let pins = cluster.lab.bpffs().join(&node.name);
            ServiceMaps::open_pinned(&pins)
                .with_context(|| format!("{}'s pinned service maps", node.name))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The first change also waits for the Service itself to reach every node.
    let warmup = Ipv4Addr::new(10, 244, 250, 1);
    cluster.admin.apply(&[slice(warmup)])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !everywhere(&maps, warmup)? {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the latency service never reached every node"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    let mut n = 0u32;
    for round in 0..sizes.samples {
        let mut latencies = Vec::new();
        for _ in 0..sizes.e2e_changes {
            n += 1;
            let address = Ipv4Addr::new(10, 244, 251 + (n / 250 % 4) as u8, (n % 250 + 2) as u8);
            latencies.push(change(&cluster, &maps, address)?.as_secs_f64() * 1000.0);
        }
        let (p50, p99) = (percentile(&latencies, 50.0)?, percentile(&latencies, 99.0)?);
        println!(
            "bench: e2e_latency round {}: p50 {p50:.1} ms, p99 {p99:.1} ms over {} changes",
            round + 1,
            latencies.len()
        );
        p50s.push(p50);
        p99s.push(p99);
    }
    let mut runs = Vec::new();
    for (metric, samples) in [("p50", p50s), ("p99", p99s)] {
        let mut run = Run::from_samples(
            Benchmark::E2eLatency,
            "skiff",
            (1, 1, 0),
            metric,
            "ms",
            samples,
        )?;
        run.scale.insert("nodes".into(), 3);
        run.scale
            .insert("changes_per_sample".into(), sizes.e2e_changes as u64);
        runs.push(run);
    }
    Ok(runs)
}
