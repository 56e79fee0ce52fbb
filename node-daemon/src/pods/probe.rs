//! Liveness and readiness probes: one attempt of each kind (tcpSocket, httpGet, exec) and
//! the Kubernetes thresholds that turn attempts into a verdict.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

use skiff_api::{
    core::{Container, Probe},
    meta::IntOrString,
};

use crate::runtime::{ContainerId, Runtime};

/// A probe's port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("port {n}: expected 1-65535")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| {
                format!(
                    "port {name:?}: the container {} has no port of that name",
                    container.name
                )
            }),
    }
}

/// One attempt; `Err` says why it failed, for the pod's events and conditions.
pub fn attempt(
    probe: &Probe,
    container: &Container,
    pod_ip: Ipv4Addr,
    runtime: &Arc<dyn Runtime>,
    id: &ContainerId,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1).into());
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, container)?;
        let addr = SocketAddr::from((pod_ip, port));
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("tcp {addr}: {e}"))?;
        return Ok(());
    }
    if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, container)?;
        let path = http.path.as_deref().unwrap_or("/");
        let addr = SocketAddr::from((pod_ip, port));
        let status =
            http_get(addr, path, timeout).map_err(|e| format!("http GET {addr}{path}: {e}"))?;
        return if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("http GET {addr}{path}: status {status}"))
        };
    }
    if let Some(exec) = &probe.exec {
        let output = runtime
            .exec(id, &exec.command, timeout)
            .map_err(|e| e.to_string())?;
        return if output.exit_code == 0 {
            Ok(())
        } else {
            Err(format!(
                "exec {:?}: exit code {}: {}",
                exec.command,
                output.exit_code,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        };
    }
    Err("the probe has no exec, httpGet or tcpSocket".into())
}

/// The status code of `GET path`; the answer's body is not read.
fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: skiff-probe/1\r\nConnection: close\r\n\r\n"
    );
    // A server may answer and close before it reads the request; its answer still counts.
    let written = stream.write_all(request.as_bytes());
    let mut line = String::new();
    match BufReader::new(&stream).read_line(&mut line) {
        Ok(n) if n > 0 => {}
        Ok(_) => return Err(written.err().unwrap_or_else(|| closed("no status line"))),
        Err(e) => return Err(written.err().unwrap_or(e)),
    }
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| closed(&format!("not an HTTP status line: {:?}", line.trim())))
}

fn closed(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// A probe's schedule and thresholds, and where its attempts stand.
#[derive(Debug)]
pub struct ProbeState {
    pub probe: Probe,
    next: Instant,
    successes: u32,
    failures: u32,
    /// The verdict: passing once `successThreshold` attempts in a row succeeded, failing
    /// once `failureThreshold` in a row failed.
    pub passing: bool,
    pub last_error: Option<String>,
}

impl ProbeState {
    /// `passing` is the verdict before the first attempt: false for readiness, true for
    /// liveness, as in Kubernetes.
    pub fn new(probe: Probe, started: Instant, passing: bool) -> ProbeState {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).into());
        ProbeState {
            probe,
            next: started + delay,
            successes: 0,
            failures: 0,
            passing,
            last_error: None,
        }
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Records an attempt; true when the verdict changed.
    pub fn record(&mut self, outcome: Result<(), String>, now: Instant) -> bool {
        let period = Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1).into());
        self.next = now + period;
        let before = self.passing;
        match outcome {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                self.last_error = None;
                if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                    self.passing = true;
                }
            }
            Err(e) => {
                self.successes = 0;
                self.failures += 1;
                self.last_error = Some(e);
                if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                    self.passing = false;
                }
            }
        }
        before != self.passing
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Read as _, net::TcpListener};

    use super::*;

    fn container() -> Container {
        serde_json::from_value(serde_json::json!({
            "name": "app",
            "ports": [{"name": "http", "containerPort": 8080}],
        }))
        .unwrap()
    }

    #[test]
    fn named_ports_resolve_and_unknown_ones_are_named_in_the_error() {
        let c = container();
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Ok(81));
        let e = resolve_port(&IntOrString::String("grpc".into()), &c).unwrap_err();
        assert!(e.contains("\"grpc\"") && e.contains("app"), "{e}");
        assert!(resolve_port(&IntOrString::Int(70000), &c).is_err());
    }

    /// A server that reads each request fully before answering, so the client never
    /// writes into a closed socket.
    fn server(statuses: &'static [u16]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for status in statuses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 512];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            }
        });
        addr
    }

    #[test]
    fn http_status_decides() {
        let addr = server(&[200, 302, 500]);
        let timeout = Duration::from_secs(5);
        assert_eq!(http_get(addr, "/healthz", timeout).unwrap(), 200);
        assert_eq!(http_get(addr, "/healthz", timeout).unwrap(), 302);
        assert_eq!(http_get(addr, "/healthz", timeout).unwrap(), 500);
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(http_get(closed, "/", timeout).is_err());
    }

    #[test]
    fn thresholds_turn_attempts_into_verdicts() {
        let now = Instant::now();
        let probe = Probe {
            failure_threshold: Some(2),
            success_threshold: Some(1),
            period_seconds: Some(1),
            ..Probe::default()
        };
        let mut readiness = ProbeState::new(probe, now, false);
        assert!(readiness.due(now));
        assert!(readiness.record(Ok(()), now));
        assert!(readiness.passing && !readiness.due(now));
        assert!(!readiness.record(Err("refused".into()), now));
        assert!(readiness.passing, "one failure is below the threshold");
        assert!(readiness.record(Err("refused".into()), now));
        assert!(!readiness.passing);
        assert_eq!(readiness.last_error.as_deref(), Some("refused"));
        assert!(readiness.due(now + Duration::from_secs(1)));
    }
}
