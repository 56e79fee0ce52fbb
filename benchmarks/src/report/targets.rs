//! The project's performance targets, evaluated from the runs in a [`Results`].
//!
//! Each target is a key (for the notes that explain a miss), the goal in words, the measured
//! figure, a ratio and a verdict. A target whose runs are absent is "not measured", never
//! guessed from a neighbouring size.

use std::collections::BTreeMap;

use crate::results::{variant, Benchmark, Results, Run};

use super::{fmt_count, fmt_value};

/// ClusterIP connection rate at 10k services against the direct pod IP.
pub const CONN_RATE_VS_DIRECT: &str = "conn_rate_vs_direct";
/// ClusterIP connection rate at 10k services against kube-proxy's iptables mode.
pub const CONN_RATE_VS_IPTABLES: &str = "conn_rate_vs_iptables";
/// Skiff's programming time per service at the largest size.
pub const PROGRAMMING: &str = "programming";
/// End-to-end programming latency, p99.
pub const E2E_LATENCY_P99: &str = "e2e_latency_p99";
/// Per-packet cost flat in services and policies (one row per program).
pub const PER_PACKET_FLAT: &str = "per_packet_flat";
/// Scheduler throughput.
pub const SCHEDULER: &str = "scheduler";
/// Node daemon peak RSS.
pub const NODE_RSS: &str = "node_rss";

/// Every target key, in the order of the report's table.
pub const ALL: [&str; 7] = [
    CONN_RATE_VS_DIRECT,
    CONN_RATE_VS_IPTABLES,
    PROGRAMMING,
    E2E_LATENCY_P99,
    PER_PACKET_FLAT,
    SCHEDULER,
    NODE_RSS,
];

/// The services count the connection-rate targets are judged at.
pub const CONN_RATE_SERVICES: u64 = 10_000;
/// Skiff's connection rate over direct's, at least.
pub const CONN_RATE_MIN_VS_DIRECT: f64 = 0.97;
/// Skiff's connection rate over iptables', at least: "clearly above".
pub const CONN_RATE_MIN_VS_IPTABLES: f64 = 1.10;
/// Microseconds per service, at most.
pub const PROGRAMMING_MAX_US: f64 = 10.0;
/// Milliseconds, at most.
pub const E2E_P99_MAX_MS: f64 = 100.0;
/// Largest size's cost over the smallest's, at most.
pub const PER_PACKET_MAX_GROWTH: f64 = 1.10;
/// Pods per second, at least.
pub const SCHEDULER_MIN_PODS_PER_S: f64 = 5_000.0;
/// MiB, at most.
pub const NODE_RSS_MAX_MIB: f64 = 50.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    NotMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// One row of the targets table.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// One of the constants above; several rows may share one (per-packet, per program).
    pub key: &'static str,
    pub goal: String,
    pub measured: String,
    /// The figure the verdict compares, over what `ratio_to` names.
    pub ratio: Option<f64>,
    pub ratio_to: &'static str,
    pub verdict: Verdict,
}

impl Target {
    fn not_measured(key: &'static str, goal: String, why: String) -> Target {
        Target {
            key,
            goal,
            measured: why,
            ratio: None,
            ratio_to: "",
            verdict: Verdict::NotMeasured,
        }
    }
}

fn verdict(met: bool) -> Verdict {
    if met {
        Verdict::Met
    } else {
        Verdict::Missed
    }
}

fn find<'a>(
    results: &'a Results,
    benchmark: Benchmark,
    variant: &str,
    services: u64,
) -> Option<&'a Run> {
    results
        .runs_of(benchmark)
        .find(|run| run.variant == variant && run.services == services)
}

/// Every target, evaluated from `results`.
pub fn evaluate(results: &Results) -> Vec<Target> {
    let mut targets = conn_rate(results);
    targets.push(programming(results));
    targets.push(e2e_latency(results));
    targets.extend(per_packet(results));
    targets.push(scheduler(results));
    targets.push(node_rss(results));
    targets
}

fn conn_rate(results: &Results) -> Vec<Target> {
    let at = CONN_RATE_SERVICES;
    let skiff = find(results, Benchmark::ConnRate, variant::SKIFF, at);
    let compare = |key: &'static str, baseline: &'static str, threshold: f64, goal: String| {
        let Some((skiff, base)) = skiff.zip(find(results, Benchmark::ConnRate, baseline, at))
        else {
            return Target::not_measured(
                key,
                goal,
                format!(
                    "no conn_rate runs of skiff and {baseline} at {} services",
                    fmt_count(at)
                ),
            );
        };
        let ratio = skiff.median / base.median;
        Target {
            key,
            goal,
            measured: format!(
                "skiff {} vs {baseline} {} {} at {} services",
                fmt_value(skiff.median),
                fmt_value(base.median),
                skiff.unit,
                fmt_count(at)
            ),
            ratio: Some(ratio),
            ratio_to: baseline,
            verdict: verdict(ratio >= threshold),
        }
    };
    vec![
        compare(
            CONN_RATE_VS_DIRECT,
            variant::DIRECT,
            CONN_RATE_MIN_VS_DIRECT,
            format!(
                "ClusterIP connection rate at {} services ≥ {:.0}% of direct pod IP",
                fmt_count(at),
                CONN_RATE_MIN_VS_DIRECT * 100.0
            ),
        ),
        compare(
            CONN_RATE_VS_IPTABLES,
            variant::IPTABLES,
            CONN_RATE_MIN_VS_IPTABLES,
            format!(
                "ClusterIP connection rate at {} services clearly above iptables (≥ {:.2}×)",
                fmt_count(at),
                CONN_RATE_MIN_VS_IPTABLES
            ),
        ),
    ]
}

/// The worst of the runs a target looks at: a target must hold at every size it names.
fn worst<'a>(runs: impl Iterator<Item = &'a Run>, higher_is_better: bool) -> Option<&'a Run> {
    runs.reduce(|a, b| {
        let b_worse = if higher_is_better {
            b.median < a.median
        } else {
            b.median > a.median
        };
        if b_worse {
            b
        } else {
            a
        }
    })
}

fn programming(results: &Results) -> Target {
    let goal = format!("programming ≤ {PROGRAMMING_MAX_US} us per service (skiff, largest N)");
    let skiff = || {
        results
            .runs_of(Benchmark::Programming)
            .filter(|run| run.variant == variant::SKIFF)
    };
    let Some(largest) = skiff().map(|run| run.services).max() else {
        return Target::not_measured(PROGRAMMING, goal, "no programming runs of skiff".into());
    };
    let run = worst(skiff().filter(|run| run.services == largest), false).expect("one at least");
    Target {
        key: PROGRAMMING,
        goal,
        measured: format!(
            "{} {}/service at {} services × {} endpoints",
            fmt_value(run.median),
            run.unit,
            fmt_count(run.services),
            fmt_count(run.endpoints)
        ),
        ratio: Some(run.median / PROGRAMMING_MAX_US),
        ratio_to: "target",
        verdict: verdict(run.median <= PROGRAMMING_MAX_US),
    }
}

fn e2e_latency(results: &Results) -> Target {
    let goal = format!("end-to-end programming latency p99 ≤ {E2E_P99_MAX_MS} ms");
    let p99 = results
        .runs_of(Benchmark::E2eLatency)
        .filter(|run| run.variant == variant::SKIFF && run.metric == "p99");
    let Some(run) = worst(p99, false) else {
        return Target::not_measured(E2E_LATENCY_P99, goal, "no e2e_latency p99 run".into());
    };
    Target {
        key: E2E_LATENCY_P99,
        goal,
        measured: format!(
            "{} {} (median of {} rounds)",
            fmt_value(run.median),
            run.unit,
            run.samples.len()
        ),
        ratio: Some(run.median / E2E_P99_MAX_MS),
        ratio_to: "target",
        verdict: verdict(run.median <= E2E_P99_MAX_MS),
    }
}

/// Where each sweep ends, against the smallest point: with the runs on an L (services swept
/// at the fewest policies, policies at the fewest services) that is both arms' far ends; with
/// a grid the same; with neither, the largest point overall.
pub(super) fn per_packet_ends<'a>(runs: &[&'a Run]) -> Option<(&'a Run, Vec<&'a Run>)> {
    let base = *runs.iter().min_by_key(|r| (r.services, r.policies))?;
    let services_end = runs
        .iter()
        .filter(|r| r.policies == base.policies && r.services > base.services)
        .max_by_key(|r| r.services);
    let policies_end = runs
        .iter()
        .filter(|r| r.services == base.services && r.policies > base.policies)
        .max_by_key(|r| r.policies);
    let mut ends: Vec<&Run> = services_end
        .into_iter()
        .chain(policies_end)
        .copied()
        .collect();
    if ends.is_empty() {
        let largest = *runs.iter().max_by_key(|r| (r.services, r.policies))?;
        if (largest.services, largest.policies) != (base.services, base.policies) {
            ends.push(largest);
        }
    }
    Some((base, ends))
}

fn per_packet(results: &Results) -> Vec<Target> {
    let mut programs: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for run in results
        .runs_of(Benchmark::PerPacket)
        .filter(|run| run.variant == variant::SKIFF)
    {
        programs.entry(run.metric.as_str()).or_default().push(run);
    }
    let goal = |program: &str| {
        format!(
            "per-packet cost of `{program}` flat in services and policies (largest / smallest size ≤ {PER_PACKET_MAX_GROWTH:.2})"
        )
    };
    if programs.is_empty() {
        return vec![Target::not_measured(
            PER_PACKET_FLAT,
            goal("every program"),
            "no per_packet runs".into(),
        )];
    }
    programs
        .into_iter()
        .map(|(metric, runs)| {
            let program = metric.strip_suffix("_ns").unwrap_or(metric);
            let (base, ends) = per_packet_ends(&runs).expect("one run at least");
            if ends.is_empty() {
                return Target::not_measured(
                    PER_PACKET_FLAT,
                    goal(program),
                    format!("only one size measured for {program}"),
                );
            }
            let growth = |run: &Run| run.median / base.median;
            let worst = ends.iter().map(|r| growth(r)).fold(f64::MIN, f64::max);
            let arms: Vec<String> = ends
                .iter()
                .map(|end| {
                    format!(
                        "{} at {} ({:.2}×)",
                        fmt_value(end.median),
                        size_name(base, end),
                        growth(end)
                    )
                })
                .collect();
            Target {
                key: PER_PACKET_FLAT,
                goal: goal(program),
                measured: format!(
                    "{} {} at {} services, {} policies → {}",
                    fmt_value(base.median),
                    base.unit,
                    fmt_count(base.services),
                    fmt_count(base.policies),
                    arms.join("; ")
                ),
                ratio: Some(worst),
                ratio_to: "smallest size",
                verdict: verdict(worst <= PER_PACKET_MAX_GROWTH),
            }
        })
        .collect()
}

/// What grew from `base` to `end`: "10,000 services", "1,000 policies" or both.
fn size_name(base: &Run, end: &Run) -> String {
    let mut parts = Vec::new();
    if end.services != base.services {
        parts.push(format!("{} services", fmt_count(end.services)));
    }
    if end.policies != base.policies {
        parts.push(format!("{} policies", fmt_count(end.policies)));
    }
    parts.join(", ")
}

fn scheduler(results: &Results) -> Target {
    let goal = format!(
        "scheduler ≥ {} pods/s",
        fmt_count(SCHEDULER_MIN_PODS_PER_S as u64)
    );
    let runs = results
        .runs_of(Benchmark::Scheduler)
        .filter(|run| run.metric == "pods_per_second");
    let Some(run) = worst(runs, true) else {
        return Target::not_measured(SCHEDULER, goal, "no scheduler runs".into());
    };
    let scale: Vec<String> = run
        .scale
        .iter()
        .map(|(name, value)| format!("{} {name}", fmt_count(*value)))
        .collect();
    let at = if scale.is_empty() {
        String::new()
    } else {
        format!(" ({})", scale.join(", "))
    };
    Target {
        key: SCHEDULER,
        goal,
        measured: format!("{} {}{at}", fmt_value(run.median), run.unit),
        ratio: Some(run.median / SCHEDULER_MIN_PODS_PER_S),
        ratio_to: "target",
        verdict: verdict(run.median >= SCHEDULER_MIN_PODS_PER_S),
    }
}

fn node_rss(results: &Results) -> Target {
    let goal = format!("node daemon RSS ≤ {NODE_RSS_MAX_MIB} MiB");
    let runs = results
        .runs_of(Benchmark::NodeRss)
        .filter(|run| run.variant == variant::SKIFF && run.metric == "peak_rss");
    let Some(run) = worst(runs, false) else {
        return Target::not_measured(NODE_RSS, goal, "no node_rss runs".into());
    };
    Target {
        key: NODE_RSS,
        goal,
        measured: format!(
            "{} {} peak at {} services, {} policies",
            fmt_value(run.median),
            run.unit,
            fmt_count(run.services),
            fmt_count(run.policies)
        ),
        ratio: Some(run.median / NODE_RSS_MAX_MIB),
        ratio_to: "target",
        verdict: verdict(run.median <= NODE_RSS_MAX_MIB),
    }
}
