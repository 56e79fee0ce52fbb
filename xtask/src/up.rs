//! `cargo xtask up`: today it builds everything and starts what exists, the node daemon's
//! data plane, to prove this machine can run it. The multi-node cluster with the demo
//! application replaces this when the control plane and node agent exist.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::cmd;

pub fn build() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args(["build", "--bins"]))?;
    build_static_probe()
}

/// Where [`build_static_probe`] puts `skiff-probe`.
pub fn static_probe() -> PathBuf {
    static_target_dir().join("x86_64-unknown-linux-gnu/release/skiff-probe")
}

/// A dir of its own: in `target/`, any plain `--release --target x86_64-unknown-linux-gnu`
/// build would share this one's output path and fingerprints, each rebuilding over the other.
fn static_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| cmd::workspace_root().join("target"), PathBuf::from)
        .join("static")
}

/// `skiff-probe` linked statically against glibc, so the same file runs in any pod's mount
/// namespace and in an image without a libc. No musl target can be installed on this machine
/// kind; `cargo rustc` puts the flag on the probe alone (RUSTFLAGS would reach every crate of
/// the build).
pub fn build_static_probe() -> anyhow::Result<()> {
    cmd::run(
        cmd::cargo()
            .args(["rustc", "--release", "-p", "skiff-probe"])
            .args([
                "--bin",
                "skiff-probe",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .arg("--target-dir")
            .arg(static_target_dir())
            .args(["--", "-C", "target-feature=+crt-static"]),
    )?;
    println!("static probe: {}", static_probe().display());
    Ok(())
}

pub fn run(workspace: &Path) -> anyhow::Result<()> {
    build()?;
    let node = workspace.join("target/debug/skiff-node");
    println!("== starting the node daemon's data plane on this kernel");
    cmd::run(Command::new(&node).arg("check"))?;
    println!(
        "\nWhat works today:\n  \
         {node} run --help      run the data plane on a node (inside its network namespace)\n  \
         docs/services.md       how services are load-balanced, and how to inspect a node\n  \
         docs/network-policy.md NetworkPolicy semantics, skiff observe, skiff policy explain\n  \
         cargo xtask test       the whole suite, including real traffic in an isolated lab\n\
         The local multi-node cluster and demo app arrive with the control-plane and node issues.",
        node = node.display()
    );
    Ok(())
}
