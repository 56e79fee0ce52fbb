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
//! - [`cgroup`]: a container's cgroup, on cgroup v2 or, for the controllers a hybrid host
//!   keeps on v1, the v1 hierarchies.

pub mod cgroup;
pub mod embedded;
pub mod init;
pub mod supervisor;

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

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
    /// For the embedded runtime the whole command line; for image runtimes the arguments
    /// after the image's entrypoint when the pod gives no command.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub hostname: String,
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
}

/// What the pod provides to its containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// The pod's network namespace (`/proc/PID/ns/net` or a bind-mounted file).
    pub netns: PathBuf,
    /// The pod's cgroup v2 directory; each container gets a child cgroup.
    pub cgroup: PathBuf,
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
    fn log_path(&self, id: &ContainerId) -> PathBuf;
    fn usage(&self, id: &ContainerId) -> Result<Usage, RuntimeError>;
    /// Every container this runtime knows, running or exited, for adoption after a restart.
    fn list(&self) -> Result<Vec<(ContainerId, ContainerSpec)>, RuntimeError>;
}
