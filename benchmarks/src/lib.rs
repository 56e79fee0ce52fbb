//! Skiff's benchmarks against kube-proxy's modes (`cargo xtask bench`), run inside the lab.
//!
//! - [`results`]: the `results.json` schema other tools read, and the statistics (median,
//!   spread) every figure is reported with.
//! - [`report`]: the markdown report and SVG plots written beside `results.json`.
//! - [`kube_proxy`]: the rule structures kube-proxy's iptables and nftables modes write for
//!   the same services and endpoints, generated as `iptables-restore` and `nft -f` input.
//! - [`workload`]: the services and policies every benchmark installs.
//! - one module per benchmark: [`traffic`] (conn_rate, rr_rate, throughput),
//!   [`programming`], [`e2e_latency`], [`per_packet`], [`scheduler`], [`node_rss`].

pub mod e2e_latency;
pub mod kube_proxy;
pub mod node_rss;
pub mod per_packet;
pub mod programming;
pub mod report;
pub mod results;
pub mod scheduler;
pub mod traffic;
pub mod workload;

/// How big and how long: the full run, or `--quick`'s tiny sizes that only keep every
/// benchmark working.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Runs behind every figure (its median and spread).
    pub samples: usize,
    /// Other services installed for the traffic benchmarks.
    pub traffic_services: Vec<usize>,
    pub traffic_seconds: f64,
    /// (services, endpoints per service) for programming time.
    pub programming: Vec<(usize, usize)>,
    pub per_packet_services: Vec<usize>,
    pub per_packet_policies: Vec<usize>,
    pub per_packet_repeat: u32,
    /// (pods, nodes)
    pub scheduler: (usize, usize),
    /// (services, policies)
    pub rss: (usize, usize),
    /// Endpoint changes per e2e latency sample.
    pub e2e_changes: usize,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            samples: 5,
            traffic_services: vec![0, 1_000, 5_000, 10_000, 30_000],
            traffic_seconds: 3.0,
            programming: vec![(1_000, 2), (10_000, 2), (10_000, 10), (50_000, 2)],
            per_packet_services: vec![10, 1_000, 10_000],
            per_packet_policies: vec![10, 100, 1_000],
            per_packet_repeat: 100_000,
            scheduler: (10_000, 1_000),
            rss: (10_000, 1_000),
            e2e_changes: 20,
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            samples: 2,
            traffic_services: vec![0, 100],
            traffic_seconds: 0.3,
            programming: vec![(100, 2)],
            per_packet_services: vec![10, 100],
            per_packet_policies: vec![10, 20],
            per_packet_repeat: 1_000,
            scheduler: (500, 50),
            rss: (100, 10),
            e2e_changes: 3,
        }
    }
}
