//! Node daemon memory: the peak resident set (VmHWM) of a real `skiff-node run` in a lab node
//! once it has programmed 10k services and compiled and loaded 1k NetworkPolicies over the
//! pods of its `--cluster` file. Each sample is a fresh daemon on a fresh data plane.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use skiff_lab::Lab;

use crate::{
    results::{Benchmark, Run},
    workload, Sizes,
};

/// `skiff-node` beside the running benchmark binary (xtask builds both).
pub fn node_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SKIFF_NODE") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::current_exe()?.with_file_name("skiff-node");
    anyhow::ensure!(
        path.is_file(),
        "{} is missing (cargo xtask bench builds it)",
        path.display()
    );
    Ok(path)
}

fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kib / 1024.0)
}

/// Waits until the daemon's log says both reconcilers wrote the kernel.
fn wait_programmed(log: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("services reconciled") && text.contains("policy reconciled") {
            return Ok(());
        }
        if text.contains("ERROR") || Instant::now() > deadline {
            bail!(
                "the node daemon did not program its state: {}",
                text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn run(sizes: &Sizes) -> anyhow::Result<Vec<Run>> {
    let (services, policies) = sizes.rss;
    let mut lab = Lab::new()?;
    let node = lab.add_node("n1")?;
    let dir = tempfile::tempdir()?;
    let node_ip = lab.node(node).address;
    let services_file = dir.path().join("services.json");
    let endpoints = [(std::net::Ipv4Addr::new(10, 244, 1, 7), 8080)];
    std::fs::write(
        &services_file,
        serde_json::to_vec(&workload::skiff_services(
            node_ip,
            &endpoints,
            services - 1,
            workload::FILLER_ENDPOINTS,
        ))?,
    )?;
    let cluster_file = dir.path().join("cluster.yaml");
    std::fs::write(
        &cluster_file,
        workload::policy_manifest(policies, &[endpoints[0].0], &[]),
    )?;
    let binary = node_binary()?;
    let mut samples = Vec::new();
    for sample in 0..sizes.samples {
        let pins = lab.bpffs().join(format!("rss-{sample}"));
        let log = dir.path().join(format!("daemon-{sample}.log"));
        let mut daemon = Command::new(&binary);
        daemon
            .args(["run", "--report-every", "3600", "--pin-dir"])
            .arg(&pins)
            .arg("--services")
            .arg(&services_file)
            .arg("--cluster")
            .arg(&cluster_file)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let child = lab.spawn_on_node(node, daemon)?;
        let pid = child.id();
        wait_programmed(&log, Duration::from_secs(120))?;
        // The reconcilers are done; give the allocator's high-water mark a moment to settle.
        std::thread::sleep(Duration::from_millis(500));
        samples.push(peak_rss_mib(pid)?);
        let _ = child.kill();
        let _ = child.wait();
        let mut reset = Command::new(&binary);
        reset.args(["reset", "--pin-dir"]).arg(&pins);
        lab.run_on_node(node, reset)?;
    }
    let run = Run::from_samples(
        Benchmark::NodeRss,
        "skiff",
        (services, 1, policies),
        "peak_rss",
        "MiB",
        samples,
    )?;
    println!(
        "bench: node daemon peak RSS with {services} services, {policies} policies: {:.1} MiB",
        run.median
    );
    Ok(vec![run])
}
