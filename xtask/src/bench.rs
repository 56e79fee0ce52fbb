//! `cargo xtask bench` and `cargo xtask bench-dns`: build the binaries the benchmarks start
//! (release, or debug with `--quick`), then run `skiff-bench` (benchmarks/) or
//! `node-daemon/benches/dns.rs`.

use std::process::Command;

use crate::{cmd, up};

/// Skiff against kube-proxy's modes: `docs/benchmarks/` gets results.json, the report and
/// the plots; `--quick` writes to target/bench/kube-proxy/ and leaves docs/ alone.
pub fn kube_proxy(quick: bool, only: &[String]) -> anyhow::Result<()> {
    let profile = if quick { "dev" } else { "release" };
    println!("== build ({profile})");
    cmd::run(cmd::cargo().args(["build", "--bins", "--profile", profile]))?;
    up::build_static_probe()?;
    let workspace = cmd::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), std::path::PathBuf::from);
    let binary = target
        .join(if quick { "debug" } else { "release" })
        .join("skiff-bench");
    let out = if quick {
        target.join("bench/kube-proxy")
    } else {
        workspace.join("docs/benchmarks")
    };
    println!(
        "== benchmarks against kube-proxy{}",
        if quick { " (quick)" } else { "" }
    );
    let mut bench = Command::new(binary);
    bench.arg("--out").arg(&out);
    if quick {
        bench.arg("--quick");
    }
    if !only.is_empty() {
        bench.arg("--only").arg(only.join(","));
    }
    cmd::run(&mut bench)
}

pub fn dns(quick: bool) -> anyhow::Result<()> {
    let profile = if quick { "dev" } else { "release" };
    println!("== build ({profile})");
    cmd::run(cmd::cargo().args(["build", "--bins", "--profile", profile]))?;
    println!("== DNS benchmark{}", if quick { " (quick)" } else { "" });
    let mut bench = cmd::cargo();
    bench.args([
        "bench",
        "-p",
        "skiff-node",
        "--bench",
        "dns",
        "--profile",
        profile,
    ]);
    if quick {
        bench.args(["--", "--quick"]);
    }
    cmd::run(&mut bench)
}
