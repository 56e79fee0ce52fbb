use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab needs root (network namespaces, cgroups, bpffs); run the test as root")]
    NotPrivileged,
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no {0} mount in /proc/mounts")]
    NoMount(&'static str),
    #[error("lab name {0:?}: expected a non-empty name that does not start with a digit")]
    BadName(String),
    #[error("a lab named {0} already exists; remove it first (cargo xtask down)")]
    Exists(String),
    #[error("too many {0} in one lab")]
    TooMany(&'static str),
    #[error("pod address {0} is taken or outside the node's .2-.254")]
    PodAddress(std::net::Ipv4Addr),
    #[error("skiff-probe not found at {0:?}: build it with `cargo build -p skiff-probe` (cargo xtask test does)")]
    ProbeMissing(Vec<PathBuf>),
}

impl LabError {
    pub(crate) fn io(what: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> LabError {
        let what = what.as_ref().display().to_string();
        move |source| LabError::Io { what, source }
    }
}
