//! What kube-proxy programs for a set of services, generated the way its iptables and
//! nftables proxiers lay it out, so the benchmark loads the real structure into a lab
//! node's own network namespace.
//!
//! # Why this exists
//!
//! Skiff replaces kube-proxy, so its benchmarks compare against kube-proxy's data planes.
//! Running kube-proxy itself would need an API server, and its cost depends almost entirely
//! on the *shape* of what it writes into the kernel: one rule per service in a linear
//! `KUBE-SERVICES` chain and a chain per service and per endpoint (iptables mode), or a
//! verdict map plus a chain per service and per endpoint (nftables mode). This module
//! reproduces that shape faithfully — the same chain names (the same SHA-256/base32 hashes),
//! rules, comments, marks and probabilities — from a plain list of [`Service`]s, so that the
//! kernel walks the same structure a kube-proxy node would and the load commands do the
//! same work.
//!
//! It is written from kube-proxy's documented and observable behaviour (what
//! `iptables-save` and `nft list ruleset` show on a kube-proxy node), covering ClusterIP
//! services with TCP or UDP ports; NodePorts, external IPs, load balancers, session
//! affinity and traffic policies are left out (their chains exist but stay empty).
//!
//! # Only in the lab
//!
//! The rules are meant for the network namespaces of a `skiff_lab::Lab` node and nowhere
//! else: the loaders always run the command through `ip netns exec NETNS`, and refuse an
//! empty namespace name, so they never touch the machine's own iptables or nftables.
//!
//! - [`iptables::restore_input`]: `iptables-restore` input (`*filter` and `*nat`), loaded by
//!   [`load_iptables`] / [`load_iptables_with`] through iptables-nft or iptables-legacy.
//! - [`nftables::script`]: `nft -f` input for `table ip kube-proxy`, loaded by [`load_nft`].
//!
//! The nftables loader needs the `nft` command (Debian package `nftables`).

mod hash;
pub mod iptables;
pub mod nftables;

use std::{
    fmt,
    io::Write,
    net::{Ipv4Addr, SocketAddrV4},
    process::{Command, ExitStatus, Stdio},
    str::FromStr,
    time::{Duration, Instant},
};

/// kube-proxy's masquerade mark (`--iptables-masquerade-bit` 14, the default).
pub const MASQUERADE_MARK: u32 = 0x4000;

/// A service port's transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The lower-case name iptables, nftables and the chain-name hashes use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One port of a ClusterIP service and its ready endpoints, as kube-proxy sees it (a
/// Kubernetes service with several ports is several of these with the same name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// The port's name; may be empty for a single-port service.
    pub port_name: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// Ready endpoints, in the order the rules list them. Empty: the service rejects.
    pub endpoints: Vec<SocketAddrV4>,
}

impl Service {
    /// A TCP service port.
    pub fn tcp(
        namespace: &str,
        name: &str,
        port_name: &str,
        cluster_ip: Ipv4Addr,
        port: u16,
        endpoints: Vec<SocketAddrV4>,
    ) -> Service {
        Service {
            namespace: namespace.to_string(),
            name: name.to_string(),
            port_name: port_name.to_string(),
            cluster_ip,
            port,
            protocol: Protocol::Tcp,
            endpoints,
        }
    }

    /// kube-proxy's name for a service port: `NAMESPACE/NAME:PORTNAME`, or `NAMESPACE/NAME`
    /// when the port has no name. Comments and the iptables chain hashes are built from it.
    pub fn port_name_string(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }
}

/// `count` services of the shape a benchmark fills a node with: `bench/svc-NNNNN` port
/// `http` (TCP 80), ClusterIPs from `10.100.0.1` up (inside the default service range
/// `10.96.0.0/12`, away from `10.96.0.0/16` where tests put their real services), each with
/// `endpoints_per_service` endpoints on port 8080 in `10.244.250.0/23` (inside the lab's
/// cluster CIDR but past every lab node's pod CIDR, so nothing answers there).
///
/// Panics beyond 700,000 services or 400 endpoints per service (the ranges would run out).
pub fn filler_services(count: usize, endpoints_per_service: usize) -> Vec<Service> {
    assert!(count <= 700_000, "at most 700,000 filler services");
    assert!(
        endpoints_per_service <= 400,
        "at most 400 endpoints per filler service"
    );
    let first_ip = u32::from(Ipv4Addr::new(10, 100, 0, 1));
    let first_endpoint = u32::from(Ipv4Addr::new(10, 244, 250, 10));
    (0..count)
        .map(|i| {
            let endpoints = (0..endpoints_per_service)
                .map(|j| {
                    let k = (i * endpoints_per_service + j) % 400;
                    SocketAddrV4::new(Ipv4Addr::from(first_endpoint + k as u32), 8080)
                })
                .collect();
            Service::tcp(
                "bench",
                &format!("svc-{i:05}"),
                "http",
                Ipv4Addr::from(first_ip + i as u32),
                80,
                endpoints,
            )
        })
        .collect()
}

/// An IPv4 prefix such as the cluster (pod) CIDR `10.244.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Panics if `prefix` is over 32.
    pub fn new(address: Ipv4Addr, prefix: u8) -> Ipv4Cidr {
        assert!(prefix <= 32, "IPv4 prefix length {prefix} is over 32");
        Ipv4Cidr { address, prefix }
    }

    /// The lab's cluster CIDR: every node's pod CIDR `10.244.N.0/24` is inside it.
    pub fn lab_cluster() -> Ipv4Cidr {
        Ipv4Cidr::new(Ipv4Addr::new(10, 244, 0, 0), 16)
    }
}

impl From<(Ipv4Addr, u8)> for Ipv4Cidr {
    fn from((address, prefix): (Ipv4Addr, u8)) -> Ipv4Cidr {
        Ipv4Cidr::new(address, prefix)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Ipv4Cidr, String> {
        let (address, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let address = address
            .parse()
            .map_err(|e| format!("{s:?}: bad address: {e}"))?;
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: bad prefix length"))?;
        Ok(Ipv4Cidr { address, prefix })
    }
}

/// Loading rules into a namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("refusing to load `{command}` without a network namespace")]
    NoNamespace { command: String },
    #[error("could not run `{command}` in network namespace {netns}: {source}")]
    Spawn {
        command: String,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` in network namespace {netns} failed ({status}): {stderr}")]
    Failed {
        command: String,
        netns: String,
        status: ExitStatus,
        stderr: String,
    },
}

pub type Result<T, E = LoadError> = std::result::Result<T, E>;

/// Which iptables implementation loads the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IptablesBackend {
    /// `iptables-restore`: whatever the machine's alternatives select (nf_tables on Debian
    /// 12 and here).
    System,
    /// `iptables-nft-restore`: iptables rules stored as nftables (`table ip nat` etc.).
    Nft,
    /// `iptables-legacy-restore`: the x_tables kernel interface (needs
    /// `CONFIG_IP_NF_IPTABLES`).
    Legacy,
}

impl IptablesBackend {
    pub fn restore_command(self) -> &'static str {
        match self {
            IptablesBackend::System => "iptables-restore",
            IptablesBackend::Nft => "iptables-nft-restore",
            IptablesBackend::Legacy => "iptables-legacy-restore",
        }
    }

    pub fn save_command(self) -> &'static str {
        match self {
            IptablesBackend::System => "iptables-save",
            IptablesBackend::Nft => "iptables-nft-save",
            IptablesBackend::Legacy => "iptables-legacy-save",
        }
    }

    /// A short name for reports.
    pub fn label(self) -> &'static str {
        match self {
            IptablesBackend::System => "iptables",
            IptablesBackend::Nft => "iptables-nft",
            IptablesBackend::Legacy => "iptables-legacy",
        }
    }
}

/// Loads `input` (from [`iptables::restore_input`]) into network namespace `netns` with
/// `iptables-restore`, and returns how long the command took. Each table in the input
/// replaces that table's contents, so loading again replaces the rules.
pub fn load_iptables(netns: &str, input: &str) -> Result<Duration> {
    load_iptables_with(IptablesBackend::System, netns, input)
}

/// [`load_iptables`] through a chosen backend.
///
/// The command waits for the machine-wide xtables lock (`-w`, as kube-proxy passes it), so
/// loads into different namespaces at once queue up instead of failing; with the legacy
/// backend a wait for another load is part of the measured time.
pub fn load_iptables_with(backend: IptablesBackend, netns: &str, input: &str) -> Result<Duration> {
    let args = [backend.restore_command(), "-w", XTABLES_LOCK_WAIT_S];
    run_in_netns(netns, &args, Some(input)).map(|(elapsed, _)| elapsed)
}

/// How long (seconds) an iptables load waits for the xtables lock.
const XTABLES_LOCK_WAIT_S: &str = "300";

/// Loads `script` (from [`nftables::script`]) into network namespace `netns` with
/// `nft -f -` (one atomic transaction), and returns how long the command took.
pub fn load_nft(netns: &str, script: &str) -> Result<Duration> {
    run_in_netns(netns, &["nft", "-f", "-"], Some(script)).map(|(elapsed, _)| elapsed)
}

/// `iptables-save` of `table` (`nat`, `filter`) in network namespace `netns`.
pub fn save_iptables(backend: IptablesBackend, netns: &str, table: &str) -> Result<String> {
    run_in_netns(netns, &[backend.save_command(), "-t", table], None).map(|(_, out)| out)
}

/// `nft list ruleset` in network namespace `netns`.
pub fn list_nft(netns: &str) -> Result<String> {
    run_in_netns(netns, &["nft", "list", "ruleset"], None).map(|(_, out)| out)
}

/// Runs `ip netns exec NETNS ARGS...`, feeding `stdin` if given; returns the wall time from
/// start to exit and stdout.
fn run_in_netns(netns: &str, args: &[&str], stdin: Option<&str>) -> Result<(Duration, String)> {
    let command = args.join(" ");
    if netns.is_empty() {
        return Err(LoadError::NoNamespace { command });
    }
    let spawn_error = |source| LoadError::Spawn {
        command: command.clone(),
        netns: netns.to_string(),
        source,
    };
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // Feed stdin from a second thread while this one drains stdout and stderr, so neither
    // side blocks on a full pipe. A write error (the command quit early) shows in its exit
    // status and stderr, which are reported instead.
    let output = std::thread::scope(|scope| {
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            scope.spawn(move || {
                let _ = pipe.write_all(input.as_bytes());
            });
        }
        child.wait_with_output()
    })
    .map_err(spawn_error)?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        return Err(LoadError::Failed {
            command,
            netns: netns.to_string(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok((
        elapsed,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}
