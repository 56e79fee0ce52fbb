//! Loading, attaching and writing the eBPF data plane.
//!
//! [`DataPlane`] holds the loaded object. Attaching to an interface by name resolves the name
//! in the calling thread's network namespace, which is why the daemon runs inside its node's
//! namespace (and tests attach from a thread that entered one).

mod endpoints;
mod error;
mod services;
mod test_run;

use std::{fs::File, os::fd::AsFd, path::Path};

use aya::{
    programs::{
        tc::{self, NlOptions, TcAttachOptions},
        CgroupAttachMode, CgroupSockAddr, LinkOrder, SchedClassifier, TcAttachType,
    },
    util::KernelVersion,
    Ebpf, EbpfLoader,
};
use skiff_common::programs;

pub use endpoints::{EndpointTraffic, Endpoints};
pub use error::DataPlaneError;
pub use services::{ServiceBackend, ServiceFrontend, Services};
pub use test_run::{PodProgram, TestRunOutcome};

/// The eBPF object built by `build.rs` from `ebpf-programs/programs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/skiff"));

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

/// The loaded data plane: every program verified and loaded, maps created.
pub struct DataPlane {
    ebpf: Ebpf,
    attach_mode: AttachMode,
}

impl DataPlane {
    /// Loads every program of the object into the kernel (running the verifier on each).
    pub fn load(attach_mode: AttachMode) -> Result<DataPlane, DataPlaneError> {
        let mut ebpf = EbpfLoader::new()
            .load(EBPF_OBJECT)
            .map_err(|e| DataPlaneError::Load(Box::new(e)))?;
        for name in [programs::FROM_POD, programs::TO_POD] {
            let program: &mut SchedClassifier = program_mut(&mut ebpf, name)?;
            program
                .load()
                .map_err(|e| DataPlaneError::program(name, e))?;
        }
        let connect4: &mut CgroupSockAddr = program_mut(&mut ebpf, programs::SOCK_CONNECT4)?;
        connect4
            .load()
            .map_err(|e| DataPlaneError::program(programs::SOCK_CONNECT4, e))?;
        Ok(DataPlane { ebpf, attach_mode })
    }

    pub fn attach_mode(&self) -> AttachMode {
        self.attach_mode
    }

    /// Attaches `from_pod` to the ingress and `to_pod` to the egress of a pod's host-side
    /// veth, named in the calling thread's network namespace. The links live as long as
    /// this `DataPlane`.
    pub fn attach_pod_interface(&mut self, interface: &str) -> Result<(), DataPlaneError> {
        if self.attach_mode == AttachMode::Clsact {
            match tc::qdisc_add_clsact(interface) {
                Ok(()) => {}
                // A previous daemon run (or another TC user) already added it.
                Err(tc::TcError::AlreadyAttached) => {}
                Err(e) => {
                    return Err(DataPlaneError::Attach {
                        program: "clsact qdisc",
                        target: interface.to_string(),
                        source: e.into(),
                    })
                }
            }
        }
        for (name, direction) in [
            (programs::FROM_POD, TcAttachType::Ingress),
            (programs::TO_POD, TcAttachType::Egress),
        ] {
            let options = match self.attach_mode {
                AttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
                AttachMode::Clsact => TcAttachOptions::Netlink(NlOptions::default()),
            };
            let program: &mut SchedClassifier = program_mut(&mut self.ebpf, name)?;
            program
                .attach_with_options(interface, direction, options)
                .map_err(|e| DataPlaneError::Attach {
                    program: name,
                    target: interface.to_string(),
                    source: e,
                })?;
        }
        Ok(())
    }

    /// Attaches the socket load balancer to a cgroup v2 directory (the project's pod
    /// subtree; never the machine's root cgroup). Sub-cgroups inherit it.
    pub fn attach_cgroup(&mut self, cgroup_dir: &Path) -> Result<(), DataPlaneError> {
        let cgroup = File::open(cgroup_dir).map_err(|e| DataPlaneError::Cgroup {
            path: cgroup_dir.to_path_buf(),
            source: e,
        })?;
        let program: &mut CgroupSockAddr = program_mut(&mut self.ebpf, programs::SOCK_CONNECT4)?;
        // Attached as a BPF link (kernel >= 5.7), which coexists with other programs on the
        // cgroup by design; the kernel rejects attach flags such as ALLOW_MULTI on links.
        program
            .attach(cgroup.as_fd(), CgroupAttachMode::Single)
            .map_err(|e| DataPlaneError::Attach {
                program: programs::SOCK_CONNECT4,
                target: cgroup_dir.display().to_string(),
                source: e,
            })?;
        Ok(())
    }

    /// The local-endpoint maps (pod registrations and their traffic counters).
    pub fn endpoints(&mut self) -> Result<Endpoints<'_>, DataPlaneError> {
        Endpoints::new(&mut self.ebpf)
    }

    /// The service maps.
    pub fn services(&mut self) -> Result<Services<'_>, DataPlaneError> {
        Services::new(&mut self.ebpf)
    }

    /// Drop counters summed over CPUs, by reason.
    pub fn drop_counts(&self) -> Result<Vec<(skiff_common::DropReason, u64)>, DataPlaneError> {
        endpoints::drop_counts(&self.ebpf)
    }
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
