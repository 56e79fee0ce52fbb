//! `skiff observe` and `skiff policy explain`: what a node daemon's data plane saw and
//! decided, asked of its API (`skiff-node run --api ADDR`).

use std::io::BufRead;

use anyhow::{bail, Context as _};
use clap::{Subcommand, ValueEnum};
use serde::Deserialize;

use crate::node_api;

#[derive(clap::Args)]
pub struct ObserveArgs {
    /// Only flows from or to this pod (NAMESPACE/POD).
    #[arg(long)]
    pod: Option<String>,
    /// Only allowed or only denied flows.
    #[arg(long, value_enum)]
    verdict: Option<Verdict>,
    /// How many recent flows to show first.
    #[arg(long, default_value_t = 20)]
    last: usize,
    /// Keep showing new flows as they happen (Ctrl-C stops).
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print each flow as a JSON object (one per line).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Verdict {
    Allowed,
    Denied,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Would a connection from one pod to another be allowed, and which policies decide?
    /// Answered from the same compiled state the kernel enforces.
    Explain {
        /// Client pod, NAMESPACE/POD.
        #[arg(long)]
        from: String,
        /// Server pod, NAMESPACE/POD.
        #[arg(long)]
        to: String,
        /// Destination port on the server pod.
        #[arg(long)]
        port: u16,
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp", "sctp"])]
        proto: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn observe(node: &str, namespace: Option<&str>, args: ObserveArgs) -> anyhow::Result<()> {
    let mut query = vec![("last", args.last.to_string())];
    if let Some(pod) = &args.pod {
        check_pod_name("--pod", pod)?;
        query.push(("pod", pod.clone()));
    }
    if let Some(ns) = namespace {
        query.push(("namespace", ns.to_string()));
    }
    if let Some(v) = args.verdict {
        let v = match v {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
        };
        query.push(("verdict", v.into()));
    }
    if args.follow {
        query.push(("follow", "true".into()));
    }
    let body = node_api::get_stream(node, "/flows", &query)?;
    if !args.json {
        println!(
            "{:<15} {:<7} {:<7} {:<30} {:<30} {:<5} POLICY",
            "TIME", "VERDICT", "DIR", "SOURCE", "DESTINATION", "PROTO"
        );
    }
    for line in body.lines() {
        let line = line.context("reading the flow stream")?;
        if line.trim().is_empty() {
            continue;
        }
        if args.json {
            println!("{line}");
            continue;
        }
        let flow: Flow = serde_json::from_str(&line).context("a flow record")?;
        let policy = match (&flow.policy, &flow.drop_reason) {
            (Some(p), _) => p.clone(),
            (None, Some(reason)) => format!("({reason})"),
            (None, None) => "(no policy selects the pod)".into(),
        };
        println!(
            "{:<15} {:<7} {:<7} {:<30} {:<30} {:<5} {policy}",
            clock(flow.time),
            flow.verdict,
            flow.direction,
            flow.source.show(),
            flow.destination.show(),
            flow.proto,
        );
    }
    Ok(())
}

pub fn explain(
    node: &str,
    from: &str,
    to: &str,
    port: u16,
    proto: &str,
    json: bool,
) -> anyhow::Result<()> {
    check_pod_name("--from", from)?;
    check_pod_name("--to", to)?;
    let query = [
        ("from", from.to_string()),
        ("to", to.to_string()),
        ("port", port.to_string()),
        ("proto", proto.to_string()),
    ];
    let body = node_api::get(node, "/explain", &query)?;
    if json {
        print!("{body}");
        return Ok(());
    }
    let e: Explanation = serde_json::from_str(&body).context("the explanation")?;
    println!(
        "{} -> {} {}/{}: {}",
        e.from,
        e.to,
        e.proto,
        e.port,
        e.verdict.to_uppercase()
    );
    for (name, pod, d) in [
        ("egress ", &e.from, &e.egress),
        ("ingress", &e.to, &e.ingress),
    ] {
        println!("  {name} at {pod}: {}", d.reason);
    }
    Ok(())
}

fn check_pod_name(flag: &str, value: &str) -> anyhow::Result<()> {
    match value.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() => Ok(()),
        _ => bail!("{flag} {value:?}: expected NAMESPACE/POD, e.g. shop/web-0"),
    }
}

/// Local wall-clock time of day, HH:MM:SS.mmm (UTC: the CLI carries no time zone database).
fn clock(time: f64) -> String {
    let ms = (time * 1000.0) as u64;
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

#[derive(Deserialize)]
struct Flow {
    time: f64,
    verdict: String,
    direction: String,
    proto: String,
    source: Endpoint,
    destination: Endpoint,
    policy: Option<String>,
    drop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Endpoint {
    ip: String,
    port: u16,
    pod: Option<String>,
}

impl Endpoint {
    fn show(&self) -> String {
        match &self.pod {
            Some(pod) => format!("{pod} {}:{}", self.ip, self.port),
            None => format!("{}:{}", self.ip, self.port),
        }
    }
}

#[derive(Deserialize)]
struct Explanation {
    from: String,
    to: String,
    port: u16,
    proto: String,
    verdict: String,
    egress: DirectionVerdict,
    ingress: DirectionVerdict,
}

#[derive(Deserialize)]
struct DirectionVerdict {
    reason: String,
}
