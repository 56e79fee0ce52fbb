//! The results file and the report from synthetic runs of every benchmark: statistics,
//! results.json round trip, target verdicts and well-formed plots.

use std::{collections::BTreeMap, fs, path::Path};

use skiff_benchmarks::{
    report::{self, targets, Verdict},
    results::{iso_date, median, percentile, spread, Benchmark, Machine, Results, Run, StatsError},
};

fn run(
    benchmark: Benchmark,
    variant: &str,
    axes: (usize, usize, usize),
    metric: &str,
    unit: &str,
    median: f64,
) -> Run {
    // Three samples around the median, 2% apart: the median is the middle one.
    let samples = vec![median * 0.98, median, median * 1.02];
    Run::from_samples(benchmark, variant, axes, metric, unit, samples).expect("samples")
}

/// Runs of every benchmark; `skiff_vs_direct` is skiff's connection rate over direct's at
/// 10k services, `programming_us` skiff's time per service at the largest N.
fn synthetic(skiff_vs_direct: f64, programming_us: f64) -> Results {
    let mut runs = Vec::new();
    for services in [0, 1000, 5000, 10_000, 30_000] {
        let direct = 50_000.0 - services as f64 * 0.1;
        let factors = [
            ("direct", 1.0),
            ("skiff", skiff_vs_direct),
            ("iptables", 0.3),
            ("nftables", 0.8),
        ];
        for (variant, factor) in factors {
            runs.push(run(
                Benchmark::ConnRate,
                variant,
                (services, 1, 0),
                "connections_per_second",
                "conn/s",
                direct * factor,
            ));
            runs.push(run(
                Benchmark::RrRate,
                variant,
                (services, 1, 0),
                "requests_per_second",
                "req/s",
                direct * 2.0 * factor,
            ));
        }
    }
    for (variant, rate) in [("direct", 9400.0), ("skiff", 9100.0), ("iptables", 7000.0)] {
        runs.push(run(
            Benchmark::Throughput,
            variant,
            (30_000, 1, 0),
            "throughput",
            "Mbit/s",
            rate,
        ));
    }
    for (n, m) in [(100, 10), (1000, 10), (10_000, 10), (50_000, 10)] {
        let skiff = if n == 50_000 { programming_us } else { 2.0 };
        for (variant, us) in [
            ("skiff", skiff),
            ("iptables", 40.0 + n as f64 * 0.04),
            ("nftables", 20.0),
        ] {
            runs.push(run(
                Benchmark::Programming,
                variant,
                (n, m, 0),
                "us_per_service",
                "us",
                us,
            ));
        }
    }
    for (metric, ms) in [("p50", 12.0), ("p99", 140.0)] {
        let run =
            run(Benchmark::E2eLatency, "skiff", (1, 1, 0), metric, "ms", ms).with_scale("nodes", 3);
        runs.push(run);
    }
    // An L of sizes: services swept at 10 policies, policies swept at 10 services.
    let points = [(10, 10), (1000, 10), (10_000, 10), (10, 100), (10, 1000)];
    for (services, policies) in points {
        for (metric, base, growth) in [
            ("from_pod_ns", 80.0, 1.05),
            ("to_pod_ns", 40.0, 1.50),
            ("from_network_ns", 60.0, 1.00),
        ] {
            let large = services == 10_000 || policies == 1000;
            let ns = if large { base * growth } else { base };
            runs.push(run(
                Benchmark::PerPacket,
                "skiff",
                (services, 2, policies),
                metric,
                "ns/packet",
                ns,
            ));
        }
    }
    runs.push(
        run(
            Benchmark::Scheduler,
            "skiff",
            (0, 0, 0),
            "pods_per_second",
            "pods/s",
            12_000.0,
        )
        .with_scale("pods", 10_000)
        .with_scale("nodes", 1000),
    );
    runs.push(run(
        Benchmark::NodeRss,
        "skiff",
        (10_000, 1, 1000),
        "peak_rss",
        "MiB",
        38.5,
    ));
    Results {
        machine: Machine {
            cpu: "Test CPU".into(),
            cores: 2,
            kernel: "6.18.44".into(),
            memory_mib: 24_105,
        },
        date: "2026-12-05".into(),
        runs,
    }
}

/// The targets table's row whose goal contains `needle`.
fn target_row<'a>(readme: &'a str, needle: &str) -> &'a str {
    let start = readme.find("## Targets").expect("a targets section");
    readme[start..]
        .lines()
        .find(|line| line.starts_with('|') && line.contains(needle))
        .unwrap_or_else(|| panic!("no target row with {needle:?} in\n{readme}"))
}

fn verdict_of(row: &str) -> &str {
    row.trim_end_matches('|')
        .rsplit('|')
        .next()
        .expect("cells")
        .trim()
        .trim_matches('*')
}

/// Opening and closing tags pair up (self-closing ones stand alone), and text holds no raw
/// `<` or `&` that is not an entity.
fn assert_balanced(svg: &str, name: &str) {
    assert!(svg.starts_with("<svg"), "{name} does not start with <svg");
    assert!(
        svg.trim_end().ends_with("</svg>"),
        "{name} does not end with </svg>"
    );
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "{name}: a bare & in {text:?}"
            );
        }
        let close = rest[open..].find('>').expect("an unclosed tag") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "{name}: a < inside tag {tag:?}");
        if let Some(closing) = tag.strip_prefix('/') {
            let top = stack
                .pop()
                .unwrap_or_else(|| panic!("{name}: </{closing}> closes nothing"));
            assert_eq!(top, closing.trim(), "{name}: </{closing}> closes <{top}>");
        } else if !tag.ends_with('/') {
            let element = tag.split_whitespace().next().expect("a tag name");
            stack.push(element.to_string());
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "{name}: unclosed {stack:?}");
}

fn rounded(mut results: Results) -> Results {
    let round = |x: &mut f64| *x = (*x * 1e6).round() / 1e6;
    for run in &mut results.runs {
        round(&mut run.median);
        round(&mut run.min);
        round(&mut run.max);
        run.samples.iter_mut().for_each(round);
    }
    results
}

#[test]
fn median_min_max_of_odd_and_even_counts() {
    let odd = spread(&[5.0, 1.0, 3.0]).unwrap();
    assert_eq!((odd.median, odd.min, odd.max), (3.0, 1.0, 5.0));
    let even = spread(&[4.0, 1.0, 3.0, 10.0]).unwrap();
    assert_eq!((even.median, even.min, even.max), (3.5, 1.0, 10.0));
    assert_eq!(median(&[7.0]).unwrap(), 7.0);

    let run = Run::from_samples(
        Benchmark::ConnRate,
        "skiff",
        (10_000, 1, 0),
        "connections_per_second",
        "conn/s",
        vec![2.0, 8.0, 4.0, 6.0],
    )
    .unwrap();
    assert_eq!((run.median, run.min, run.max), (5.0, 2.0, 8.0));
    assert_eq!((run.services, run.endpoints, run.policies), (10_000, 1, 0));
    assert_eq!(
        run.samples,
        vec![2.0, 8.0, 4.0, 6.0],
        "raw samples kept in order"
    );
}

#[test]
fn empty_or_non_finite_samples_are_errors() {
    assert_eq!(median(&[]), Err(StatsError::Empty));
    let error = Run::from_samples(
        Benchmark::NodeRss,
        "skiff",
        (10_000, 1, 1000),
        "peak_rss",
        "MiB",
        vec![],
    )
    .unwrap_err();
    assert_eq!(error.source, StatsError::Empty);
    assert_eq!(error.to_string(), "node_rss skiff peak_rss: no samples");
    assert!(matches!(
        spread(&[1.0, f64::NAN]),
        Err(StatsError::NotFinite(_))
    ));
}

#[test]
fn percentiles_interpolate_between_ranks() {
    let samples: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&samples, 0.0).unwrap(), 1.0);
    assert_eq!(percentile(&samples, 100.0).unwrap(), 100.0);
    assert!((percentile(&samples, 99.0).unwrap() - 99.01).abs() < 1e-9);
    assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0).unwrap(), 2.5);
    assert_eq!(percentile(&[], 50.0), Err(StatsError::Empty));
    assert_eq!(
        percentile(&[1.0], 101.0),
        Err(StatsError::Percentile(101.0))
    );
}

#[test]
fn dates_are_iso_utc() {
    assert_eq!(iso_date(0), "1970-01-01");
    assert_eq!(iso_date(951_782_400), "2000-02-29");
    assert_eq!(iso_date(1_798_761_599), "2026-12-31");
    assert_eq!(iso_date(1_798_761_600), "2027-01-01");
}

#[test]
fn machine_from_proc_text() {
    let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n\n\
                   processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n";
    let meminfo = "MemTotal:       24683772 kB\nMemFree:        23820108 kB\n";
    let machine = Machine::parse(cpuinfo, meminfo, "6.18.44-fc\n");
    assert_eq!(
        machine,
        Machine {
            cpu: "Intel(R) Xeon(R) Processor".into(),
            cores: 2,
            kernel: "6.18.44-fc".into(),
            memory_mib: 24_105,
        }
    );
    assert_eq!(
        machine.to_string(),
        "Intel(R) Xeon(R) Processor, 2 cores, 23.5 GiB, Linux 6.18.44-fc"
    );
    let unknown = Machine::parse("", "", "");
    assert_eq!(
        (unknown.cpu.as_str(), unknown.kernel.as_str()),
        ("unknown", "unknown")
    );
    // This machine's own, where the test runs on Linux.
    if Path::new("/proc/cpuinfo").exists() {
        assert!(Machine::read().cores > 0);
    }
}

#[test]
fn results_round_trip_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/results.json");
    let results = synthetic(0.98, 4.0);
    results.write(&path).unwrap();
    // serde_json's default float parser may land one ulp off (exact parsing is its
    // `float_roundtrip` feature, which would change serde_json for the whole workspace): the
    // figures are compared to a millionth.
    assert_eq!(
        rounded(Results::read(&path).unwrap()),
        rounded(results.clone())
    );

    let text = fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let first = &json["runs"][0];
    for key in [
        "benchmark",
        "variant",
        "services",
        "endpoints",
        "policies",
        "metric",
        "unit",
        "median",
        "min",
        "max",
        "samples",
    ] {
        assert!(first.get(key).is_some(), "run lacks {key}: {first}");
    }
    assert_eq!(first["benchmark"], "conn_rate");
    assert!(first.get("scale").is_none(), "an empty scale is left out");
    let scheduler = json["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["benchmark"] == "scheduler")
        .unwrap();
    assert_eq!(scheduler["scale"]["pods"], 10_000);
    let e2e = json["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["benchmark"] == "e2e_latency")
        .unwrap();
    assert_eq!(e2e["benchmark"], "e2e_latency");
    assert_eq!(json["date"], "2026-12-05");
    assert_eq!(json["machine"]["cores"], 2);

    // A variant nobody knows yet reads back as itself.
    let unknown = text.replace("\"nftables\"", "\"ebpf_other\"");
    fs::write(&path, unknown).unwrap();
    assert!(Results::read(&path)
        .unwrap()
        .runs
        .iter()
        .any(|r| r.variant == "ebpf_other"));
}

#[test]
fn read_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let error = Results::read(&missing).unwrap_err().to_string();
    assert!(error.contains("missing.json"), "{error}");
    let broken = dir.path().join("broken.json");
    fs::write(&broken, "{\"machine\":").unwrap();
    let error = Results::read(&broken).unwrap_err().to_string();
    assert!(
        error.starts_with("parsing ") && error.contains("broken.json"),
        "{error}"
    );
}

#[test]
fn replace_runs_keeps_the_other_benchmarks() {
    let mut results = synthetic(0.98, 4.0);
    let before = results.runs.len();
    let programming = results.runs_of(Benchmark::Programming).count();
    results.replace_runs(vec![run(
        Benchmark::Programming,
        "skiff",
        (100, 1, 0),
        "us_per_service",
        "us",
        1.0,
    )]);
    assert_eq!(results.runs.len(), before - programming + 1);
    assert_eq!(results.runs_of(Benchmark::Programming).count(), 1);
}

#[test]
fn targets_met_and_missed() {
    let met = synthetic(0.98, 4.0);
    let verdicts: BTreeMap<&str, Vec<Verdict>> =
        targets::evaluate(&met)
            .into_iter()
            .fold(BTreeMap::new(), |mut all, t| {
                all.entry(t.key).or_default().push(t.verdict);
                all
            });
    assert_eq!(verdicts[targets::CONN_RATE_VS_DIRECT], [Verdict::Met]);
    assert_eq!(verdicts[targets::CONN_RATE_VS_IPTABLES], [Verdict::Met]);
    assert_eq!(verdicts[targets::PROGRAMMING], [Verdict::Met]);
    assert_eq!(verdicts[targets::E2E_LATENCY_P99], [Verdict::Missed]);
    // from_network flat, from_pod 1.05 (met), to_pod 1.50 (missed): one row per program.
    assert_eq!(
        verdicts[targets::PER_PACKET_FLAT],
        [Verdict::Met, Verdict::Met, Verdict::Missed]
    );
    assert_eq!(verdicts[targets::SCHEDULER], [Verdict::Met]);
    assert_eq!(verdicts[targets::NODE_RSS], [Verdict::Met]);
    for key in targets::ALL {
        assert!(verdicts.contains_key(key), "no row for {key}");
    }

    let missed = synthetic(0.90, 25.0);
    let evaluated = targets::evaluate(&missed);
    let of = |key| evaluated.iter().find(|t| t.key == key).unwrap();
    assert_eq!(of(targets::CONN_RATE_VS_DIRECT).verdict, Verdict::Missed);
    assert!((of(targets::CONN_RATE_VS_DIRECT).ratio.unwrap() - 0.90).abs() < 1e-9);
    // 0.90 of direct is still 3x iptables.
    assert_eq!(of(targets::CONN_RATE_VS_IPTABLES).verdict, Verdict::Met);
    assert_eq!(of(targets::PROGRAMMING).verdict, Verdict::Missed);

    // Just above iptables is not "clearly" above it.
    let mut close = synthetic(0.98, 4.0);
    for run in close.runs.iter_mut().filter(|r| r.variant == "iptables") {
        run.median = 50_000.0 * 0.98 / 1.05;
    }
    let evaluated = targets::evaluate(&close);
    let row = evaluated
        .iter()
        .find(|t| t.key == targets::CONN_RATE_VS_IPTABLES)
        .unwrap();
    assert_eq!(row.verdict, Verdict::Missed);

    // Without the runs a target names, it is not measured, not guessed.
    let mut partial = synthetic(0.98, 4.0);
    partial
        .runs
        .retain(|r| r.services != 10_000 && r.benchmark != Benchmark::NodeRss);
    let evaluated = targets::evaluate(&partial);
    let of = |key| evaluated.iter().find(|t| t.key == key).unwrap();
    assert_eq!(
        of(targets::CONN_RATE_VS_DIRECT).verdict,
        Verdict::NotMeasured
    );
    assert_eq!(of(targets::NODE_RSS).verdict, Verdict::NotMeasured);
}

#[test]
fn report_has_targets_sections_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let results = synthetic(0.98, 4.0);
    let notes = BTreeMap::from([(
        targets::E2E_LATENCY_P99.to_string(),
        "the API server batches watch events every 100 ms".to_string(),
    )]);
    let written = report::write(&results, dir.path(), &notes).unwrap();
    // To look at the plots: SKIFF_REPORT_PREVIEW=/some/dir keeps a copy of this report there.
    if let Some(preview) = std::env::var_os("SKIFF_REPORT_PREVIEW") {
        report::write(&results, Path::new(&preview), &notes).unwrap();
    }
    let readme = fs::read_to_string(dir.path().join("README.md")).unwrap();

    // The targets table comes before any benchmark's section.
    let targets_at = readme.find("## Targets").unwrap();
    let first_section = readme.find("## Connection rate").unwrap();
    assert!(targets_at < first_section);
    assert!(readme.contains("Test CPU, 2 cores, 23.5 GiB, Linux 6.18.44"));
    assert!(readme.contains("2026-12-05"));
    assert!(readme.contains("`cargo xtask bench --quick`"));

    assert_eq!(verdict_of(target_row(&readme, "97% of direct")), "met");
    assert!(target_row(&readme, "97% of direct").contains("0.98× direct"));
    assert_eq!(
        verdict_of(target_row(&readme, "clearly above iptables")),
        "met"
    );
    assert_eq!(verdict_of(target_row(&readme, "programming ≤ 10")), "met");
    assert_eq!(verdict_of(target_row(&readme, "p99 ≤ 100 ms")), "missed");
    assert_eq!(verdict_of(target_row(&readme, "`to_pod` flat")), "missed");
    assert_eq!(verdict_of(target_row(&readme, "`from_pod` flat")), "met");
    assert_eq!(verdict_of(target_row(&readme, "scheduler ≥ 5,000")), "met");
    assert_eq!(verdict_of(target_row(&readme, "RSS ≤ 50 MiB")), "met");
    // The note explains its miss; a miss without one says so.
    assert!(readme.contains("`e2e_latency_p99` (missed): the API server batches"));
    assert!(readme.contains("`per_packet_flat` (missed): no explanation was recorded"));

    // A 0.90x skiff misses the direct target.
    let missed_dir = tempfile::tempdir().unwrap();
    report::write(&synthetic(0.90, 25.0), missed_dir.path(), &BTreeMap::new()).unwrap();
    let missed = fs::read_to_string(missed_dir.path().join("README.md")).unwrap();
    assert_eq!(verdict_of(target_row(&missed, "97% of direct")), "missed");
    assert!(target_row(&missed, "97% of direct").contains("0.90× direct"));
    assert_eq!(
        verdict_of(target_row(&missed, "programming ≤ 10")),
        "missed"
    );

    // One section and one plot per benchmark, each plot embedded.
    for benchmark in Benchmark::ALL {
        assert!(
            readme.contains(&format!("(`{benchmark}`)")),
            "no section for {benchmark}"
        );
        let file = format!("{benchmark}.svg");
        assert!(
            readme.contains(&format!("]({file})")),
            "{file} not embedded"
        );
        assert!(
            written.contains(&dir.path().join(&file)),
            "{file} not written"
        );
    }
    assert_eq!(written.len(), 1 + Benchmark::ALL.len());
    assert_eq!(written[0], dir.path().join("README.md"));

    // Ratios: skiff 0.98x direct at 10k services; iptables' programming as a multiple of skiff.
    let conn = &readme[first_section..readme.find("## Request rate").unwrap()];
    let skiff_10k = conn
        .lines()
        .find(|l| l.starts_with("| `skiff` | 10,000 "))
        .unwrap();
    assert!(skiff_10k.ends_with("| 0.98× |"), "{skiff_10k}");
    assert!(conn.contains("No `ipvs` runs"));
    let programming = &readme[readme.find("## Programming time").unwrap()..];
    let iptables_50k = programming
        .lines()
        .find(|l| l.starts_with("| `iptables` | 50,000 "))
        .unwrap();
    assert!(iptables_50k.ends_with("| 510× |"), "{iptables_50k}");

    // Every plot well formed, sans-serif on white, with its variants (or programs) named.
    for path in written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
    {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let svg = fs::read_to_string(path).unwrap();
        assert_balanced(&svg, &name);
        assert!(svg.contains(r#"font-family="sans-serif""#), "{name}");
        assert!(svg.contains(r#"fill="white""#), "{name}");
        let benchmark = results
            .runs
            .iter()
            .find(|r| format!("{}.svg", r.benchmark) == name)
            .unwrap()
            .benchmark;
        for run in results.runs_of(benchmark) {
            assert!(
                svg.contains(&format!(">{}</tspan>", run.variant))
                    || svg.contains(&format!(">{}, ", run.variant))
                    || svg.contains(&format!(" {}'s", run.variant)),
                "{name} does not name {}",
                run.variant
            );
        }
    }
    let conn_svg = fs::read_to_string(dir.path().join("conn_rate.svg")).unwrap();
    for variant in ["direct", "skiff", "iptables", "nftables"] {
        assert!(
            conn_svg.contains(&format!(">{variant}</tspan>")),
            "legend lacks {variant}"
        );
    }
    assert!(conn_svg.contains("#1f5fbf"), "skiff's blue");
    for tick in [">0<", ">1k<", ">5k<", ">10k<", ">30k<"] {
        assert!(conn_svg.contains(tick), "conn_rate.svg lacks tick {tick}");
    }
    let per_packet = fs::read_to_string(dir.path().join("per_packet.svg")).unwrap();
    for program in ["from_pod", "to_pod", "from_network"] {
        assert!(per_packet.contains(&format!(">{program}</tspan>")));
    }
    let rss = fs::read_to_string(dir.path().join("node_rss.svg")).unwrap();
    assert!(
        rss.contains("stroke-dasharray"),
        "the target is a dashed line"
    );
}

#[test]
fn benchmarks_without_runs_get_no_plot_or_section() {
    let dir = tempfile::tempdir().unwrap();
    let mut results = synthetic(0.98, 4.0);
    results.runs.retain(|r| r.benchmark == Benchmark::Scheduler);
    let written = report::write(&results, dir.path(), &BTreeMap::new()).unwrap();
    assert_eq!(
        written,
        [
            dir.path().join("README.md"),
            dir.path().join("scheduler.svg")
        ]
    );
    let readme = fs::read_to_string(&written[0]).unwrap();
    assert!(!readme.contains("(`conn_rate`)"));
    assert_eq!(
        verdict_of(target_row(&readme, "97% of direct")),
        "not measured"
    );
    assert_eq!(verdict_of(target_row(&readme, "scheduler ≥")), "met");
}

/// What `--quick` and future variants produce: one sample each, two small sizes, every
/// kube-proxy mode plus ones the report does not know, programming at several endpoint
/// counts per N, per-packet at a single point.
fn odd() -> Results {
    let one = |benchmark, variant: &str, axes, metric: &str, unit: &str, value: f64| {
        Run::from_samples(benchmark, variant, axes, metric, unit, vec![value]).unwrap()
    };
    let mut runs = Vec::new();
    let variants = [
        "direct",
        "skiff",
        "skiff_tc",
        "iptables",
        "nftables",
        "ipvs",
        "cilium_like",
    ];
    for services in [0, 10] {
        for (i, variant) in variants.iter().enumerate() {
            let rate = 30_000.0 - i as f64 * 3000.0;
            runs.push(one(
                Benchmark::ConnRate,
                variant,
                (services, 1, 0),
                "connections_per_second",
                "conn/s",
                rate,
            ));
            runs.push(one(
                Benchmark::Throughput,
                variant,
                (services, 1, 0),
                "throughput",
                "Mbit/s",
                rate / 3.0,
            ));
        }
    }
    for (n, m) in [(10, 1), (10, 4), (100, 1), (100, 4)] {
        for (variant, us) in [("skiff", 3.0), ("iptables", 30.0), ("nftables", 12.0)] {
            runs.push(one(
                Benchmark::Programming,
                variant,
                (n, m, 0),
                "us_per_service",
                "us",
                us * m as f64,
            ));
        }
    }
    for metric in ["from_pod_ns", "to_pod_ns"] {
        runs.push(one(
            Benchmark::PerPacket,
            "skiff",
            (10, 2, 10),
            metric,
            "ns/packet",
            70.0,
        ));
    }
    runs.push(one(
        Benchmark::NodeRss,
        "skiff",
        (10, 1, 10),
        "peak_rss",
        "MiB",
        61.0,
    ));
    runs.push(one(
        Benchmark::NodeRss,
        "skiff",
        (100, 1, 10),
        "peak_rss",
        "MiB",
        64.0,
    ));
    Results {
        machine: Machine::parse("", "", ""),
        date: "2026-12-06".into(),
        runs,
    }
}

#[test]
fn plots_cope_with_quick_and_unknown_results() {
    let dir = tempfile::tempdir().unwrap();
    let results = odd();
    let written = report::write(&results, dir.path(), &BTreeMap::new()).unwrap();
    if let Some(preview) = std::env::var_os("SKIFF_REPORT_PREVIEW") {
        report::write(&results, &Path::new(&preview).join("odd"), &BTreeMap::new()).unwrap();
    }
    for path in written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
    {
        let svg = fs::read_to_string(path).unwrap();
        assert_balanced(&svg, &path.display().to_string());
        assert!(
            !svg.contains("NaN") && !svg.contains("inf"),
            "{}",
            path.display()
        );
    }
    let conn = fs::read_to_string(dir.path().join("conn_rate.svg")).unwrap();
    for variant in ["skiff_tc", "ipvs", "cilium_like"] {
        assert!(
            conn.contains(&format!(">{variant}</tspan>")),
            "legend lacks {variant}"
        );
    }
    let programming = fs::read_to_string(dir.path().join("programming.svg")).unwrap();
    assert!(programming.contains(">skiff, 4 endpoints</tspan>"));
    let readme = fs::read_to_string(&written[0]).unwrap();
    assert!(!readme.contains("No `ipvs` runs"));
    assert_eq!(
        verdict_of(target_row(&readme, "`to_pod` flat")),
        "not measured"
    );
    assert_eq!(verdict_of(target_row(&readme, "RSS ≤ 50 MiB")), "missed");
    assert!(
        target_row(&readme, "RSS ≤ 50 MiB").contains("64.0 MiB"),
        "the worst size counts"
    );
}
