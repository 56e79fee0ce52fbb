//! `skiff-probe load --mode`: fixed-duration benchmarks in the spirit of netperf's TCP_CRR,
//! TCP_RR and TCP_STREAM, on plain threads (one connection per thread at a time).

use std::{
    io::{BufReader, Write as _},
    net::{Shutdown, SocketAddr, TcpStream, UdpSocket},
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use clap::ValueEnum;
use serde::Serialize;

use crate::{wire, Proto};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Connect, one small request, read the answer, close (netperf TCP_CRR).
    Crr,
    /// Requests on a kept-alive connection (TCP_RR).
    Rr,
    /// Bulk data one way (TCP_STREAM).
    Stream,
}

pub struct Bench {
    pub target: String,
    pub addr: SocketAddr,
    pub proto: Proto,
    pub mode: Mode,
    pub duration: Duration,
    pub concurrency: u32,
    /// Request size (crr, rr) or write size (stream); `None` picks per mode.
    pub size: Option<usize>,
    pub timeout: Duration,
}

#[derive(Serialize)]
struct Report {
    mode: Mode,
    proto: Proto,
    target: String,
    duration_s: f64,
    /// Connections (or for UDP, sockets) opened.
    connections: u64,
    /// Successful exchanges, or in stream mode, writes.
    requests: u64,
    errors: u64,
    /// `requests` per second.
    rate_per_s: f64,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    /// Payload bytes both ways (stream: bytes the server confirmed, UDP: bytes sent).
    bytes: u64,
    throughput_mbit_s: f64,
    /// The first failure, to tell a refused port from a timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
}

#[derive(Default)]
struct Stats {
    connections: u64,
    requests: u64,
    errors: u64,
    bytes: u64,
    latencies_us: Vec<u64>,
    first_error: Option<String>,
}

impl Stats {
    fn ok(&mut self, started: Instant, bytes: u64) {
        self.requests += 1;
        self.bytes += bytes;
        self.latencies_us
            .push(started.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
    }

    /// Counts the failure and pauses, so a dead target is not hammered in a busy loop.
    fn error(&mut self, e: anyhow::Error, deadline: Instant) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| format!("{e:#}"));
        thread::sleep(ERROR_PAUSE.min(deadline.saturating_duration_since(Instant::now())));
    }
}

const ERROR_PAUSE: Duration = Duration::from_millis(10);

impl Bench {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let size = self.size.unwrap_or(match (self.mode, self.proto) {
            (Mode::Crr | Mode::Rr, _) => 16,
            // One datagram per Ethernet frame: fragments would measure reassembly.
            (Mode::Stream, Proto::Udp) => 1400,
            (Mode::Stream, _) => 64 * 1024,
        });
        if self.proto == Proto::Udp && size > wire::MAX_DATAGRAM {
            bail!(
                "--size {size} exceeds the largest datagram ({})",
                wire::MAX_DATAGRAM
            );
        }
        if self.proto == Proto::Udp
            && self.mode == Mode::Stream
            && size < wire::UDP_STREAM_PREFIX.len()
        {
            bail!(
                "--size {size}: UDP stream datagrams need at least {} bytes",
                wire::UDP_STREAM_PREFIX.len()
            );
        }
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        let started = Instant::now();
        let deadline = started + self.duration;
        let workers: Vec<_> = (0..self.concurrency)
            .map(|_| {
                let (addr, proto, mode, timeout) = (self.addr, self.proto, self.mode, self.timeout);
                thread::spawn(move || {
                    let mut stats = Stats::default();
                    match (mode, proto) {
                        (Mode::Crr, _) => crr(&mut stats, proto, addr, size, timeout, deadline),
                        (Mode::Rr | Mode::Stream, Proto::Http) => {
                            http_keepalive(&mut stats, addr, size, timeout, deadline)
                        }
                        (Mode::Rr, Proto::Tcp) => tcp_rr(&mut stats, addr, size, timeout, deadline),
                        (Mode::Rr, Proto::Udp) => udp_rr(&mut stats, addr, size, timeout, deadline),
                        (Mode::Stream, Proto::Tcp) => {
                            tcp_stream(&mut stats, addr, size, timeout, deadline)
                        }
                        (Mode::Stream, Proto::Udp) => {
                            udp_stream(&mut stats, addr, size, timeout, deadline)
                        }
                    }
                    stats
                })
            })
            .collect();
        let mut total = Stats::default();
        for worker in workers {
            let stats = worker.join().expect("load worker");
            total.connections += stats.connections;
            total.requests += stats.requests;
            total.errors += stats.errors;
            total.bytes += stats.bytes;
            total.latencies_us.extend(stats.latencies_us);
            total.first_error = total.first_error.or(stats.first_error);
        }
        let elapsed = started.elapsed().as_secs_f64();
        total.latencies_us.sort_unstable();
        let report = Report {
            mode: self.mode,
            proto: self.proto,
            target: self.target,
            duration_s: round(elapsed, 3),
            connections: total.connections,
            requests: total.requests,
            errors: total.errors,
            rate_per_s: round(total.requests as f64 / elapsed, 1),
            p50_us: percentile(&total.latencies_us, 50),
            p99_us: percentile(&total.latencies_us, 99),
            bytes: total.bytes,
            throughput_mbit_s: round(total.bytes as f64 * 8.0 / elapsed / 1e6, 3),
            first_error: total.first_error,
        };
        println!("{}", serde_json::to_string(&report)?);
        Ok(if report.errors == 0 && report.requests > 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// A request line of `size` bytes, newline included.
fn request_line(size: usize) -> Vec<u8> {
    let mut line = vec![b'x'; size.max(1)];
    *line.last_mut().expect("not empty") = b'\n';
    line
}

/// Checks an answer is a probe's "NAME CLIENT" rather than some other service's bytes.
fn check_answer(answer: &str) -> anyhow::Result<u64> {
    wire::split_answer(answer).with_context(|| format!("not a probe answer: {answer:?}"))?;
    Ok(answer.len() as u64 + 1)
}

fn crr(
    stats: &mut Stats,
    proto: Proto,
    addr: SocketAddr,
    size: usize,
    timeout: Duration,
    deadline: Instant,
) {
    let line = request_line(size);
    let body = vec![b'x'; size];
    while Instant::now() < deadline {
        let started = Instant::now();
        let outcome = match proto {
            Proto::Tcp => (|| {
                let (mut stream, mut reader) = wire::tcp_connect(addr, timeout)?;
                stats.connections += 1;
                stream.write_all(&line).context("send")?;
                let greeting = check_answer(&wire::read_line(&mut reader)?)?;
                let answer = check_answer(&wire::read_line(&mut reader)?)?;
                Ok(line.len() as u64 + greeting + answer)
            })(),
            Proto::Udp => (|| {
                let socket = wire::udp_socket(addr, timeout, false)?;
                stats.connections += 1;
                let exchange = wire::udp_exchange(&socket, addr, &body, false)?;
                Ok(body.len() as u64 + check_answer(&exchange.answer)?)
            })(),
            Proto::Http => (|| {
                let (mut stream, mut reader) = wire::tcp_connect(addr, timeout)?;
                stats.connections += 1;
                let (answer, _, bytes) =
                    wire::http_request(&mut stream, &mut reader, addr, Some(&body), false)?;
                check_answer(&answer)?;
                Ok(bytes)
            })(),
        };
        match outcome {
            Ok(bytes) => stats.ok(started, bytes),
            Err(e) => stats.error(e, deadline),
        }
    }
}

fn tcp_rr(stats: &mut Stats, addr: SocketAddr, size: usize, timeout: Duration, deadline: Instant) {
    let line = request_line(size);
    let mut connection: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while Instant::now() < deadline {
        let (stream, reader) = match connection.as_mut() {
            Some(c) => c,
            None => match wire::tcp_connect(addr, timeout)
                .and_then(|(s, mut r)| wire::read_line(&mut r).map(|_| (s, r)))
            {
                Ok(c) => {
                    stats.connections += 1;
                    connection.insert(c)
                }
                Err(e) => {
                    stats.error(e, deadline);
                    continue;
                }
            },
        };
        let started = Instant::now();
        let outcome = stream
            .write_all(&line)
            .context("send")
            .and_then(|()| check_answer(&wire::read_line(reader)?));
        match outcome {
            Ok(bytes) => stats.ok(started, line.len() as u64 + bytes),
            Err(e) => {
                connection = None;
                stats.error(e, deadline);
            }
        }
    }
}

fn udp_rr(stats: &mut Stats, addr: SocketAddr, size: usize, timeout: Duration, deadline: Instant) {
    let payload = vec![b'x'; size];
    let mut socket: Option<UdpSocket> = None;
    while Instant::now() < deadline {
        let socket = match socket.as_mut() {
            Some(s) => s,
            None => match wire::udp_socket(addr, timeout, false) {
                Ok(s) => {
                    stats.connections += 1;
                    socket.insert(s)
                }
                Err(e) => {
                    stats.error(e, deadline);
                    continue;
                }
            },
        };
        let started = Instant::now();
        match wire::udp_exchange(socket, addr, &payload, false)
            .and_then(|exchange| check_answer(&exchange.answer))
        {
            Ok(bytes) => stats.ok(started, payload.len() as u64 + bytes),
            Err(e) => stats.error(e, deadline),
        }
    }
}

/// Keep-alive POSTs of `size` bytes: rr with small bodies, an upload stream with large ones.
fn http_keepalive(
    stats: &mut Stats,
    addr: SocketAddr,
    size: usize,
    timeout: Duration,
    deadline: Instant,
) {
    let body = vec![b'x'; size];
    let mut connection: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while Instant::now() < deadline {
        let (stream, reader) = match connection.as_mut() {
            Some(c) => c,
            None => match wire::tcp_connect(addr, timeout) {
                Ok(c) => {
                    stats.connections += 1;
                    connection.insert(c)
                }
                Err(e) => {
                    stats.error(e, deadline);
                    continue;
                }
            },
        };
        let started = Instant::now();
        match wire::http_request(stream, reader, addr, Some(&body), true).and_then(
            |(answer, keep_alive, bytes)| check_answer(&answer).map(|_| (keep_alive, bytes)),
        ) {
            Ok((keep_alive, bytes)) => {
                stats.ok(started, bytes);
                if !keep_alive {
                    connection = None;
                }
            }
            Err(e) => {
                connection = None;
                stats.error(e, deadline);
            }
        }
    }
}

/// Writes until the deadline on one connection, then has the server confirm the byte count:
/// only bytes that arrived count. A failed connection is replaced until the deadline.
fn tcp_stream(
    stats: &mut Stats,
    addr: SocketAddr,
    size: usize,
    timeout: Duration,
    deadline: Instant,
) {
    let chunk = vec![b'x'; size.max(1)];
    while Instant::now() < deadline {
        let outcome = (|| {
            let (mut stream, mut reader) = wire::tcp_connect(addr, timeout)?;
            stats.connections += 1;
            check_answer(&wire::read_line(&mut reader)?)?;
            stream.write_all(format!("{}\n", wire::STREAM_LINE).as_bytes())?;
            let mut sent = 0u64;
            while Instant::now() < deadline {
                let started = Instant::now();
                stream.write_all(&chunk).context("send")?;
                sent += chunk.len() as u64;
                stats
                    .latencies_us
                    .push(started.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
                stats.requests += 1;
            }
            stream.shutdown(Shutdown::Write)?;
            let confirmed: u64 = wire::read_line(&mut reader)
                .context("reading the server's byte count")?
                .parse()
                .context("the server's byte count")?;
            if confirmed != sent {
                bail!("sent {sent} bytes, the server counted {confirmed}");
            }
            stats.bytes += confirmed;
            Ok(())
        })();
        if let Err(e) = outcome {
            stats.error(e, deadline);
        }
    }
}

/// Sends datagrams until the deadline; nobody answers them, so one normal exchange at the end
/// checks the server was there (a port without one shows up as refused sends or that error).
fn udp_stream(
    stats: &mut Stats,
    addr: SocketAddr,
    size: usize,
    timeout: Duration,
    deadline: Instant,
) {
    let mut payload = vec![b'x'; size];
    payload[..wire::UDP_STREAM_PREFIX.len()].copy_from_slice(wire::UDP_STREAM_PREFIX);
    let socket = match wire::udp_socket(addr, timeout, false) {
        Ok(s) => s,
        Err(e) => return stats.error(e, deadline),
    };
    stats.connections += 1;
    while Instant::now() < deadline {
        let started = Instant::now();
        match socket.send(&payload).context("send") {
            Ok(n) => stats.ok(started, n as u64),
            Err(e) => stats.error(e, deadline),
        }
    }
    // Our own datagrams may still fill the server's buffer: a few tries.
    let mut last = Ok(0);
    for _ in 0..3 {
        last = wire::udp_exchange(&socket, addr, b"done", false)
            .and_then(|exchange| check_answer(&exchange.answer));
        if last.is_ok() {
            return;
        }
    }
    if let Err(e) = last {
        stats.error(e, deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50), Some(50));
        assert_eq!(percentile(&samples, 99), Some(99));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }
}
