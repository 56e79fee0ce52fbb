use std::path::PathBuf;

use aya::programs::ProgramError;

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("loading the eBPF object failed")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the eBPF object has no program `{0}` (object and daemon out of step?)")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map `{0}` (object and daemon out of step?)")]
    MissingMap(&'static str),
    #[error("program `{name}`")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching `{program}` to {target} failed")]
    Attach {
        program: &'static str,
        target: String,
        #[source]
        source: ProgramError,
    },
    #[error("link of `{program}` on {target}")]
    Link {
        program: &'static str,
        target: String,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("setting {path}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening cgroup directory {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("map `{map}`")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("service {frontend} has {count} backends; at most {max} fit one service")]
    TooManyBackends {
        frontend: String,
        count: usize,
        max: usize,
    },
    #[error(
        "pin folder {pin_dir} is not on a bpffs ({checked} is not): mount one with \
         `mount -t bpf bpf /sys/fs/bpf`; note that `ip netns exec` hides the host's \
         /sys/fs/bpf, so start the daemon in a namespace with `nsenter --net=...` instead"
    )]
    NotBpffs { pin_dir: PathBuf, checked: PathBuf },
    #[error("bpffs pin folder {path}")]
    Pins {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the maps pinned in {pin_dir} have layout {found:?} but this daemon uses {expected:?}; \
         remove them with `skiff-node reset --pin-dir {pin_dir}` (this drops tracked connections)"
    )]
    LayoutMismatch {
        pin_dir: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("the maps were already taken by their owner (`{0}`)")]
    MapsTaken(&'static str),
    #[error("reading the network namespace cookie (SO_NETNS_COOKIE, kernel >= 5.14)")]
    NetnsCookie(#[source] std::io::Error),
    #[error("opening a second handle on map `{0}`")]
    MapHandle(&'static str, #[source] std::io::Error),
    #[error("counting CPUs")]
    Cpus(#[source] std::io::Error),
}

impl DataPlaneError {
    pub(crate) fn program(name: &'static str, source: ProgramError) -> Self {
        DataPlaneError::Program { name, source }
    }

    pub(crate) fn map(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| DataPlaneError::Map { map, source }
    }
}
