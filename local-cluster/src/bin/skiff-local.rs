//! `skiff-local`: a local multi-node cluster in a lab namespace. `cargo xtask up` and
//! `cargo xtask down` build the workspace and run this; see docs/quickstart.md.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use skiff_local_cluster::{forward, up, Binaries, Runtime, Store};

#[derive(Parser)]
#[command(about = "A local multi-node Skiff cluster inside an isolated lab namespace (root)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum RuntimeArg {
    /// Pods as plain namespaces and cgroups, run from the host's files.
    Embedded,
    /// A Docker engine per node (containerd and dockerd, inside the lab).
    Docker,
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreArg {
    /// The control plane's own crash-safe store.
    Embedded,
    /// etcd, on the control-plane node.
    Etcd,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster and deploy the demo, replacing a cluster an earlier `up` left.
    Up {
        /// Worker nodes (the control plane has a node of its own).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=20))]
        nodes: u8,
        #[arg(long, value_enum, default_value_t = RuntimeArg::Embedded)]
        runtime: RuntimeArg,
        #[arg(long, value_enum, default_value_t = StoreArg::Embedded)]
        store: StoreArg,
        /// Logs, data and configs of the cluster.
        #[arg(long)]
        state_dir: PathBuf,
        /// The demo application's manifests.
        #[arg(long)]
        demo_dir: PathBuf,
        /// Also write the host's config where `skiff` finds it without --config.
        #[arg(long)]
        user_config: Option<PathBuf>,
    },
    /// Remove the cluster `up` started: every process, namespace, cgroup and file.
    Down {
        #[arg(long)]
        state_dir: PathBuf,
        /// The config `up` wrote; removed only if it is still the one `up` wrote.
        #[arg(long)]
        user_config: Option<PathBuf>,
    },
    /// Forward TCP ports of the host's loopback into a lab namespace (`up` starts it).
    #[command(
        after_help = "Example:\n  skiff-local forward --netns /run/netns/skiff-lab-up-x-host \\\n    \
                  127.0.0.1:6443=10.200.0.1:6443 127.0.0.1:30080=10.200.0.2:30080"
    )]
    Forward {
        /// The namespace to connect from (a file such as /run/netns/NAME).
        #[arg(long, value_parser = forward::netns_path)]
        netns: PathBuf,
        /// LISTEN=TARGET pairs: where to listen on the host, what to reach in the namespace.
        #[arg(required = true)]
        routes: Vec<forward::Route>,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up {
            nodes,
            runtime,
            store,
            state_dir,
            demo_dir,
            user_config,
        } => {
            let binaries = Binaries::beside_current_exe()?;
            let options = up::UpOptions {
                nodes: usize::from(nodes),
                runtime: match runtime {
                    RuntimeArg::Embedded => Runtime::Embedded,
                    RuntimeArg::Docker => Runtime::Docker,
                },
                store: match store {
                    StoreArg::Embedded => Store::Embedded,
                    StoreArg::Etcd => Store::Etcd,
                },
                binaries: binaries.clone(),
                state_dir: state_dir.clone(),
                demo_dir,
                user_config,
            };
            let report = up::up(options, &mut |step| println!("  {step}"))
                .context("bringing the cluster up (logs are in the state folder)")?;
            print_hints(&report, &state_dir, &binaries);
            Ok(())
        }
        Command::Down {
            state_dir,
            user_config,
        } => {
            up::down(&state_dir, user_config.as_deref())?;
            println!("  removed the cluster and {}", state_dir.display());
            Ok(())
        }
        Command::Forward { netns, routes } => {
            let listeners = forward::bind(&netns, &routes)?;
            // Readiness signal for whoever started us.
            println!("forwarding");
            listeners.serve();
            Ok(())
        }
    }
}

fn print_hints(report: &up::UpReport, state_dir: &std::path::Path, binaries: &Binaries) {
    let skiff = binaries.cli.display();
    let config = match &report.user_config_written {
        Some(path) => format!("(config written to {})", path.display()),
        None => format!("export SKIFF_CONFIG={}", report.host_config.display()),
    };
    let nodes: Vec<String> = report
        .nodes
        .iter()
        .map(|(name, port)| format!("{name}: --node 127.0.0.1:{port}"))
        .collect();
    println!(
        "\nThe cluster is up ({:.0} s). The demo answered through {front}:\n  {answer}\n\n\
         Try next {config}; `skiff` is {skiff}:\n  \
         skiff get nodes\n  \
         skiff get pods -n demo -o wide\n  \
         curl http://{front}/                        the front end, through the NodePort\n  \
         skiff scale deployment api --replicas 4 -n demo      scale one tier, not the stack\n  \
         skiff apply -f examples/demo-load.yaml       jobs for the workers; watch the autoscaler:\n  \
         skiff get hpa -n demo -w\n  \
         skiff exec -n demo FRONT_POD -- skiff-probe connect data:8080 --proto http\n  \
         \x20                                            denied by policy: front may not reach data\n  \
         skiff observe --verdict denied -n demo --node 127.0.0.1:PORT   on the data pod's node:\n  \
         \x20                                            the drop, with the policy behind it\n  \
         skiff policy explain --help                  why a flow is allowed or denied\n\n\
         Node APIs (observe, policy explain) per node: {nodes}\n\
         Logs: {state}/*.log   Walkthrough: docs/quickstart.md   Remove it all: cargo xtask down",
        report.elapsed.as_secs_f64(),
        front = up::HOST_FRONT,
        answer = report.demo_answer,
        nodes = nodes.join(", "),
        state = state_dir.display(),
    );
}
