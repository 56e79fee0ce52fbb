//! `skiff logs` and `skiff exec`: a pod's output and commands in it, through the control
//! plane, which proxies them to the daemon of the pod's node (as kubectl goes through the
//! Kubernetes API server to the kubelet).

use std::{io::Write as _, time::Duration};

use anyhow::Context as _;

use crate::cluster::Ctx;

#[derive(clap::Args)]
#[command(long_about = "Print a pod container's log.\n\n\
    The control plane fetches it from the node daemon of the node the pod runs on. With \
    --follow, lines are printed as the container writes them, until it ends or you press \
    Ctrl-C.\n\n\
    Examples:\n  \
    skiff logs web-7d9f-x2k4 -n shop\n  \
    skiff logs web-7d9f-x2k4 -n shop -c sidecar -f\n  \
    skiff logs web-7d9f-x2k4 --previous      # the run before the last restart")]
pub struct LogsArgs {
    /// The pod.
    pub pod: String,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing new output as the container writes it.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The log of the container's previous run (before its last restart).
    #[arg(long, short = 'p')]
    pub previous: bool,
}

#[derive(clap::Args)]
#[command(
    long_about = "Run a command in a pod's container and wait for it to end.\n\n\
    The control plane has the node daemon of the pod's node run it. What the command wrote \
    to its standard output and error is printed to skiff's, and skiff exits with the \
    command's exit code (1 for skiff's own errors). There is no terminal and no standard \
    input: the command runs to its end or until --timeout.\n\n\
    Examples:\n  \
    skiff exec web-7d9f-x2k4 -n shop -- cat /etc/hostname\n  \
    skiff exec web-7d9f-x2k4 -c app --timeout 2m -- sh -c 'ls -l /data | wc -l'"
)]
pub struct ExecArgs {
    /// The pod.
    pub pod: String,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// How long the command may run before the node stops it (at most 10m).
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The most an exec may run: the control plane's limit.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?}: {e} (expected a duration such as 30s or 2m)"))?;
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(format!(
            "{text:?}: expected a duration from 1s to 10m (the control plane runs a command for at most 600 s)"
        ));
    }
    Ok(timeout)
}

/// Exits with this code, having printed everything already (an exec's command failed).
#[derive(Debug, thiserror::Error)]
#[error("the command exited with {0}")]
pub struct ExitWith(pub u8);

pub async fn logs(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<()> {
    let mut stream = ctx
        .client
        .logs(
            &ctx.namespace,
            &args.pod,
            args.container.as_deref(),
            args.follow,
            args.previous,
        )
        .await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = stream.chunk().await? {
        // Flushed at once: with --follow, each line must show as it comes.
        stdout
            .write_all(&chunk)
            .and_then(|()| stdout.flush())
            .context("writing the log to standard output")?;
    }
    Ok(())
}

pub async fn exec(ctx: &Ctx, args: ExecArgs) -> anyhow::Result<()> {
    let result = ctx
        .client
        .exec(
            &ctx.namespace,
            &args.pod,
            args.container.as_deref(),
            &args.command,
            args.timeout,
        )
        .await?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(result.stdout.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the command's output to standard output")?;
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_all(result.stderr.as_bytes())
        .and_then(|()| stderr.flush());
    match result.exit_code {
        0 => Ok(()),
        // A status a process cannot have (negative, above 255) is still a failure.
        code => Err(ExitWith(u8::try_from(code).unwrap_or(1)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_durations_within_the_control_planes_limit() {
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_timeout("0s").unwrap_err().contains("from 1s to 10m"));
        assert!(parse_timeout("11m").unwrap_err().contains("from 1s to 10m"));
        assert!(parse_timeout("soon").unwrap_err().contains("such as 30s"));
    }
}
