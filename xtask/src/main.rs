//! `cargo xtask`: the project's automation. Every command that needs the toolchain runs
//! `setup` first, so a fresh machine needs nothing but `cargo xtask <command>`.

mod bench;
mod cmd;
mod setup;
mod test;
mod up;
mod vm;

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
    /// Setup, build, then start a local multi-node cluster inside lab network namespaces,
    /// deploy the demo application (examples/demo) and print what to try next (root).
    /// Replaces a cluster an earlier `up` left; `cargo xtask down` removes it.
    Up {
        /// Worker nodes (the control plane has a node of its own).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=20))]
        nodes: u8,
        /// How node daemons run pods: embedded (namespaces and cgroups) or docker (an engine
        /// per node).
        #[arg(long, default_value = "embedded", value_parser = ["embedded", "docker"])]
        runtime: String,
        /// The control plane's store: embedded or etcd.
        #[arg(long, default_value = "embedded", value_parser = ["embedded", "etcd"])]
        store: String,
    },
    /// Remove everything `cargo xtask up` made: processes, namespaces, cgroups, eBPF pins,
    /// the state folder and the skiff config it wrote.
    Down,
    /// Setup, QEMU and Debian's kernel, build, then node daemons in QEMU VMs (Debian 12's 6.1
    /// kernel: no TCX, so the clsact path) joined to a control plane in the lab, and the
    /// service + policy smoke scenario across them (root). `cargo xtask test` runs it too.
    VmTest {
        /// Number of VMs (node daemons).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=4))]
        vms: u8,
    },
    /// Setup, then Skiff against kube-proxy's iptables and nftables modes (root), side by
    /// side in the lab: connection and request rates, throughput, programming time, end-to-end
    /// latency, per-packet cost, scheduler throughput, node daemon memory. Writes
    /// docs/benchmarks/results.json, README.md and SVG plots (about 25 minutes).
    Bench {
        /// Tiny sizes and a debug build, only to keep the benchmarks working (CI runs this);
        /// results go to target/bench/kube-proxy/ and docs/ stays untouched.
        #[arg(long)]
        quick: bool,
        /// Only these, comma-separated: traffic, programming, e2e_latency, per_packet,
        /// scheduler, node_rss (the others' runs are kept from results.json).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
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
        Command::Up {
            nodes,
            runtime,
            store,
        } => {
            setup::run(&workspace)?;
            up::up(
                &workspace,
                &up::UpArgs {
                    nodes,
                    runtime,
                    store,
                },
            )
        }
        Command::Down => up::down(),
        Command::VmTest { vms } => {
            setup::run(&workspace)?;
            vm::run(&workspace, &vm::VmTestArgs { vms })
        }
        Command::Bench { quick, only } => {
            setup::run(&workspace)?;
            bench::kube_proxy(quick, &only)
        }
        Command::BenchDns { quick } => {
            setup::run(&workspace)?;
            bench::dns(quick)
        }
    }
}
