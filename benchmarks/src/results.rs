//! The `results.json` schema other tools read, and the statistics every figure is reported
//! with.
//!
//! This module owns the file format of `docs/benchmarks/results.json`, the per-run statistics
//! (median, min, max of the samples, percentiles), the description of the machine the run
//! happened on and the run's date. Nothing here measures anything: each benchmark hands its
//! raw samples to [`Run::from_samples`].
//!
//! # The file
//!
//! ```json
//! {
//!   "machine": {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2,
//!               "kernel": "6.18.44", "memory_mib": 24105},
//!   "date": "2026-12-05",
//!   "runs": [
//!     {"benchmark": "conn_rate", "variant": "skiff",
//!      "services": 10000, "endpoints": 1, "policies": 0,
//!      "metric": "connections_per_second", "unit": "conn/s",
//!      "median": 48210.0, "min": 47100.0, "max": 49020.5,
//!      "samples": [47100.0, 48210.0, 49020.5]}
//!   ]
//! }
//! ```
//!
//! A run may also carry `"scale": {"pods": 10000, "nodes": 1000}` for sizes that are not
//! services, endpoints or policies; it is left out when empty. `variant` is a plain string so
//! that new ways of reaching a service can be added without a schema change; the known ones
//! are in [`variant`].
//!
//! # Metric contract
//!
//! The report and any other reader look runs up by `benchmark`, `variant` and `metric`:
//!
//! | benchmark | metric | unit | axes | variants |
//! |---|---|---|---|---|
//! | `conn_rate` | `connections_per_second` | `conn/s` | services = other services installed (0, 1000, 5000, 10000, 30000), endpoints = the target service's | `direct`, `skiff`, `iptables`, `nftables` (`ipvs` where the kernel has `CONFIG_IP_VS`) |
//! | `rr_rate` | `requests_per_second` | `req/s` | as `conn_rate` | as `conn_rate` |
//! | `throughput` | `throughput` | `Mbit/s` | as `conn_rate` | `direct`, `skiff` (maybe `iptables`, `nftables`) |
//! | `programming` | `us_per_service` | `us` | services = N (100..50000), endpoints = M per service | `skiff`, `iptables`, `nftables` |
//! | `e2e_latency` | `p50`, `p99` | `ms` | | `skiff` |
//! | `per_packet` | `<program>_ns`, e.g. `from_pod_ns` | `ns/packet` | services (10, 1000, 10000) and policies (10, 100, 1000) | `skiff` |
//! | `scheduler` | `pods_per_second` | `pods/s` | scale `pods`, `nodes` | `skiff` |
//! | `node_rss` | `peak_rss` | `MiB` | services 10000, policies 1000 | `skiff` |

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, fs, io,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// What was measured; serialized in snake_case (`conn_rate`, `e2e_latency`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Benchmark {
    ConnRate,
    RrRate,
    Throughput,
    Programming,
    E2eLatency,
    PerPacket,
    Scheduler,
    NodeRss,
}

impl Benchmark {
    /// Every benchmark, in the order the report presents them.
    pub const ALL: [Benchmark; 8] = [
        Benchmark::ConnRate,
        Benchmark::RrRate,
        Benchmark::Throughput,
        Benchmark::Programming,
        Benchmark::E2eLatency,
        Benchmark::PerPacket,
        Benchmark::Scheduler,
        Benchmark::NodeRss,
    ];

    /// The name used in `results.json` (and for the plot files).
    pub fn as_str(self) -> &'static str {
        match self {
            Benchmark::ConnRate => "conn_rate",
            Benchmark::RrRate => "rr_rate",
            Benchmark::Throughput => "throughput",
            Benchmark::Programming => "programming",
            Benchmark::E2eLatency => "e2e_latency",
            Benchmark::PerPacket => "per_packet",
            Benchmark::Scheduler => "scheduler",
            Benchmark::NodeRss => "node_rss",
        }
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The variants the benchmarks write today. Others may appear: readers must not reject them.
pub mod variant {
    /// The server pod's own address, with no service machinery at all: the limit.
    pub const DIRECT: &str = "direct";
    /// Skiff's eBPF service translation.
    pub const SKIFF: &str = "skiff";
    /// kube-proxy's iptables mode.
    pub const IPTABLES: &str = "iptables";
    /// kube-proxy's nftables mode.
    pub const NFTABLES: &str = "nftables";
    /// kube-proxy's IPVS mode (needs a kernel with `CONFIG_IP_VS`).
    pub const IPVS: &str = "ipvs";
}

/// The three sizes every run is placed on; `(services, endpoints, policies)` converts into it
/// (one tuple type only, so that a literal such as `(0, 0, 0)` needs no annotation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Axes {
    pub services: u64,
    pub endpoints: u64,
    pub policies: u64,
}

impl From<(usize, usize, usize)> for Axes {
    fn from((services, endpoints, policies): (usize, usize, usize)) -> Self {
        Axes {
            services: services as u64,
            endpoints: endpoints as u64,
            policies: policies as u64,
        }
    }
}

/// One figure: a benchmark's metric for one variant at one size, with its raw samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub benchmark: Benchmark,
    pub variant: String,
    pub services: u64,
    pub endpoints: u64,
    pub policies: u64,
    /// Sizes that are none of the three above (the scheduler's pods and nodes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scale: BTreeMap<String, u64>,
    pub metric: String,
    pub unit: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Run {
    /// A run from its raw samples: median, min and max are computed here so that every
    /// benchmark reports them the same way.
    pub fn from_samples(
        benchmark: Benchmark,
        variant: impl AsRef<str>,
        axes: impl Into<Axes>,
        metric: &str,
        unit: &str,
        samples: Vec<f64>,
    ) -> Result<Run, RunError> {
        let variant = variant.as_ref().to_string();
        let context = |source| RunError {
            benchmark,
            variant: variant.clone(),
            metric: metric.to_string(),
            source,
        };
        let Spread { median, min, max } = spread(&samples).map_err(context)?;
        let axes = axes.into();
        Ok(Run {
            benchmark,
            variant: variant.clone(),
            services: axes.services,
            endpoints: axes.endpoints,
            policies: axes.policies,
            scale: BTreeMap::new(),
            metric: metric.to_string(),
            unit: unit.to_string(),
            median,
            min,
            max,
            samples,
        })
    }

    /// The same run with a size that is not services, endpoints or policies.
    pub fn with_scale(mut self, name: &str, value: u64) -> Run {
        self.scale.insert(name.to_string(), value);
        self
    }
}

/// A statistic asked of samples it cannot describe.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("no samples")]
    Empty,
    /// NaN or infinity: JSON cannot hold it (serde_json writes `null`, which then fails to
    /// read back), and it would poison the median.
    #[error("sample {0} is not a finite number")]
    NotFinite(f64),
    #[error("percentile {0} is outside 0..=100")]
    Percentile(f64),
}

/// A run that could not be built from its samples, naming the run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{benchmark} {variant} {metric}: {source}")]
pub struct RunError {
    pub benchmark: Benchmark,
    pub variant: String,
    pub metric: String,
    #[source]
    pub source: StatsError,
}

/// Median, min and max of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

fn sorted(samples: &[f64]) -> Result<Vec<f64>, StatsError> {
    if samples.is_empty() {
        return Err(StatsError::Empty);
    }
    if let Some(&bad) = samples.iter().find(|s| !s.is_finite()) {
        return Err(StatsError::NotFinite(bad));
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(sorted)
}

/// Median (the mean of the middle two for an even count), min and max.
pub fn spread(samples: &[f64]) -> Result<Spread, StatsError> {
    let sorted = sorted(samples)?;
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Ok(Spread {
        median,
        min: sorted[0],
        max: sorted[n - 1],
    })
}

/// The median of the samples; the mean of the middle two for an even count.
pub fn median(samples: &[f64]) -> Result<f64, StatsError> {
    spread(samples).map(|s| s.median)
}

/// The `p`th percentile (0..=100), interpolated linearly between the two nearest ranks, so
/// that `percentile(s, 50.0)` is the median.
pub fn percentile(samples: &[f64], p: f64) -> Result<f64, StatsError> {
    if !(0.0..=100.0).contains(&p) {
        return Err(StatsError::Percentile(p));
    }
    let sorted = sorted(samples)?;
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (below, above) = (rank.floor() as usize, rank.ceil() as usize);
    let weight = rank - below as f64;
    Ok(sorted[below] + (sorted[above] - sorted[below]) * weight)
}

/// The machine a run happened on, as far as it explains the figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The CPU's model name.
    pub cpu: String,
    /// Logical CPUs the kernel lists.
    pub cores: u32,
    /// The kernel release, as `uname -r` prints it.
    pub kernel: String,
    /// Total memory, in MiB.
    pub memory_mib: u64,
}

const UNKNOWN: &str = "unknown";

impl Machine {
    /// This machine, from /proc/cpuinfo, /proc/meminfo and the kernel release. A field that
    /// cannot be read is "unknown" (or 0) rather than an error: the description explains the
    /// figures, it is no reason to throw a finished run away.
    pub fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        // The same string uname(2) returns as the release, without a libc call.
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut machine = Machine::parse(&cpuinfo, &meminfo, &kernel);
        if machine.cores == 0 {
            machine.cores = std::thread::available_parallelism().map_or(0, |n| n.get() as u32);
        }
        machine
    }

    /// A machine from the text of /proc/cpuinfo, /proc/meminfo and the kernel release.
    pub fn parse(cpuinfo: &str, meminfo: &str, kernel: &str) -> Machine {
        let field = |line: &str, name: &str| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        };
        // x86 says "model name"; arm64 has no model string, only "CPU implementer"/"CPU part"
        // codes, and some boards give "Hardware" instead.
        let cpu = ["model name", "Hardware", "cpu model", "cpu"]
            .iter()
            .find_map(|name| cpuinfo.lines().find_map(|line| field(line, name)))
            .filter(|cpu| !cpu.is_empty())
            .unwrap_or_else(|| UNKNOWN.to_string());
        let cores = cpuinfo
            .lines()
            .filter(|line| field(line, "processor").is_some())
            .count() as u32;
        let memory_mib = meminfo
            .lines()
            .find_map(|line| field(line, "MemTotal"))
            .and_then(|value| value.trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        let kernel = match kernel.trim() {
            "" => UNKNOWN.to_string(),
            release => release.to_string(),
        };
        Machine {
            cpu,
            cores,
            kernel,
            memory_mib,
        }
    }
}

impl fmt::Display for Machine {
    /// "Intel(R) Xeon(R) Processor, 2 cores, 23.5 GiB, Linux 6.18.44".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {} cores, {:.1} GiB, Linux {}",
            self.cpu,
            self.cores,
            self.memory_mib as f64 / 1024.0,
            self.kernel
        )
    }
}

/// Today's date (UTC), YYYY-MM-DD.
pub fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    iso_date(secs)
}

/// The UTC date of a Unix time, YYYY-MM-DD.
pub fn iso_date(unix_secs: u64) -> String {
    // Howard Hinnant's days-to-civil: the proleptic Gregorian calendar in 400-year eras of
    // 146,097 days, with years starting in March so the leap day falls at a year's end.
    let days = (unix_secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `results.json`: where and when, and every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub date: String,
    pub runs: Vec<Run>,
}

/// Reading or writing `results.json` failed; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("serializing the results for {}: {source}", path.display())]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Results {
    /// Runs measured now, on this machine.
    pub fn new(runs: Vec<Run>) -> Results {
        Results {
            machine: Machine::read(),
            date: today(),
            runs,
        }
    }

    pub fn read(path: &Path) -> Result<Results, ResultsError> {
        let text = fs::read_to_string(path).map_err(|source| ResultsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ResultsError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the results as pretty JSON, creating the directory if needed. The file is
    /// written beside and renamed into place, so a run cut short never leaves a truncated
    /// results.json that the next `--only` run would fail to merge with.
    pub fn write(&self, path: &Path) -> Result<(), ResultsError> {
        let write_error = |source| ResultsError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut text =
            serde_json::to_string_pretty(self).map_err(|source| ResultsError::Serialize {
                path: path.to_path_buf(),
                source,
            })?;
        text.push('\n');
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(write_error)?;
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        fs::write(&partial, text).map_err(write_error)?;
        fs::rename(&partial, path).map_err(write_error)
    }

    /// The runs of one benchmark, in the order they were measured.
    pub fn runs_of(&self, benchmark: Benchmark) -> impl Iterator<Item = &Run> {
        self.runs
            .iter()
            .filter(move |run| run.benchmark == benchmark)
    }

    /// Replaces the runs of every benchmark that `runs` has with `runs`, keeping the others:
    /// `--only programming` re-measures programming and leaves the traffic figures as they
    /// were.
    pub fn replace_runs(&mut self, runs: Vec<Run>) {
        let fresh: BTreeSet<Benchmark> = runs.iter().map(|run| run.benchmark).collect();
        self.runs.retain(|run| !fresh.contains(&run.benchmark));
        self.runs.extend(runs);
    }
}
