//! `skiff-probe`: the project's test and demo workload (like Kubernetes' agnhost).
//!
//! - `serve`: answers on TCP, UDP and HTTP ports with its name and the client address it saw;
//! - `connect`: opens one connection (or sends datagrams), prints a one-line JSON result and
//!   exits 0 on success, 1 on failure.

use std::{
    io::{BufRead as _, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs as _, UdpSocket},
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Parser)]
#[command(
    version,
    about = "Skiff's test and demo workload: serve and connect probes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve on the given ports; every answer is "NAME CLIENT_IP:CLIENT_PORT".
    Serve {
        /// TCP port: send the answer, then close after the client does.
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
    },
    /// Connect once to HOST:PORT and print the result as one JSON line.
    Connect {
        /// Target, e.g. 10.96.0.10:80.
        target: String,
        #[arg(long, value_enum, default_value_t = Proto::Tcp)]
        proto: Proto,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
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
    /// Open a new TCP connection (or send a datagram on a new UDP socket) every interval,
    /// reading each answer, until stdin closes; then print one JSON summary line
    /// {attempts, failures, errors}. Continuous traffic for tests of disruptions.
    Load {
        /// HOST:PORT to reach.
        target: String,
        #[arg(long, value_enum, default_value_t = Proto::Tcp)]
        proto: Proto,
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Try many targets at once, each a new TCP connection or UDP exchange, and print one
    /// JSON object {"PROTO:HOST:PORT": true|false, ...}: reachability matrices in few
    /// processes. Always exits 0 when it could run.
    Reach {
        /// Targets as tcp:HOST:PORT or udp:HOST:PORT.
        #[arg(required = true)]
        targets: Vec<String>,
        /// Per-target deadline in milliseconds (UDP resends twice within it).
        #[arg(long, default_value_t = 500)]
        timeout_ms: u64,
    },
    /// Keep one TCP connection or UDP socket open and make one exchange per line read from
    /// stdin, printing one JSON line per exchange: for tests that change the cluster between
    /// exchanges of the same flow.
    Session {
        /// HOST:PORT to reach.
        target: String,
        #[arg(long, value_enum, default_value_t = Proto::Tcp)]
        proto: Proto,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// UDP only: sendto() on an unconnected socket.
        #[arg(long)]
        unconnected: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Proto {
    Tcp,
    Udp,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    elapsed_ms: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            tcp,
            udp,
            http,
            name,
            bind,
        } => serve(tcp, udp, http, name, bind).map(|()| ExitCode::SUCCESS),
        Command::Connect {
            target,
            proto,
            timeout_ms,
            count,
            size,
            unconnected,
        } => Ok(connect(
            &target,
            proto,
            Duration::from_millis(timeout_ms),
            count,
            size,
            unconnected,
        )),
        Command::Session {
            target,
            proto,
            timeout_ms,
            unconnected,
        } => session(
            &target,
            proto,
            Duration::from_millis(timeout_ms),
            unconnected,
        ),
        Command::Reach {
            targets,
            timeout_ms,
        } => reach(&targets, Duration::from_millis(timeout_ms)).map(|()| ExitCode::SUCCESS),
        Command::Load {
            target,
            proto,
            interval_ms,
            timeout_ms,
        } => load(
            &target,
            proto,
            Duration::from_millis(interval_ms),
            Duration::from_millis(timeout_ms),
        ),
    };
    result.unwrap_or_else(|e| {
        eprintln!("skiff-probe: {e:#}");
        ExitCode::from(2)
    })
}

fn default_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "skiff-probe".to_string())
}

fn serve(
    tcp: Vec<u16>,
    udp: Vec<u16>,
    http: Vec<u16>,
    name: Option<String>,
    bind: std::net::IpAddr,
) -> anyhow::Result<()> {
    if tcp.is_empty() && udp.is_empty() && http.is_empty() {
        bail!("nothing to serve: give at least one --tcp, --udp or --http port");
    }
    let name = name.unwrap_or_else(default_name);
    let mut workers = Vec::new();
    for port in tcp {
        let listener =
            TcpListener::bind((bind, port)).with_context(|| format!("binding tcp {port}"))?;
        let name = name.clone();
        workers.push(thread::spawn(move || {
            accept_loop(listener, name, answer_tcp)
        }));
    }
    for port in http {
        let listener =
            TcpListener::bind((bind, port)).with_context(|| format!("binding http {port}"))?;
        let name = name.clone();
        workers.push(thread::spawn(move || {
            accept_loop(listener, name, answer_http)
        }));
    }
    for port in udp {
        let socket =
            UdpSocket::bind((bind, port)).with_context(|| format!("binding udp {port}"))?;
        let name = name.clone();
        workers.push(thread::spawn(move || udp_loop(socket, name)));
    }
    // Readiness signal for whoever started us.
    println!("serving");
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn accept_loop(listener: TcpListener, name: String, answer: fn(TcpStream, &str, SocketAddr)) {
    for stream in listener.incoming().flatten() {
        let Ok(client) = stream.peer_addr() else {
            continue;
        };
        let name = name.clone();
        thread::spawn(move || answer(stream, &name, client));
    }
}

/// Greets with "NAME CLIENT", then answers every line the client sends with the same, so one
/// connection can carry many exchanges (`skiff-probe session`).
fn answer_tcp(mut stream: TcpStream, name: &str, client: SocketAddr) {
    let greeting = format!("{name} {client}\n");
    if stream.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    // Until the client closes: the client closing first keeps TIME_WAIT off the server.
    for line in std::io::BufReader::new(reader).lines() {
        if line.is_err() || stream.write_all(greeting.as_bytes()).is_err() {
            return;
        }
    }
}

fn answer_http(mut stream: TcpStream, name: &str, client: SocketAddr) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if request.len() > 64 * 1024 {
            return;
        }
    }
    let body = format!("{name} {client}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn udp_loop(socket: UdpSocket, name: String) {
    let mut buf = [0u8; 65536];
    loop {
        let Ok((_, client)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let _ = socket.send_to(format!("{name} {client}\n").as_bytes(), client);
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
    let outcome = match proto {
        Proto::Tcp => connect_tcp(target, timeout),
        Proto::Udp => connect_udp(target, timeout, count, size, unconnected),
    };
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
    outcome: anyhow::Result<(SocketAddr, SocketAddr, String)>,
) -> ConnectResult {
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let result = match outcome {
        Ok((local, peer, answer)) => ConnectResult {
            ok: true,
            proto,
            target: target.to_string(),
            local: Some(local.to_string()),
            peer: Some(peer.to_string()),
            answer: Some(answer),
            error: None,
            elapsed_ms,
        },
        Err(e) => ConnectResult {
            ok: false,
            proto,
            target: target.to_string(),
            local: None,
            peer: None,
            answer: None,
            error: Some(format!("{e:#}")),
            elapsed_ms,
        },
    };
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
        let (proto, addr) = match target.split_once(':') {
            Some(("tcp", addr)) => (Proto::Tcp, addr),
            Some(("udp", addr)) => (Proto::Udp, addr),
            _ => bail!("{target:?}: expected tcp:HOST:PORT or udp:HOST:PORT"),
        };
        parsed.push((target.clone(), proto, resolve(addr)?));
    }
    let workers: Vec<_> = parsed
        .into_iter()
        .map(|(target, proto, addr)| {
            thread::spawn(move || {
                let ok = match proto {
                    Proto::Tcp => connect_tcp(&addr.to_string(), timeout).is_ok(),
                    Proto::Udp => (0..3)
                        .any(|_| connect_udp(&addr.to_string(), timeout / 3, 1, 16, false).is_ok()),
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
) -> anyhow::Result<ExitCode> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stdin_stop = std::sync::Arc::clone(&stop);
    thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        stdin_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let mut summary = LoadSummary {
        attempts: 0,
        failures: 0,
        errors: Vec::new(),
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let outcome = match proto {
            Proto::Tcp => connect_tcp(target, timeout),
            Proto::Udp => connect_udp(target, timeout, 1, 16, false),
        };
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
    let addr = resolve(target)?;
    let mut failures = 0;
    match proto {
        Proto::Tcp => {
            let stream = TcpStream::connect_timeout(&addr, timeout).context("connect")?;
            stream.set_read_timeout(Some(timeout))?;
            let (local, peer) = (stream.local_addr()?, stream.peer_addr()?);
            let mut writer = stream.try_clone()?;
            let mut reader = std::io::BufReader::new(stream);
            let mut greeting = String::new();
            reader
                .read_line(&mut greeting)
                .context("reading the greeting")?;
            for _ in std::io::stdin().lines() {
                let started = Instant::now();
                let outcome = (|| {
                    writer.write_all(b"again\n").context("send")?;
                    let mut answer = String::new();
                    match reader.read_line(&mut answer).context("receive")? {
                        0 => bail!("connection closed by the peer"),
                        _ => Ok((local, peer, answer.trim().to_string())),
                    }
                })();
                failures += u32::from(!report(target, proto, started, outcome).ok);
            }
        }
        Proto::Udp => {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            if !unconnected {
                socket.connect(addr).context("connect")?;
            }
            socket.set_read_timeout(Some(timeout))?;
            for _ in std::io::stdin().lines() {
                let started = Instant::now();
                let outcome = udp_exchange(&socket, addr, b"query", unconnected);
                failures += u32::from(!report(target, proto, started, outcome).ok);
            }
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One datagram out, one back: (local, peer the answer came from, answer).
fn udp_exchange(
    socket: &UdpSocket,
    addr: SocketAddr,
    payload: &[u8],
    unconnected: bool,
) -> anyhow::Result<(SocketAddr, SocketAddr, String)> {
    let mut buf = [0u8; 65536];
    let (n, peer) = if unconnected {
        socket.send_to(payload, addr).context("sendto")?;
        socket.recv_from(&mut buf).context("no answer")?
    } else {
        socket.send(payload).context("send")?;
        let n = socket.recv(&mut buf).context("no answer")?;
        (n, socket.peer_addr()?)
    };
    Ok((
        socket.local_addr()?,
        peer,
        String::from_utf8_lossy(&buf[..n]).trim().to_string(),
    ))
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("resolving {target}"))?
        .next()
        .with_context(|| format!("{target} resolves to no address"))
}

fn connect_tcp(
    target: &str,
    timeout: Duration,
) -> anyhow::Result<(SocketAddr, SocketAddr, String)> {
    let addr = resolve(target)?;
    let stream = TcpStream::connect_timeout(&addr, timeout).context("connect")?;
    stream.set_read_timeout(Some(timeout))?;
    let local = stream.local_addr()?;
    let peer = stream.peer_addr()?;
    let mut answer = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok((local, peer, answer.trim().to_string()))
}

fn connect_udp(
    target: &str,
    timeout: Duration,
    count: u32,
    size: usize,
    unconnected: bool,
) -> anyhow::Result<(SocketAddr, SocketAddr, String)> {
    let addr = resolve(target)?;
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    if !unconnected {
        socket.connect(addr).context("connect")?;
    }
    socket.set_read_timeout(Some(timeout))?;
    let payload = vec![b'x'; size];
    let mut last = None;
    for i in 0..count {
        last = Some(
            udp_exchange(&socket, addr, &payload, unconnected)
                .with_context(|| format!("datagram {} of {count}", i + 1))?,
        );
    }
    last.context("--count 0 sends nothing")
}
