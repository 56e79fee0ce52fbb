//! Cluster DNS benchmark: queries per second a node's DNS server answers from its cache,
//! measured with `dnsperf` from a pod in the lab through the `kube-dns` ClusterIP (the
//! per-packet service path: dnsperf runs in the pod's network namespace, outside its cgroup).
//!
//! The node daemon's DNS thread is pinned alone to CPU 0, its other threads and dnsperf to
//! CPU 1, so the figure is one core's worth of DNS serving. Two measurements: the highest
//! rate dnsperf reaches (100 queries outstanding per client), and the latency distribution
//! at steady 5,000 and 20,000 queries/s.
//!
//! `cargo xtask bench-dns` builds what it needs and runs this; `--quick` (CI) runs tiny
//! sizes to keep the benchmark working and writes to target/bench/ instead of docs/.
//! Needs root (network namespaces, eBPF).

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use reqwest::Method;
use serde_json::{json, Value};
use skiff_lab::Lab;
use support::control::{eventually, pod_status, ControlPlane, NetnsGuard, NodeDaemon};

/// The rate the latency run holds: the target.
const LATENCY_RATE: u32 = 20_000;

struct Sizes {
    services: usize,
    runs: usize,
    seconds: u32,
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes = if quick {
        Sizes {
            services: 20,
            runs: 1,
            seconds: 1,
        }
    } else {
        Sizes {
            services: 1000,
            runs: 5,
            seconds: 10,
        }
    };
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = if quick {
        workspace.join("target/bench")
    } else {
        workspace.join("docs/benchmarks")
    };
    anyhow::ensure!(
        skiff_lab::privileged(),
        "the DNS benchmark needs root (network namespaces, eBPF)"
    );
    let mut lab = Lab::new()?;
    let cp_node = lab.add_node("cp")?;
    let n1 = lab.add_node("n1")?;
    println!("bench-dns: starting a control plane and a node in the lab");
    let cp = ControlPlane::start(&mut lab, cp_node);
    let admin = &cp.admin;
    let declared = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "spec": {"podCIDR": format!("{}/24", lab.node(n1).pod_cidr)}});
    let (code, body) = admin.call(Method::POST, "/api/v1/nodes", Some(&declared));
    anyhow::ensure!(code == 201, "declaring node n1: {body}");
    let state = tempfile::tempdir()?;
    let mut daemon = NodeDaemon {
        node: n1,
        name: "n1",
        state: state.path().join("n1"),
        pid: 0,
        runtime: ("embedded", None),
        extra: vec!["--report-every".into(), "3600".into()],
    };
    let _netns = NetnsGuard(vec![daemon.state.clone()]);
    daemon.start(&mut lab, &cp.node_conf);

    println!("bench-dns: {} services and a client pod", sizes.services);
    let services: Vec<Value> = (0..sizes.services)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}")},
                "spec": {"ports": [{"name": "http", "port": 80}]}})
        })
        .collect();
    for batch in services.chunks(200) {
        admin.apply(batch);
    }
    admin.apply(&[json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "skiff-probe", "command": ["sleep", "3600"]}]}})]);
    eventually(Duration::from_secs(30), "the client pod", || {
        (pod_status(admin, "client")["status"]["phase"] == "Running").then_some(())
    });
    let netns = pod_netns(&daemon.state.join("pods"))?;
    let last = format!("svc-{}.default.svc.cluster.local", sizes.services - 1);
    eventually(Duration::from_secs(30), "every service in the zone", || {
        let out = in_pod(&netns, "dig", &["@10.96.0.10", "+short", "+tries=1", &last])
            .output()
            .ok()?;
        (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
    });

    // Cache hits of every kind a client asks: A of services, SRV of named ports.
    let mut queries = String::new();
    for i in 0..sizes.services {
        queries.push_str(&format!("svc-{i}.default.svc.cluster.local A\n"));
        if i % 4 == 0 {
            queries.push_str(&format!(
                "_http._tcp.svc-{i}.default.svc.cluster.local SRV\n"
            ));
        }
    }
    let query_file = state.path().join("queries.txt");
    std::fs::write(&query_file, queries)?;
    pin_dns_thread(daemon.pid)?;

    let mut qps = Vec::new();
    for run in 1..=sizes.runs {
        let report = dnsperf(
            &netns,
            &query_file,
            sizes.seconds,
            &["-c", "4", "-q", "400"],
        )?;
        let rate = field(&report, "Queries per second:")?;
        let lost = field(&report, "Queries lost:")?;
        println!(
            "bench-dns: run {run}/{}: {rate:.0} queries/s, {lost} lost",
            sizes.runs
        );
        qps.push(rate);
    }
    // Latency at steady rates: per-query figures need dnsperf -v, whose printing shares
    // dnsperf's core, so the 20k run is repeated without it to show what -v itself costs
    // (dnsperf's own average).
    let mut latency: Vec<RateSamples> = Vec::new();
    for rate in [LATENCY_RATE / 4, LATENCY_RATE] {
        let (mut p50s, mut p99s, mut averages) = (Vec::new(), Vec::new(), Vec::new());
        for run in 1..=sizes.runs {
            let l = steady(&netns, &query_file, sizes.seconds, rate)?;
            println!(
                "bench-dns: at {rate} queries/s, run {run}/{}: p50 {:.0} us, p99 {:.0} us, average {:.0} us ({} answers)",
                sizes.runs, l.p50, l.p99, l.average, l.answers
            );
            p50s.push(l.p50);
            p99s.push(l.p99);
            averages.push(l.average);
        }
        latency.push(RateSamples {
            rate,
            p50s,
            p99s,
            averages,
        });
    }
    let quiet = dnsperf(
        &netns,
        &query_file,
        sizes.seconds,
        &["-c", "4", "-Q", &LATENCY_RATE.to_string()],
    )?;
    let quiet_average = field(&quiet, "Average Latency (s):")? * 1e6;
    println!("bench-dns: at {LATENCY_RATE} queries/s without -v: average {quiet_average:.0} us");
    daemon.kill();

    std::fs::create_dir_all(&out_dir)?;
    let machine = machine();
    let date = String::from_utf8(
        Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d")
            .output()?
            .stdout,
    )?
    .trim()
    .to_string();
    let stats = |samples: &[f64]| {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        (s[s.len() / 2], s[0], s[s.len() - 1])
    };
    let (median, min, max) = stats(&qps);
    let run = |metric: &str, unit: &str, samples: &[f64]| {
        let (median, min, max) = stats(samples);
        json!({"benchmark": "dns", "variant": "skiff", "services": sizes.services, "endpoints": 0,
            "policies": 0, "metric": metric, "unit": unit, "median": median, "min": min,
            "max": max, "samples": samples})
    };
    let mut runs = vec![run("queries_per_second", "queries/s", &qps)];
    for RateSamples {
        rate,
        p50s,
        p99s,
        averages,
    } in &latency
    {
        let k = rate / 1000;
        runs.push(run(&format!("latency_p50_at_{k}k_qps"), "us", p50s));
        runs.push(run(&format!("latency_p99_at_{k}k_qps"), "us", p99s));
        runs.push(run(&format!("latency_average_at_{k}k_qps"), "us", averages));
    }
    runs.push(run(
        "latency_average_at_20k_qps_without_verbose",
        "us",
        &[quiet_average],
    ));
    let results = json!({"machine": machine, "date": date, "quick": quick, "runs": runs});
    std::fs::write(
        out_dir.join("dns.json"),
        serde_json::to_string_pretty(&results)? + "\n",
    )?;
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    let spread = |samples: &[f64]| {
        let (median, min, max) = stats(samples);
        format!("{median:.0} us (min {min:.0}, max {max:.0})")
    };
    let (p99, _, _) = stats(&latency[1].p99s);
    let mut report = format!(
        "# Cluster DNS: queries per second on one core\n\n\
         Measured {date} on {machine} by `cargo xtask bench-dns`{quick_note}.\n\n\
         `dnsperf` in a pod's network namespace asks the node's DNS server through the\n\
         `kube-dns` ClusterIP (translated per packet by the node's eBPF programs), for\n\
         {services} services' A records and a quarter of their SRV records, all answered from\n\
         the node's watch cache. The daemon's DNS thread is pinned alone to CPU 0; its other\n\
         threads and dnsperf share CPU 1. Each figure is the median of {runs} runs of\n\
         {seconds} s, with the spread.\n\n\
         | figure | measured | target | ratio to target |\n|---|---|---|---|\n\
         | queries per second | {median:.0} (min {min:.0}, max {max:.0}) | >= 20,000 | {qps_ratio:.2} ({qps_verdict}) |\n\
         | p99 latency at a steady 20,000 queries/s | {p99_20k} | < 1,000 us | {lat_ratio:.2} ({lat_verdict}) |\n",
        quick_note = if quick { " --quick (sizes too small to mean anything)" } else { "" },
        services = sizes.services,
        runs = sizes.runs,
        seconds = sizes.seconds,
        qps_ratio = median / 20_000.0,
        qps_verdict = verdict(median >= 20_000.0),
        p99_20k = spread(&latency[1].p99s),
        lat_ratio = p99 / 1_000.0,
        lat_verdict = verdict(p99 < 1_000.0),
    );
    for RateSamples {
        rate,
        p50s,
        p99s,
        averages,
    } in &latency
    {
        report.push_str(&format!(
            "| p50 / p99 / average at {rate} queries/s | {} / {} / {} | | |\n",
            spread(p50s),
            spread(p99s),
            spread(averages)
        ));
    }
    report.push_str(&format!(
        "| average at 20,000 queries/s without dnsperf -v (dnsperf's own figure) | {quiet_average:.0} us | | |\n\n\
         Per-query latencies need `dnsperf -v`, whose printing shares dnsperf's core; the\n\
         last row shows what that costs. Queries \"lost\" in dnsperf's report are the ones\n\
         still outstanding when a run's time is up (400 per run: 4 clients, 100 each).\n\n\
         Raw figures: [dns.json](dns.json). Every query was a cache hit: the server answers\n\
         from the zone the daemon rebuilt at the last change of the cluster, never from the\n\
         API.\n"
    ));
    std::fs::write(out_dir.join("dns.md"), report)?;
    println!("bench-dns: wrote {}", out_dir.join("dns.md").display());
    Ok(())
}

/// Latency figures of the runs at one rate, one sample per run (microseconds).
struct RateSamples {
    rate: u32,
    p50s: Vec<f64>,
    p99s: Vec<f64>,
    averages: Vec<f64>,
}

struct Latency {
    p50: f64,
    p99: f64,
    average: f64,
    answers: usize,
}

/// Per-query latencies (dnsperf -v) at a steady `rate`, in microseconds.
fn steady(netns: &Path, queries: &Path, seconds: u32, rate: u32) -> anyhow::Result<Latency> {
    let rate = rate.to_string();
    let verbose = dnsperf(netns, queries, seconds, &["-c", "4", "-Q", &rate, "-v"])?;
    let mut latencies: Vec<f64> = verbose
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    anyhow::ensure!(!latencies.is_empty(), "dnsperf -v printed no latencies");
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] * 1e6;
    Ok(Latency {
        p50: percentile(0.50),
        p99: percentile(0.99),
        average: latencies.iter().sum::<f64>() / latencies.len() as f64 * 1e6,
        answers: latencies.len(),
    })
}

/// Puts the daemon's DNS thread alone on CPU 0 and its other threads on CPU 1 (with
/// dnsperf), so the figure is what one core of DNS serving does.
fn pin_dns_thread(pid: u32) -> anyhow::Result<()> {
    let mut found = false;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let comm = std::fs::read_to_string(task.join("comm"))?;
        let cpu = if comm.trim() == "dns" {
            found = true;
            "0"
        } else {
            "1"
        };
        let tid = task
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let status = Command::new("taskset")
            .args(["-c", "-p", cpu, &tid])
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "pinning thread {tid} of the node daemon");
    }
    anyhow::ensure!(found, "the node daemon has no thread named dns");
    Ok(())
}

/// The client pod's network namespace file, from the daemon's pod record.
fn pod_netns(records: &Path) -> anyhow::Result<PathBuf> {
    for entry in std::fs::read_dir(records)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let record: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            if record["name"] == "client" {
                return Ok(PathBuf::from(record["netns"].as_str().unwrap_or_default()));
            }
        }
    }
    anyhow::bail!("no pod record for the client in {}", records.display())
}

/// `program ARGS` in the pod's network namespace, on CPU 1.
fn in_pod(netns: &Path, program: &str, args: &[&str]) -> Command {
    let mut command = Command::new("taskset");
    command
        .args([
            "-c",
            "1",
            "nsenter",
            &format!("--net={}", netns.display()),
            program,
        ])
        .args(args);
    command
}

fn dnsperf(netns: &Path, queries: &Path, seconds: u32, extra: &[&str]) -> anyhow::Result<String> {
    let seconds = seconds.to_string();
    let query_file = queries.display().to_string();
    let mut args = vec!["-s", "10.96.0.10", "-d", &query_file, "-l", &seconds];
    args.extend(extra);
    let out = in_pod(netns, "dnsperf", &args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "dnsperf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The number after `label` in dnsperf's report.
fn field(report: &str, label: &str) -> anyhow::Result<f64> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {label:?} in dnsperf's report:\n{report}"))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split(':')
                    .nth(1)
                    .map(|s| s.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}
