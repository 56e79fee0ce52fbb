//! `skiff`: the command-line client.
//!
//! Cluster commands (apply, get, describe, delete, scale, rollout, top) talk to the control
//! plane, `skiff-control`, through `skiff_client`, as kubectl talks to Kubernetes. `observe`
//! and `policy explain` ask a node daemon's API for what the node knows first-hand: the flows
//! its data plane judged and its policy verdicts.

mod apply;
mod cluster;
mod config;
mod describe;
mod get;
mod kinds;
mod manifests;
mod node_api;
mod observe;
mod pod_io;
mod rollout;
mod table;
mod top;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};

use crate::cluster::{render, Ctx, Reported};

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "Skiff command-line client",
    long_about = "Skiff command-line client: manage a cluster's objects through the control \
        plane (skiff-control), as kubectl does for Kubernetes, and see what a node's data plane \
        decides.\n\n\
        The control plane is found through a config file: --config, else $SKIFF_CONFIG, else \
        ~/.config/skiff/config. skiff-control writes one into its --data-dir as admin.conf.\n\n\
        Examples:\n  \
        skiff --config /var/lib/skiff-control/admin.conf get nodes\n  \
        skiff apply -f manifests/\n  \
        skiff get pods -n shop -o wide\n  \
        skiff describe pod web-7d9f-x2k4 -n shop\n  \
        skiff rollout status deployment web -n shop\n  \
        skiff logs web-7d9f-x2k4 -n shop -f\n  \
        skiff exec web-7d9f-x2k4 -n shop -- ls /\n  \
        skiff observe --verdict denied -f"
)]
struct Cli {
    /// The control plane's client config [default: ~/.config/skiff/config].
    #[arg(long, global = true, env = "SKIFF_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The namespace of namespaced objects [default: default]. For observe: only flows from
    /// or to its pods.
    #[arg(long, short = 'n', global = true, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// The node daemon API that observe and policy explain ask (host:port of
    /// `skiff-node run --api`).
    #[arg(
        long,
        global = true,
        env = "SKIFF_NODE",
        default_value = "127.0.0.1:9465"
    )]
    node: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update objects from manifest files, all at once or not at all.
    Apply(apply::ApplyArgs),
    /// Show objects as a table, or as JSON/YAML in Kubernetes' shape.
    Get(get::GetArgs),
    /// Show one object in detail, with the conditions and objects that explain its state.
    Describe(describe::DescribeArgs),
    /// Delete objects by name, or the objects of manifest files.
    Delete(apply::DeleteArgs),
    /// Set a Deployment's replica count.
    Scale(rollout::ScaleArgs),
    /// Follow, restart, undo or list a Deployment's rollouts.
    Rollout {
        #[command(subcommand)]
        command: rollout::RolloutCommand,
    },
    /// CPU and memory use of nodes or pods, as node daemons report it.
    Top {
        #[command(subcommand)]
        command: top::TopCommand,
    },
    /// Print a pod container's log (-f: follow it), from the node it runs on.
    Logs(pod_io::LogsArgs),
    /// Run a command in a pod's container and exit with its exit code.
    Exec(pod_io::ExecArgs),
    /// Show flows the node's data plane judged: new connections allowed and packets denied,
    /// with the pods on both sides and the policy rule that decided.
    Observe(observe::ObserveArgs),
    /// NetworkPolicy tools.
    Policy {
        #[command(subcommand)]
        command: observe::PolicyCommand,
    },
    /// Show the client config.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script.
    #[command(long_about = "Print a shell completion script.\n\n\
        Examples:\n  \
        skiff completion bash > /etc/bash_completion.d/skiff\n  \
        skiff completion zsh > \"${fpath[1]}/_skiff\"\n  \
        skiff completion fish > ~/.config/fish/completions/skiff.fish")]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the config in use (the token and CA left out unless --raw).
    View {
        /// Include the token and CA certificate.
        #[arg(long)]
        raw: bool,
    },
}

fn main() -> std::process::ExitCode {
    // `skiff get pods | head` must end quietly when head stops reading, as Unix tools do,
    // instead of panicking in println! (Rust ignores SIGPIPE by default).
    // SAFETY: restores the default action of a signal, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let config = config::path(cli.config.as_deref()).ok();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(pod_io::ExitWith(code)) = e.downcast_ref() {
                return std::process::ExitCode::from(*code);
            }
            if !e.is::<Reported>() {
                eprintln!("error: {}", render(&e, config.as_deref()));
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let namespace = cli.namespace.clone();
    match cli.command {
        Command::Observe(args) => observe::observe(&cli.node, namespace.as_deref(), args),
        Command::Policy {
            command:
                observe::PolicyCommand::Explain {
                    from,
                    to,
                    port,
                    proto,
                    json,
                },
        } => observe::explain(&cli.node, &from, &to, port, &proto, json),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "skiff", &mut std::io::stdout());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::View { raw },
        } => {
            let path = config::path(cli.config.as_deref())?;
            print!("{}", config::view(&config::load(&path)?, raw));
            Ok(())
        }
        command => {
            let path = config::path(cli.config.as_deref())?;
            let ctx = Ctx {
                client: config::client(&path)?,
                explicit_namespace: namespace.is_some(),
                namespace: namespace.unwrap_or_else(|| "default".into()),
                config: path,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(cluster_command(&ctx, command))
        }
    }
}

async fn cluster_command(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Apply(args) => apply::apply(ctx, args).await,
        Command::Get(args) => get::run(ctx, args).await,
        Command::Describe(args) => describe::run(ctx, args).await,
        Command::Delete(args) => apply::delete(ctx, args).await,
        Command::Scale(args) => rollout::scale(ctx, args).await,
        Command::Rollout { command } => rollout::run(ctx, command).await,
        Command::Top { command } => top::run(ctx, command).await,
        Command::Logs(args) => pod_io::logs(ctx, args).await,
        Command::Exec(args) => pod_io::exec(ctx, args).await,
        _ => unreachable!("run() handles the commands that need no control plane"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_before_and_after_the_command() {
        let cli = Cli::try_parse_from([
            "skiff",
            "-n",
            "shop",
            "get",
            "pods",
            "-l",
            "app in (web,api)",
            "-o",
            "wide",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("shop"));
        let Command::Get(args) = cli.command else {
            panic!("not get")
        };
        assert_eq!(args.selector.as_deref(), Some("app in (web,api)"));
        let cli = Cli::try_parse_from(["skiff", "observe", "-n", "shop", "--config", "x"]).unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.config, Some(PathBuf::from("x")));
    }

    #[test]
    fn exec_takes_the_command_after_a_double_dash() {
        let cli = Cli::try_parse_from([
            "skiff",
            "exec",
            "web-1",
            "-n",
            "shop",
            "-c",
            "app",
            "--timeout",
            "2m",
            "--",
            "ls",
            "-l",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("shop"));
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(args.command, ["ls", "-l"]);
        assert_eq!(args.container.as_deref(), Some("app"));
        assert_eq!(args.timeout, std::time::Duration::from_secs(120));
        assert!(Cli::try_parse_from(["skiff", "exec", "web-1"]).is_err());
        let cli = Cli::try_parse_from(["skiff", "logs", "web-1", "-f", "--previous"]).unwrap();
        let Command::Logs(args) = cli.command else {
            panic!("not logs")
        };
        assert!(args.follow && args.previous);
    }
}
