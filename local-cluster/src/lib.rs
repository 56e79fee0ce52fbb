//! A real multi-node Skiff cluster on one machine, inside a [`skiff_lab::Lab`].
//!
//! Layout: node `cp` runs `skiff-control` (and etcd when the store is etcd), nodes `n1`..`nN`
//! run one `skiff-node` each; an *external* namespace (`10.200.0.200`) stands for a machine
//! outside the cluster, from which the host's loopback is forwarded in ([`forward`]). Every
//! process writes its log to the state folder, which also holds the control plane's data,
//! each node's state and the `skiff` configs.
//!
//! The same bring-up serves `cargo xtask up` (a named lab, [`Cluster::detach`]ed so it
//! outlives the command, removed by [`remove`]) and the end-to-end scenarios (an ordinary lab,
//! removed on drop).

mod api;
mod error;
pub mod forward;
pub mod up;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

pub use api::Admin;
pub use error::ClusterError;
use serde_json::{json, Value};
use skiff_lab::{ExternalId, Lab, NodeId};

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// The API port of the control plane on its lab address.
pub const API_PORT: u16 = 6443;
/// The port node daemons serve their own API on (logs, exec, metrics).
pub const NODE_API_PORT: u16 = 10250;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Embedded,
    /// One Docker engine (containerd and dockerd) per node, started by the cluster on that
    /// node, with all its state in the node's folder. One engine shared between nodes would
    /// show each daemon the others' containers.
    Docker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Embedded,
    /// A single-member etcd on the control-plane node's loopback.
    Etcd,
}

/// The binaries a cluster runs, all from one build.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub control: PathBuf,
    pub node: PathBuf,
    pub cli: PathBuf,
    pub probe: PathBuf,
    /// The statically linked probe, for the Docker image.
    pub static_probe: PathBuf,
    /// `skiff-local`, whose `forward` bridges the host's loopback into the lab.
    pub local: PathBuf,
}

impl Binaries {
    /// The binaries of a cargo profile folder (`target/debug`), the static probe where
    /// `cargo xtask build` puts it (`target/static/...`).
    pub fn in_profile_dir(dir: &Path) -> Result<Binaries> {
        let target = dir.parent().unwrap_or(dir);
        let binaries = Binaries {
            control: dir.join("skiff-control"),
            node: dir.join("skiff-node"),
            cli: dir.join("skiff"),
            probe: dir.join("skiff-probe"),
            static_probe: target.join("static/x86_64-unknown-linux-gnu/release/skiff-probe"),
            local: dir.join("skiff-local"),
        };
        for path in [
            &binaries.control,
            &binaries.node,
            &binaries.cli,
            &binaries.probe,
            &binaries.local,
        ] {
            if !path.is_file() {
                return Err(ClusterError::MissingBinary(path.display().to_string()));
            }
        }
        Ok(binaries)
    }

    /// The binaries beside the running executable: a test binary lives in
    /// `target/<profile>/deps/`, a binary in `target/<profile>/`.
    pub fn beside_current_exe() -> Result<Binaries> {
        let exe = std::env::current_exe().map_err(ClusterError::io("current executable"))?;
        let dir = exe
            .ancestors()
            .skip(1)
            .take(2)
            .find(|dir| dir.join("skiff-control").is_file())
            .ok_or_else(|| ClusterError::MissingBinary("skiff-control".into()))?;
        let mut binaries = Binaries::in_profile_dir(dir)?;
        if let Some(path) = std::env::var_os("SKIFF_PROBE_STATIC") {
            binaries.static_probe = PathBuf::from(path);
        }
        Ok(binaries)
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Worker nodes (the control plane has a node of its own).
    pub nodes: usize,
    pub runtime: Runtime,
    pub store: Store,
    /// `Some(name)`: a named lab that can be detached (`cargo xtask up`); `None`: an ordinary
    /// lab removed on drop.
    pub lab_name: Option<String>,
    /// Logs, data and configs; made if missing.
    pub state_dir: PathBuf,
    pub binaries: Binaries,
    /// How long a node may miss heartbeats before it counts as lost.
    pub node_grace_seconds: u32,
    /// `RUST_LOG` of the control plane and daemons.
    pub log_filter: String,
}

impl Options {
    pub fn new(binaries: Binaries, state_dir: PathBuf) -> Options {
        Options {
            nodes: 3,
            runtime: Runtime::Embedded,
            store: Store::Embedded,
            lab_name: None,
            state_dir,
            binaries,
            node_grace_seconds: 5,
            log_filter: "info".into(),
        }
    }
}

/// A started process of the cluster.
#[derive(Clone, Debug)]
pub struct Process {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
}

impl Process {
    /// Exited (a zombie not yet reaped counts as exited) or never existed.
    pub fn has_exited(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            // "PID (COMM) STATE ...": COMM may hold spaces, so read after the last ')'.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    /// SIGKILL, then waits for it to be gone.
    pub fn kill(&self) {
        // SAFETY: plain kill(2) of a process this cluster started.
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: reaps it when it is our child; harmless (ECHILD) otherwise.
        unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A process whose pipes the caller holds (the lab keeps the process itself).
pub struct PipedProcess {
    pub pid: u32,
    /// Dropping it closes the process's stdin.
    pub stdin: Option<std::process::ChildStdin>,
    pub stdout: std::process::ChildStdout,
}

/// A node running a daemon.
pub struct ClusterNode {
    pub name: String,
    pub id: NodeId,
    pub address: Ipv4Addr,
    pub daemon: Process,
    args: Vec<String>,
}

pub struct Cluster {
    pub lab: Lab,
    pub options: Options,
    pub control_node: NodeId,
    pub control: Process,
    pub etcd: Option<Process>,
    pub docker: Vec<DockerEngine>,
    pub nodes: Vec<ClusterNode>,
    /// A machine outside the cluster on the lab bridge.
    pub external: ExternalId,
    pub admin: Admin,
    /// The admin config (`skiff --config`), pointing at the control plane's lab address.
    pub admin_conf: PathBuf,
    control_args: Vec<String>,
}

impl Cluster {
    /// Brings the cluster up, reporting each step to `progress`; returns once every node is
    /// Ready.
    pub fn start(options: Options, progress: &mut dyn FnMut(&str)) -> Result<Cluster> {
        let state = &options.state_dir;
        std::fs::create_dir_all(state).map_err(ClusterError::io(state))?;
        progress("creating the lab: a bridge and one network namespace per node");
        let mut lab = match &options.lab_name {
            Some(name) => Lab::named(name)?,
            None => Lab::new()?,
        };
        let control_node = lab.add_node("cp")?;
        let mut node_ids = Vec::new();
        for i in 1..=options.nodes {
            node_ids.push(lab.add_node(&format!("n{i}"))?);
        }
        let external = lab.add_external("host")?;

        let etcd = match options.store {
            Store::Embedded => None,
            Store::Etcd => {
                progress("starting etcd on the control-plane node");
                Some(start_etcd(&mut lab, control_node, state)?)
            }
        };
        progress("starting skiff-control");
        let control_args = control_args(&options, lab.node(control_node).address);
        let control = spawn_logged(
            &mut lab,
            control_node,
            "skiff-control",
            &options.binaries.control,
            &control_args,
            &options.log_filter,
            state,
        )?;
        let admin_conf_path = state.join("control/admin.conf");
        let admin_conf: Value = wait_for(
            Duration::from_secs(30),
            "skiff-control's admin.conf",
            &control,
            || serde_json::from_str(&std::fs::read_to_string(&admin_conf_path).ok()?).ok(),
        )?;
        let admin = Admin::new(&lab.node(control_node).netns, &admin_conf)?;
        wait_for(
            Duration::from_secs(15),
            "the API to answer",
            &control,
            || {
                (admin
                    .call(reqwest::Method::GET, "/api/v1/namespaces", None)
                    .0
                    == 200)
                    .then_some(())
            },
        )?;
        let token_path = state.join("control/join-token");
        let token = std::fs::read_to_string(&token_path).map_err(ClusterError::io(&token_path))?;
        let node_conf = state.join("node.conf");
        write_file(
            &node_conf,
            &json!({"server": admin_conf["server"],
                "certificateAuthorityData": admin_conf["certificateAuthorityData"],
                "token": token.trim()})
            .to_string(),
        )?;

        progress(&format!("declaring {} nodes", options.nodes));
        for &id in &node_ids {
            let node = lab.node(id);
            admin.post(
                "/api/v1/nodes",
                &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name},
                    "spec": {"podCIDR": format!("{}/24", node.pod_cidr)}}),
            )?;
        }
        let mut engines = Vec::new();
        if options.runtime == Runtime::Docker {
            let missing = skiff_lab::missing_docker_binaries();
            if !missing.is_empty() {
                return Err(ClusterError::MissingBinary(format!(
                    "{missing:?} (the docker runtime needs them; `cargo xtask setup` installs them)"
                )));
            }
            for &id in &node_ids {
                let name = lab.node(id).name.clone();
                progress(&format!(
                    "starting a Docker engine on {name} and building the skiff-probe image"
                ));
                let engine =
                    start_docker_engine(&mut lab, id, &state.join(format!("docker-{name}")))?;
                build_probe_image(&options.binaries, &engine.socket)?;
                engines.push(engine);
            }
        }

        let mut nodes = Vec::new();
        for (i, &id) in node_ids.iter().enumerate() {
            let name = lab.node(id).name.clone();
            progress(&format!("starting skiff-node on {name}"));
            let socket = engines.get(i).map(|e: &DockerEngine| e.socket.as_path());
            let args = daemon_args(&options, &lab, id, socket, &node_conf);
            let daemon = start_daemon(&mut lab, id, &name, &options, &args)?;
            nodes.push(ClusterNode {
                name,
                id,
                address: lab.node(id).address,
                daemon,
                args,
            });
        }
        let cluster = Cluster {
            lab,
            control_node,
            control,
            etcd,
            docker: engines,
            nodes,
            external,
            admin,
            admin_conf: admin_conf_path,
            control_args,
            options,
        };
        progress("waiting for every node to be Ready");
        cluster.wait_nodes_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn wait_nodes_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let nodes = self.admin.get("/api/v1/nodes")?;
            let not_ready: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| {
                    !nodes["items"].as_array().into_iter().flatten().any(|item| {
                        item["metadata"]["name"] == n.name.as_str() && has_condition(item, "Ready")
                    })
                })
                .map(|n| n.name.clone())
                .collect();
            if not_ready.is_empty() {
                return Ok(());
            }
            if let Some(dead) = self.nodes.iter().find(|n| n.daemon.has_exited()) {
                return Err(exited(&dead.daemon));
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Timeout {
                    what: format!("nodes {not_ready:?} becoming Ready"),
                    seconds: timeout.as_secs(),
                    detail: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills node `i`'s daemon with SIGKILL; its pods keep running.
    pub fn kill_daemon(&self, i: usize) {
        self.nodes[i].daemon.kill();
    }

    /// Starts node `i`'s daemon again with the same arguments and state.
    pub fn restart_daemon(&mut self, i: usize) -> Result<()> {
        let (id, name, args) = (
            self.nodes[i].id,
            self.nodes[i].name.clone(),
            self.nodes[i].args.clone(),
        );
        self.nodes[i].daemon = start_daemon(&mut self.lab, id, &name, &self.options, &args)?;
        Ok(())
    }

    /// Takes node `i`'s link to the lab bridge down (or up again): the node drops off the
    /// network with everything on it.
    pub fn set_link(&self, i: usize, up: bool) -> Result<()> {
        let node = self.lab.node(self.nodes[i].id);
        run_ip(&[
            "-n",
            node.netns.name(),
            "link",
            "set",
            node.uplink,
            if up { "up" } else { "down" },
        ])
    }

    pub fn kill_control(&self) {
        self.control.kill();
    }

    /// Starts `skiff-control` again on the same data (and etcd, if any).
    pub fn restart_control(&mut self) -> Result<()> {
        self.control = spawn_logged(
            &mut self.lab,
            self.control_node,
            "skiff-control",
            &self.options.binaries.control,
            &self.control_args,
            &self.options.log_filter,
            &self.options.state_dir,
        )?;
        wait_for(
            Duration::from_secs(20),
            "the restarted API to answer",
            &self.control,
            || {
                (self
                    .admin
                    .call(reqwest::Method::GET, "/api/v1/namespaces", None)
                    .0
                    == 200)
                    .then_some(())
            },
        )
    }

    /// Runs the `skiff` CLI with the admin config, from the control-plane node.
    pub fn skiff(&self, args: &[&str]) -> Result<Output> {
        let mut command = Command::new(&self.options.binaries.cli);
        command
            .arg("--config")
            .arg(&self.admin_conf)
            .args(args)
            .env("NO_COLOR", "1");
        Ok(self.lab.run_on_node(self.control_node, command)?)
    }

    /// Runs `skiff ARGS` and returns its stdout, failing with its output if it fails.
    pub fn skiff_ok(&self, args: &[&str]) -> Result<String> {
        let output = self.skiff(args)?;
        if !output.status.success() {
            return Err(ClusterError::Command {
                command: format!("skiff {}", args.join(" ")),
                status: output.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `skiff-probe ARGS` to completion on the external machine (outside the cluster).
    pub fn probe_from_outside(&self, args: &[&str]) -> Result<Output> {
        let mut command = Command::new(&self.options.binaries.probe);
        command.args(args);
        Ok(self.lab.run_in_external(self.external, command)?)
    }

    /// Starts `skiff-probe ARGS` on the external machine, with its stdin and stdout piped to
    /// the caller; the lab kills it on drop.
    pub fn spawn_probe_outside(&mut self, args: &[&str]) -> Result<PipedProcess> {
        let mut command = Command::new(&self.options.binaries.probe);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let child = self.lab.spawn_in_external(self.external, command)?;
        Ok(PipedProcess {
            pid: child.id(),
            stdin: child.stdin.take(),
            stdout: child.stdout.take().expect("piped"),
        })
    }

    /// The lab namespace of the machine outside the cluster (where [`forward`] connects from).
    pub fn external_netns(&self) -> &Path {
        self.lab.external(self.external).netns.path()
    }

    pub fn control_address(&self) -> Ipv4Addr {
        self.lab.node(self.control_node).address
    }

    /// Keeps the whole cluster running after this process exits (named labs only).
    pub fn detach(self) -> Result<()> {
        if self.options.lab_name.is_none() {
            return Err(ClusterError::Config(
                "only a named lab can outlive its process".into(),
            ));
        }
        // Every part's Drop (the lab's above all) would take a part of the cluster down;
        // forgetting the whole value keeps it all (the memory goes with the process).
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Everything stops at once, so no daemon or engine mounts anything again; then the
        // mounts they leave in the state folder (pods' network namespace files, container
        // root filesystems) go before the lab and the folder are removed.
        self.lab.kill_processes();
        unmount_below(&self.options.state_dir);
    }
}

/// Removes a detached cluster: its named lab (every process in it dies with its cgroup) and
/// the mounts below its state folder, then the folder itself.
pub fn remove(lab_name: &str, state_dir: &Path) -> Result<()> {
    skiff_lab::remove_named(lab_name)?;
    unmount_below(state_dir);
    match std::fs::remove_dir_all(state_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ClusterError::io(state_dir)(e)),
        _ => Ok(()),
    }
}

/// Detaches every mount below `dir`, deepest first (pods' network namespace files).
fn unmount_below(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut inside: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    inside.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in inside {
        let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
    }
}

pub fn has_condition(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

fn control_args(options: &Options, address: Ipv4Addr) -> Vec<String> {
    let state = &options.state_dir;
    let mut args = vec![
        "--data-dir".to_string(),
        state.join("control").display().to_string(),
        "--listen".into(),
        format!("{address}:{API_PORT}"),
        "--node-grace-seconds".into(),
        options.node_grace_seconds.to_string(),
    ];
    if options.store == Store::Etcd {
        args.extend([
            "--store".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            "http://127.0.0.1:2379".into(),
        ]);
    }
    args
}

fn daemon_args(
    options: &Options,
    lab: &Lab,
    id: NodeId,
    docker_socket: Option<&Path>,
    node_conf: &Path,
) -> Vec<String> {
    let node = lab.node(id);
    let state = options.state_dir.join(&node.name);
    let mut args: Vec<String> = vec![
        "run".into(),
        "--runtime".into(),
        match options.runtime {
            Runtime::Embedded => "embedded".into(),
            Runtime::Docker => "docker".into(),
        },
        "--state-dir".into(),
        state.display().to_string(),
        "--pod-netns-dir".into(),
        state.join("netns").display().to_string(),
        "--pod-cgroup".into(),
        node.cgroup.join("pods").display().to_string(),
        "--probe-binary".into(),
        options.binaries.probe.display().to_string(),
        "--pin-dir".into(),
        lab.bpffs().join(&node.name).display().to_string(),
        "--uplink".into(),
        node.uplink.to_string(),
        "--control-plane".into(),
        node_conf.display().to_string(),
        "--node-name".into(),
        node.name.clone(),
        "--heartbeat-seconds".into(),
        "1".into(),
        "--api".into(),
        format!("{}:{NODE_API_PORT}", node.address),
        // The lab has no way out: names outside the cluster are refused at once.
        "--dns-upstream".into(),
        "none".into(),
    ];
    if let Some(socket) = docker_socket {
        args.extend(["--docker-socket".into(), socket.display().to_string()]);
    }
    args
}

/// Starts a daemon and waits for its "ready" line.
fn start_daemon(
    lab: &mut Lab,
    id: NodeId,
    name: &str,
    options: &Options,
    args: &[String],
) -> Result<Process> {
    let state = &options.state_dir;
    let ready_file = state.join(format!("{name}.out"));
    let _ = std::fs::remove_file(&ready_file);
    let daemon = spawn_logged(
        lab,
        id,
        name,
        &options.binaries.node,
        args,
        &options.log_filter,
        state,
    )?;
    wait_for(
        Duration::from_secs(30),
        &format!("skiff-node on {name} to be ready"),
        &daemon,
        || {
            std::fs::read_to_string(&ready_file)
                .ok()?
                .lines()
                .any(|l| l.trim() == "ready")
                .then_some(())
        },
    )?;
    Ok(daemon)
}

/// Starts `binary ARGS` on a lab node in a process group of its own (a Ctrl-C in the
/// terminal that ran `cargo xtask up` must not reach it): stderr to `STATE/NAME.log`,
/// stdout to `STATE/NAME.out`.
fn spawn_logged(
    lab: &mut Lab,
    node: NodeId,
    name: &str,
    binary: &Path,
    args: &[String],
    log_filter: &str,
    state: &Path,
) -> Result<Process> {
    use std::os::unix::process::CommandExt as _;
    let log = state.join(format!("{name}.log"));
    let out = state.join(format!("{name}.out"));
    let create = |path: &Path| std::fs::File::create(path).map_err(ClusterError::io(path));
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("RUST_LOG", log_filter)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(create(&out)?)
        .stderr(create(&log)?)
        .process_group(0);
    let pid = lab.spawn_on_node(node, command)?.id();
    Ok(Process {
        name: name.to_string(),
        pid,
        log,
    })
}

fn start_etcd(lab: &mut Lab, node: NodeId, state: &Path) -> Result<Process> {
    const ETCD: &str = "/usr/bin/etcd";
    if !Path::new(ETCD).is_file() {
        return Err(ClusterError::MissingBinary(format!(
            "{ETCD} (the etcd-server package; `cargo xtask setup` installs it)"
        )));
    }
    let data = state.join("etcd");
    let args: Vec<String> = [
        "--name",
        "skiff",
        "--data-dir",
        &data.display().to_string(),
        "--listen-client-urls",
        "http://127.0.0.1:2379",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
        "--listen-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "skiff=http://127.0.0.1:2380",
        "--logger",
        "zap",
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let etcd = spawn_logged(lab, node, "etcd", Path::new(ETCD), &args, "warn", state)?;
    let netns = &lab.node(node).netns;
    wait_for(Duration::from_secs(15), "etcd to listen", &etcd, || {
        netns
            .run(|| std::net::TcpStream::connect(("127.0.0.1", 2379)).ok())
            .map(drop)
    })?;
    Ok(etcd)
}

/// A node's Docker engine: its two processes, run in the node's namespace and cgroup so that
/// removing the lab stops them with everything they started.
#[derive(Debug)]
pub struct DockerEngine {
    pub containerd: Process,
    pub dockerd: Process,
    pub socket: PathBuf,
}

fn start_docker_engine(lab: &mut Lab, node: NodeId, dir: &Path) -> Result<DockerEngine> {
    let commands = skiff_lab::EngineCommands::new(dir).map_err(ClusterError::io(dir))?;
    let mut start = |name: &str, mut command: Command, log: &str| -> Result<Process> {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
        let pid = lab.spawn_on_node(node, command)?.id();
        Ok(Process {
            name: name.to_string(),
            pid,
            log: dir.join(log),
        })
    };
    let containerd = start("containerd", commands.containerd, "containerd.log")?;
    let dockerd = start("dockerd", commands.dockerd, "dockerd.log")?;
    let socket = commands.socket;
    wait_for(
        Duration::from_secs(30),
        "dockerd to listen",
        &dockerd,
        || {
            std::os::unix::net::UnixStream::connect(&socket)
                .ok()
                .map(drop)
        },
    )?;
    Ok(DockerEngine {
        containerd,
        dockerd,
        socket,
    })
}

fn build_probe_image(binaries: &Binaries, socket: &Path) -> Result<()> {
    if !binaries.static_probe.is_file() {
        return Err(ClusterError::MissingBinary(format!(
            "{} (the static probe for the Docker image)",
            binaries.static_probe.display()
        )));
    }
    let output = Command::new(&binaries.node)
        .args(["image", "build", "--probe"])
        .arg(&binaries.static_probe)
        .arg("--docker-socket")
        .arg(socket)
        .output()
        .map_err(ClusterError::io(&binaries.node))?;
    if !output.status.success() {
        return Err(ClusterError::Command {
            command: "skiff-node image build".into(),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Polls `check` every 100 ms until it gives a value; fails early, with its log, if
/// `process` exits meanwhile.
pub(crate) fn wait_for<T>(
    timeout: Duration,
    what: &str,
    process: &Process,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if process.has_exited() {
            return Err(exited(process));
        }
        if Instant::now() > deadline {
            return Err(ClusterError::Timeout {
                what: what.to_string(),
                seconds: timeout.as_secs(),
                detail: format!("\n{} log:\n{}", process.name, process.log_tail(20)),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exited(process: &Process) -> ClusterError {
    ClusterError::Exited {
        process: process.name.clone(),
        status: "exited".into(),
        log: process.log.display().to_string(),
        tail: process.log_tail(20),
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(ClusterError::io(path))
}

fn run_ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(ClusterError::io("ip"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(ClusterError::Command {
        command: format!("ip {}", args.join(" ")),
        status: output.status.to_string(),
        output: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
