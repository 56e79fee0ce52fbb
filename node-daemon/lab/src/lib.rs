//! `skiff-lab`: the isolated network lab every privileged Skiff test runs in.
//!
//! A [`Lab`] is a set of network namespaces that cannot reach anything outside themselves:
//! - a *lab* namespace holding a bridge and nothing else (no uplink, no default route);
//! - *node* namespaces, each joined to the lab bridge by a veth, addressed `10.200.0.N/24`,
//!   forwarding on, owning pod CIDR `10.244.N.0/24`;
//! - *pod* namespaces behind a veth pair whose host side lives in the node namespace, IPv6
//!   off (pods are IPv4-only), with a `/32` address, a route to the node's gateway address and `10.0.0.0/8` through it (pod and
//!   service ranges), and nothing else;
//! - a cgroup v2 subtree (found through /proc/mounts) with one cgroup per pod, where socket
//!   programs attach and pod processes run;
//! - a bpffs folder for pins.
//!
//! Every name carries the test process id and a sequence number, so labs in parallel tests
//! never collide. Everything is removed on drop, also when the test panics, and a new lab
//! first sweeps what crashed runs (whose process is gone) left behind.
//!
//! A *named* lab ([`Lab::named`], `skiff-lab-NAME`) is for a cluster that outlives the process
//! that made it (`cargo xtask up`): forgetting it (`std::mem::forget`) leaves it running, the sweep never touches
//! it, and [`remove_named`] takes it down.
//!
//! Code runs inside a namespace through [`Netns::run`] (a thread that `setns`es) or
//! [`Lab::spawn_in_pod`] (a child process that joins the pod's netns and cgroup before exec),
//! never `ip netns exec`, which would hide the host's /sys and bpffs.

mod cleanup;
mod docker_engine;
mod error;
mod netns;
pub mod packet;
mod privilege;
mod sys;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::atomic::{AtomicU32, Ordering},
};

pub use docker_engine::{missing_docker_binaries, DockerEngine, EngineCommands};
pub use error::LabError;
pub use netns::Netns;
pub use privilege::privileged;

pub type Result<T, E = LabError> = std::result::Result<T, E>;

/// The prefix of every namespace, cgroup and bpffs folder a lab makes.
pub const NAME_PREFIX: &str = "skiff-lab";

static LAB_SEQUENCE: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeId(usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodId(usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExternalId(usize);

/// A machine outside the cluster: a namespace on the lab bridge with only the bridge subnet.
#[derive(Debug)]
pub struct External {
    pub name: String,
    pub netns: Netns,
    pub address: Ipv4Addr,
    cgroup: PathBuf,
}

/// A simulated node: a network namespace on the lab bridge that routes for its pods.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub netns: Netns,
    /// Address on the lab bridge.
    pub address: Ipv4Addr,
    /// First address of the node's pod CIDR (`10.244.N.0/24`).
    pub pod_cidr: Ipv4Addr,
    /// Address the node holds on every pod-facing veth; pods route through it.
    pub gateway: Ipv4Addr,
    /// The node's uplink in its namespace (on the lab bridge).
    pub uplink: &'static str,
    /// The node's cgroup: its pods' cgroups and [`Node::host_cgroup`] are children, so socket
    /// hooks attached here cover everything that runs on the node.
    pub cgroup: PathBuf,
    /// Where the node's own processes (daemons, host-side clients) run.
    pub host_cgroup: PathBuf,
    next_pod_host: u8,
}

/// A simulated pod: a network namespace behind a veth, and a cgroup.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub node: NodeId,
    pub netns: Netns,
    pub ip: Ipv4Addr,
    /// Host-side veth, in the node's namespace.
    pub host_interface: String,
    /// Its ifindex in the node's namespace: the key of the per-pod maps.
    pub host_ifindex: u32,
    pub cgroup: PathBuf,
}

/// An isolated lab. See the crate documentation.
pub struct Lab {
    id: String,
    lab_netns: Option<Netns>,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    externals: Vec<External>,
    cgroup: PathBuf,
    bpffs: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    /// Creates an empty lab: the lab namespace with its bridge, the cgroup subtree and the
    /// bpffs folder. Requires root.
    pub fn new() -> Result<Lab> {
        if !sys::is_root() {
            return Err(LabError::NotPrivileged);
        }
        cleanup::sweep_stale();
        Self::create(format!(
            "{NAME_PREFIX}-{}-{}",
            std::process::id(),
            LAB_SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Creates the lab `skiff-lab-NAME`, meant to be forgotten (`std::mem::forget`) and to
    /// outlive this process. `NAME` must not start with a digit (that would read as a crashed test's
    /// lab, which the sweep removes). Fails if a lab of that name exists.
    pub fn named(name: &str) -> Result<Lab> {
        if !sys::is_root() {
            return Err(LabError::NotPrivileged);
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(LabError::BadName(name.to_string()));
        }
        let id = format!("{NAME_PREFIX}-{name}");
        if named_exists(name) {
            return Err(LabError::Exists(id));
        }
        Self::create(id)
    }

    /// Starts `command` in the machine's own network namespace, inside the lab's cgroup (so
    /// removing the lab stops it): for processes that bridge the host's loopback into the lab.
    pub fn spawn_on_host(&mut self, name: &str, command: Command) -> Result<&mut Child> {
        let cgroup = self.cgroup.join(format!("host-{name}"));
        std::fs::create_dir_all(&cgroup).map_err(LabError::io(&cgroup))?;
        let child = sys::spawn_in(command, Path::new("/proc/self/ns/net"), Some(&cgroup))?;
        self.children.push(child);
        Ok(self.children.last_mut().expect("just pushed"))
    }

    /// Adds a tap device `name` on the lab bridge, in the lab namespace, for a virtual
    /// machine's NIC (QEMU `-netdev tap,ifname=NAME,script=no`): the VM is then one more
    /// machine on the bridge, as isolated as the node namespaces. It goes with the lab.
    pub fn add_tap(&self, name: &str) -> Result<()> {
        let lab_ns = self.lab_netns().name();
        sys::ip(&["-n", lab_ns, "tuntap", "add", "dev", name, "mode", "tap"])?;
        sys::ip(&["-n", lab_ns, "link", "set", name, "master", "br0", "up"])
    }

    /// Starts `command` in the lab namespace (where the bridge and taps are), inside the
    /// lab's cgroup, so removing the lab stops it: for the VMs' QEMU processes.
    pub fn spawn_in_lab(&mut self, name: &str, command: Command) -> Result<&mut Child> {
        let cgroup = self.cgroup.join(format!("lab-{name}"));
        std::fs::create_dir_all(&cgroup).map_err(LabError::io(&cgroup))?;
        let child = sys::spawn_in(command, self.lab_netns().path(), Some(&cgroup))?;
        self.children.push(child);
        Ok(self.children.last_mut().expect("just pushed"))
    }

    /// Kills every process in the lab's cgroup subtree (daemons, pods, engines alike) and
    /// waits until they are gone, before anything else is taken apart.
    pub fn kill_processes(&self) {
        cleanup::kill_subtree(&self.cgroup);
    }

    fn create(id: String) -> Result<Lab> {
        let cgroup = sys::cgroup2_mount()?.join(NAME_PREFIX).join(&id);
        let bpffs = sys::bpffs_mount()?.join(&id);
        // From here on, Drop removes whatever was made, even if a later step fails.
        let mut lab = Lab {
            id: id.clone(),
            lab_netns: None,
            nodes: Vec::new(),
            pods: Vec::new(),
            externals: Vec::new(),
            cgroup,
            bpffs,
            children: Vec::new(),
        };
        std::fs::create_dir_all(&lab.cgroup).map_err(LabError::io(&lab.cgroup))?;
        std::fs::create_dir_all(&lab.bpffs).map_err(LabError::io(&lab.bpffs))?;
        let netns = Netns::create(&format!("{id}-lab"))?;
        let ns = netns.name().to_string();
        lab.lab_netns = Some(netns);
        sys::ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        sys::ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"])?;
        sys::ip(&["-n", &ns, "link", "set", "br0", "up"])?;
        Ok(lab)
    }

    /// The unique id all of this lab's names start with.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lab's own cgroup v2 directory; every pod cgroup is below it.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// The lab's bpffs folder, for pinning.
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    pub fn lab_netns(&self) -> &Netns {
        self.lab_netns.as_ref().expect("created in Lab::new")
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub fn pod(&self, id: PodId) -> &Pod {
        &self.pods[id.0]
    }

    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().enumerate().map(|(i, n)| (NodeId(i), n))
    }

    /// Adds a node namespace joined to the lab bridge. `name` must be short (it is part of
    /// namespace names) and unique in this lab.
    pub fn add_node(&mut self, name: &str) -> Result<NodeId> {
        let index = self.nodes.len();
        let number = u8::try_from(index + 1)
            .ok()
            .filter(|n| *n < 250)
            .ok_or(LabError::TooMany("nodes"))?;
        let netns = Netns::create(&format!("{}-{name}", self.id))?;
        let ns = netns.name().to_string();
        let lab_side = format!("n{index}");
        let address = Ipv4Addr::new(10, 200, 0, number);
        let cgroup = self.cgroup.join(name);
        let host_cgroup = cgroup.join("host");
        let node = Node {
            name: name.to_string(),
            netns,
            address,
            pod_cidr: Ipv4Addr::new(10, 244, number, 0),
            gateway: Ipv4Addr::new(10, 244, number, 1),
            uplink: "eth0",
            cgroup: cgroup.clone(),
            host_cgroup: host_cgroup.clone(),
            next_pod_host: 2,
        };
        self.nodes.push(node);
        std::fs::create_dir_all(&host_cgroup).map_err(LabError::io(&host_cgroup))?;
        self.plug_into_bridge(&ns, &lab_side, address)?;
        self.nodes[index].netns.run(|| {
            sys::write_sysctl("net/ipv4/ip_forward", "1")?;
            // A node forwarding NodePort traffic back out of its uplink would otherwise send
            // ICMP redirects to the clients.
            sys::write_sysctl("net/ipv4/conf/all/send_redirects", "0")
        })?;
        Ok(NodeId(index))
    }

    /// Adds a machine outside the cluster on the lab bridge (`10.200.0.200` and up), for
    /// NodePort clients. It has no route beyond the bridge subnet.
    pub fn add_external(&mut self, name: &str) -> Result<ExternalId> {
        let index = self.externals.len();
        let number = u8::try_from(200 + index)
            .ok()
            .filter(|n| *n < 250)
            .ok_or(LabError::TooMany("external clients"))?;
        let netns = Netns::create(&format!("{}-x-{name}", self.id))?;
        let ns = netns.name().to_string();
        let lab_side = format!("x{index}");
        let address = Ipv4Addr::new(10, 200, 0, number);
        let cgroup = self.cgroup.join(format!("external-{name}"));
        self.externals.push(External {
            name: name.to_string(),
            netns,
            address,
            cgroup: cgroup.clone(),
        });
        std::fs::create_dir_all(&cgroup).map_err(LabError::io(&cgroup))?;
        self.plug_into_bridge(&ns, &lab_side, address)?;
        Ok(ExternalId(index))
    }

    /// Connects namespace `ns` to the lab bridge: its `eth0` holds `address/24`, the bridge
    /// side of the veth is `lab_side`.
    fn plug_into_bridge(&self, ns: &str, lab_side: &str, address: Ipv4Addr) -> Result<()> {
        let lab_ns = self.lab_netns().name();
        sys::ip(&[
            "-n", lab_ns, "link", "add", lab_side, "type", "veth", "peer", "name", "eth0", "netns",
            ns,
        ])?;
        sys::ip(&["-n", lab_ns, "link", "set", lab_side, "master", "br0", "up"])?;
        sys::ip(&["-n", ns, "link", "set", "lo", "up"])?;
        let cidr = format!("{address}/24");
        sys::ip(&["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
        sys::ip(&["-n", ns, "link", "set", "eth0", "up"])
    }

    pub fn external(&self, id: ExternalId) -> &External {
        &self.externals[id.0]
    }

    /// Runs `command` to completion on the external machine.
    pub fn run_in_external(
        &self,
        id: ExternalId,
        command: Command,
    ) -> Result<std::process::Output> {
        let external = &self.externals[id.0];
        sys::output_in(command, external.netns.path(), Some(&external.cgroup))
    }

    /// Starts `command` on the external machine; killed on drop if still running.
    pub fn spawn_in_external(&mut self, id: ExternalId, command: Command) -> Result<&mut Child> {
        let external = &self.externals[id.0];
        let child = sys::spawn_in(command, external.netns.path(), Some(&external.cgroup))?;
        self.children.push(child);
        Ok(self.children.last_mut().expect("just pushed"))
    }

    /// Runs `command` to completion as one of the node's own processes (its namespace and
    /// host cgroup).
    pub fn run_on_node(&self, node: NodeId, command: Command) -> Result<std::process::Output> {
        let node = &self.nodes[node.0];
        sys::output_in(command, node.netns.path(), Some(&node.host_cgroup))
    }

    /// Starts `command` as one of the node's own processes; killed on drop if still running.
    pub fn spawn_on_node(&mut self, node: NodeId, command: Command) -> Result<&mut Child> {
        let node = &self.nodes[node.0];
        let child = sys::spawn_in(command, node.netns.path(), Some(&node.host_cgroup))?;
        self.children.push(child);
        Ok(self.children.last_mut().expect("just pushed"))
    }

    /// Adds a pod on `node`: its namespace, a veth pair, the next free address of the node's
    /// pod CIDR and its own cgroup under the lab's.
    pub fn add_pod(&mut self, node_id: NodeId, name: &str) -> Result<PodId> {
        let host = self.nodes[node_id.0].next_pod_host;
        self.add_pod_at(node_id, name, host)
    }

    /// Adds a pod at a chosen host number of the node's pod CIDR (tests with fixed addresses).
    pub fn add_pod_at(&mut self, node_id: NodeId, name: &str, host: u8) -> Result<PodId> {
        let index = self.pods.len();
        let node = &mut self.nodes[node_id.0];
        let octets = node.pod_cidr.octets();
        let ip = Ipv4Addr::new(octets[0], octets[1], octets[2], host);
        if !(2..255).contains(&host) || self.pods.iter().any(|p| p.ip == ip) {
            return Err(LabError::PodAddress(ip));
        }
        node.next_pod_host = node.next_pod_host.max(host + 1);
        let gateway = node.gateway.to_string();
        let node_ns = node.netns.name().to_string();
        let netns = Netns::create(&format!("{}-{}-{name}", self.id, node.name))?;
        let ns = netns.name().to_string();
        let host_interface = format!("vp{index}");
        let cgroup = node.cgroup.join(name);
        self.pods.push(Pod {
            name: name.to_string(),
            node: node_id,
            netns,
            ip,
            host_interface: host_interface.clone(),
            host_ifindex: 0,
            cgroup: cgroup.clone(),
        });
        std::fs::create_dir(&cgroup).map_err(LabError::io(&cgroup))?;
        // Pods are IPv4-only. Left on, IPv6 makes the pod's kernel send neighbour discovery
        // at link-up, which the data plane rightly drops as an unsupported protocol; set
        // before eth0 exists so the interface inherits it.
        self.pods[index].netns.run(|| {
            sys::write_sysctl("net/ipv6/conf/default/disable_ipv6", "1")?;
            sys::write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")
        })?;
        let hv = host_interface.as_str();
        sys::ip(&[
            "-n", &node_ns, "link", "add", hv, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        sys::ip(&[
            "-n",
            &node_ns,
            "addr",
            "add",
            &format!("{gateway}/32"),
            "dev",
            hv,
        ])?;
        sys::ip(&["-n", &node_ns, "link", "set", hv, "up"])?;
        sys::ip(&[
            "-n",
            &node_ns,
            "route",
            "add",
            &format!("{ip}/32"),
            "dev",
            hv,
        ])?;
        sys::ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        sys::ip(&["-n", &ns, "addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
        sys::ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        sys::ip(&[
            "-n", &ns, "route", "add", &gateway, "dev", "eth0", "scope", "link",
        ])?;
        sys::ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "10.0.0.0/8",
            "via",
            &gateway,
            "dev",
            "eth0",
        ])?;
        let host_ifindex = self.nodes[node_id.0].netns.run(|| sys::ifindex(hv))?;
        self.pods[index].host_ifindex = host_ifindex;
        Ok(PodId(index))
    }

    /// Routes every node's pod CIDR through its node address on every other node
    /// (host-gateway style), so pods on different nodes reach each other.
    pub fn route_pod_cidrs(&self) -> Result<()> {
        for node in &self.nodes {
            for other in self.nodes.iter().filter(|o| o.name != node.name) {
                sys::ip(&[
                    "-n",
                    node.netns.name(),
                    "route",
                    "replace",
                    &format!("{}/24", other.pod_cidr),
                    "via",
                    &other.address.to_string(),
                ])?;
            }
        }
        Ok(())
    }

    /// Starts `command` as a process in `pod`'s network namespace and cgroup. The lab kills it
    /// on drop if it is still running.
    pub fn spawn_in_pod(&mut self, pod: PodId, command: Command) -> Result<&mut Child> {
        let pod = &self.pods[pod.0];
        let child = sys::spawn_in(command, pod.netns.path(), Some(&pod.cgroup))?;
        self.children.push(child);
        Ok(self.children.last_mut().expect("just pushed"))
    }

    /// Runs `command` to completion in `pod`'s network namespace and cgroup.
    pub fn run_in_pod(&self, pod: PodId, command: Command) -> Result<std::process::Output> {
        let pod = &self.pods[pod.0];
        sys::output_in(command, pod.netns.path(), Some(&pod.cgroup))
    }

    /// Starts `command` in `pod`'s network namespace but outside every lab cgroup (see
    /// [`Lab::run_in_pod_netns_only`]); killed on drop if still running.
    pub fn spawn_in_pod_netns_only(&mut self, pod: PodId, command: Command) -> Result<&mut Child> {
        let child = sys::spawn_in(command, self.pods[pod.0].netns.path(), None)?;
        self.children.push(child);
        Ok(self.children.last_mut().expect("just pushed"))
    }

    /// Runs `command` to completion in `pod`'s network namespace but outside every lab cgroup,
    /// as a container that escapes the socket hooks would.
    pub fn run_in_pod_netns_only(
        &self,
        pod: PodId,
        command: Command,
    ) -> Result<std::process::Output> {
        sys::output_in(command, self.pods[pod.0].netns.path(), None)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Pods before nodes before the lab namespace: each veth disappears with its namespace.
        for pod in self.pods.drain(..) {
            drop(pod.netns);
            cleanup::remove_cgroup(&pod.cgroup);
        }
        for external in self.externals.drain(..) {
            drop(external.netns);
            cleanup::remove_cgroup(&external.cgroup);
        }
        for node in self.nodes.drain(..) {
            drop(node.netns);
            cleanup::remove_cgroup(&node.host_cgroup);
            cleanup::remove_cgroup(&node.cgroup);
        }
        self.lab_netns = None;
        cleanup::remove_cgroup(&self.cgroup);
        if let Ok(cgroup2) = sys::cgroup2_mount() {
            if let Ok(relative) = self.cgroup.strip_prefix(&cgroup2) {
                for mirror in cleanup::v1_mirrors(&cgroup2, relative) {
                    cleanup::remove_cgroup(&mirror);
                }
            }
        }
        cleanup::remove_bpffs_dir(&self.bpffs);
    }
}

/// Whether the named lab `skiff-lab-NAME` exists (any of its namespaces or its cgroup).
pub fn named_exists(name: &str) -> bool {
    let prefix = format!("{NAME_PREFIX}-{name}-");
    let netns = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&prefix));
    let cgroup = sys::cgroup2_mount().is_ok_and(|c| {
        c.join(NAME_PREFIX)
            .join(format!("{NAME_PREFIX}-{name}"))
            .exists()
    });
    netns || cgroup
}

/// Removes the named lab `skiff-lab-NAME`: kills every process in its cgroup subtree, then
/// deletes its namespaces, cgroups and bpffs folder. Removing a lab that does not exist is
/// not an error.
pub fn remove_named(name: &str) -> Result<()> {
    if !sys::is_root() {
        return Err(LabError::NotPrivileged);
    }
    let id = format!("{NAME_PREFIX}-{name}");
    cleanup::remove_lab_parts(&id);
    Ok(())
}

/// Path of the `skiff-probe` binary built beside the running test binary
/// (`cargo xtask test` builds it; `SKIFF_PROBE` overrides).
pub fn probe_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SKIFF_PROBE") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(LabError::io("current executable"))?;
    // Test binaries live in target/<profile>/deps/; binaries in target/<profile>/.
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("skiff-probe"))
        .collect::<Vec<_>>();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(LabError::ProbeMissing(candidates))
}

/// The statically linked `skiff-probe` (for images without a libc): `SKIFF_PROBE_STATIC`
/// (xtask sets it), else where `cargo xtask build` puts it beside the running test's target
/// folder.
pub fn static_probe_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SKIFF_PROBE_STATIC") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // Test binaries live in target/<profile>/deps/.
    let target = exe.ancestors().nth(3).unwrap_or(Path::new("target"));
    target.join("static/x86_64-unknown-linux-gnu/release/skiff-probe")
}
