//! `cargo xtask up`: today it builds everything and starts what exists, the node daemon's
//! data plane, to prove this machine can run it. The multi-node cluster with the demo
//! application replaces this when the control plane and node agent exist.

use std::{path::Path, process::Command};

use crate::cmd;

pub fn build() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args(["build", "--bins"]))
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
