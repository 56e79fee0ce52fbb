//! `cargo xtask setup`: installs what a fresh machine of this kind lacks, idempotently.
//! The verified recipe is in ../shared/notes/toolchain.md.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{bail, Context as _};

use crate::cmd;

/// Debian packages and why the project needs each.
const PACKAGES: &[(&str, &str)] = &[
    (
        "rustc-web",
        "rustc/cargo 1.96 with LLVM 22, used to build the eBPF crate",
    ),
    ("cargo-web", "the cargo that goes with rustc-web"),
    (
        "libstd-rust-web-dev-bpf",
        "a prebuilt `core` for bpfel-unknown-none (no build-std needed)",
    ),
    ("llvm-22-dev", "LLVM 22, which bpf-linker links against"),
    (
        "iproute2",
        "`ip` and `tc` for the lab's namespaces, veths and bridges",
    ),
    ("iputils-ping", "ping, for lab connectivity checks"),
    (
        "bind9-dnsutils",
        "dig, to query the cluster DNS from pods in the DNS tests (docs/dns.md)",
    ),
    (
        "dnsperf",
        "dnsperf, the cluster DNS benchmark's load generator",
    ),
    (
        "bpftool",
        "bpftool, to inspect the pinned maps and programs (docs/services.md)",
    ),
    (
        "etcd-server",
        "etcd v3, the control plane's alternative store; its tests start a real etcd",
    ),
    (
        "docker.io",
        "dockerd, for the Docker runtime; its tests start their own engine",
    ),
    (
        "containerd",
        "containerd, which dockerd runs containers through",
    ),
    ("runc", "runc, containerd's OCI runtime"),
    (
        "iptables",
        "iptables and iptables-restore: dockerd needs them on its PATH; the benchmarks load kube-proxy's iptables rules with them",
    ),
    (
        "nftables",
        "nft, for the benchmarks' kube-proxy nftables mode (in lab namespaces only)",
    ),
    (
        "busybox-static",
        "a static busybox, the shell and tools of the Docker image skiff-node builds",
    ),
];

/// Exactly the bpf-linker release verified with this LLVM and these aya crates.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// The rustup toolchain name Debian's compiler is linked under; node-daemon/build.rs uses it.
const EBPF_TOOLCHAIN: &str = "debian-web";

pub fn run(workspace: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut installed = Vec::new();

    let missing = missing_packages();
    if !missing.is_empty() {
        for name in &missing {
            let why = PACKAGES
                .iter()
                .find(|(p, _)| p == name)
                .map_or("", |(_, w)| *w);
            println!("setup: installing Debian package {name}: {why}");
        }
        apt_install(&missing)?;
        installed.push(format!("{} Debian packages", missing.len()));
    }

    if !rustup_has_toolchain() {
        println!(
            "setup: linking Debian's rustc into rustup as `{EBPF_TOOLCHAIN}`: aya-build compiles \
             the eBPF crate with it (rustup's own compilers have no BPF core)"
        );
        cmd::run(Command::new("rustup").args(["toolchain", "link", EBPF_TOOLCHAIN, "/usr"]))?;
        installed.push("the debian-web toolchain link".to_string());
    }

    let tools = workspace.join(".tools");
    if !bpf_linker_ok(&tools) {
        println!(
            "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 into {} (links the \
             eBPF object; takes a few minutes once)",
            tools.display()
        );
        cmd::run(
            cmd::cargo()
                .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
                .args(["--locked", "--no-default-features", "--features", "llvm-22"])
                .arg("--root")
                .arg(&tools)
                // Without these its build script finds Debian's default llvm-config (LLVM 14).
                .env("LLVM_PREFIX", "/usr/lib/llvm-22")
                .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22"),
        )?;
        installed.push(format!("bpf-linker {BPF_LINKER_VERSION}"));
    }

    if installed.is_empty() {
        println!(
            "setup: everything present ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "setup: installed {} in {:.0} s",
            installed.join(", "),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn missing_packages() -> Vec<&'static str> {
    let names: Vec<&str> = PACKAGES.iter().map(|(name, _)| *name).collect();
    // One dpkg-query for all: "name ii " for installed packages. It exits non-zero when any
    // name is unknown to dpkg, yet still lists the others, so its status is not used.
    let status = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(&names)
        .stderr(std::process::Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    names
        .into_iter()
        .filter(|name| {
            !status.lines().any(|line| {
                let mut fields = line.split_whitespace();
                fields.next() == Some(name) && fields.next() == Some("ii")
            })
        })
        .collect()
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if !cmd::is_root() {
        bail!(
            "installing {} needs root: run `sudo apt-get install {}` or rerun as root",
            packages.join(" "),
            packages.join(" ")
        );
    }
    let lock_timeout = "DPkg::Lock::Timeout=600";
    cmd::run(Command::new("apt-get").args(["-o", lock_timeout, "update", "-q"]))?;
    cmd::run(
        Command::new("apt-get")
            .args([
                "-o",
                lock_timeout,
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
            ])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("installing Debian packages")
}

fn rustup_has_toolchain() -> bool {
    cmd::stdout_of(Command::new("rustup").args(["toolchain", "list"])).is_some_and(|list| {
        list.lines()
            .any(|l| l.split_whitespace().next() == Some(EBPF_TOOLCHAIN))
    })
}

fn bpf_linker_ok(tools: &Path) -> bool {
    cmd::stdout_of(Command::new(tools.join("bin/bpf-linker")).arg("--version"))
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
}
