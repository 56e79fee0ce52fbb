//! `skiff-probe`: the project's test, demo and benchmark workload (like Kubernetes' agnhost).
//!
//! - `serve`: answers on TCP, UDP and HTTP ports with its name and the client address it saw;
//! - `connect`: one exchange, printed as a JSON line; exits 0 on success, 1 on failure;
//! - `load`: continuous traffic until stdin closes, or with `--mode` a timed benchmark;
//! - `reach`, `session`: reachability matrices and long-lived flows for the lab tests.
//!
//! Built statically by `cargo xtask build`, so one binary runs in any pod's mount namespace.

mod bench;
mod resolve;
mod serve;
mod wire;

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::wire::Exchange;

#[derive(Parser)]
#[command(
    version,
    about = "Skiff's test, demo and benchmark workload: serve, connect and load probes",
    after_help = "Targets are IP:PORT or NAME:PORT; names resolve through the nameservers\n\
                  and search list of /etc/resolv.conf (A records; the binary is static).\n\
                  Run `skiff-probe help <command>` for each command's examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Do nothing until SIGTERM: the process holding a Docker pod's network namespace.
    Pause,
    /// Serve on the given ports; every answer is "NAME CLIENT_IP:CLIENT_PORT".
    #[command(after_help = "Examples:\n  \
        skiff-probe serve --tcp 8080 --udp 8080 --http 80 --name web-1\n  \
        POD_NAME=web-1 skiff-probe serve --bind 127.0.0.1 --tcp 9000\n\n\
        skiff-probe serve --http 8080 --upstream api:8080 --cpu-per-request 5ms\n\n\
        Prints \"serving\" once every port listens. TCP also sinks `load --mode stream` data\n\
        and HTTP reads request bodies, so any serve is a benchmark server.")]
    Serve {
        /// TCP port: greet with the answer, then answer every line until the client closes.
        #[arg(long = "tcp", value_name = "PORT")]
        tcp: Vec<u16>,
        /// UDP port: answer every datagram.
        #[arg(long = "udp", value_name = "PORT")]
        udp: Vec<u16>,
        /// HTTP port: answer every request with 200 and the answer as body.
        #[arg(long = "http", value_name = "PORT")]
        http: Vec<u16>,
        /// Name to answer with [default: $POD_NAME, else the hostname].
        #[arg(long)]
        name: Option<String>,
        /// Address to bind.
        #[arg(long, default_value = "0.0.0.0")]
        bind: std::net::IpAddr,
        /// HTTP: spin the CPU this long per request (load for an autoscaler): milliseconds,
        /// or with a unit (20ms, 1s).
        #[arg(long = "cpu-per-request", value_name = "DURATION", value_parser = parse_timeout,
              default_value = "0")]
        cpu_per_request: Duration,
        /// HTTP: ask this HOST:PORT (an HTTP tier; names resolve through /etc/resolv.conf)
        /// before answering, and answer "NAME CLIENT -> ITS ANSWER", or 502 if it fails.
        #[arg(long, value_name = "HOST:PORT")]
        upstream: Option<String>,
    },
    /// Connect once to IP:PORT and print the result as one JSON line: ok, proto, target,
    /// local, peer, answer, pod and client (the server's name and the address it saw us as),
    /// error, elapsed_ms.
    #[command(after_help = "Examples:\n  \
        skiff-probe connect 10.96.0.10:80\n  \
        skiff-probe connect 10.96.0.10:53 --proto udp --timeout 500ms --count 5\n  \
        skiff-probe connect 127.0.0.1:8080 --proto http")]
    Connect {
        /// Target, e.g. 10.96.0.10:80.
        target: String,
        #[arg(long, value_enum, default_value_t = Proto::Tcp)]
        proto: Proto,
        /// Give up after this long: milliseconds, or with a unit (2s, 500ms).
        #[arg(long = "timeout-ms", visible_alias = "timeout", value_name = "TIMEOUT",
              value_parser = parse_timeout, default_value = "2000")]
        timeout: Duration,
        /// UDP: datagrams to send (each must be answered).
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// UDP: payload bytes per datagram.
        #[arg(long, default_value_t = 16)]
        size: usize,
        /// UDP only: send with sendto() on an unconnected socket, as many DNS clients do.
        #[arg(long)]
        unconnected: bool,
    },
    /// Generate traffic. Without --mode: a new connection (or UDP socket) every interval until
    /// stdin closes, then one JSON line {attempts, failures, errors}, for tests of
    /// disruptions. With --mode: a benchmark for --duration, then one JSON line {mode, proto,
    /// target, duration_s, connections, requests, errors, rate_per_s, p50_us, p99_us, bytes,
    /// throughput_mbit_s}. Exits 0 only without failures.
    #[command(after_help = "Examples:\n  \
        skiff-probe load 10.96.0.10:80 --interval-ms 20 < /dev/null\n  \
        skiff-probe load front:80 --proto http --for 30s\n  \
        skiff-probe load 10.96.0.10:80 --mode crr --duration 5s --concurrency 4\n  \
        skiff-probe load 10.96.0.10:80 --proto http --mode rr --duration 10s\n  \
        skiff-probe load 10.96.0.10:80 --mode stream --size 131072\n\n\
        Modes (like netperf's): crr connects, sends one request of --size bytes, reads the\n\
        answer and closes; rr repeats requests on one kept-alive connection per thread;\n\
        stream writes --size chunks until the deadline (TCP: the server confirms the byte\n\
        count; UDP: bytes sent, unanswered; HTTP: keep-alive POSTs of --size bytes).\n\
        Latencies are per request, or in stream mode per write.")]
    Load {
        /// IP:PORT to reach.
        target: String,
        #[arg(long, value_enum, default_value_t = Proto::Tcp)]
        proto: Proto,
        /// Benchmark instead of running until stdin closes.
        #[arg(long, value_enum)]
        mode: Option<bench::Mode>,
        /// Benchmark length: seconds, or with a unit (5s, 500ms, 1m).
        #[arg(long, value_parser = parse_duration, default_value = "5s", requires = "mode")]
        duration: Duration,
        /// Benchmark threads, each with its own connection.
        #[arg(long, default_value_t = 1, requires = "mode")]
        concurrency: u32,
        /// Benchmark request bytes [default: 16; stream: 65536, UDP 1400].
        #[arg(long, value_name = "BYTES", requires = "mode")]
        size: Option<usize>,
        /// Without --mode: pause between attempts.
        #[arg(long, default_value_t = 20, conflicts_with = "mode")]
        interval_ms: u64,
        /// Without --mode: stop after this long even if stdin stays open (a pod's stdin is
        /// empty, so a load run as a pod needs it): seconds, or with a unit.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration,
              conflicts_with = "mode")]
        stop_after: Option<Duration>,
        /// Per exchange: milliseconds, or with a unit (1s, 500ms).
        #[arg(long = "timeout-ms", visible_alias = "timeout", value_name = "TIMEOUT",
              value_parser = parse_timeout, default_value = "1000")]
        timeout: Duration,
    },
    /// Try many targets at once, each a new connection or UDP exchange, and print one
    /// JSON object {"PROTO:IP:PORT": true|false, ...}: reachability matrices in few
    /// processes. Always exits 0 when it could run.
    #[command(after_help = "Example:\n  \
        skiff-probe reach tcp:10.0.1.5:80 udp:10.0.1.5:53 http:10.96.0.10:80")]
    Reach {
        /// Targets as tcp:IP:PORT, udp:IP:PORT or http:IP:PORT.
        #[arg(required = true)]
        targets: Vec<String>,
        /// Per-target deadline: milliseconds, or with a unit (UDP resends twice within it).
        #[arg(long = "timeout-ms", visible_alias = "timeout", value_name = "TIMEOUT",
              value_parser = parse_timeout, default_value = "500")]
        timeout: Duration,
    },
    /// Keep one TCP connection or UDP socket open and make one exchange per line read from
    /// stdin, printing one JSON line per exchange (as `connect`): for tests that change the
    /// cluster between exchanges of the same flow.
    #[command(after_help = "Example:\n  \
        yes | head -3 | skiff-probe session 10.96.0.10:80")]
    Session {
        /// IP:PORT to reach.
        target: String,
        #[arg(long, value_enum, default_value_t = Proto::Tcp)]
        proto: Proto,
        #[arg(long = "timeout-ms", visible_alias = "timeout", value_name = "TIMEOUT",
              value_parser = parse_timeout, default_value = "2000")]
        timeout: Duration,
        /// UDP only: sendto() on an unconnected socket.
        #[arg(long)]
        unconnected: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Proto {
    Tcp,
    Udp,
    Http,
}

#[derive(Serialize)]
struct ConnectResult {
    ok: bool,
    proto: Proto,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<String>,
    /// The answering server's name (pod).
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<String>,
    /// Our address as the server saw it: differs from `local` behind SNAT.
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    elapsed_ms: f64,
}

/// Exits at once on SIGTERM or SIGINT, also as a container's PID 1, which the kernel
/// spares the default action of signals it has no handler for.
fn exit_on_termination() {
    extern "C" fn exit_now(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) }
    }
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs a handler that only calls _exit.
        unsafe { libc::signal(signal, exit_now as *const () as libc::sighandler_t) };
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pause => {
            exit_on_termination();
            loop {
                // SAFETY: pause(2) only waits for a signal.
                unsafe { libc::pause() };
            }
        }
        Command::Serve {
            tcp,
            udp,
            http,
            name,
            bind,
            cpu_per_request,
            upstream,
        } => {
            serve::finish_on_termination();
            let work = serve::HttpWork {
                cpu: cpu_per_request,
                upstream,
            };
            serve::serve(tcp, udp, http, name, bind, work).map(|()| ExitCode::SUCCESS)
        }
        Command::Connect {
            target,
            proto,
            timeout,
            count,
            size,
            unconnected,
        } => Ok(connect(&target, proto, timeout, count, size, unconnected)),
        Command::Session {
            target,
            proto,
            timeout,
            unconnected,
        } => session(&target, proto, timeout, unconnected),
        Command::Reach { targets, timeout } => reach(&targets, timeout).map(|()| ExitCode::SUCCESS),
        Command::Load {
            target,
            proto,
            mode: Some(mode),
            duration,
            concurrency,
            size,
            interval_ms: _,
            stop_after: _,
            timeout,
        } => wire::parse_addr(&target).and_then(|addr| {
            bench::Bench {
                target,
                addr,
                proto,
                mode,
                duration,
                concurrency,
                size,
                timeout,
            }
            .run()
        }),
        Command::Load {
            target,
            proto,
            mode: None,
            interval_ms,
            stop_after,
            timeout,
            ..
        } => load(
            &target,
            proto,
            Duration::from_millis(interval_ms),
            timeout,
            stop_after,
        ),
    };
    result.unwrap_or_else(|e| {
        eprintln!("skiff-probe: {e:#}");
        ExitCode::from(2)
    })
}

/// "5s", "500ms", "1m", or bare seconds ("0.5").
fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_with_unit(text, 1.0)
}

/// As [`parse_duration`], but bare numbers are milliseconds: `--timeout-ms 2000` predates units.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    parse_with_unit(text, 0.001)
}

fn parse_with_unit(text: &str, bare_unit_s: f64) -> Result<Duration, String> {
    let (number, unit_s) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, bare_unit_s)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n * unit_s).ok())
        .ok_or_else(|| format!("{text:?}: expected a duration such as 5s, 500ms, 1m or 1h"))
}

fn exchange(
    proto: Proto,
    addr: SocketAddr,
    timeout: Duration,
    count: u32,
    size: usize,
    unconnected: bool,
) -> anyhow::Result<Exchange> {
    match proto {
        Proto::Tcp => wire::tcp_once(addr, timeout),
        Proto::Http => wire::http_once(addr, timeout),
        Proto::Udp => wire::udp_once(addr, timeout, count, size, unconnected),
    }
}

fn connect(
    target: &str,
    proto: Proto,
    timeout: Duration,
    count: u32,
    size: usize,
    unconnected: bool,
) -> ExitCode {
    let started = Instant::now();
    let outcome = wire::parse_addr(target)
        .and_then(|addr| exchange(proto, addr, timeout, count, size, unconnected));
    let result = report(target, proto, started, outcome);
    if result.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints one exchange's outcome as a JSON line.
fn report(
    target: &str,
    proto: Proto,
    started: Instant,
    outcome: anyhow::Result<Exchange>,
) -> ConnectResult {
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut result = ConnectResult {
        ok: outcome.is_ok(),
        proto,
        target: target.to_string(),
        local: None,
        peer: None,
        answer: None,
        pod: None,
        client: None,
        error: None,
        elapsed_ms,
    };
    match outcome {
        Ok(exchange) => {
            if let Some((pod, client)) = wire::split_answer(&exchange.answer) {
                result.pod = Some(pod.to_string());
                result.client = Some(client.to_string());
            }
            result.local = Some(exchange.local.to_string());
            result.peer = Some(exchange.peer.to_string());
            result.answer = Some(exchange.answer);
        }
        Err(e) => result.error = Some(format!("{e:#}")),
    }
    println!(
        "{}",
        serde_json::to_string(&result).expect("result serialises")
    );
    let _ = std::io::stdout().flush();
    result
}

fn reach(targets: &[String], timeout: Duration) -> anyhow::Result<()> {
    let mut parsed = Vec::new();
    for target in targets {
        let Some((proto, addr)) = target
            .split_once(':')
            .and_then(|(proto, addr)| Some((Proto::from_str(proto, false).ok()?, addr)))
        else {
            bail!("{target:?}: expected tcp:IP:PORT, udp:IP:PORT or http:IP:PORT");
        };
        parsed.push((target.clone(), proto, wire::parse_addr(addr)?));
    }
    let workers: Vec<_> = parsed
        .into_iter()
        .map(|(target, proto, addr)| {
            thread::spawn(move || {
                let ok = match proto {
                    Proto::Udp => {
                        (0..3).any(|_| wire::udp_once(addr, timeout / 3, 1, 16, false).is_ok())
                    }
                    _ => exchange(proto, addr, timeout, 1, 16, false).is_ok(),
                };
                (target, ok)
            })
        })
        .collect();
    let results: std::collections::BTreeMap<String, bool> = workers
        .into_iter()
        .map(|w| w.join().expect("reach worker"))
        .collect();
    println!("{}", serde_json::to_string(&results)?);
    Ok(())
}

#[derive(Serialize)]
struct LoadSummary {
    attempts: u64,
    failures: u64,
    /// The first few failures, for the test log.
    errors: Vec<String>,
}

fn load(
    target: &str,
    proto: Proto,
    interval: Duration,
    timeout: Duration,
    stop_after: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let addr = wire::parse_addr(target)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    match stop_after {
        Some(duration) => {
            let deadline = Instant::now() + duration;
            let timer_stop = std::sync::Arc::clone(&stop);
            thread::spawn(move || {
                thread::sleep(deadline.saturating_duration_since(Instant::now()));
                timer_stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
        }
        None => {
            let stdin_stop = std::sync::Arc::clone(&stop);
            thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
                stdin_stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
        }
    }
    let mut summary = LoadSummary {
        attempts: 0,
        failures: 0,
        errors: Vec::new(),
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let outcome = exchange(proto, addr, timeout, 1, 16, false);
        summary.attempts += 1;
        if let Err(e) = outcome {
            summary.failures += 1;
            if summary.errors.len() < 5 {
                summary
                    .errors
                    .push(format!("attempt {}: {e:#}", summary.attempts));
            }
        }
        thread::sleep(interval);
    }
    println!(
        "{}",
        serde_json::to_string(&summary).expect("summary serialises")
    );
    Ok(if summary.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn session(
    target: &str,
    proto: Proto,
    timeout: Duration,
    unconnected: bool,
) -> anyhow::Result<ExitCode> {
    let addr = wire::parse_addr(target)?;
    let mut failures = 0;
    match proto {
        Proto::Tcp => {
            let (mut writer, mut reader) = wire::tcp_connect(addr, timeout)?;
            let (local, peer) = (writer.local_addr()?, writer.peer_addr()?);
            wire::read_line(&mut reader).context("reading the greeting")?;
            for _ in std::io::stdin().lines() {
                let started = Instant::now();
                let outcome = writer
                    .write_all(b"again\n")
                    .context("send")
                    .and_then(|()| wire::read_line(&mut reader).context("receive"))
                    .map(|answer| Exchange {
                        local,
                        peer,
                        answer,
                    });
                failures += u32::from(!report(target, proto, started, outcome).ok);
            }
        }
        Proto::Udp => {
            let socket = wire::udp_socket(addr, timeout, unconnected)?;
            for _ in std::io::stdin().lines() {
                let started = Instant::now();
                let outcome = wire::udp_exchange(&socket, addr, b"query", unconnected);
                failures += u32::from(!report(target, proto, started, outcome).ok);
            }
        }
        Proto::Http => bail!("session speaks tcp or udp; for HTTP use connect or load"),
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_duration, parse_timeout};

    #[test]
    fn durations_take_units_and_bare_numbers_keep_their_old_meaning() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("2000"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
