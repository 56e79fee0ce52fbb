//! Per-packet cost of each TC program, as the kernel times it (BPF_PROG_TEST_RUN with
//! repeat): the data plane is loaded, programmed through the daemon's own reconcilers with a
//! sweep of services and of policies, and run on one frame per program, never attached.
//!
//! - `from_pod`: a pod's packet to the target ClusterIP (service lookup, per-packet DNAT,
//!   connection tracking, egress policy);
//! - `to_pod`: a packet into a pod that a policy selects (ingress policy lookups);
//! - `from_network`: a packet from outside to the NodePort (NodePort lookup and NAT).
//!
//! Repeating one frame measures a flow's steady state: the first run creates its conntrack
//! entry, the rest hit it, as every packet after a connection's first does.

use std::net::Ipv4Addr;

use anyhow::Context as _;
use skiff_lab::packet::Ipv4Packet;
use skiff_node::{
    dataplane::{AttachMode, DataPlane, TcProgram},
    policy::{cluster_from_manifest, compile, PolicyReconciler},
    service_lb::{DesiredServices, ServiceReconciler},
};

use crate::{
    results::{Benchmark, Run},
    workload, Sizes,
};

const LOOPBACK: u32 = 1;
const NODE: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const BACKENDS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 244, 1, 7), Ipv4Addr::new(10, 244, 2, 7)];
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 200);

struct Plane {
    dataplane: DataPlane,
    services: ServiceReconciler,
    policies: PolicyReconciler,
}

impl Plane {
    fn load() -> anyhow::Result<Plane> {
        let mut dataplane =
            DataPlane::load(AttachMode::detect()).context("loading the data plane")?;
        let services = ServiceReconciler::new(dataplane.take_service_maps()?)?;
        let policies = PolicyReconciler::new(dataplane.take_policy_maps()?)?;
        Ok(Plane {
            dataplane,
            services,
            policies,
        })
    }

    fn program(&mut self, services: usize, policies: usize) -> anyhow::Result<()> {
        let endpoints: Vec<_> = BACKENDS.iter().map(|ip| (*ip, 8080)).collect();
        let desired: DesiredServices = serde_json::from_value(workload::skiff_services(
            NODE,
            &endpoints,
            services.saturating_sub(1),
            workload::FILLER_ENDPOINTS,
        ))?;
        self.services.reconcile(&desired)?;
        let manifest = workload::policy_manifest(policies, &BACKENDS, &[CLIENT]);
        let state = cluster_from_manifest(&manifest)?;
        let compiled = compile(&state, &[NODE], &[CLIENT, BACKENDS[0]]);
        self.policies.reconcile(&compiled)?;
        Ok(())
    }

    /// Mean nanoseconds per run of `frame` through `program` as the packet of a pod `pod`.
    fn cost(
        &mut self,
        program: TcProgram,
        pod: Ipv4Addr,
        frame: &[u8],
        repeat: u32,
    ) -> anyhow::Result<f64> {
        self.dataplane.endpoints()?.upsert(LOOPBACK, pod)?;
        let outcome = self.dataplane.test_run(program, frame, LOOPBACK, repeat)?;
        Ok(outcome.duration.as_nanos() as f64)
    }
}

/// Services swept with `policies` fixed at the smallest size, then policies swept with
/// services at the smallest: each program's cost along each axis.
pub fn run(sizes: &Sizes) -> anyhow::Result<Vec<Run>> {
    let mut plane = Plane::load()?;
    let (min_services, min_policies) = (sizes.per_packet_services[0], sizes.per_packet_policies[0]);
    let mut points: Vec<(usize, usize)> = sizes
        .per_packet_services
        .iter()
        .map(|&s| (s, min_policies))
        .collect();
    points.extend(
        sizes
            .per_packet_policies
            .iter()
            .skip(1)
            .map(|&p| (min_services, p)),
    );
    let frames = [
        (
            "from_pod_ns",
            TcProgram::FromPod,
            CLIENT,
            Ipv4Packet::tcp_syn(CLIENT, 40_000, workload::TARGET_VIP, workload::TARGET_PORT)
                .build(),
        ),
        (
            "to_pod_ns",
            TcProgram::ToPod,
            BACKENDS[0],
            Ipv4Packet::tcp_syn(CLIENT, 40_001, BACKENDS[0], 8080).build(),
        ),
        (
            "from_network_ns",
            TcProgram::FromNetwork,
            NODE,
            Ipv4Packet::tcp_syn(OUTSIDE, 40_002, NODE, workload::NODE_PORT).build(),
        ),
    ];
    let mut runs = Vec::new();
    for (services, policies) in points {
        plane
            .program(services, policies)
            .with_context(|| format!("programming {services} services, {policies} policies"))?;
        for (metric, program, pod, frame) in &frames {
            let samples = (0..sizes.samples)
                .map(|_| plane.cost(*program, *pod, frame, sizes.per_packet_repeat))
                .collect::<anyhow::Result<Vec<f64>>>()?;
            println!(
                "bench: per_packet {metric} at {services} services, {policies} policies: {:.0} ns",
                crate::results::median(&samples).unwrap_or(f64::NAN)
            );
            runs.push(Run::from_samples(
                Benchmark::PerPacket,
                "skiff",
                (services, BACKENDS.len(), policies),
                metric,
                "ns/packet",
                samples,
            )?);
        }
    }
    Ok(runs)
}
