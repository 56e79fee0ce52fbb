//! Connection rate (TCP_CRR), request rate on kept-alive connections (TCP_RR) and bulk
//! throughput (TCP_STREAM) from a client pod to the target service, with N other services
//! installed, for every way of reaching it:
//!
//! - `direct`: the server pod's own address, in a lab with no service machinery (the limit);
//! - `skiff`: the ClusterIP from a pod in the node's cgroup, translated once at connect by
//!   the socket programs (the path every pod takes);
//! - `skiff_tc`: the ClusterIP from the same pod's namespace but outside the cgroup, so every
//!   packet goes through the TC programs' DNAT and connection tracking;
//! - `iptables`, `nftables`: the ClusterIP through the rules kube-proxy writes for the same
//!   services, in the node's namespace of a lab of their own.
//!
//! Each lab is one node with a client and a server pod (`skiff-probe serve`); the client is
//! `skiff-probe load --mode`. Variants are measured in turn inside each sample, so a change in
//! the machine's load hits all of them alike.

use std::{net::Ipv4Addr, process::Command};

use anyhow::{bail, Context as _};
use serde_json::Value;
use skiff_lab::{Lab, NodeId, PodId};
use skiff_node::{
    dataplane::{AttachMode, DataPlane},
    service_lb::{DesiredServices, ServiceReconciler},
};

use crate::{
    kube_proxy,
    results::{Benchmark, Run},
    workload, Sizes,
};

const SERVER_PORT: u16 = 9000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Machinery {
    None,
    Skiff,
    Iptables,
    Nftables,
}

/// One node with a client and a server pod, and what steers its service traffic.
struct Setup {
    lab: Lab,
    node: NodeId,
    client: PodId,
    server: PodId,
    machinery: Machinery,
    skiff: Option<(DataPlane, ServiceReconciler)>,
}

impl Setup {
    fn new(machinery: Machinery) -> anyhow::Result<Setup> {
        let mut lab = Lab::new()?;
        let node = lab.add_node("n1")?;
        let client = lab.add_pod(node, "client")?;
        let server = lab.add_pod(node, "server")?;
        let probe = skiff_lab::probe_binary()?;
        let mut serve = Command::new(&probe);
        serve.args([
            "serve",
            "--tcp",
            &SERVER_PORT.to_string(),
            "--name",
            "server",
        ]);
        lab.spawn_in_pod(server, serve)?;
        let skiff = match machinery {
            Machinery::Skiff => Some(attach_skiff(&lab, node, &[client, server])?),
            _ => None,
        };
        let setup = Setup {
            lab,
            node,
            client,
            server,
            machinery,
            skiff,
        };
        setup.wait_for_server()?;
        Ok(setup)
    }

    fn server_ip(&self) -> Ipv4Addr {
        self.lab.pod(self.server).ip
    }

    fn wait_for_server(&self) -> anyhow::Result<()> {
        let target = format!("{}:{SERVER_PORT}", self.server_ip());
        for _ in 0..100 {
            let mut connect = Command::new(skiff_lab::probe_binary()?);
            connect.args(["connect", &target, "--timeout", "200ms"]);
            if self.lab.run_in_pod(self.client, connect)?.status.success() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        bail!("the server pod never answered on {target}")
    }

    /// Installs the target service and `others` other services.
    fn program(&mut self, others: usize) -> anyhow::Result<()> {
        let node_ip = self.lab.node(self.node).address;
        let endpoints = [(self.server_ip(), SERVER_PORT)];
        let doc = workload::skiff_services(node_ip, &endpoints, others, workload::FILLER_ENDPOINTS);
        match self.machinery {
            Machinery::None => {}
            Machinery::Skiff => {
                let desired: DesiredServices = serde_json::from_value(doc)?;
                let (_, reconciler) = self.skiff.as_mut().expect("skiff setup");
                reconciler.reconcile(&desired)?;
            }
            Machinery::Iptables => {
                let input = kube_proxy::iptables::restore_input(
                    &workload::kube_proxy_services(&doc)?,
                    workload::CLUSTER_CIDR,
                );
                kube_proxy::load_iptables(self.lab.node(self.node).netns.name(), &input)?;
            }
            Machinery::Nftables => {
                let script = kube_proxy::nftables::script(
                    &workload::kube_proxy_services(&doc)?,
                    workload::CLUSTER_CIDR,
                );
                kube_proxy::load_nft(self.lab.node(self.node).netns.name(), &script)?;
            }
        }
        Ok(())
    }

    /// One `skiff-probe load --mode` run; its JSON report.
    fn load(&self, mode: &str, in_cgroup: bool, seconds: f64) -> anyhow::Result<Value> {
        let target = match self.machinery {
            Machinery::None => format!("{}:{SERVER_PORT}", self.server_ip()),
            _ => format!("{}:{}", workload::TARGET_VIP, workload::TARGET_PORT),
        };
        let mut load = Command::new(skiff_lab::probe_binary()?);
        load.args([
            "load",
            &target,
            "--mode",
            mode,
            "--duration",
            &format!("{}ms", (seconds * 1000.0) as u64),
        ]);
        let output = if in_cgroup {
            self.lab.run_in_pod(self.client, load)?
        } else {
            self.lab.run_in_pod_netns_only(self.client, load)?
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: Value = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .with_context(|| {
                format!(
                    "load {mode} to {target}: no report ({}; stderr: {})",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )
            })?;
        if report["errors"].as_u64().unwrap_or(0) > 0 || !output.status.success() {
            bail!("load {mode} to {target} had errors: {report}");
        }
        Ok(report)
    }
}

/// Attaches a data plane to the node the way the node daemon does: the pods' veths, the
/// node's namespace and the node's cgroup (socket programs), never the machine's root cgroup.
fn attach_skiff(
    lab: &Lab,
    node: NodeId,
    pods: &[PodId],
) -> anyhow::Result<(DataPlane, ServiceReconciler)> {
    let n = lab.node(node);
    let mut plane = DataPlane::load(AttachMode::detect())?;
    let reconciler = ServiceReconciler::new(plane.take_service_maps()?)?;
    for &pod in pods {
        let pod = lab.pod(pod);
        plane.endpoints()?.upsert(pod.host_ifindex, pod.ip)?;
        let interface = pod.host_interface.clone();
        n.netns.run(|| plane.attach_pod_interface(&interface))?;
    }
    n.netns.run(|| plane.attach_uplink(n.uplink))?;
    n.netns.run(|| plane.mark_host_netns())?;
    plane.attach_cgroup(&n.cgroup)?;
    Ok((plane, reconciler))
}

/// (variant, setup index, whether the client runs in the pod's cgroup)
const VARIANTS: [(&str, usize, bool); 5] = [
    ("direct", 0, true),
    ("skiff", 1, true),
    ("skiff_tc", 1, false),
    ("iptables", 2, true),
    ("nftables", 3, true),
];

pub fn run(sizes: &Sizes) -> anyhow::Result<Vec<Run>> {
    let mut setups = vec![
        Setup::new(Machinery::None)?,
        Setup::new(Machinery::Skiff)?,
        Setup::new(Machinery::Iptables)?,
        Setup::new(Machinery::Nftables)?,
    ];
    let mut runs = Vec::new();
    for &others in &sizes.traffic_services {
        println!("bench: traffic with {others} other services installed");
        for setup in &mut setups {
            setup
                .program(others)
                .with_context(|| format!("installing {others} services"))?;
        }
        for (benchmark, mode, metric, unit, field) in [
            (
                Benchmark::ConnRate,
                "crr",
                "connections_per_second",
                "conn/s",
                "rate_per_s",
            ),
            (
                Benchmark::RrRate,
                "rr",
                "requests_per_second",
                "req/s",
                "rate_per_s",
            ),
        ] {
            let mut samples = vec![Vec::new(); VARIANTS.len()];
            for _ in 0..sizes.samples {
                for (i, (_, setup, in_cgroup)) in VARIANTS.iter().enumerate() {
                    let report = setups[*setup].load(mode, *in_cgroup, sizes.traffic_seconds)?;
                    samples[i].push(report[field].as_f64().unwrap_or(0.0));
                }
            }
            for ((variant, _, _), samples) in VARIANTS.iter().zip(samples) {
                let run =
                    Run::from_samples(benchmark, variant, (others, 1, 0), metric, unit, samples)?;
                println!("bench:   {mode} {variant}: {:.0} {unit}", run.median);
                runs.push(run);
            }
        }
    }
    // Bulk throughput once, with the largest table: one stream per variant.
    let mut samples = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..sizes.samples {
        for (i, (_, setup, in_cgroup)) in VARIANTS.iter().enumerate() {
            let report = setups[*setup].load("stream", *in_cgroup, sizes.traffic_seconds)?;
            samples[i].push(report["throughput_mbit_s"].as_f64().unwrap_or(0.0));
        }
    }
    let others = sizes.traffic_services.last().copied().unwrap_or(0);
    for ((variant, _, _), samples) in VARIANTS.iter().zip(samples) {
        let run = Run::from_samples(
            Benchmark::Throughput,
            variant,
            (others, 1, 0),
            "throughput",
            "Mbit/s",
            samples,
        )?;
        println!("bench:   stream {variant}: {:.0} Mbit/s", run.median);
        runs.push(run);
    }
    Ok(runs)
}
