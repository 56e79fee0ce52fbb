//! Programming time: from desired state (N services x M endpoints) to the kernel, into an
//! empty data plane or table, as microseconds per service.
//!
//! - `skiff`: the node daemon's service reconciler writing a freshly loaded data plane's maps
//!   (diff, backend and frontend entries, in batches);
//! - `iptables`: `iptables-restore` of kube-proxy's iptables rules into a new node namespace;
//! - `nftables`: `nft -f` of kube-proxy's nftables rules into a new node namespace.
//!
//! Only the step into the kernel is timed: building Skiff's desired state and generating
//! kube-proxy's rule text are left out of both sides.

use std::{net::Ipv4Addr, time::Instant};

use skiff_lab::Lab;
use skiff_node::{
    dataplane::{AttachMode, Capacities, DataPlane, LoadOptions},
    service_lb::{DesiredServices, ServiceReconciler},
};

use crate::{
    kube_proxy,
    results::{Benchmark, Run},
    workload, Sizes,
};

const NODE: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// `iptables-restore` replaces every table it names: this leaves both empty.
const EMPTY_TABLES: &str = "*nat\nCOMMIT\n*filter\nCOMMIT\n";
const EMPTY_RULESET: &str = "flush ruleset\n";

/// Room for the largest size: a frontend entry per service and one per backend slot.
fn capacities(services: usize, endpoints: usize) -> Capacities {
    let defaults = Capacities::default();
    let slots = (services * (endpoints + 1)) as u32;
    Capacities {
        services: defaults.services.max(slots.next_power_of_two()),
        backends: defaults
            .backends
            .max(((services * endpoints) as u32).next_power_of_two()),
        ..defaults
    }
}

fn skiff_once(desired: &DesiredServices, capacities: Capacities) -> anyhow::Result<f64> {
    let mut options = LoadOptions::unpinned(AttachMode::detect());
    options.capacities = capacities;
    let mut plane = DataPlane::load_with(&options)?;
    let mut reconciler = ServiceReconciler::new(plane.take_service_maps()?)?;
    let started = Instant::now();
    reconciler.reconcile(desired)?;
    Ok(started.elapsed().as_secs_f64() * 1e6)
}

pub fn run(sizes: &Sizes) -> anyhow::Result<Vec<Run>> {
    let mut lab = Lab::new()?;
    let iptables_node = lab.add_node("ipt")?;
    let nft_node = lab.add_node("nft")?;
    let iptables_ns = lab.node(iptables_node).netns.name().to_string();
    let nft_ns = lab.node(nft_node).netns.name().to_string();
    let mut runs = Vec::new();
    for &(services, endpoints) in &sizes.programming {
        let endpoint_list: Vec<(Ipv4Addr, u16)> = (0..endpoints)
            .map(|e| (workload::filler_endpoint(services + 1, e), 8080))
            .collect();
        let doc = workload::skiff_services(NODE, &endpoint_list, services - 1, endpoints);
        let desired: DesiredServices = serde_json::from_value(doc.clone())?;
        let kube = workload::kube_proxy_services(&doc)?;
        let iptables = kube_proxy::iptables::restore_input(&kube, workload::CLUSTER_CIDR);
        let nft = kube_proxy::nftables::script(&kube, workload::CLUSTER_CIDR);
        let mut samples: [Vec<f64>; 3] = Default::default();
        for _ in 0..sizes.samples {
            samples[0].push(skiff_once(&desired, capacities(services, endpoints))?);
            // Emptied first each time: kube-proxy's first sync on a fresh node.
            kube_proxy::load_iptables(&iptables_ns, EMPTY_TABLES)?;
            let took = kube_proxy::load_iptables(&iptables_ns, &iptables)?;
            samples[1].push(took.as_secs_f64() * 1e6);
            kube_proxy::load_nft(&nft_ns, EMPTY_RULESET)?;
            let took = kube_proxy::load_nft(&nft_ns, &nft)?;
            samples[2].push(took.as_secs_f64() * 1e6);
        }
        for (variant, samples) in ["skiff", "iptables", "nftables"].into_iter().zip(samples) {
            let per_service = samples.iter().map(|us| us / services as f64).collect();
            let run = Run::from_samples(
                Benchmark::Programming,
                variant,
                (services, endpoints, 0),
                "us_per_service",
                "us",
                per_service,
            )?;
            println!(
                "bench: programming {services} x {endpoints}, {variant}: {:.2} us/service",
                run.median
            );
            runs.push(run);
        }
    }
    Ok(runs)
}
