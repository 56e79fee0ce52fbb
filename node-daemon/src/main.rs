//! `skiff-node`: the per-node daemon binary.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    sync::{mpsc, Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use skiff_api::network_policy::Cidr;
use skiff_node::{
    agent::{self, AgentConfig},
    api::{ApiState, Status},
    dataplane::{
        map_fullness, proto_name, remove_pins, AttachMode, Capacities, DataPlane, LoadOptions,
        ServiceMaps,
    },
    dns::{DnsSettings, ZoneHandle},
    pod_api::PodApi,
    pods::{
        ipam::PodAddresses,
        manager::{Context, DataPlaneRequest, PodManager, PodReport},
        network::PodNetwork,
        record::Records,
        PodDirectory,
    },
    policy::{
        cluster_from_manifest, compile,
        flows::{spawn_reader, FlowHub},
        ClusterState, Compiled, PolicyReconciler,
    },
    runtime::{supervisor::Backoff, DockerRuntime, EmbeddedRuntime, Runtime},
    service_lb::{health::HealthChecks, DesiredServices, ServiceReconciler, ServingEndpoints},
};

/// Where a node keeps its pinned data plane unless told otherwise.
const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/skiff";

#[derive(Parser)]
#[command(
    version,
    about = "Skiff node daemon: runs pods and programs the eBPF data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; the size of `run`'s arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Load every eBPF program into this kernel (running the verifier) and report what the
    /// kernel supports. Attaches and pins nothing.
    Check {
        /// TC attach mode to report on.
        #[arg(long, value_enum, default_value_t = AttachModeArg::Auto)]
        attach_mode: AttachModeArg,
    },
    /// Load the data plane (reusing a pinned one), attach it, and keep it in step with the
    /// cluster (--control-plane) or with desired-state files (--services, --cluster) until
    /// SIGINT/SIGTERM. The data plane stays pinned and keeps forwarding after the daemon
    /// exits. Run it inside the node's network namespace.
    Run(RunArgs),
    /// List services and their backends as the kernel holds them, and how full each map is.
    Services {
        /// bpffs folder the node daemon pins its data plane in.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Also print each Maglev frontend's table share per backend.
        #[arg(long)]
        maglev: bool,
    },
    /// Remove the pinned data plane: detaches every program and drops every map (tracked
    /// connections included). For uninstalling, or after a map layout change.
    Reset {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Container images for the Docker runtime.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// The embedded runtime's container init shim and exec helper (started by the daemon).
    #[command(hide = true)]
    ContainerInit {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build `skiff-probe:latest` in the local Docker engine from the static probe binary and
    /// a static busybox (no registry needed). Pods using image skiff-probe run it.
    Build {
        /// The statically linked skiff-probe (`cargo xtask build` makes one).
        #[arg(long, value_name = "FILE")]
        probe: PathBuf,
        /// A static busybox, the image's shell and tools (Debian's busybox-static).
        #[arg(long, value_name = "FILE", default_value = skiff_node::runtime::image::DEFAULT_BUSYBOX)]
        busybox: PathBuf,
        #[arg(long, default_value = DEFAULT_DOCKER_SOCKET)]
        docker_socket: PathBuf,
    },
}

/// Where Docker listens unless told otherwise.
const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

#[derive(clap::Args)]
struct RunArgs {
    /// TC attach mode.
    #[arg(long, value_enum, default_value_t = AttachModeArg::Auto)]
    attach_mode: AttachModeArg,
    /// bpffs folder for the pinned maps and links (created if missing).
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// cgroup v2 directory whose processes get socket-level load balancing: this node's pod
    /// subtree and the node's own processes (repeatable). Never the machine's root cgroup.
    #[arg(long = "cgroup", value_name = "DIR")]
    cgroups: Vec<PathBuf>,
    /// The node's uplink interface: NodePort traffic and replies from other nodes enter here.
    #[arg(long, value_name = "IFNAME")]
    uplink: Option<String>,
    /// A local pod: host-side veth and pod address, as IFNAME=IP (repeatable).
    #[arg(long = "pod", value_name = "IFNAME=IP", value_parser = parse_pod)]
    pods: Vec<(String, Ipv4Addr)>,
    /// Desired services and endpoints (JSON, see docs/services.md); re-read when it changes.
    #[arg(long, value_name = "FILE")]
    services: Option<PathBuf>,
    /// Cluster state for NetworkPolicy: Namespaces, Pods (with status.podIP) and
    /// NetworkPolicies as Kubernetes YAML (see docs/network-policy.md); re-read when it
    /// changes. A file that does not parse is reported and the applied state kept.
    #[arg(long, value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// Join the control plane with this client config (server, CA and the cluster's join
    /// token: skiff-control writes the CA and token into its --data-dir). Services,
    /// endpoints and policies then come from the cluster instead of --services/--cluster.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["services", "cluster"])]
    control_plane: Option<PathBuf>,
    /// This node's name in the cluster (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// The address other nodes and the control plane reach this node on (its InternalIP;
    /// default: the uplink's address).
    #[arg(long)]
    node_ip: Option<Ipv4Addr>,
    /// Seconds between heartbeats to the control plane.
    #[arg(long, default_value_t = 2)]
    heartbeat_seconds: u64,
    /// Capacity of the conntrack map (entries; a translated flow takes two).
    #[arg(long, default_value_t = Capacities::default().conntrack)]
    conntrack_entries: u32,
    /// Capacity of the service map (entries: one per frontend plus one per backend slot).
    #[arg(long, default_value_t = Capacities::default().services)]
    service_entries: u32,
    /// Capacity of the backend map.
    #[arg(long, default_value_t = Capacities::default().backends)]
    backend_entries: u32,
    /// Serve the daemon's HTTP API on this address, e.g. 127.0.0.1:9465: /metrics, /flows
    /// (`skiff observe`), /explain (`skiff policy explain`) and /status.
    #[arg(long, alias = "metrics", value_name = "ADDR:PORT")]
    api: Option<std::net::SocketAddr>,
    /// Seconds between counter reports in the log.
    #[arg(long, default_value_t = 10)]
    report_every: u64,
    /// The cluster's DNS domain: services are NAME.NS.svc.DOMAIN, pods a-b-c-d.NS.pod.DOMAIN.
    #[arg(long, default_value = skiff_node::dns::zone::DEFAULT_DOMAIN, value_parser = parse_cluster_domain)]
    cluster_domain: String,
    /// Where the node serves cluster DNS (with --control-plane): auto (port 53 on
    /// --node-ip), an IP:PORT, or off. The cluster DNS service (kube-system/kube-dns) is
    /// steered to this server on this node; with off, pods keep the node's resolver.
    #[arg(long, default_value = "auto", value_name = "auto|IP:PORT|off", value_parser = parse_dns_listen)]
    dns_listen: DnsListen,
    /// Resolvers for names outside the cluster domain: auto (the nameservers of the node's
    /// /etc/resolv.conf, loopback ones skipped), none (answer REFUSED at once), or a
    /// comma-separated list of IP or IP:PORT.
    #[arg(long, default_value = "auto", value_name = "auto|none|IP[:PORT],...")]
    dns_upstream: String,
    #[command(flatten)]
    pod_args: PodArgs,
}

/// How the node runs the pods the scheduler assigns to it (with --control-plane).
#[derive(Clone, clap::Args)]
struct PodArgs {
    /// Container runtime: auto (Docker when --docker-socket answers, else embedded),
    /// docker, embedded (namespaces and cgroups, no extra daemon), or none (run no pods:
    /// the daemon only programs the data plane).
    #[arg(long, value_enum, default_value_t = RuntimeArg::Auto)]
    runtime: RuntimeArg,
    /// The Docker engine's socket.
    #[arg(long, default_value = DEFAULT_DOCKER_SOCKET)]
    docker_socket: PathBuf,
    /// Where the node keeps its pod records and the embedded runtime's containers (logs
    /// included); a restarted daemon adopts the pods recorded here.
    #[arg(long, default_value = "/var/lib/skiff-node")]
    state_dir: PathBuf,
    /// cgroup v2 folder the pods' cgroups go below (default: skiff/pods under the cgroup2
    /// mount). The socket load balancer is attached here too.
    #[arg(long, value_name = "DIR")]
    pod_cgroup: Option<PathBuf>,
    /// Where pod network namespaces are bind-mounted.
    #[arg(long, default_value = "/run/skiff/netns")]
    pod_netns_dir: PathBuf,
    /// A range pods route through the node (repeatable): the cluster's pod and service
    /// ranges and the node network. Pods get no default route.
    #[arg(long = "pod-route", value_name = "CIDR", default_values = ["10.0.0.0/8"])]
    pod_routes: Vec<Cidr>,
    /// The static `skiff-probe` binary, put on every pod's PATH (default: beside this
    /// executable, when there).
    #[arg(long, value_name = "FILE")]
    probe_binary: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeArg {
    Auto,
    Docker,
    Embedded,
    None,
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
    // Logs go to stderr: stdout carries what scripts read ("ready", listings).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Check { attach_mode } => check(attach_mode),
        Command::Run(args) => run(args),
        Command::Services { pin_dir, maglev } => print_services(&pin_dir, maglev),
        Command::Reset { pin_dir } => {
            remove_pins(&pin_dir)?;
            println!("removed {}", pin_dir.display());
            Ok(())
        }
        Command::Image {
            command:
                ImageCommand::Build {
                    probe,
                    busybox,
                    docker_socket,
                },
        } => {
            let docker = DockerRuntime::connect(
                &docker_socket,
                &skiff_node::runtime::cgroup::cgroup2_mount()?,
            )?;
            skiff_node::runtime::image::build_probe_image(&docker, &probe, &busybox)?;
            println!("built {}", skiff_node::runtime::image::PROBE_IMAGE_REF);
            Ok(())
        }
        Command::ContainerInit { args } => Ok(skiff_node::runtime::init::run(&args)?),
    }
}

fn check(attach_mode: AttachModeArg) -> anyhow::Result<()> {
    let mode = attach_mode.resolve();
    DataPlane::load(mode).context("loading the eBPF data plane")?;
    println!("eBPF data plane: all programs loaded and verified by this kernel");
    println!("TC attach mode: {mode:?}");
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mode = args.attach_mode.resolve();
    let options = LoadOptions {
        attach_mode: mode,
        pin_dir: Some(args.pin_dir.clone()),
        capacities: Capacities {
            conntrack: args.conntrack_entries,
            services: args.service_entries,
            backends: args.backend_entries,
            ..Capacities::default()
        },
    };
    let mut dataplane = DataPlane::load_with(&options).context("loading the eBPF data plane")?;
    // Run counts and times in /metrics; the kernel keeps them while this fd is open.
    let _program_stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .inspect_err(|e| tracing::warn!("BPF run statistics unavailable: {e}"))
        .ok();
    tracing::info!(?mode, pin_dir = %args.pin_dir.display(), "data plane loaded");

    // The reconciler adopts what the pinned maps hold before anything is attached, so the
    // programs never see a flushed map.
    let mut reconciler = ServiceReconciler::new(dataplane.take_service_maps()?)?;
    tracing::info!(
        frontends = reconciler.frontend_count(),
        "service maps adopted"
    );
    let mut health = HealthChecks::new();
    let serving = ServingEndpoints::default();
    let mut services_file = args.services.as_deref().map(WatchedFile::new);
    if let Some(file) = &mut services_file {
        if let Some(text) = file.changed() {
            apply_services(&file.path, text, &mut reconciler, &mut health, &serving);
        }
    }

    // Policy: adopt the pinned maps, then apply the cluster state before pods are attached.
    let mut policy = PolicyReconciler::new(dataplane.take_policy_maps()?)?;
    let compiled: Arc<RwLock<Arc<Compiled>>> = Arc::default();
    let status = Arc::new(Mutex::new(Status {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|r| r.trim().to_string())
            .unwrap_or_default(),
        tc_attach_mode: match mode {
            AttachMode::Tcx => "tcx".into(),
            AttachMode::Clsact => "clsact".into(),
        },
        policy_revision: policy.revision(),
        ..Status::default()
    }));
    // The pods this daemon started come and go, so policy is compiled again when they do.
    let local_ips: RefCell<Vec<Ipv4Addr>> =
        RefCell::new(args.pods.iter().map(|(_, ip)| *ip).collect());
    let last_state: RefCell<Option<ClusterState>> = RefCell::default();
    let mut cluster_file = args.cluster.as_deref().map(WatchedFile::new);
    // Applies a cluster state (from the file or the control plane) and records the outcome
    // for /status; `source` names what was applied (the file's digest, the view's number).
    let mut apply_state = |state: anyhow::Result<ClusterState>, source: String| {
        let outcome = state.and_then(|state| {
            apply_policy(&state, &local_ips.borrow(), &mut policy, &compiled)?;
            *last_state.borrow_mut() = Some(state);
            Ok(())
        });
        let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
        status.policy_revision = policy.revision();
        match outcome {
            Ok(()) => {
                status.cluster_applied = Some(source);
                status.cluster_rejected = None;
                status.cluster_error = None;
            }
            Err(e) => {
                tracing::error!(%source, "cluster state rejected, kernel state unchanged: {e:#}");
                status.cluster_rejected = Some(source);
                status.cluster_error = Some(format!("{e:#}"));
            }
        }
    };
    let read_cluster_file =
        |file: &mut WatchedFile, apply: &mut dyn FnMut(anyhow::Result<ClusterState>, String)| {
            if let Some(text) = file.changed() {
                let state = cluster_from_manifest(&text)
                    .with_context(|| format!("parsing {}", file.path.display()));
                apply(state, skiff_node::api::digest(&text));
            }
        };
    if let Some(file) = &mut cluster_file {
        read_cluster_file(file, &mut apply_state);
    }
    let runtime = match &args.control_plane {
        Some(_) => select_runtime(&args.pod_args)?,
        None => None,
    };
    let directory = runtime.clone().map(PodDirectory::new);
    // The node API serves logs and exec to the control plane: on by default with pods.
    let api_addr = args.api.or_else(|| {
        runtime.as_ref().map(|_| {
            std::net::SocketAddr::from((
                node_ip_of(&args).unwrap_or(Ipv4Addr::UNSPECIFIED),
                DEFAULT_NODE_API_PORT,
            ))
        })
    });
    let zone = skiff_node::dns::new_zone(&args.cluster_domain);
    let dns_listen = match &args.control_plane {
        Some(_) => start_dns(&args, &zone)?,
        None => None,
    };
    let agent = match &args.control_plane {
        Some(config) => Some(agent::start(
            AgentConfig {
                config: config.clone(),
                node_name: args.node_name.clone().unwrap_or_else(hostname),
                node_ip: node_ip_of(&args),
                node_addresses: node_addresses()?,
                heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
                daemon_port: directory.as_ref().and(api_addr).map(|a| a.port()),
                cluster_domain: args.cluster_domain.clone(),
                zone: zone.clone(),
                dns_listen,
            },
            directory.clone(),
        )?),
        None => None,
    };
    let mut view_count = 0u64;
    let flows = Arc::new(FlowHub::default());
    spawn_reader(
        dataplane.take_flow_events()?,
        compiled.clone(),
        flows.clone(),
    )
    .context("starting the flow reader")?;

    let mut local_pods = Vec::new();
    for (interface, ip) in &args.pods {
        let ifindex = ifindex_of(interface)?;
        dataplane.endpoints()?.upsert(ifindex, *ip)?;
        dataplane
            .attach_pod_interface(interface)
            .with_context(|| format!("--pod {interface}={ip}"))?;
        tracing::info!(%interface, ifindex, %ip, "pod attached");
        local_pods.push((interface.clone(), ifindex));
    }
    if skiff_node::dataplane::enable_routing()? {
        tracing::info!("IPv4 forwarding was off; turned it on (net.ipv4.ip_forward=1)");
    }
    if let Some(uplink) = &args.uplink {
        dataplane
            .attach_uplink(uplink)
            .with_context(|| format!("--uplink {uplink}"))?;
        tracing::info!(%uplink, "uplink attached");
    }
    dataplane.mark_host_netns()?;
    let pod_cgroup = match &runtime {
        Some(_) => Some(pod_cgroup_root(&args.pod_args)?),
        None => None,
    };
    let mut cgroups = args.cgroups.clone();
    if let Some(dir) = &pod_cgroup {
        if !cgroups.contains(dir) {
            cgroups.push(dir.clone());
        }
    }
    for cgroup in &cgroups {
        dataplane.attach_cgroup(cgroup)?;
        tracing::info!(cgroup = %cgroup.display(), "socket load balancer attached");
    }
    if let Some(addr) = api_addr {
        let state = ApiState {
            pin_dir: args.pin_dir.clone(),
            compiled: compiled.clone(),
            flows,
            status: status.clone(),
            programs: dataplane.program_ids(),
            pods: directory
                .clone()
                .zip(agent.as_ref())
                .map(|(directory, agent)| PodApi {
                    directory,
                    token_digest: agent.token_digest.clone(),
                }),
        };
        skiff_node::api::serve(addr, state).with_context(|| format!("--api {addr}"))?;
        tracing::info!(%addr, "serving the API (/metrics, /flows, /explain, /status)");
    }
    println!("ready");

    let (dataplane_requests, requests) = mpsc::channel::<DataPlaneRequest>();
    let mut pod_host = PodHost {
        runtime: directory.zip(pod_cgroup),
        zone,
        cluster_dns: dns_listen.is_some(),
        serving: serving.clone(),
        manager: None,
        interfaces: BTreeMap::new(),
    };
    let signals = signals::Waiter::new()?;
    let mut since_report = Duration::ZERO;
    // Short, because pod workers wait on the loop to attach their veths.
    let tick = Duration::from_millis(50);
    while !signals.wait(tick) {
        if pod_host.serve(&requests, &mut dataplane, &local_ips) {
            let state = last_state.borrow().clone();
            if let Some(state) = state {
                apply_state(Ok(state), "pods changed".into());
            }
        }
        if let Some(file) = &mut services_file {
            if let Some(text) = file.changed() {
                apply_services(&file.path, text, &mut reconciler, &mut health, &serving);
            }
        }
        if let Some(file) = &mut cluster_file {
            read_cluster_file(file, &mut apply_state);
        }
        // Only the newest view of the cluster matters.
        if let Some(view) = agent.as_ref().and_then(|a| a.views.try_iter().last()) {
            view_count += 1;
            if let Some(agent) = &agent {
                pod_host.sync(&view, &args, &agent.reports, &dataplane_requests);
            }
            apply_desired_services(&view.services, &mut reconciler, &mut health, &serving);
            apply_state(
                ClusterState::from_objects(view.policy_objects).map_err(Into::into),
                format!("control-plane view {view_count}"),
            );
        }
        since_report += tick;
        if since_report < Duration::from_secs(args.report_every.max(1)) {
            continue;
        }
        since_report = Duration::ZERO;
        let managed = pod_host
            .interfaces
            .iter()
            .map(|(i, (ifindex, _))| (i.clone(), *ifindex));
        for (interface, ifindex) in local_pods.iter().cloned().chain(managed) {
            let t = dataplane.endpoints()?.traffic(ifindex)?;
            tracing::info!(
                %interface,
                from_pod_packets = t.from_pod_packets,
                to_pod_packets = t.to_pod_packets,
                "pod traffic"
            );
        }
        for (reason, count) in dataplane.drop_counts()? {
            if count > 0 {
                tracing::info!(reason = reason.label(), count, "drops");
            }
        }
    }
    if let Some(manager) = pod_host.manager {
        manager.leave();
    }
    tracing::info!(
        "stopping; the pinned data plane keeps forwarding (`skiff-node reset` removes it)"
    );
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum DnsListen {
    Auto,
    Off,
    At(SocketAddrV4),
}

fn parse_dns_listen(value: &str) -> Result<DnsListen, String> {
    match value {
        "auto" => Ok(DnsListen::Auto),
        "off" => Ok(DnsListen::Off),
        other => other.parse().map(DnsListen::At).map_err(|_| {
            format!(
                "{other:?} is not auto, off or an IPv4 address with a port (e.g. 10.200.0.1:53)"
            )
        }),
    }
}

fn parse_cluster_domain(value: &str) -> Result<String, String> {
    skiff_node::dns::zone::parse_domain(value).map_err(|e| e.to_string())
}

/// Starts the node's DNS server, if it serves one; returns its address.
fn start_dns(args: &RunArgs, zone: &ZoneHandle) -> anyhow::Result<Option<SocketAddrV4>> {
    let listen = match (args.dns_listen, node_ip_of(args)) {
        (DnsListen::Off, _) => return Ok(None),
        (DnsListen::At(addr), _) => addr,
        (DnsListen::Auto, Some(ip)) => SocketAddrV4::new(ip, 53),
        (DnsListen::Auto, None) => {
            tracing::warn!("no node address (--node-ip or --uplink): serving no cluster DNS");
            return Ok(None);
        }
    };
    let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstreams = skiff_node::dns::parse_upstreams(&args.dns_upstream, &resolv_conf)?;
    let settings = DnsSettings {
        listen: listen.into(),
        domain: args.cluster_domain.clone(),
        upstreams,
    };
    skiff_node::dns::start(&settings, zone.clone()).context("--dns-listen")?;
    Ok(Some(listen))
}

/// Where the control plane reaches the node API unless --api says otherwise (the kubelet's).
const DEFAULT_NODE_API_PORT: u16 = 10250;

fn node_ip_of(args: &RunArgs) -> Option<Ipv4Addr> {
    args.node_ip.or_else(|| {
        args.uplink
            .as_deref()
            .and_then(|u| interface_address(u).ok())
    })
}

fn select_runtime(args: &PodArgs) -> anyhow::Result<Option<Arc<dyn Runtime>>> {
    let docker = || -> anyhow::Result<Arc<dyn Runtime>> {
        let runtime = DockerRuntime::connect(
            &args.docker_socket,
            &skiff_node::runtime::cgroup::cgroup2_mount()?,
        )
        .with_context(|| format!("--docker-socket {}", args.docker_socket.display()))?;
        tracing::info!(socket = %args.docker_socket.display(), "running pods with Docker");
        Ok(Arc::new(runtime))
    };
    match args.runtime {
        RuntimeArg::None => Ok(None),
        RuntimeArg::Docker => docker().map(Some),
        RuntimeArg::Auto if args.docker_socket.exists() => match docker() {
            Ok(runtime) => Ok(Some(runtime)),
            Err(e) => {
                tracing::warn!("Docker does not answer, using the embedded runtime: {e:#}");
                select_runtime(&PodArgs {
                    runtime: RuntimeArg::Embedded,
                    ..args.clone()
                })
            }
        },
        RuntimeArg::Auto | RuntimeArg::Embedded => {
            let dir = args.state_dir.join("containers");
            let runtime = EmbeddedRuntime::new(&dir)
                .with_context(|| format!("--state-dir {}", args.state_dir.display()))?;
            tracing::info!(state = %dir.display(), "running pods with the embedded runtime");
            Ok(Some(Arc::new(runtime)))
        }
    }
}

fn pod_cgroup_root(args: &PodArgs) -> anyhow::Result<PathBuf> {
    use skiff_node::runtime::cgroup;
    let mount = cgroup::cgroup2_mount()?;
    let dir = match &args.pod_cgroup {
        Some(dir) => dir.clone(),
        None => mount.join("skiff").join("pods"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("--pod-cgroup {}", dir.display()))?;
    let controllers = cgroup::delegate_to_pods(&mount, &dir);
    tracing::info!(
        pod_cgroup = %dir.display(),
        v2_controllers = %controllers.join(" "),
        "pod cgroup ready (limits without a v2 controller go to cgroup v1)"
    );
    Ok(dir)
}

/// The probe binary pods find on their PATH: linked into the state folder, so the PATH entry
/// holds nothing else.
fn tools_dir(args: &PodArgs) -> Option<PathBuf> {
    let binary = args.probe_binary.clone().or_else(|| {
        let beside = std::env::current_exe().ok()?.with_file_name("skiff-probe");
        beside.exists().then_some(beside)
    })?;
    let dir = args.state_dir.join("tools");
    let link = dir.join("skiff-probe");
    let made = std::fs::create_dir_all(&dir).and_then(|()| {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&binary, &link)
    });
    match made {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::warn!(probe = %binary.display(), "cannot put skiff-probe on pods' PATH: {e}");
            None
        }
    }
}

/// The daemon's side of its pods: the manager (made once the node has a pod CIDR) and the
/// pod veths the data plane serves.
struct PodHost {
    /// The pods' directory (with the runtime) and their cgroup root, when running pods.
    runtime: Option<(PodDirectory, PathBuf)>,
    /// The cluster's names, for pods' resolvers and environment.
    zone: ZoneHandle,
    /// The node serves cluster DNS, so pods get it as their resolver.
    cluster_dns: bool,
    serving: ServingEndpoints,
    manager: Option<PodManager>,
    /// host-side veth -> (ifindex, pod address)
    interfaces: BTreeMap<String, (u32, Ipv4Addr)>,
}

impl PodHost {
    fn sync(
        &mut self,
        view: &agent::ClusterView,
        args: &RunArgs,
        reports: &tokio::sync::mpsc::UnboundedSender<PodReport>,
        dataplane: &mpsc::Sender<DataPlaneRequest>,
    ) {
        if self.manager.is_none() {
            let (Some((directory, cgroup)), Some(cidr)) = (&self.runtime, &view.pod_cidr) else {
                return;
            };
            match self.make_manager(directory, cgroup, cidr, args, reports, dataplane) {
                Ok(manager) => self.manager = Some(manager),
                Err(e) => {
                    tracing::error!("cannot run pods: {e:#}");
                    self.runtime = None;
                    return;
                }
            }
        }
        if let Some(manager) = &mut self.manager {
            manager.sync(&view.local_pods);
        }
    }

    fn make_manager(
        &self,
        directory: &PodDirectory,
        cgroup: &Path,
        cidr: &str,
        args: &RunArgs,
        reports: &tokio::sync::mpsc::UnboundedSender<PodReport>,
        dataplane: &mpsc::Sender<DataPlaneRequest>,
    ) -> anyhow::Result<PodManager> {
        let cidr: Cidr = cidr
            .parse()
            .map_err(|e| anyhow::anyhow!("pod CIDR {cidr:?}: {e}"))?;
        let addresses = PodAddresses::new(cidr)?;
        let pod_args = &args.pod_args;
        let reports = reports.clone();
        tracing::info!(%cidr, gateway = %addresses.gateway(), "running pods");
        Ok(PodManager::new(Context {
            node_ip: node_ip_of(args),
            runtime: directory.runtime.clone(),
            network: PodNetwork {
                gateway: addresses.gateway(),
                routed: pod_args.pod_routes.clone(),
                netns_dir: pod_args.pod_netns_dir.clone(),
            },
            addresses: Mutex::new(addresses),
            cgroup_root: cgroup.to_path_buf(),
            records: Records::new(&pod_args.state_dir.join("pods"))?,
            tools_dir: tools_dir(pod_args),
            backoff: Backoff::default(),
            directory: directory.clone(),
            reports: Box::new(move |report| {
                let _ = reports.send(report);
            }),
            dataplane: Mutex::new(dataplane.clone()),
            zone: self.zone.clone(),
            cluster_dns: self.cluster_dns,
            serving: self.serving.clone(),
        }))
    }

    /// Serves the workers' data-plane requests; true when the set of local pods changed.
    fn serve(
        &mut self,
        requests: &mpsc::Receiver<DataPlaneRequest>,
        dataplane: &mut DataPlane,
        local_ips: &RefCell<Vec<Ipv4Addr>>,
    ) -> bool {
        let mut changed = false;
        for request in requests.try_iter() {
            match request {
                DataPlaneRequest::Attach {
                    interface,
                    ip,
                    reply,
                } => {
                    let attached = (|| -> anyhow::Result<u32> {
                        let ifindex = ifindex_of(&interface)?;
                        dataplane.endpoints()?.upsert(ifindex, ip)?;
                        dataplane.attach_pod_interface(&interface)?;
                        Ok(ifindex)
                    })();
                    let answer = match attached {
                        Ok(ifindex) => {
                            self.interfaces.insert(interface, (ifindex, ip));
                            local_ips.borrow_mut().push(ip);
                            changed = true;
                            Ok(())
                        }
                        Err(e) => Err(format!("attaching the data plane to {interface}: {e:#}")),
                    };
                    let _ = reply.send(answer);
                }
                DataPlaneRequest::Detach { interface, ip } => {
                    if let Some((ifindex, _)) = self.interfaces.remove(&interface) {
                        if let Err(e) = dataplane.endpoints().and_then(|mut e| e.remove(ifindex)) {
                            tracing::warn!(%interface, "removing the pod endpoint: {e}");
                        }
                    }
                    if let Err(e) = dataplane.detach_pod_interface(&interface) {
                        tracing::warn!(%interface, "removing the pod's link pins: {e}");
                    }
                    local_ips.borrow_mut().retain(|i| *i != ip);
                    changed = true;
                }
            }
        }
        changed
    }
}

/// A desired-state file, read again when its modification time changes. A file that cannot
/// be read after it was once applied is reported; the applied state stays.
struct WatchedFile {
    path: PathBuf,
    applied: Option<SystemTime>,
}

impl WatchedFile {
    fn new(path: &Path) -> WatchedFile {
        WatchedFile {
            path: path.to_path_buf(),
            applied: None,
        }
    }

    /// The file's content when it changed since the last call.
    fn changed(&mut self) -> Option<String> {
        let modified = match std::fs::metadata(&self.path).and_then(|m| m.modified()) {
            Ok(modified) => modified,
            Err(e) => {
                if self.applied.is_some() {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot read the file; keeping the last state");
                }
                return None;
            }
        };
        if self.applied == Some(modified) {
            return None;
        }
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                self.applied = Some(modified);
                Some(text)
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot read the file; keeping the last state");
                None
            }
        }
    }
}

/// Applies a `--services` file; one that does not parse or validate leaves the kernel as is.
fn apply_services(
    path: &Path,
    text: String,
    reconciler: &mut ServiceReconciler,
    health: &mut HealthChecks,
    serving: &ServingEndpoints,
) {
    match serde_json::from_str::<DesiredServices>(&text) {
        Ok(desired) => apply_desired_services(&desired, reconciler, health, serving),
        Err(e) => {
            tracing::error!(file = %path.display(), "services file rejected, kernel state unchanged: {e:#}")
        }
    }
}

/// Writes desired services into the kernel; an invalid state leaves the kernel as is.
fn apply_desired_services(
    desired: &DesiredServices,
    reconciler: &mut ServiceReconciler,
    health: &mut HealthChecks,
    serving: &ServingEndpoints,
) {
    let outcome = reconciler
        .reconcile(desired)
        .map_err(anyhow::Error::from)
        .and_then(|stats| {
            health
                .update(desired)
                .context("opening health-check node ports")?;
            Ok(stats)
        });
    match outcome {
        Ok(stats) => {
            serving.programmed(desired);
            tracing::info!(?stats, "services reconciled")
        }
        Err(e) => tracing::error!("services rejected, kernel state unchanged: {e:#}"),
    }
}

/// Compiles a cluster state and writes the policy of this node's pods into the kernel.
fn apply_policy(
    state: &ClusterState,
    local_ips: &[Ipv4Addr],
    policy: &mut PolicyReconciler,
    shared: &RwLock<Arc<Compiled>>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let compiled = compile(state, &node_addresses()?, local_ips);
    let stats = policy.reconcile(&compiled)?;
    tracing::info!(
        policies = state.policies.len(),
        pods = state.pods.len(),
        identities = compiled.identities.len(),
        entries = policy.entry_count(),
        ?stats,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "policy reconciled"
    );
    *shared.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(compiled);
    Ok(())
}

/// This node's IPv4 addresses (loopback excepted): traffic from them is the node's own.
fn node_addresses() -> anyhow::Result<Vec<Ipv4Addr>> {
    Ok(interface_addresses()?
        .into_iter()
        .map(|(_, ip)| ip)
        .filter(|ip| !ip.is_loopback())
        .collect())
}

/// The first IPv4 address of an interface.
fn interface_address(name: &str) -> anyhow::Result<Ipv4Addr> {
    interface_addresses()?
        .into_iter()
        .find(|(ifname, _)| ifname == name)
        .map(|(_, ip)| ip)
        .with_context(|| format!("{name} has no IPv4 address"))
}

/// Every IPv4 address of this network namespace, with its interface's name.
fn interface_addresses() -> anyhow::Result<Vec<(String, Ipv4Addr)>> {
    let mut addrs = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below; entries are read only while it lives.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return Err(std::io::Error::last_os_error()).context("listing the node's addresses");
        }
        let mut cursor = list;
        while !cursor.is_null() {
            let addr = (*cursor).ifa_addr;
            if !addr.is_null() && (*addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(addr as *const libc::sockaddr_in);
                let name = std::ffi::CStr::from_ptr((*cursor).ifa_name)
                    .to_string_lossy()
                    .into_owned();
                addrs.push((name, Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
            }
            cursor = (*cursor).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    Ok(addrs)
}

fn print_services(pin_dir: &Path, maglev: bool) -> anyhow::Result<()> {
    let maps = ServiceMaps::open_pinned(pin_dir).with_context(|| {
        format!(
            "no Skiff data plane pinned in {} (is skiff-node running there? --pin-dir)",
            pin_dir.display()
        )
    })?;
    let snapshot = maps.snapshot()?;
    println!("{:<24} {:>4} {:<34} BACKENDS", "FRONTEND", "ID", "MODE");
    for (frontend, entry) in &snapshot.frontends {
        let flags = entry.header.flags;
        let mut mode = Vec::new();
        if flags & skiff_common::SVC_FLAG_NODE_PORT != 0 {
            mode.push("nodeport");
        }
        if flags & skiff_common::SVC_FLAG_MASQUERADE != 0 {
            mode.push("masq");
        }
        if flags & skiff_common::SVC_FLAG_MAGLEV != 0 {
            mode.push("maglev");
        } else {
            mode.push("random");
        }
        let affinity;
        if flags & skiff_common::SVC_FLAG_AFFINITY != 0 {
            affinity = format!("affinity={}s", entry.header.affinity_timeout_secs);
            mode.push(&affinity);
        }
        let backends: Vec<String> = entry
            .backend_ids
            .iter()
            .map(|id| match snapshot.backends.get(id) {
                Some(b) => format!("{}:{}", b.ip, b.port),
                None => format!("#{id}?"),
            })
            .collect();
        let backends = if backends.is_empty() {
            "(none: refuses)".to_string()
        } else {
            backends.join(" ")
        };
        println!(
            "{:<24} {:>4} {:<34} {}",
            format!(
                "{}:{}/{}",
                frontend.addr,
                frontend.port,
                proto_name(frontend.proto)
            ),
            entry.header.frontend_id,
            mode.join(","),
            backends
        );
        if maglev && flags & skiff_common::SVC_FLAG_MAGLEV != 0 {
            let table = maps.maglev_table(entry)?;
            for id in &entry.backend_ids {
                let share = table.iter().filter(|t| *t == id).count();
                println!(
                    "{:>32} backend #{id}: {share}/{} table positions",
                    "",
                    table.len()
                );
            }
        }
    }
    let draining: Vec<String> = snapshot
        .backends
        .iter()
        .filter(|(_, b)| !b.active)
        .map(|(id, b)| format!("#{id} {}:{}", b.ip, b.port))
        .collect();
    if !draining.is_empty() {
        println!("draining (existing flows only): {}", draining.join(", "));
    }
    println!();
    println!(
        "{:<14} {:>10} {:>10} {:>6}",
        "MAP", "ENTRIES", "CAPACITY", "FULL"
    );
    for m in map_fullness(pin_dir)? {
        println!(
            "{:<14} {:>10} {:>10} {:>5.1}%",
            m.map,
            m.entries,
            m.capacity,
            100.0 * m.entries as f64 / m.capacity.max(1) as f64
        );
    }
    Ok(())
}

fn parse_pod(spec: &str) -> Result<(String, Ipv4Addr), String> {
    let Some((interface, ip)) = spec.split_once('=') else {
        return Err(format!("{spec:?}: expected IFNAME=IP, e.g. vp0=10.244.1.2"));
    };
    let ip = ip
        .parse()
        .map_err(|_| format!("{spec:?}: {ip:?} is not an IPv4 address"))?;
    Ok((interface.to_string(), ip))
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into())
}
