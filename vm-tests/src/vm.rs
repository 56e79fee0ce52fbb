//! One QEMU virtual machine on the lab bridge.
//!
//! KVM on this machine kind cannot boot stock kernels, so QEMU emulates the CPU (TCG): slow
//! (seconds to load the data plane rather than milliseconds) but a real, different kernel.
//! The NIC is a tap on the lab bridge, so the VM is one more machine of the lab, with no
//! route anywhere else.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::Context as _;
use skiff_lab::Lab;
use skiff_local_cluster::Process;

pub struct VmSpec {
    pub name: String,
    pub address: Ipv4Addr,
    pub memory_mib: u32,
}

pub struct Vm {
    pub name: String,
    pub address: Ipv4Addr,
    /// QEMU; its log is the serial console: the kernel's messages, init's and the daemon's
    /// output.
    pub process: Process,
}

/// Boots `spec` from `kernel` and `initramfs`; its console goes to `state/NAME.console`,
/// QEMU's own messages to `state/NAME.qemu.log`.
pub fn start(
    lab: &mut Lab,
    index: usize,
    spec: &VmSpec,
    kernel: &Path,
    initramfs: &Path,
    state: &Path,
) -> anyhow::Result<Vm> {
    let tap = format!("vmtap{index}");
    lab.add_tap(&tap)
        .with_context(|| format!("adding tap {tap} to the lab bridge"))?;
    let console: PathBuf = state.join(format!("{}.console", spec.name));
    let qemu_log_path = state.join(format!("{}.qemu.log", spec.name));
    let qemu_log = std::fs::File::create(&qemu_log_path)
        .with_context(|| format!("creating {}", qemu_log_path.display()))?;
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-machine", "q35", "-cpu", "max", "-smp", "1"])
        .args(["-m", &spec.memory_mib.to_string()])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .args(["-nodefaults", "-no-user-config"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 quiet skiff.node={} skiff.ip={}/24",
            spec.name, spec.address
        ))
        .arg("-netdev")
        .arg(format!("tap,id=net0,ifname={tap},script=no,downscript=no"))
        .arg("-device")
        .arg(format!(
            "virtio-net-pci,netdev=net0,mac=52:54:00:5c:1f:{:02x},romfile=",
            index + 1
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(qemu_log));
    let child = lab
        .spawn_in_lab(&spec.name, command)
        .context("starting qemu-system-x86_64 (cargo xtask vm-test installs it)")?;
    Ok(Vm {
        name: spec.name.clone(),
        address: spec.address,
        process: Process {
            name: spec.name.clone(),
            pid: child.id(),
            log: console,
        },
    })
}
