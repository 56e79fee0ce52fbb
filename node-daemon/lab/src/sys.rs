//! Thin wrappers over the system calls and tools the lab uses.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Output},
};

use nix::sched::CloneFlags;

use crate::{LabError, Result};

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `ip ARGS...`, turning a failure into an error that shows the command and stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(LabError::io("running ip (is iproute2 installed?)"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(LabError::Command {
        command: format!("ip {}", args.join(" ")),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// Writes `/proc/sys/KEY` for the calling thread's network namespace.
pub fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(LabError::io(&path))
}

pub fn ifindex(interface: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(interface)
        .map_err(|e| LabError::io(format!("ifindex of {interface}"))(e.into()))
}

fn mount_of_type(fs_type: &str) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == fs_type).then(|| PathBuf::from(target))
    })
}

/// The cgroup v2 mount point: `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on
/// hybrid ones.
pub fn cgroup2_mount() -> Result<PathBuf> {
    mount_of_type("cgroup2").ok_or(LabError::NoMount("cgroup2"))
}

/// The bpffs mount point, mounting one at /sys/fs/bpf when the machine has none.
pub fn bpffs_mount() -> Result<PathBuf> {
    if let Some(path) = mount_of_type("bpf") {
        return Ok(path);
    }
    let target = Path::new("/sys/fs/bpf");
    std::fs::create_dir_all(target).map_err(LabError::io(target))?;
    nix::mount::mount(
        Some("bpf"),
        target,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| LabError::io("mounting bpffs at /sys/fs/bpf")(e.into()))?;
    mount_of_type("bpf").ok_or(LabError::NoMount("bpf"))
}

/// Prepares `command` to join `netns` (and `cgroup`, if given) between fork and exec.
fn enter(mut command: Command, netns: &Path, cgroup: Option<&Path>) -> Result<Command> {
    let netns_fd: OwnedFd = File::open(netns).map_err(LabError::io(netns))?.into();
    let procs = cgroup
        .map(|dir| {
            let path = dir.join("cgroup.procs");
            OpenOptions::new()
                .write(true)
                .open(&path)
                .map(OwnedFd::from)
                .map_err(LabError::io(&path))
        })
        .transpose()?;
    // SAFETY: the closure only makes async-signal-safe system calls (write, setns) on file
    // descriptors opened before the fork.
    unsafe {
        command.pre_exec(move || {
            if let Some(procs) = &procs {
                // "0" moves the writing process itself.
                let mut file = File::from(procs.try_clone()?);
                file.write_all(b"0")?;
                std::mem::forget(file);
            }
            if libc::setns(netns_fd.as_raw_fd(), CloneFlags::CLONE_NEWNET.bits()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command)
}

pub fn spawn_in(command: Command, netns: &Path, cgroup: Option<&Path>) -> Result<Child> {
    let mut command = enter(command, netns, cgroup)?;
    let program = format!("{:?}", command.get_program());
    command.spawn().map_err(LabError::io(program))
}

pub fn output_in(command: Command, netns: &Path, cgroup: Option<&Path>) -> Result<Output> {
    let mut command = enter(command, netns, cgroup)?;
    let program = format!("{:?}", command.get_program());
    command.output().map_err(LabError::io(program))
}
