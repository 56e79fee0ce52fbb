//! `skiff-bench`: runs the benchmarks in the lab and writes `results.json`, the report and
//! its plots. `cargo xtask bench` builds what it needs and runs this.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context as _;
use clap::Parser;
use skiff_benchmarks::{
    e2e_latency, node_rss, per_packet, programming, report,
    results::{Benchmark, Machine, Results, Run},
    scheduler, traffic, Sizes,
};

#[derive(Parser)]
#[command(
    name = "skiff-bench",
    about = "Skiff against kube-proxy's modes, side by side in one run (needs root: the lab)",
    after_help = "Writes results.json, README.md (the report) and SVG plots into --out.\n\
        Benchmarks: conn_rate, rr_rate and throughput run together (traffic), programming,\n\
        e2e_latency, per_packet, scheduler, node_rss."
)]
struct Cli {
    /// Tiny sizes, one short run each: keeps every benchmark working; asserts nothing.
    #[arg(long)]
    quick: bool,
    /// Where results.json, the report and the plots go.
    #[arg(long)]
    out: PathBuf,
    /// Run only these (comma-separated: traffic, programming, e2e_latency, per_packet,
    /// scheduler, node_rss); the runs of the others are kept from an existing results.json.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// Explanations for missed targets, written by hand after reading a full run (target key ->
/// text); read from `notes.json` in --out when present.
fn notes(cli: &Cli) -> anyhow::Result<BTreeMap<String, String>> {
    let path = cli.out.join("notes.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{}", path.display())),
        Err(_) => Ok(BTreeMap::new()),
    }
}

type Suite = fn(&Sizes) -> anyhow::Result<Vec<Run>>;

const SUITES: [(&str, &[Benchmark], Suite); 6] = [
    ("scheduler", &[Benchmark::Scheduler], scheduler::run),
    ("per_packet", &[Benchmark::PerPacket], per_packet::run),
    ("programming", &[Benchmark::Programming], programming::run),
    ("node_rss", &[Benchmark::NodeRss], node_rss::run),
    ("e2e_latency", &[Benchmark::E2eLatency], e2e_latency::run),
    (
        "traffic",
        &[
            Benchmark::ConnRate,
            Benchmark::RrRate,
            Benchmark::Throughput,
        ],
        traffic::run,
    ),
];

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        skiff_lab::privileged(),
        "the benchmarks need root (network namespaces, eBPF, iptables in the lab)"
    );
    for name in &cli.only {
        anyhow::ensure!(
            SUITES.iter().any(|(n, _, _)| n == name),
            "--only {name}: expected one of {}",
            SUITES.map(|(n, _, _)| n).join(", ")
        );
    }
    let sizes = if cli.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    std::fs::create_dir_all(&cli.out)?;
    let path = cli.out.join("results.json");
    let mut kept = match (&cli.only[..], Results::read(&path)) {
        ([], _) | (_, Err(_)) => Vec::new(),
        (_, Ok(previous)) => previous.runs,
    };
    let mut runs = Vec::new();
    for (name, benchmarks, suite) in SUITES {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == name) {
            continue;
        }
        println!("== {name}");
        let started = std::time::Instant::now();
        runs.extend(suite(&sizes).with_context(|| format!("benchmark {name}"))?);
        kept.retain(|r| !benchmarks.contains(&r.benchmark));
        println!("== {name} done in {:.0} s", started.elapsed().as_secs_f64());
    }
    kept.extend(runs);
    let results = Results {
        machine: Machine::read(),
        date: skiff_benchmarks::results::today(),
        runs: kept,
    };
    results.write(&path)?;
    let written = report::write(&results, &cli.out, &notes(&cli)?)?;
    println!("wrote {}", path.display());
    for file in written {
        println!("wrote {}", file.display());
    }
    Ok(())
}
