//! `cargo xtask`: the project's automation. Every command that needs the toolchain runs
//! `setup` first, so a fresh machine needs nothing but `cargo xtask <command>`.

mod bench;
mod cmd;
mod setup;
mod test;
mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Skiff's build, setup and test automation", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what this machine lacks (Debian packages, bpf-linker, the eBPF toolchain link).
    /// Idempotent; about a second when everything is present.
    Setup,
    /// Setup, then build every binary (node daemon with its embedded eBPF object, probe) and
    /// the statically linked probe in target/static/x86_64-unknown-linux-gnu/release/.
    Build,
    /// Setup, then the whole suite: fmt, clippy, unit tests, BPF_PROG_TEST_RUN fixtures and
    /// the privileged lab tests (run as root; under CI=true a privileged test that cannot
    /// run fails).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        cargo_test_args: Vec<String>,
    },
    /// Setup, build, and start what exists of the cluster (see the README).
    Up,
    /// Setup, then the cluster DNS benchmark (root): dnsperf from a lab pod against a node's
    /// DNS server, written to docs/benchmarks/dns.md and dns.json.
    BenchDns {
        /// Tiny sizes and a debug build, only to keep the benchmark working (CI runs this);
        /// results go to target/bench/ and docs/ stays untouched.
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the cause chain; a backtrace would only show xtask's own frames.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let workspace = cmd::workspace_root();
    std::env::set_current_dir(&workspace)?;
    match Cli::parse().command {
        Command::Setup => setup::run(&workspace),
        Command::Build => {
            setup::run(&workspace)?;
            up::build()
        }
        Command::Test { cargo_test_args } => {
            setup::run(&workspace)?;
            test::run(&cargo_test_args)
        }
        Command::Up => {
            setup::run(&workspace)?;
            up::run(&workspace)
        }
        Command::BenchDns { quick } => {
            setup::run(&workspace)?;
            bench::dns(quick)
        }
    }
}
