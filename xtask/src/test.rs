//! `cargo xtask test`: the quality gates and the whole test suite, in that order.

use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
    time::Instant,
};

use anyhow::bail;

use crate::{bench, cmd, up, vm};

pub fn run(cargo_test_args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("== format");
    cmd::run(cmd::cargo().args(["fmt", "--all", "--check"]))?;
    println!("== clippy (warnings are errors)");
    cmd::run(cmd::cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    println!("== build (the lab tests run skiff-probe)");
    cmd::run(cmd::cargo().args(["build", "--bins"]))?;
    println!("== static skiff-probe (its test checks the ELF and runs it)");
    up::build_static_probe()?;
    if !cmd::is_root() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        if ci {
            bail!("CI=true but not running as root: the privileged tests must run in CI");
        }
        println!("note: not root, so privileged tests will skip (they fail under CI=true)");
    }
    println!("== tests: unit, BPF_PROG_TEST_RUN fixtures, lab");
    let mut counts = cargo_test(cargo_test_args)?;
    let whole_suite = cargo_test_args.is_empty() && cmd::is_root();
    if whole_suite {
        // One test more: node daemons in QEMU on Debian's 6.1 kernel (the clsact path).
        println!("== VM test: the smoke scenario across two QEMU VMs (vm-tests/)");
        match vm::run(&cmd::workspace_root(), &vm::VmTestArgs { vms: 2 }) {
            Ok(()) => counts.passed += 1,
            Err(e) => {
                eprintln!("VM test FAILED: {e:#}");
                counts.failed += 1;
            }
        }
    }
    if whole_suite && counts.failed == 0 {
        println!("== benchmarks, --quick (kept working; nothing asserted about speed)");
        bench::dns(true)?;
        bench::kube_proxy(true, &[])?;
    }
    println!("== done in {:.0} s", started.elapsed().as_secs_f64());
    // The closing line CI reads.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    if counts.failed > 0 {
        bail!("{} tests failed", counts.failed);
    }
    if counts.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs `cargo test`, passing its output through and adding up its `test result:` lines.
fn cargo_test(extra: &[String]) -> anyhow::Result<Counts> {
    let mut command = cmd::cargo();
    command
        .arg("test")
        .args(extra)
        .env("SKIFF_PROBE_STATIC", up::static_probe())
        .stdout(Stdio::piped());
    println!("$ {}", cmd::describe(&command));
    let mut child = command.spawn()?;
    let mut counts = Counts::default();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(summary) = line.strip_prefix("test result: ") {
            counts.passed += count_before(summary, " passed");
            counts.failed += count_before(summary, " failed");
            counts.ignored += count_before(summary, " ignored");
        }
    }
    let status = child.wait()?;
    if !status.success() && counts.failed == 0 {
        bail!("cargo test failed ({status}) before reporting a failed test");
    }
    Ok(counts)
}

/// In "ok. 3 passed; 0 failed; ...", the number before `label`.
fn count_before(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn reads_cargo_test_summaries() {
        let ok = "ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.3s";
        assert_eq!(count_before(ok, " passed"), 12);
        assert_eq!(count_before(ok, " ignored"), 1);
        let failed = "FAILED. 4 passed; 2 failed; 0 ignored; 0 measured";
        assert_eq!(count_before(failed, " passed"), 4);
        assert_eq!(count_before(failed, " failed"), 2);
    }
}
