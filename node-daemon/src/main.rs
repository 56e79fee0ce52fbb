//! `skiff-node`: the per-node daemon binary.

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use skiff_node::dataplane::{AttachMode, DataPlane, ServiceBackend, ServiceFrontend};

#[derive(Parser)]
#[command(
    version,
    about = "Skiff node daemon: runs pods and programs the eBPF data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load every eBPF program into this kernel (running the verifier) and report what the
    /// kernel supports. Attaches nothing.
    Check {
        /// TC attach mode to report on.
        #[arg(long, value_enum, default_value_t = AttachModeArg::Auto)]
        attach_mode: AttachModeArg,
    },
    /// Load the data plane, attach it, and keep it attached until SIGINT/SIGTERM, logging
    /// per-pod counters and drops. Run it inside the node's network namespace.
    Run {
        /// TC attach mode.
        #[arg(long, value_enum, default_value_t = AttachModeArg::Auto)]
        attach_mode: AttachModeArg,
        /// cgroup v2 directory of this node's pods, for the socket load balancer. Never the
        /// machine's root cgroup.
        #[arg(long)]
        cgroup: Option<PathBuf>,
        /// A local pod: host-side veth and pod address, as IFNAME=IP (repeatable).
        #[arg(long = "pod", value_name = "IFNAME=IP")]
        pods: Vec<String>,
        /// A service: VIP:PORT/PROTO=IP:PORT[,IP:PORT...] (repeatable; PROTO is tcp or udp).
        #[arg(long = "service", value_name = "FRONTEND=BACKENDS")]
        services: Vec<String>,
        /// Seconds between counter reports.
        #[arg(long, default_value_t = 10)]
        report_every: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AttachModeArg {
    /// TCX on kernels >= 6.6, clsact otherwise.
    Auto,
    /// TCX links (kernel >= 6.6).
    Tcx,
    /// A clsact qdisc with direct-action filters (any kernel).
    Clsact,
}

impl AttachModeArg {
    fn resolve(self) -> AttachMode {
        match self {
            AttachModeArg::Auto => AttachMode::detect(),
            AttachModeArg::Tcx => AttachMode::Tcx,
            AttachModeArg::Clsact => AttachMode::Clsact,
        }
    }
}

fn main() -> std::process::ExitCode {
    match run_cli() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_cli() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Check { attach_mode } => check(attach_mode),
        Command::Run {
            attach_mode,
            cgroup,
            pods,
            services,
            report_every,
        } => run(attach_mode, cgroup, &pods, &services, report_every),
    }
}

fn check(attach_mode: AttachModeArg) -> anyhow::Result<()> {
    let mode = attach_mode.resolve();
    DataPlane::load(mode).context("loading the eBPF data plane")?;
    println!("eBPF data plane: all programs loaded and verified by this kernel");
    println!("TC attach mode: {mode:?}");
    Ok(())
}

fn run(
    attach_mode: AttachModeArg,
    cgroup: Option<PathBuf>,
    pods: &[String],
    services: &[String],
    report_every: u64,
) -> anyhow::Result<()> {
    let mode = attach_mode.resolve();
    let mut dataplane = DataPlane::load(mode).context("loading the eBPF data plane")?;
    tracing::info!(?mode, "data plane loaded");

    let mut local_pods = Vec::new();
    for spec in pods {
        let (interface, ip) = parse_pod(spec)?;
        let ifindex = ifindex_of(&interface)?;
        dataplane.endpoints()?.upsert(ifindex, ip)?;
        dataplane
            .attach_pod_interface(&interface)
            .with_context(|| format!("--pod {spec}"))?;
        tracing::info!(%interface, ifindex, %ip, "pod attached");
        local_pods.push((interface, ifindex));
    }
    let mut next_backend_id = 1u32;
    for spec in services {
        let (frontend, backends) = parse_service(spec)?;
        let mut ids = Vec::new();
        let mut table = dataplane.services()?;
        for backend in backends {
            table.upsert_backend(next_backend_id, backend)?;
            ids.push(next_backend_id);
            next_backend_id += 1;
        }
        table.set_service(frontend, &ids)?;
        tracing::info!(%frontend, backends = ids.len(), "service programmed");
    }
    if let Some(cgroup) = &cgroup {
        dataplane.attach_cgroup(cgroup)?;
        tracing::info!(cgroup = %cgroup.display(), "socket load balancer attached");
    }

    let signals = signals::Waiter::new()?;
    while !signals.wait(Duration::from_secs(report_every.max(1))) {
        for (interface, ifindex) in &local_pods {
            let t = dataplane.endpoints()?.traffic(*ifindex)?;
            tracing::info!(
                %interface,
                from_pod_packets = t.from_pod_packets,
                from_pod_bytes = t.from_pod_bytes,
                to_pod_packets = t.to_pod_packets,
                to_pod_bytes = t.to_pod_bytes,
                "pod traffic"
            );
        }
        for (reason, count) in dataplane.drop_counts()? {
            if count > 0 {
                tracing::info!(reason = reason.label(), count, "drops");
            }
        }
    }
    tracing::info!("stopping; links are removed with the process");
    Ok(())
}

fn parse_pod(spec: &str) -> anyhow::Result<(String, Ipv4Addr)> {
    let Some((interface, ip)) = spec.split_once('=') else {
        bail!("--pod {spec:?}: expected IFNAME=IP, e.g. vp0=10.244.1.2");
    };
    let ip = ip
        .parse()
        .with_context(|| format!("--pod {spec:?}: {ip:?} is not an IPv4 address"))?;
    Ok((interface.to_string(), ip))
}

fn parse_service(spec: &str) -> anyhow::Result<(ServiceFrontend, Vec<ServiceBackend>)> {
    let usage =
        "expected VIP:PORT/PROTO=IP:PORT[,IP:PORT...], e.g. 10.96.0.10:80/tcp=10.244.1.2:8080";
    let (frontend, backends) = spec
        .split_once('=')
        .with_context(|| format!("--service {spec:?}: {usage}"))?;
    let (addr, proto) = frontend
        .split_once('/')
        .with_context(|| format!("--service {spec:?}: missing /PROTO; {usage}"))?;
    let proto = match proto {
        "tcp" => skiff_common::IPPROTO_TCP,
        "udp" => skiff_common::IPPROTO_UDP,
        other => bail!("--service {spec:?}: protocol {other:?} is not tcp or udp"),
    };
    let addr: std::net::SocketAddrV4 = addr
        .parse()
        .with_context(|| format!("--service {spec:?}: {addr:?} is not VIP:PORT"))?;
    let backends = backends
        .split(',')
        .map(|b| {
            b.parse::<std::net::SocketAddrV4>()
                .map(|a| ServiceBackend {
                    ip: *a.ip(),
                    port: a.port(),
                })
                .with_context(|| format!("--service {spec:?}: backend {b:?} is not IP:PORT"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((
        ServiceFrontend {
            vip: *addr.ip(),
            port: addr.port(),
            proto,
        },
        backends,
    ))
}

fn ifindex_of(interface: &str) -> anyhow::Result<u32> {
    let name = std::ffi::CString::new(interface)?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("no interface {interface:?} in this network namespace");
    }
    Ok(index)
}

mod signals {
    use std::time::Duration;

    /// Blocks SIGINT and SIGTERM and waits for them synchronously.
    pub struct Waiter {
        set: libc::sigset_t,
    }

    impl Waiter {
        pub fn new() -> anyhow::Result<Waiter> {
            // SAFETY: plain sigset manipulation on a local value.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGINT);
                libc::sigaddset(&mut set, libc::SIGTERM);
                if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                    anyhow::bail!("blocking signals failed");
                }
                Ok(Waiter { set })
            }
        }

        /// Waits up to `timeout`; true when a stop signal arrived.
        pub fn wait(&self, timeout: Duration) -> bool {
            let ts = libc::timespec {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            };
            // SAFETY: valid set and timespec.
            unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) > 0 }
        }
    }
}
