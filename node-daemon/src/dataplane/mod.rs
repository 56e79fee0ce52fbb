//! Loading, attaching and writing the eBPF data plane.
//!
//! [`DataPlane`] holds the loaded object. With a pin folder ([`LoadOptions::pin_dir`]) every
//! map and link is pinned on bpffs so the data plane outlives the daemon: a restarted daemon
//! reuses the maps as they are and swaps its freshly loaded programs in behind the existing
//! links (see [`pins`]). Attaching to an interface by name resolves the name in the calling
//! thread's network namespace, which is why the daemon runs inside its node's namespace.

mod batch;
mod endpoints;
mod error;
mod fullness;
mod pins;
mod policy_maps;
mod services;
mod test_run;

use std::{
    fs::File,
    io,
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use aya::{
    programs::{
        links::{FdLink, LinkError, PinnedLink},
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
        CgroupAttachMode, CgroupSockAddr, LinkOrder, SchedClassifier, TcAttachType,
    },
    sys::SyscallError,
    util::KernelVersion,
    Ebpf, EbpfLoader,
};
use skiff_common::{capacity, names, programs};

pub use endpoints::{pinned_drop_counts, pinned_pod_traffic, EndpointTraffic, Endpoints};
pub use error::DataPlaneError;
pub use fullness::{map_fullness, MapFullness};
pub use pins::{PinLayout, MAP_LAYOUT_VERSION};
pub use policy_maps::{pinned_policy_counters, FlowEvents, PolicyMaps, PolicyMapsSnapshot};
pub use services::{
    proto_name, BackendEntry, Frontend, FrontendEntry, FrontendHeader, OldFrontend, ServiceMaps,
    ServiceMapsSnapshot, ServiceWrites,
};
pub use test_run::{TcProgram, TestRunOutcome};

/// The eBPF object built by `build.rs` from `ebpf-programs/programs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/skiff"));

/// clsact filters get a fixed priority and handle, so a restarted daemon can replace its own
/// filters in place (netlink replace) instead of stacking new ones.
const CLSACT_PRIORITY: u16 = 100;
const CLSACT_HANDLE: TcHandle = TcHandle::new(0, 0x5c1f);

/// How TC programs are attached to interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX links (kernel >= 6.6): multi-program, owned by a link fd, no qdisc.
    Tcx,
    /// A `clsact` qdisc with direct-action filters over netlink: what kernels < 6.6 offer.
    Clsact,
}

impl AttachMode {
    /// TCX where the kernel has it, clsact otherwise.
    pub fn detect() -> AttachMode {
        if KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0)) {
            AttachMode::Tcx
        } else {
            AttachMode::Clsact
        }
    }
}

/// Map sizes, in entries. The defaults come from `skiff_common::capacity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub services: u32,
    pub backends: u32,
    pub maglev: u32,
    pub affinity: u32,
    pub sock_nat: u32,
    pub conntrack: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Capacities {
            services: capacity::SERVICES,
            backends: capacity::BACKENDS,
            maglev: capacity::MAGLEV,
            affinity: capacity::AFFINITY,
            sock_nat: capacity::SOCK_NAT,
            conntrack: capacity::CONNTRACK,
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub attach_mode: AttachMode,
    /// bpffs folder to pin maps and links in; `None` keeps them with the process (tests,
    /// `skiff-node check`).
    pub pin_dir: Option<PathBuf>,
    /// Sizes for newly created maps. Maps already pinned keep the size they were made with.
    pub capacities: Capacities,
}

impl LoadOptions {
    pub fn unpinned(attach_mode: AttachMode) -> LoadOptions {
        LoadOptions {
            attach_mode,
            pin_dir: None,
            capacities: Capacities::default(),
        }
    }
}

/// The loaded data plane: every program verified and loaded, maps created or reopened.
pub struct DataPlane {
    ebpf: Ebpf,
    attach_mode: AttachMode,
    pins: Option<PinLayout>,
}

impl DataPlane {
    /// Loads the object without pinning anything.
    pub fn load(attach_mode: AttachMode) -> Result<DataPlane, DataPlaneError> {
        Self::load_with(&LoadOptions::unpinned(attach_mode))
    }

    /// Loads every program of the object into the kernel (running the verifier on each).
    pub fn load_with(options: &LoadOptions) -> Result<DataPlane, DataPlaneError> {
        let pins = options.pin_dir.as_deref().map(PinLayout::new);
        let mut loader = EbpfLoader::new();
        let c = options.capacities;
        for (name, size) in [
            (names::SERVICES, c.services),
            (names::BACKENDS, c.backends),
            (names::MAGLEV, c.maglev),
            (names::AFFINITY, c.affinity),
            (names::SOCK_NAT, c.sock_nat),
            (names::CONNTRACK, c.conntrack),
        ] {
            loader.map_max_entries(name, size);
        }
        if let Some(pins) = &pins {
            pins.prepare()?;
            for name in names::ALL {
                loader.map_pin_path(name, pins.map(name));
            }
        }
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .map_err(|e| DataPlaneError::Load(Box::new(e)))?;
        for name in [programs::FROM_POD, programs::TO_POD, programs::FROM_NETWORK] {
            let program: &mut SchedClassifier = program_mut(&mut ebpf, name)?;
            program
                .load()
                .map_err(|e| DataPlaneError::program(name, e))?;
        }
        for name in programs::SOCK_HOOKS {
            let program: &mut CgroupSockAddr = program_mut(&mut ebpf, name)?;
            program
                .load()
                .map_err(|e| DataPlaneError::program(name, e))?;
        }
        Ok(DataPlane {
            ebpf,
            attach_mode: options.attach_mode,
            pins,
        })
    }

    /// The kernel ids of this data plane's programs, by name (for run counts in /metrics).
    pub fn program_ids(&self) -> Vec<(&'static str, u32)> {
        [programs::FROM_POD, programs::TO_POD, programs::FROM_NETWORK]
            .into_iter()
            .chain(programs::SOCK_HOOKS)
            .filter_map(|name| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some((name, info.id()))
            })
            .collect()
    }

    pub fn attach_mode(&self) -> AttachMode {
        self.attach_mode
    }

    pub fn pin_layout(&self) -> Option<&PinLayout> {
        self.pins.as_ref()
    }

    /// Attaches `from_pod` to the ingress and `to_pod` to the egress of a pod's host-side
    /// veth, named in the calling thread's network namespace.
    pub fn attach_pod_interface(&mut self, interface: &str) -> Result<(), DataPlaneError> {
        accept_local_sources(interface)?;
        self.attach_tc(programs::FROM_POD, interface, TcAttachType::Ingress)?;
        self.attach_tc(programs::TO_POD, interface, TcAttachType::Egress)
    }

    /// Forgets a pod veth's programs: their pins go (the links went with the veth).
    pub fn detach_pod_interface(&mut self, interface: &str) -> Result<(), DataPlaneError> {
        if let Some(pins) = &self.pins {
            for side in ["ingress", "egress"] {
                remove_pin(&pins.link(&format!("tc-{interface}-{side}")))?;
            }
        }
        Ok(())
    }

    /// Attaches `from_network` to the ingress of the node's uplink (NodePort, and replies
    /// from backends on other nodes).
    pub fn attach_uplink(&mut self, interface: &str) -> Result<(), DataPlaneError> {
        accept_local_sources(interface)?;
        self.attach_tc(programs::FROM_NETWORK, interface, TcAttachType::Ingress)
    }

    fn attach_tc(
        &mut self,
        name: &'static str,
        interface: &str,
        direction: TcAttachType,
    ) -> Result<(), DataPlaneError> {
        let attach_error = |source| DataPlaneError::Attach {
            program: name,
            target: interface.to_string(),
            source,
        };
        if self.attach_mode == AttachMode::Clsact {
            match tc::qdisc_add_clsact(interface) {
                Ok(()) => {}
                // Already there: added for the other direction, by a previous daemon run, or
                // by another TC user.
                Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(attach_error(e.into())),
            }
        }
        let mode = self.attach_mode;
        let pin = self.pins.as_ref().map(|pins| {
            let side = match direction {
                TcAttachType::Ingress => "ingress",
                _ => "egress",
            };
            pins.link(&format!("tc-{interface}-{side}"))
        });
        let program: &mut SchedClassifier = program_mut(&mut self.ebpf, name)?;
        let Some(pin) = pin else {
            // Unpinned: the link lives (and is detached) with this DataPlane.
            let options = match mode {
                AttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
                AttachMode::Clsact => TcAttachOptions::Netlink(NlOptions::default()),
            };
            program
                .attach_with_options(interface, direction, options)
                .map_err(attach_error)?;
            return Ok(());
        };
        match mode {
            AttachMode::Tcx => {
                // A link left by a previous run is updated in place: the program behind it is
                // swapped atomically and its pin stays valid.
                if let Some(old) = open_pinned_link(&pin)? {
                    let link = SchedClassifierLink::try_from(FdLink::from(old))
                        .map_err(link_error(name, interface))?;
                    match program.attach_to_link(link) {
                        Ok(id) => {
                            drop(program.take_link(id).map_err(attach_error)?);
                            return Ok(());
                        }
                        // The interface it was attached to is gone: start over.
                        Err(_) => remove_pin(&pin)?,
                    }
                }
                let id = program
                    .attach_with_options(
                        interface,
                        direction,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(attach_error)?;
                let link = program.take_link(id).map_err(attach_error)?;
                let link = FdLink::try_from(link).map_err(link_error(name, interface))?;
                link.pin(&pin).map_err(|e| DataPlaneError::Pins {
                    path: pin.clone(),
                    source: io::Error::other(e),
                })?;
            }
            AttachMode::Clsact => {
                let replaced = SchedClassifierLink::attached(
                    interface,
                    direction,
                    CLSACT_PRIORITY,
                    CLSACT_HANDLE,
                    None,
                )
                .ok()
                .and_then(|link| program.attach_to_link(link).ok());
                let id = match replaced {
                    Some(id) => id,
                    None => program
                        .attach_with_options(
                            interface,
                            direction,
                            TcAttachOptions::Netlink(NlOptions {
                                priority: CLSACT_PRIORITY,
                                handle: CLSACT_HANDLE,
                                ..Default::default()
                            }),
                        )
                        .map_err(attach_error)?,
                };
                // A netlink filter is not owned by a file descriptor: it stays until removed.
                // Forgetting the link keeps aya from detaching it when the daemon exits.
                std::mem::forget(program.take_link(id).map_err(attach_error)?);
            }
        }
        Ok(())
    }

    /// Attaches the socket hooks (`connect4`, `sendmsg4`, `recvmsg4`, `getpeername4`) to a
    /// cgroup v2 directory: the project's pod subtree or the node's own, never the machine's
    /// root cgroup. Sub-cgroups inherit them.
    pub fn attach_cgroup(&mut self, cgroup_dir: &Path) -> Result<(), DataPlaneError> {
        let cgroup_error = |source| DataPlaneError::Cgroup {
            path: cgroup_dir.to_path_buf(),
            source,
        };
        let cgroup = File::open(cgroup_dir).map_err(cgroup_error)?;
        let inode = cgroup.metadata().map_err(cgroup_error)?.ino();
        let pins = self.pins.clone();
        for name in programs::SOCK_HOOKS {
            let attach_error = |source| DataPlaneError::Attach {
                program: name,
                target: cgroup_dir.display().to_string(),
                source,
            };
            let program: &mut CgroupSockAddr = program_mut(&mut self.ebpf, name)?;
            // Attached as BPF links (kernel >= 5.7), which coexist with other programs on the
            // cgroup by design; the kernel rejects attach flags such as ALLOW_MULTI on links.
            let id = program
                .attach(cgroup.as_fd(), CgroupAttachMode::Single)
                .map_err(attach_error)?;
            let Some(pins) = &pins else { continue };
            let pin = pins.link(&format!("cgroup-{inode}-{name}"));
            // The new link runs beside the previous run's until that one is released below;
            // running both is harmless (the second sees an already translated address).
            let old = open_pinned_link(&pin)?;
            let link = program.take_link(id).map_err(attach_error)?;
            let link = FdLink::try_from(link)
                .map_err(link_error(name, &cgroup_dir.display().to_string()))?;
            if let Some(old) = old {
                old.unpin().map_err(|source| DataPlaneError::Pins {
                    path: pin.clone(),
                    source,
                })?;
            }
            link.pin(&pin).map_err(|e| DataPlaneError::Pins {
                path: pin.clone(),
                source: io::Error::other(e),
            })?;
        }
        Ok(())
    }

    /// Records the calling thread's network namespace as the node's own (see
    /// `skiff_common::settings::HOST_NETNS_COOKIE`). The daemon calls it once, from the node's
    /// namespace, before attaching the socket hooks.
    pub fn mark_host_netns(&mut self) -> Result<(), DataPlaneError> {
        let cookie = netns_cookie().map_err(DataPlaneError::NetnsCookie)?;
        let map = self
            .ebpf
            .map_mut(names::SETTINGS)
            .ok_or(DataPlaneError::MissingMap(names::SETTINGS))?;
        let mut settings: aya::maps::Array<&mut aya::maps::MapData, u64> =
            aya::maps::Array::try_from(map).map_err(DataPlaneError::map(names::SETTINGS))?;
        settings
            .set(skiff_common::settings::HOST_NETNS_COOKIE, cookie, 0)
            .map_err(DataPlaneError::map(names::SETTINGS))
    }

    /// Hands the service maps to their one writer, the service reconciler. A second call fails.
    pub fn take_service_maps(&mut self) -> Result<ServiceMaps, DataPlaneError> {
        let mut take = |name: &'static str| {
            self.ebpf
                .take_map(name)
                .ok_or(DataPlaneError::MapsTaken(name))
        };
        ServiceMaps::from_maps(
            take(names::SERVICES)?,
            take(names::BACKENDS)?,
            take(names::MAGLEV)?,
        )
    }

    /// Hands the policy maps to their one writer, the policy reconciler. It writes only the
    /// policy revision slot of `SETTINGS`, through its own handle. A second call fails.
    pub fn take_policy_maps(&mut self) -> Result<PolicyMaps, DataPlaneError> {
        let settings = match self.ebpf.map(names::SETTINGS) {
            Some(aya::maps::Map::Array(data)) => {
                let fd = data
                    .fd()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| DataPlaneError::MapHandle(names::SETTINGS, e))?;
                aya::maps::MapData::from_fd(fd).map_err(DataPlaneError::map(names::SETTINGS))?
            }
            _ => return Err(DataPlaneError::MissingMap(names::SETTINGS)),
        };
        let mut take = |name: &'static str| {
            self.ebpf
                .take_map(name)
                .ok_or(DataPlaneError::MapsTaken(name))
        };
        PolicyMaps::from_maps(take(names::IPCACHE)?, take(names::POLICY)?, settings)
    }

    /// Hands the flow event ring buffer to its one reader. A second call fails.
    pub fn take_flow_events(&mut self) -> Result<FlowEvents, DataPlaneError> {
        let map = self
            .ebpf
            .take_map(names::FLOW_EVENTS)
            .ok_or(DataPlaneError::MapsTaken(names::FLOW_EVENTS))?;
        policy_maps::flow_events(map)
    }

    /// The local-endpoint maps (pod registrations and their traffic counters).
    pub fn endpoints(&mut self) -> Result<Endpoints<'_>, DataPlaneError> {
        Endpoints::new(&mut self.ebpf)
    }

    /// Drop counters summed over CPUs, by reason.
    pub fn drop_counts(&self) -> Result<Vec<(skiff_common::DropReason, u64)>, DataPlaneError> {
        endpoints::drop_counts(&self.ebpf)
    }
}

/// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE, kernel >= 5.14).
fn netns_cookie() -> io::Result<u64> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")
        .or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid socket, and a buffer of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Removes a node's pinned data plane: links (which detaches the programs once no process
/// holds them) and maps (dropping tracked connections). For `skiff-node reset` and tests.
pub fn remove_pins(pin_dir: &Path) -> Result<(), DataPlaneError> {
    match std::fs::remove_dir_all(pin_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataPlaneError::Pins {
            path: pin_dir.to_path_buf(),
            source,
        }),
    }
}

/// A node routes for its pods, for other nodes' pods and for NodePort clients, as a CNI's
/// bridge or Cilium sets it up: IPv4 forwarding on, and no ICMP redirects, which a node that
/// sends NodePort traffic back out of its uplink would otherwise send to the clients.
/// Returns whether forwarding was off before (worth a log line: the daemon changed the host).
pub fn enable_routing() -> Result<bool, DataPlaneError> {
    let forward = PathBuf::from("/proc/sys/net/ipv4/ip_forward");
    let was_off = std::fs::read_to_string(&forward)
        .map_err(|source| DataPlaneError::Sysctl {
            path: forward.clone(),
            source,
        })?
        .trim()
        == "0";
    for (path, value) in [
        (forward, "1"),
        (
            PathBuf::from("/proc/sys/net/ipv4/conf/all/send_redirects"),
            "0",
        ),
    ] {
        std::fs::write(&path, value).map_err(|source| DataPlaneError::Sysctl { path, source })?;
    }
    Ok(was_off)
}

/// NodePort NAT runs on ingress, before routing, and can give a packet one of the node's own
/// addresses as its source (a masqueraded client, or a reply restored to come from the node
/// port). The kernel drops such packets as martians unless `accept_local` is set on the
/// interface they arrive on, so it is set on the interfaces the data plane owns (the uplink
/// and pod veths), not node-wide. Written from the calling thread, so in its namespace.
fn accept_local_sources(interface: &str) -> Result<(), DataPlaneError> {
    let path = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{interface}/accept_local"));
    std::fs::write(&path, "1").map_err(|source| DataPlaneError::Sysctl { path, source })
}

fn open_pinned_link(path: &Path) -> Result<Option<PinnedLink>, DataPlaneError> {
    match PinnedLink::from_pin(path) {
        Ok(link) => Ok(Some(link)),
        Err(LinkError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(DataPlaneError::Pins {
            path: path.to_path_buf(),
            source: io::Error::other(e),
        }),
    }
}

fn link_error<'a>(
    program: &'static str,
    target: &'a str,
) -> impl FnOnce(LinkError) -> DataPlaneError + 'a {
    move |source| DataPlaneError::Link {
        program,
        target: target.to_string(),
        source,
    }
}

fn remove_pin(path: &Path) -> Result<(), DataPlaneError> {
    std::fs::remove_file(path).map_err(|source| DataPlaneError::Pins {
        path: path.to_path_buf(),
        source,
    })
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DataPlaneError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or(DataPlaneError::MissingProgram(name))?;
    program
        .try_into()
        .map_err(|e| DataPlaneError::program(name, e))
}

/// Treats "no such element" as success: removing what is already gone is not an error.
fn ignore_missing(result: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}
