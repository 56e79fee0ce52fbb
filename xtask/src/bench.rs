//! `cargo xtask bench-dns`: builds the binaries the benchmark starts (release, or debug
//! with `--quick`) and runs `node-daemon/benches/dns.rs`.

use crate::cmd;

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
