//! Which runs become which chart: one [`Figure`] per benchmark, with the fixed colour of each
//! variant, so that `skiff` is the same blue in every plot.

use std::collections::{BTreeMap, BTreeSet};

use crate::results::{variant, Benchmark, Results, Run};

use super::{
    fmt_count, samples_phrase,
    svg::{Bar, Figure, LegendEntry, Marks, Panel, Point, Series, Swatch},
    targets, variant_order,
};

/// A variant's colour: fixed for the known ones, a stable pick from the rest for others.
pub fn variant_colour(name: &str) -> &'static str {
    match name {
        variant::DIRECT => "#7f7f7f",
        variant::SKIFF => "#1f5fbf",
        // Skiff through its TC programs only: Skiff's family, lighter.
        "skiff_tc" => "#6fa8dc",
        variant::IPTABLES => "#f28e2b",
        variant::NFTABLES => "#2ca02c",
        variant::IPVS => "#8e44ad",
        other => {
            const OTHERS: [&str; 4] = ["#8c564b", "#e377c2", "#17becf", "#bcbd22"];
            let pick = other.bytes().map(usize::from).sum::<usize>() % OTHERS.len();
            OTHERS[pick]
        }
    }
}

/// Per-packet programs are not variants: a palette of their own, in metric order.
const PROGRAM_COLOURS: [&str; 5] = ["#1f5fbf", "#c2185b", "#00897b", "#ef6c00", "#5e35b1"];

fn point(run: &Run) -> Point {
    Point {
        median: run.median,
        min: run.min,
        max: run.max,
    }
}

fn variants(runs: &[&Run]) -> Vec<String> {
    let mut names: Vec<String> = runs
        .iter()
        .map(|r| r.variant.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    names.sort_by_key(|name| variant_order(name));
    names
}

fn line_legend(names: &[String]) -> Vec<LegendEntry> {
    names
        .iter()
        .map(|name| LegendEntry {
            label: name.clone(),
            colour: variant_colour(name).to_string(),
            swatch: Swatch::Line { dash: None },
        })
        .collect()
}

fn unit(runs: &[&Run]) -> String {
    runs.first().map(|r| r.unit.clone()).unwrap_or_default()
}

/// The plot of one benchmark, or none when it has no runs.
pub fn figure(results: &Results, benchmark: Benchmark) -> Option<Figure> {
    let runs: Vec<&Run> = results.runs_of(benchmark).collect();
    if runs.is_empty() {
        return None;
    }
    Some(match benchmark {
        Benchmark::ConnRate => rate(
            &runs,
            "Connection rate vs services installed",
            "connection rate",
        ),
        Benchmark::RrRate => rate(&runs, "Request rate vs services installed", "request rate"),
        Benchmark::Programming => programming(&runs),
        Benchmark::PerPacket => per_packet(&runs),
        Benchmark::Throughput => bars(&runs, "Bulk throughput, one stream", "throughput", None),
        Benchmark::NodeRss => bars(
            &runs,
            "Node daemon peak memory",
            "peak RSS",
            Some((targets::NODE_RSS_MAX_MIB, "target ≤ 50 MiB")),
        ),
        Benchmark::Scheduler => bars(
            &runs,
            "Scheduler throughput",
            "scheduling rate",
            Some((targets::SCHEDULER_MIN_PODS_PER_S, "target ≥ 5k pods/s")),
        ),
        Benchmark::E2eLatency => bars(
            &runs,
            "End-to-end programming latency",
            "latency",
            Some((targets::E2E_P99_MAX_MS, "p99 target ≤ 100 ms")),
        ),
    })
}

/// Connection or request rate: a line per variant over the services installed.
fn rate(runs: &[&Run], title: &str, quantity: &str) -> Figure {
    let services: Vec<u64> = runs
        .iter()
        .map(|r| r.services)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let names = variants(runs);
    let series = names
        .iter()
        .map(|name| Series {
            colour: variant_colour(name).to_string(),
            dash: None,
            points: services
                .iter()
                .map(|&s| {
                    runs.iter()
                        .find(|r| &r.variant == name && r.services == s)
                        .map(|r| point(r))
                })
                .collect(),
        })
        .collect();
    Figure {
        title: title.to_string(),
        subtitle: format!("{}; higher is better", samples_phrase(runs)),
        panels: vec![Panel {
            title: None,
            x_label: "other services installed".into(),
            y_label: format!("{quantity} ({})", unit(runs)),
            categories: services.iter().map(|&s| super::svg::si(s as f64)).collect(),
            marks: Marks::Lines(series),
        }],
        legend: line_legend(&names),
        log_y: false,
        target: None,
    }
}

/// Whether values spread over so many times that a linear axis would flatten the small ones.
fn wide(runs: &[&Run]) -> bool {
    let low = runs.iter().map(|r| r.min).fold(f64::INFINITY, f64::min);
    let high = runs.iter().map(|r| r.max).fold(0.0, f64::max);
    low > 0.0 && high / low > 20.0
}

/// Programming time per service: a line per variant over N; where one N was measured with
/// several endpoint counts, a line per variant and count, told apart by dashes.
fn programming(runs: &[&Run]) -> Figure {
    let services: Vec<u64> = runs
        .iter()
        .map(|r| r.services)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let endpoints_at = |n: u64| -> BTreeSet<u64> {
        runs.iter()
            .filter(|r| r.services == n)
            .map(|r| r.endpoints)
            .collect()
    };
    let split = services.iter().any(|&n| endpoints_at(n).len() > 1);
    let all_endpoints: BTreeSet<u64> = runs.iter().map(|r| r.endpoints).collect();
    let names = variants(runs);
    const DASHES: [Option<&str>; 4] = [None, Some("8 4"), Some("2 3"), Some("10 3 2 3")];
    let mut series = Vec::new();
    let mut legend = Vec::new();
    for name in &names {
        let counts: Vec<Option<u64>> = if split {
            all_endpoints.iter().map(|&m| Some(m)).collect()
        } else {
            vec![None]
        };
        for (i, m) in counts.into_iter().enumerate() {
            let dash = DASHES[i % DASHES.len()].map(str::to_string);
            let points: Vec<Option<Point>> = services
                .iter()
                .map(|&n| {
                    runs.iter()
                        .find(|r| {
                            &r.variant == name
                                && r.services == n
                                && m.is_none_or(|m| r.endpoints == m)
                        })
                        .map(|r| point(r))
                })
                .collect();
            if points.iter().all(Option::is_none) {
                continue;
            }
            legend.push(LegendEntry {
                label: match m {
                    Some(m) => format!("{name}, {}", size_label(m, "endpoints")),
                    None => name.clone(),
                },
                colour: variant_colour(name).to_string(),
                swatch: Swatch::Line { dash: dash.clone() },
            });
            series.push(Series {
                colour: variant_colour(name).to_string(),
                dash,
                points,
            });
        }
    }
    // One endpoint count for all: said once on the axis. One per N: under each N.
    let (categories, x_label) = match (split, all_endpoints.len()) {
        (false, 1) => (
            services.iter().map(|&n| super::svg::si(n as f64)).collect(),
            format!(
                "services (N), {} each",
                size_label(*all_endpoints.first().expect("one"), "endpoints")
            ),
        ),
        (false, _) => (
            services
                .iter()
                .map(|&n| {
                    let m = endpoints_at(n).into_iter().next().unwrap_or(0);
                    format!("{}\n× {}", super::svg::si(n as f64), fmt_count(m))
                })
                .collect(),
            "services (N) × endpoints each".into(),
        ),
        (true, _) => (
            services.iter().map(|&n| super::svg::si(n as f64)).collect(),
            "services (N)".into(),
        ),
    };
    let log_y = wide(runs);
    Figure {
        title: "Programming time per service".into(),
        subtitle: format!(
            "{}; lower is better{}",
            samples_phrase(runs),
            if log_y { "; log scale" } else { "" }
        ),
        panels: vec![Panel {
            title: None,
            x_label,
            y_label: format!("time per service ({})", unit(runs)),
            categories,
            marks: Marks::Lines(series),
        }],
        legend,
        log_y,
        target: None,
    }
}

/// Per-packet cost: a line per program, over services (at the fewest policies) in one panel
/// and over policies (at the fewest services) in another, on one y scale.
fn per_packet(runs: &[&Run]) -> Figure {
    let programs: Vec<&str> = runs
        .iter()
        .map(|r| r.metric.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let base_services = runs.iter().map(|r| r.services).min().unwrap_or(0);
    let base_policies = runs.iter().map(|r| r.policies).min().unwrap_or(0);
    let colour = |i: usize| PROGRAM_COLOURS[i % PROGRAM_COLOURS.len()].to_string();
    /// One sweep: the runs where `held` stays at its smallest, along `along`.
    struct Arm {
        title: String,
        x_label: &'static str,
        along: fn(&Run) -> u64,
        held: fn(&Run) -> u64,
        held_at: u64,
    }
    let arms = [
        Arm {
            title: format!("vs services ({})", size_label(base_policies, "policies")),
            x_label: "services",
            along: |r| r.services,
            held: |r| r.policies,
            held_at: base_policies,
        },
        Arm {
            title: format!("vs policies ({})", size_label(base_services, "services")),
            x_label: "policies",
            along: |r| r.policies,
            held: |r| r.services,
            held_at: base_services,
        },
    ];
    let mut panels = Vec::new();
    for Arm {
        title,
        x_label,
        along: axis,
        held,
        held_at,
    } in &arms
    {
        let arm: Vec<&Run> = runs
            .iter()
            .copied()
            .filter(|r| held(r) == *held_at)
            .collect();
        let values: Vec<u64> = arm
            .iter()
            .map(|r| axis(r))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if values.len() < 2 {
            continue;
        }
        let series = programs
            .iter()
            .enumerate()
            .map(|(i, program)| Series {
                colour: colour(i),
                dash: None,
                points: values
                    .iter()
                    .map(|&v| {
                        arm.iter()
                            .find(|r| r.metric == *program && axis(r) == v)
                            .map(|r| point(r))
                    })
                    .collect(),
            })
            .collect();
        panels.push(Panel {
            title: Some(title.clone()),
            x_label: x_label.to_string(),
            y_label: format!("cost ({})", unit(runs)),
            categories: values.iter().map(|&v| super::svg::si(v as f64)).collect(),
            marks: Marks::Lines(series),
        });
    }
    if panels.is_empty() {
        // Neither axis was swept: every point on its own slot.
        let mut points: Vec<(u64, u64)> = runs
            .iter()
            .map(|r| (r.services, r.policies))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        points.sort();
        panels.push(Panel {
            title: None,
            x_label: "services / policies".into(),
            y_label: format!("cost ({})", unit(runs)),
            categories: points
                .iter()
                .map(|(s, p)| {
                    format!(
                        "{} svc\n{} pol",
                        super::svg::si(*s as f64),
                        super::svg::si(*p as f64)
                    )
                })
                .collect(),
            marks: Marks::Lines(
                programs
                    .iter()
                    .enumerate()
                    .map(|(i, program)| Series {
                        colour: colour(i),
                        dash: None,
                        points: points
                            .iter()
                            .map(|&(s, p)| {
                                runs.iter()
                                    .find(|r| {
                                        r.metric == *program && r.services == s && r.policies == p
                                    })
                                    .map(|r| point(r))
                            })
                            .collect(),
                    })
                    .collect(),
            ),
        });
    }
    let names = variants(runs);
    Figure {
        title: format!("Per-packet cost of {}'s TC programs", names.join(", ")),
        subtitle: format!("{}; flat is the target", samples_phrase(runs)),
        panels,
        legend: programs
            .iter()
            .enumerate()
            .map(|(i, program)| LegendEntry {
                label: program.strip_suffix("_ns").unwrap_or(program).to_string(),
                colour: colour(i),
                swatch: Swatch::Line { dash: None },
            })
            .collect(),
        log_y: false,
        target: None,
    }
}

/// A run's sizes by name: services, endpoints, policies, then its scale.
fn size_values(run: &Run) -> Vec<(String, u64)> {
    let mut sizes = vec![
        ("services".to_string(), run.services),
        ("endpoints".to_string(), run.endpoints),
        ("policies".to_string(), run.policies),
    ];
    sizes.extend(
        run.scale
            .iter()
            .map(|(name, v)| (name.replace('_', " "), *v)),
    );
    sizes
}

/// The sizes the runs differ in, and those they all share (left out where zero): what labels
/// a group of bars, and what the subtitle says once.
fn split_sizes(runs: &[&Run]) -> (BTreeSet<String>, Vec<String>) {
    let mut values: BTreeMap<String, BTreeSet<Option<u64>>> = BTreeMap::new();
    for run in runs {
        for (name, value) in size_values(run) {
            values.entry(name).or_default().insert(Some(value));
        }
    }
    // A scale that only some runs have differs too: the others lack it.
    for run in runs {
        let own = size_values(run);
        for (name, seen) in values.iter_mut() {
            if !own.iter().any(|(n, _)| n == name) {
                seen.insert(None);
            }
        }
    }
    let varying = values
        .iter()
        .filter(|(_, seen)| seen.len() > 1)
        .map(|(name, _)| name.clone())
        .collect();
    let shared = runs
        .first()
        .map(|run| {
            size_values(run)
                .into_iter()
                .filter(|(name, value)| values[name].len() == 1 && *value > 0)
                .map(|(name, value)| size_label(value, &name))
                .collect()
        })
        .unwrap_or_default();
    (varying, shared)
}

/// "10k services", "1 endpoint".
fn size_label(value: u64, name: &str) -> String {
    format!("{} {}", super::svg::si(value as f64), plural(value, name))
}

/// "1 service", "3 policies": `name` is the plural, as results.json's size names are.
fn plural(count: u64, name: &str) -> String {
    if count != 1 {
        return name.to_string();
    }
    match name.strip_suffix("ies") {
        Some(stem) => format!("{stem}y"),
        None => name.strip_suffix('s').unwrap_or(name).to_string(),
    }
}

/// Bars grouped by what tells the runs apart (metric, sizes), a bar per variant in each
/// group, coloured as everywhere; what all runs share goes in the subtitle. Runs that differ
/// in variant only get a bar each, labelled by variant.
fn bars(runs: &[&Run], title: &str, quantity: &str, target: Option<(f64, &str)>) -> Figure {
    let mut runs = runs.to_vec();
    runs.sort_by_key(|r| {
        (
            r.metric.clone(),
            r.services,
            r.endpoints,
            r.policies,
            r.scale.clone(),
            variant_order(&r.variant),
        )
    });
    let many_metrics = runs
        .iter()
        .map(|r| &r.metric)
        .collect::<BTreeSet<_>>()
        .len()
        > 1;
    let (varying, shared) = split_sizes(&runs);
    let label_sizes = |run: &Run| -> Vec<String> {
        size_values(run)
            .into_iter()
            .filter(|(name, _)| varying.contains(name))
            .map(|(name, value)| size_label(value, &name))
            .collect()
    };
    let mut categories: Vec<String> = Vec::new();
    let mut groups: Vec<Vec<Bar>> = Vec::new();
    let mut last_key = None;
    for run in &runs {
        let bar = Bar {
            colour: variant_colour(&run.variant).to_string(),
            point: point(run),
        };
        if !many_metrics && varying.is_empty() {
            categories.push(run.variant.clone());
            groups.push(vec![bar]);
            continue;
        }
        let key = (run.metric.clone(), label_sizes(run));
        if last_key.as_ref() == Some(&key) {
            groups.last_mut().expect("a group").push(bar);
            continue;
        }
        let mut lines = Vec::new();
        if many_metrics {
            lines.push(run.metric.replace('_', " "));
        }
        lines.extend(key.1.iter().cloned());
        categories.push(lines.join("\n"));
        groups.push(vec![bar]);
        last_key = Some(key);
    }
    let shared = if shared.is_empty() {
        String::new()
    } else {
        format!("{}; ", shared.join(", "))
    };
    let mut legend: Vec<LegendEntry> = variants(&runs)
        .iter()
        .map(|name| LegendEntry {
            label: name.clone(),
            colour: variant_colour(name).to_string(),
            swatch: Swatch::Bar,
        })
        .collect();
    if let Some((_, label)) = target {
        legend.push(LegendEntry {
            label: label.to_string(),
            colour: String::new(),
            swatch: Swatch::Target,
        });
    }
    Figure {
        title: title.to_string(),
        subtitle: format!("{shared}{}", samples_phrase(&runs)),
        panels: vec![Panel {
            title: None,
            x_label: String::new(),
            y_label: format!("{quantity} ({})", unit(&runs)),
            categories,
            marks: Marks::Bars(groups),
        }],
        legend,
        log_y: false,
        target: target.map(|(value, _)| value),
    }
}
