//! `cargo xtask build`, `up` and `down`: the build of every binary, and the local cluster
//! (`skiff-local`, in local-cluster/) started from it.

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

/// `cargo xtask up` options, passed through to `skiff-local up`.
pub struct UpArgs {
    pub nodes: u8,
    pub runtime: String,
    pub store: String,
}

fn require_root(what: &str) -> anyhow::Result<()> {
    if !cmd::is_root() {
        anyhow::bail!(
            "cargo xtask {what} needs root: it makes network namespaces, cgroups and eBPF \
             programs. Run it as root, e.g. `sudo env PATH=\"$PATH\" cargo xtask {what}`"
        );
    }
    Ok(())
}

/// The state folder of the `up` cluster: logs, data, configs.
fn state_dir() -> PathBuf {
    profile_dir()
        .parent()
        .expect("target/debug")
        .join("skiff-up")
}

fn profile_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| cmd::workspace_root().join("target"), PathBuf::from)
        .join("debug")
}

/// Where `skiff` finds its config without --config.
fn user_config() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config/skiff/config"))
}

fn skiff_local() -> Command {
    Command::new(profile_dir().join("skiff-local"))
}

pub fn up(workspace: &Path, args: &UpArgs) -> anyhow::Result<()> {
    require_root("up")?;
    println!("== build");
    build()?;
    println!(
        "== starting a {}-node cluster ({} runtime, {} store) in lab namespaces",
        args.nodes, args.runtime, args.store
    );
    let mut command = skiff_local();
    command
        .arg("up")
        .args(["--nodes", &args.nodes.to_string()])
        .args(["--runtime", &args.runtime, "--store", &args.store])
        .arg("--state-dir")
        .arg(state_dir())
        .arg("--demo-dir")
        .arg(workspace.join("examples/demo"));
    if let Some(config) = user_config() {
        command.arg("--user-config").arg(config);
    }
    cmd::run(&mut command)
}

pub fn down() -> anyhow::Result<()> {
    require_root("down")?;
    let local = profile_dir().join("skiff-local");
    if !local.is_file() {
        // Nothing was ever built here, so no `up` can have run.
        println!("no cluster: {} was never built", local.display());
        return Ok(());
    }
    let mut command = skiff_local();
    command.arg("down").arg("--state-dir").arg(state_dir());
    if let Some(config) = user_config() {
        command.arg("--user-config").arg(config);
    }
    cmd::run(&mut command)
}
