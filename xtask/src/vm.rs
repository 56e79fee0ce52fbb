//! `cargo xtask vm-test`: QEMU and a Debian kernel for the guests, then `skiff-vm-test`
//! (vm-tests/), which boots node daemons in VMs and runs the smoke scenario across them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::{cmd, up};

const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/skiff-bookworm-backports.list";

pub struct VmTestArgs {
    pub vms: u8,
}

pub fn run(workspace: &Path, args: &VmTestArgs) -> anyhow::Result<()> {
    if !cmd::is_root() {
        bail!("the VM test needs root (taps on a lab bridge, the control plane in a namespace)");
    }
    ensure_qemu()?;
    let kernel_root = ensure_kernel(workspace)?;
    up::build()?;
    let vm_dir = target_dir(workspace).join("vm");
    cmd::run(
        Command::new(target_dir(workspace).join("debug/skiff-vm-test"))
            .arg("run")
            .arg("--kernel-root")
            .arg(&kernel_root)
            .arg("--vms")
            .arg(args.vms.to_string())
            .arg("--state-dir")
            .arg(vm_dir.join("run"))
            .arg("--result")
            .arg(vm_dir.join("last-result.json")),
    )
    .context("the VM smoke scenario failed")
}

fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from)
}

/// qemu-system-x86 from bookworm-backports on Debian 12: bookworm's own package would
/// remove the qemu-utils 10 this machine kind comes with.
fn ensure_qemu() -> anyhow::Result<()> {
    if cmd::stdout_of(Command::new("qemu-system-x86_64").arg("--version")).is_some() {
        return Ok(());
    }
    let codename = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(str::to_string))
        .unwrap_or_default();
    let mut install = Command::new("apt-get");
    install
        .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q"])
        .arg("--no-install-recommends")
        .env("DEBIAN_FRONTEND", "noninteractive");
    if codename == "bookworm" {
        if !Path::new(BACKPORTS_SOURCE).exists() {
            println!(
                "vm-test: adding bookworm-backports as an apt source ({BACKPORTS_SOURCE}) for \
                 qemu-system-x86 10"
            );
            std::fs::write(
                BACKPORTS_SOURCE,
                "deb http://deb.debian.org/debian bookworm-backports main\n",
            )
            .with_context(|| format!("writing {BACKPORTS_SOURCE}"))?;
        }
        install.args(["-t", "bookworm-backports"]);
    }
    println!("vm-test: installing qemu-system-x86: the VMs' emulator");
    cmd::run(Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=600", "update", "-q"]))?;
    cmd::run(install.arg("qemu-system-x86")).context("installing qemu-system-x86")
}

/// The kernel Debian's `linux-image-amd64` points at (6.1 LTS on Debian 12), unpacked into
/// target/vm/kernel/PACKAGE with a modules.dep; downloaded once.
fn ensure_kernel(workspace: &Path) -> anyhow::Result<PathBuf> {
    let depends = cmd::stdout_of(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))
        .context("apt-cache depends linux-image-amd64")?;
    let package = depends
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Depends: ")
                .filter(|p| p.starts_with("linux-image-"))
        })
        .context("linux-image-amd64 depends on no linux-image-* package")?
        .to_string();
    let release = package
        .strip_prefix("linux-image-")
        .expect("filtered above")
        .to_string();
    let kernels = target_dir(workspace).join("vm/kernel");
    let root = kernels.join(&package);
    let modules_dep = root.join("lib/modules").join(&release).join("modules.dep");
    if modules_dep.is_file() {
        return Ok(root);
    }
    println!("vm-test: downloading {package}, the guests' kernel");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&kernels)?;
    cmd::run(
        Command::new("apt-get")
            .args(["download", &package])
            .current_dir(&kernels),
    )?;
    let deb = std::fs::read_dir(&kernels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb"))?;
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    cmd::run(
        Command::new("busybox")
            .args(["depmod", "-b"])
            .arg(&root)
            .arg(&release),
    )
    .context("busybox depmod (busybox-static)")?;
    std::fs::remove_file(&deb)?;
    Ok(root)
}
