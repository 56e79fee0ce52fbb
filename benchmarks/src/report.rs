//! The report written beside `results.json`: `README.md` and one SVG plot per benchmark.
//!
//! This module owns what a reader sees: the targets table (evaluated in [`targets`]), a
//! section per benchmark with every run and its ratio to the relevant baseline, and the plots
//! (`plots` picks what goes in each, [`svg`] draws them by hand). It reads a [`Results`]
//! and never measures anything, so a report can be rebuilt from any `results.json`.

mod plots;
pub mod svg;
pub mod targets;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs, io,
    path::{Path, PathBuf},
};

use crate::results::{variant, Benchmark, Results, Run};

pub use plots::variant_colour;
pub use targets::{Target, Verdict};

/// Writing the report failed; names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("creating {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes `dir/README.md` and a plot per benchmark that has runs (`dir/<benchmark>.svg`), and
/// returns the paths written. `notes` maps a [`targets`] key to why that target was missed;
/// each is printed under the targets table.
pub fn write(
    results: &Results,
    dir: &Path,
    notes: &BTreeMap<String, String>,
) -> Result<Vec<PathBuf>, ReportError> {
    fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    let mut plots = BTreeMap::new();
    for benchmark in Benchmark::ALL {
        let Some(figure) = plots::figure(results, benchmark) else {
            continue;
        };
        let file = format!("{benchmark}.svg");
        let path = dir.join(&file);
        fs::write(&path, figure.render()).map_err(|source| ReportError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
        plots.insert(benchmark, (file, figure.title));
    }
    let path = dir.join("README.md");
    fs::write(&path, markdown(results, notes, &plots)).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    written.insert(0, path);
    Ok(written)
}

/// The order variants are listed and plotted in: the limit first, then Skiff, then
/// kube-proxy's modes, then anything else by name.
pub(crate) fn variant_order(name: &str) -> (usize, String) {
    let known = [
        variant::DIRECT,
        variant::SKIFF,
        "skiff_tc",
        variant::IPTABLES,
        variant::NFTABLES,
        variant::IPVS,
    ];
    let rank = known.iter().position(|k| *k == name).unwrap_or(known.len());
    (rank, name.to_string())
}

/// A count with thousands separators: 10,000.
pub fn fmt_count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A measured value at a precision that its size deserves: 48,210, 512, 42.4, 3.46, 0.042.
pub fn fmt_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        let sign = if value < 0.0 { "-" } else { "" };
        return format!("{sign}{}", fmt_count(magnitude.round() as u64));
    }
    let decimals = match magnitude {
        m if m >= 100.0 => 0,
        m if m >= 10.0 => 1,
        m if m >= 1.0 => 2,
        _ => 3,
    };
    format!("{value:.decimals$}")
}

/// A ratio: two decimals near 1, where the targets' thresholds are; fewer for large ones.
pub fn fmt_ratio(ratio: f64) -> String {
    let decimals = match ratio.abs() {
        r if r >= 100.0 => 0,
        r if r >= 10.0 => 1,
        _ => 2,
    };
    format!("{ratio:.decimals$}×")
}

/// "median of 5 samples, whiskers min–max" (or "3–5 samples" where runs differ).
pub(crate) fn samples_phrase(runs: &[&Run]) -> String {
    let counts: BTreeSet<usize> = runs.iter().map(|r| r.samples.len()).collect();
    let (low, high) = (
        counts.first().copied().unwrap_or(0),
        counts.last().copied().unwrap_or(0),
    );
    let samples = if low == high {
        format!("{low} sample{}", if low == 1 { "" } else { "s" })
    } else {
        format!("{low}–{high} samples")
    };
    format!("median of {samples}, whiskers min–max")
}

/// A markdown table cell: a `|` would end it early.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn title(benchmark: Benchmark) -> &'static str {
    match benchmark {
        Benchmark::ConnRate => "Connection rate",
        Benchmark::RrRate => "Request rate",
        Benchmark::Throughput => "Throughput",
        Benchmark::Programming => "Programming time",
        Benchmark::E2eLatency => "End-to-end programming latency",
        Benchmark::PerPacket => "Per-packet cost",
        Benchmark::Scheduler => "Scheduler throughput",
        Benchmark::NodeRss => "Node daemon memory",
    }
}

/// What the section measures, and what its ratio column compares with.
fn description(benchmark: Benchmark) -> &'static str {
    match benchmark {
        Benchmark::ConnRate => {
            "New connections per second from a client pod to the target service, one request \
             each, with other services installed. `direct` is the server pod's own address with \
             no service machinery: the limit. Ratio: to `direct` at the same services count."
        }
        Benchmark::RrRate => {
            "Requests per second on kept-alive connections to the target service, with other \
             services installed. Ratio: to `direct` at the same services count."
        }
        Benchmark::Throughput => {
            "Bulk transfer rate of one stream to the target service. Ratio: to `direct` at the \
             same services count."
        }
        Benchmark::Programming => {
            "Time to write N services of M endpoints each into an empty data plane (Skiff) or \
             table (kube-proxy's rules through `iptables-restore` and `nft -f`), per service. \
             Ratio: as a multiple of `skiff` at the same size."
        }
        Benchmark::E2eLatency => {
            "From an endpoint change written to the API until every node's data plane holds it; \
             each sample is the p50 or p99 of a round of changes. Ratio: to the 100 ms p99 \
             target."
        }
        Benchmark::PerPacket => {
            "Cost of one packet through each TC program as the kernel times it, as services and \
             policies grow. Ratio: to the same program at the smallest size."
        }
        Benchmark::Scheduler => {
            "Pods placed per second by the control plane's scheduler onto simulated nodes, the \
             decisions alone. Ratio: to the 5,000 pods/s target."
        }
        Benchmark::NodeRss => {
            "Peak resident set of the node daemon once it has programmed its services and \
             policies. Ratio: to the 50 MiB target."
        }
    }
}

/// The baseline a run's ratio column divides by, if any.
fn baseline<'a>(results: &'a Results, run: &Run) -> Option<f64> {
    let find = |variant: &str, same: &dyn Fn(&'a Run) -> bool| {
        results
            .runs_of(run.benchmark)
            .find(|r| r.variant == variant && r.metric == run.metric && same(r))
            .map(|r| r.median)
    };
    match run.benchmark {
        Benchmark::ConnRate | Benchmark::RrRate | Benchmark::Throughput => {
            find(variant::DIRECT, &|r| r.services == run.services)
        }
        Benchmark::Programming => find(variant::SKIFF, &|r| {
            r.services == run.services && r.endpoints == run.endpoints
        }),
        Benchmark::PerPacket => {
            let same: Vec<&Run> = results
                .runs_of(Benchmark::PerPacket)
                .filter(|r| r.variant == run.variant && r.metric == run.metric)
                .collect();
            targets::per_packet_ends(&same).map(|(base, _)| base.median)
        }
        Benchmark::E2eLatency => (run.metric == "p99").then_some(targets::E2E_P99_MAX_MS),
        Benchmark::Scheduler => Some(targets::SCHEDULER_MIN_PODS_PER_S),
        Benchmark::NodeRss => Some(targets::NODE_RSS_MAX_MIB),
    }
}

fn markdown(
    results: &Results,
    notes: &BTreeMap<String, String>,
    plots: &BTreeMap<Benchmark, (String, String)>,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Skiff against kube-proxy\n");
    let _ = writeln!(
        md,
        "Measured {} on {} by `cargo xtask bench`. Raw figures: [results.json](results.json).\n",
        results.date, results.machine
    );
    let _ = writeln!(
        md,
        "How to reproduce: `cargo xtask bench` (the full run, about 25 minutes, writes here) or \
         `cargo xtask bench --quick` (CI: tiny sizes, a debug build, writes to \
         `target/bench/kube-proxy/`).\n"
    );
    let _ = writeln!(
        md,
        "Every figure is the median of its samples, with the spread (min–max) beside it.\n"
    );
    targets_section(&mut md, results, notes);
    for benchmark in Benchmark::ALL {
        let runs: Vec<&Run> = results.runs_of(benchmark).collect();
        if runs.is_empty() {
            continue;
        }
        benchmark_section(&mut md, results, benchmark, &runs, plots.get(&benchmark));
    }
    md
}

fn targets_section(md: &mut String, results: &Results, notes: &BTreeMap<String, String>) {
    let targets = targets::evaluate(results);
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | measured | ratio | verdict |");
    let _ = writeln!(md, "|---|---|---|---|");
    for target in &targets {
        let ratio = target
            .ratio
            .map(|r| format!("{} {}", fmt_ratio(r), target.ratio_to))
            .unwrap_or_default();
        let verdict = match target.verdict {
            Verdict::Met => "met".to_string(),
            other => format!("**{}**", other.as_str()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {ratio} | {verdict} |",
            cell(&target.goal),
            cell(&target.measured)
        );
    }
    md.push('\n');
    // Why each target was missed (and, where a note was given, why one was not measured);
    // several per-packet rows share a key, so each key is explained once.
    let mut explained = BTreeSet::new();
    let mut lines = Vec::new();
    for target in targets.iter().filter(|t| t.verdict != Verdict::Met) {
        if !explained.insert(target.key) {
            continue;
        }
        match (notes.get(target.key), target.verdict) {
            (Some(note), verdict) => {
                lines.push(format!("- `{}` ({}): {note}", target.key, verdict.as_str()))
            }
            (None, Verdict::Missed) => lines.push(format!(
                "- `{}` (missed): no explanation was recorded for this run.",
                target.key
            )),
            (None, _) => {}
        }
    }
    // A note under a key no target has is still printed: nothing given is dropped silently.
    for (key, note) in notes {
        if !targets.iter().any(|t| t.key == key) {
            lines.push(format!("- `{key}`: {note}"));
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(md, "{}\n", lines.join("\n"));
    }
}

fn benchmark_section(
    md: &mut String,
    results: &Results,
    benchmark: Benchmark,
    runs: &[&Run],
    plot: Option<&(String, String)>,
) {
    let _ = writeln!(md, "## {} (`{benchmark}`)\n", title(benchmark));
    let _ = writeln!(md, "{}\n", description(benchmark));
    if matches!(benchmark, Benchmark::ConnRate | Benchmark::RrRate)
        && !runs.iter().any(|r| r.variant == variant::IPVS)
    {
        let _ = writeln!(
            md,
            "No `ipvs` runs: kube-proxy's IPVS mode needs a kernel with `CONFIG_IP_VS`.\n"
        );
    }
    if let Some((file, alt)) = plot {
        let _ = writeln!(md, "![{alt}]({file})\n");
    }

    // Only the sizes that tell these runs apart, or that are not zero, get a column.
    type Size = (&'static str, fn(&Run) -> u64);
    let sizes: [Size; 3] = [
        ("services", |r| r.services),
        ("endpoints", |r| r.endpoints),
        ("policies", |r| r.policies),
    ];
    let sizes: Vec<_> = sizes
        .into_iter()
        .filter(|(_, get)| runs.iter().any(|r| get(r) != 0))
        .collect();
    let scale: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.scale.keys().map(String::as_str))
        .collect();
    let metrics = runs
        .iter()
        .map(|r| &r.metric)
        .collect::<BTreeSet<_>>()
        .len()
        > 1;

    let mut header = vec!["variant".to_string()];
    header.extend(sizes.iter().map(|(name, _)| name.to_string()));
    header.extend(scale.iter().map(|name| name.replace('_', " ")));
    if metrics {
        header.push("metric".into());
    }
    header.extend(["median", "min–max", "samples", "ratio"].map(String::from));
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(header.len()));

    let mut sorted = runs.to_vec();
    sorted.sort_by_key(|r| {
        (
            r.metric.clone(),
            r.services,
            r.endpoints,
            r.policies,
            variant_order(&r.variant),
        )
    });
    for run in sorted {
        let mut row = vec![format!("`{}`", cell(&run.variant))];
        row.extend(sizes.iter().map(|(_, get)| fmt_count(get(run))));
        row.extend(scale.iter().map(|name| {
            run.scale
                .get(*name)
                .map(|v| fmt_count(*v))
                .unwrap_or_default()
        }));
        if metrics {
            row.push(cell(&run.metric));
        }
        row.push(format!("{} {}", fmt_value(run.median), cell(&run.unit)));
        row.push(format!("{}–{}", fmt_value(run.min), fmt_value(run.max)));
        row.push(run.samples.len().to_string());
        row.push(
            baseline(results, run)
                .filter(|b| *b != 0.0)
                .map(|b| fmt_ratio(run.median / b))
                .unwrap_or_else(|| "—".into()),
        );
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md.push('\n');
}
