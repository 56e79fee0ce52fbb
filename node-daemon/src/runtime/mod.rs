//! Container runtimes: how a node runs a pod's containers.
//!
//! The runtime owns a container's processes, its cgroup below the pod's (with the memory
//! and CPU limits), its log file and its record in the node's state directory. It does not
//! own the pod's network namespace or the pod cgroup: the networking layer and the pod
//! manager make those and hand them over as a [`Sandbox`]. Restart decisions live in
//! [`supervisor`], outside the runtime, so every runtime gets the same policy.
//!
//! - [`embedded`]: the default when no Docker socket is found. Containers run from the
//!   host's filesystem (no images) in the pod's network namespace and their own mount, PID
//!   and UTS namespaces, under a small init shim ([`init`]) that outlives the daemon.
//! - [`docker`]: containers in a Docker engine through bollard; each pod gets a pause
//!   container holding its network namespace, and [`image`] builds the local image with
//!   the probe binary and busybox (no registry is needed).
//! - [`logs`]: logs as readers, following appends and rotations.
//! - [`cgroup`]: a container's cgroup, on cgroup v2 or, for the controllers a hybrid host
//!   keeps on v1, the v1 hierarchies.

pub mod cgroup;
pub mod docker;
pub mod embedded;
pub mod image;
pub mod init;
pub mod logs;
pub mod supervisor;

use std::{
    fmt,
    io::Read,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use crate::dns::ResolverConfig;
use serde::{Deserialize, Serialize};

pub use docker::DockerRuntime;
pub use embedded::EmbeddedRuntime;

/// What to run. `argv` is already resolved (image entrypoint and command merged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The pod, as `namespace/name`.
    pub pod: String,
    /// The container's name in the pod.
    pub name: String,
    /// The image, for runtimes that have images (the embedded runtime runs host programs).
    #[serde(default)]
    pub image: Option<String>,
    /// The command line; with `image_entrypoint`, the arguments after the image's own
    /// entrypoint instead (empty: the image's default command).
    pub argv: Vec<String>,
    #[serde(default)]
    pub image_entrypoint: bool,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub hostname: String,
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// The pod's resolver configuration, mounted on the container's /etc/resolv.conf by
    /// the embedded runtime (Docker takes it from the pause container's DNS settings).
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
}

/// What the pod provides to its containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// The pod's network namespace (`/proc/PID/ns/net` or a bind-mounted file).
    pub netns: PathBuf,
    /// The pod's cgroup v2 directory; each container gets a child cgroup.
    pub cgroup: PathBuf,
    /// The container holding the pod's network namespace, for runtimes that make one.
    pub infra: Option<ContainerId>,
}

/// A network namespace a runtime made for a pod (Docker's pause container holds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeSandbox {
    pub infra: ContainerId,
    /// `/proc/PID/ns/net` of the infra container: the pod network is wired inside it.
    pub netns: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContainerId(pub String);

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// `pid` is the host's process id of the container's first process.
    Running { pid: u32, started: SystemTime },
    /// `code` and `signal` are both `None` when the container vanished without a trace
    /// (its init was killed).
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        oom_killed: bool,
        finished: SystemTime,
    },
}

impl ContainerState {
    pub fn is_running(&self) -> bool {
        matches!(self, ContainerState::Running { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_usage_usec: u64,
    pub memory_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {container}: {step} ({path}): {source}")]
    Io {
        container: String,
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {container}: state file {path}: {source}")]
    StateFile {
        container: String,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no container {0}")]
    NotFound(ContainerId),
    #[error("container {0} is not running")]
    NotRunning(ContainerId),
    #[error("container {container}: invalid spec: {reason}")]
    InvalidSpec { container: String, reason: String },
    #[error("container {container}: the init shim {shim} failed: {message}")]
    Shim {
        container: String,
        shim: PathBuf,
        message: String,
    },
    #[error("docker: {step}: {message}")]
    Docker { step: String, message: String },
    #[error("container {container}: exec of {argv:?} did not finish within {timeout:?}")]
    ExecTimeout {
        container: String,
        argv: Vec<String>,
        timeout: Duration,
    },
}

impl RuntimeError {
    /// An error constructor for `map_err` on an I/O step.
    pub(crate) fn io(
        container: &str,
        step: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let container = container.to_string();
        let path = path.to_path_buf();
        move |source| RuntimeError::Io {
            container,
            step,
            path,
            source,
        }
    }
}

/// A container runtime. Implementations keep their own records, so a restarted daemon
/// finds (and adopts) the containers that kept running without it.
pub trait Runtime: Send + Sync {
    fn name(&self) -> &'static str;
    fn start(&self, sandbox: &Sandbox, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError>;
    fn state(&self, id: &ContainerId) -> Result<ContainerState, RuntimeError>;
    /// SIGTERM, up to `grace` to exit, then SIGKILL. Returns the exited state.
    fn stop(&self, id: &ContainerId, grace: Duration) -> Result<ContainerState, RuntimeError>;
    /// Forgets the container: kills what still runs, deletes its cgroup, record and logs.
    fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError>;
    /// Runs `argv` inside the running container; killed after `timeout`.
    fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError>;
    /// The container's output so far; with `follow`, also what it writes until it ends.
    fn logs(&self, id: &ContainerId, follow: bool) -> Result<Box<dyn Read + Send>, RuntimeError>;
    /// Makes the pod's network namespace when the runtime needs to own it (Docker); `None`
    /// when the node makes it. `remove` removes the infra container again. `dns`: the
    /// pod's resolver, for runtimes that write resolv.conf themselves.
    fn create_sandbox(
        &self,
        _pod: &str,
        _cgroup: &Path,
        _dns: Option<&ResolverConfig>,
    ) -> Result<Option<RuntimeSandbox>, RuntimeError> {
        Ok(None)
    }
    fn usage(&self, id: &ContainerId) -> Result<Usage, RuntimeError>;
    /// Every container this runtime knows, running or exited, for adoption after a restart.
    fn list(&self) -> Result<Vec<(ContainerId, ContainerSpec)>, RuntimeError>;
}
