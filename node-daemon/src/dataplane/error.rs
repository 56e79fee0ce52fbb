use std::path::PathBuf;

use aya::programs::ProgramError;

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the eBPF object has no program `{0}` (object and daemon out of step?)")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map `{0}` (object and daemon out of step?)")]
    MissingMap(&'static str),
    #[error("program `{name}`: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching `{program}` to {target} failed: {source}")]
    Attach {
        program: &'static str,
        target: String,
        #[source]
        source: ProgramError,
    },
    #[error("link of `{program}` on {target}: {source}")]
    Link {
        program: &'static str,
        target: String,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("setting {path}: {source}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening cgroup directory {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("map `{map}`: {source}")]
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
    #[error("bpffs pin folder {path}: {source}")]
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
    #[error("counting CPUs: {0}")]
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
