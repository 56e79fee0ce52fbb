//! `skiff-probe` end to end on 127.0.0.1: serve, connect and load as separate processes.

use std::{
    io::{BufRead as _, BufReader},
    net::{TcpListener, UdpSocket},
    process::{Child, Command, Output, Stdio},
};

use serde_json::Value;

fn probe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skiff-probe"))
}

/// A port nobody listens on right now (TCP and UDP are picked separately).
fn free_port(udp: bool) -> u16 {
    if udp {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// A `serve` on loopback, killed on drop.
struct Server {
    child: Child,
    tcp: u16,
    udp: u16,
    http: u16,
}

impl Server {
    fn start(name: Option<&str>, pod_name_env: Option<&str>) -> Server {
        Self::start_with(name, pod_name_env, &[])
    }

    fn start_with(name: Option<&str>, pod_name_env: Option<&str>, extra: &[&str]) -> Server {
        let (tcp, udp, http) = (free_port(false), free_port(true), free_port(false));
        let mut command = probe();
        command.args(["serve", "--bind", "127.0.0.1"]).args(extra);
        command.args(["--tcp", &tcp.to_string(), "--udp", &udp.to_string()]);
        command.args(["--http", &http.to_string()]);
        if let Some(name) = name {
            command.args(["--name", name]);
        }
        match pod_name_env {
            Some(value) => command.env("POD_NAME", value),
            None => command.env_remove("POD_NAME"),
        };
        let mut child = command.stdout(Stdio::piped()).spawn().expect("start serve");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "serving");
        Server {
            child,
            tcp,
            udp,
            http,
        }
    }

    fn port(&self, proto: &str) -> u16 {
        match proto {
            "tcp" => self.tcp,
            "udp" => self.udp,
            _ => self.http,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one JSON line a run printed, and whether it exited 0.
fn json(output: Output) -> (Value, bool) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON line ({e}): {stdout:?} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (value, output.status.success())
}

fn connect(port: u16, proto: &str) -> (Value, bool) {
    let target = format!("127.0.0.1:{port}");
    json(
        probe()
            .args(["connect", &target, "--proto", proto, "--timeout", "1s"])
            .output()
            .unwrap(),
    )
}

#[test]
fn an_http_tier_relays_its_upstreams_answer_and_fails_with_it() {
    let data = Server::start(Some("data-1"), None);
    let upstream = format!("localhost:{}", data.http);
    let api = Server::start_with(
        Some("api-1"),
        None,
        &["--upstream", &upstream, "--cpu-per-request", "5ms"],
    );
    let (result, ok) = connect(api.http, "http");
    assert!(ok, "{result}");
    let answer = result["answer"].as_str().unwrap();
    let (first, relayed) = answer.split_once(" -> ").expect("a relayed answer");
    assert!(first.starts_with("api-1 127.0.0.1:"), "{answer}");
    assert!(relayed.starts_with("data-1 127.0.0.1:"), "{answer}");
    assert_eq!(result["pod"], "api-1", "the first hop names the pod");
    drop(data);
    let (result, ok) = connect(api.http, "http");
    assert!(!ok);
    assert!(
        result["error"].as_str().unwrap().contains("502"),
        "{result}"
    );
}

#[test]
fn a_terminated_server_finishes_the_request_in_flight_then_exits() {
    let mut server = Server::start_with(Some("slow"), None, &["--cpu-per-request", "600ms"]);
    let port = server.http;
    let request = std::thread::spawn(move || connect(port, "http"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = server.child.id() as libc::pid_t;
    // SAFETY: signals our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let (result, ok) = request.join().unwrap();
    assert!(ok, "the request in flight at SIGTERM failed: {result}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let (result, ok) = connect(port, "http");
    assert!(!ok, "still answering after it finished: {result}");
}

#[test]
fn connect_reports_the_pod_name_and_the_client_address_the_server_saw() {
    let server = Server::start(Some("web-1"), Some("not-this"));
    for proto in ["tcp", "udp", "http"] {
        let (result, ok) = connect(server.port(proto), proto);
        assert!(ok, "{proto}: {result}");
        assert_eq!(result["ok"], true, "{proto}: {result}");
        assert_eq!(result["proto"], proto);
        assert_eq!(result["pod"], "web-1", "{proto}: {result}");
        // Loopback has no NAT: the server saw exactly our local address.
        assert_eq!(result["client"], result["local"], "{proto}: {result}");
        assert_eq!(
            result["answer"],
            format!("web-1 {}", result["local"].as_str().unwrap())
        );
        assert!(result["elapsed_ms"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn the_name_defaults_to_pod_name_then_the_hostname() {
    let from_env = Server::start(None, Some("from-env"));
    assert_eq!(connect(from_env.tcp, "tcp").0["pod"], "from-env");
    let from_host = Server::start(None, None);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(connect(from_host.udp, "udp").0["pod"], hostname.trim());
}

#[test]
fn connect_to_a_closed_port_fails_with_json() {
    let (result, ok) = connect(free_port(false), "tcp");
    assert!(!ok);
    assert_eq!(result["ok"], false);
    assert!(
        result["error"].as_str().unwrap().contains("refused"),
        "{result}"
    );
    // A target without a port is refused before any name is looked up.
    let output = probe().args(["connect", "api"]).output().unwrap();
    let (result, ok) = json(output);
    assert!(!ok);
    assert!(
        result["error"].as_str().unwrap().contains("NAME:PORT"),
        "{result}"
    );
}

/// A 300 ms benchmark, two connections unless `extra` says otherwise.
fn load(port: u16, proto: &str, mode: &str, extra: &[&str]) -> (Value, bool) {
    let target = format!("127.0.0.1:{port}");
    let mut command = probe();
    command
        .args(["load", &target, "--proto", proto, "--mode", mode])
        .args(["--duration", "300ms"])
        .args(extra);
    if !extra.contains(&"--concurrency") {
        command.args(["--concurrency", "2"]);
    }
    json(command.output().unwrap())
}

fn assert_clean_run(mode: &str) {
    let server = Server::start(Some("bench"), None);
    for proto in ["tcp", "udp", "http"] {
        let (report, ok) = load(server.port(proto), proto, mode, &[]);
        assert!(ok, "{mode}/{proto}: {report}");
        assert_eq!(report["mode"], mode);
        assert_eq!(report["proto"], proto);
        assert_eq!(report["errors"], 0, "{mode}/{proto}: {report}");
        assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
        assert!(report["connections"].as_u64().unwrap() > 0, "{report}");
        assert!(report["rate_per_s"].as_f64().unwrap() > 0.0, "{report}");
        assert!(report["bytes"].as_u64().unwrap() > 0, "{report}");
        assert!(
            report["throughput_mbit_s"].as_f64().unwrap() > 0.0,
            "{report}"
        );
        let (p50, p99) = (report["p50_us"].as_u64(), report["p99_us"].as_u64());
        assert!(p50.is_some() && p50 <= p99, "{report}");
        let duration = report["duration_s"].as_f64().unwrap();
        assert!((0.3..2.0).contains(&duration), "{report}");
        assert!(report.get("first_error").is_none(), "{report}");
    }
}

#[test]
fn load_crr_runs_clean_on_every_protocol() {
    assert_clean_run("crr");
}

#[test]
fn load_rr_keeps_its_connections() {
    assert_clean_run("rr");
    let server = Server::start(Some("bench"), None);
    let (report, _) = load(server.tcp, "tcp", "rr", &["--concurrency", "3"]);
    assert_eq!(report["connections"], 3, "{report}");
    assert!(report["requests"].as_u64().unwrap() > 3, "{report}");
}

#[test]
fn load_stream_moves_bulk_data() {
    assert_clean_run("stream");
    let server = Server::start(Some("bench"), None);
    let (report, ok) = load(server.tcp, "tcp", "stream", &["--size", "1000"]);
    assert!(ok, "{report}");
    // Every write was confirmed by the server's byte count.
    assert_eq!(
        report["bytes"].as_u64().unwrap(),
        report["requests"].as_u64().unwrap() * 1000,
        "{report}"
    );
}

#[test]
fn load_against_a_closed_port_counts_errors_and_fails() {
    let closed = free_port(false);
    for (proto, mode) in [("tcp", "crr"), ("tcp", "rr"), ("http", "stream")] {
        let (report, ok) = load(closed, proto, mode, &[]);
        assert!(!ok, "{report}");
        assert!(report["errors"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["requests"], 0, "{report}");
        assert_eq!(report["p50_us"], Value::Null, "{report}");
        assert!(report["first_error"].as_str().unwrap().contains("refused"));
    }
    let (report, ok) = load(free_port(true), "udp", "rr", &["--timeout", "50ms"]);
    assert!(!ok && report["errors"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn load_without_mode_runs_until_stdin_closes() {
    let server = Server::start(Some("web"), None);
    let target = format!("127.0.0.1:{}", server.tcp);
    let mut child = probe()
        .args(["load", &target, "--interval-ms", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(child.stdin.take());
    let (summary, ok) = json(child.wait_with_output().unwrap());
    assert!(ok, "{summary}");
    assert!(summary["attempts"].as_u64().unwrap() > 2, "{summary}");
    assert_eq!(summary["failures"], 0);
    assert_eq!(summary["errors"], Value::Array(vec![]));
    // The two kinds of load do not mix.
    let status = probe()
        .args(["load", &target, "--mode", "rr", "--interval-ms", "5"])
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(2));
}

#[test]
fn session_and_reach_still_work() {
    let server = Server::start(Some("web"), None);
    let mut child = probe()
        .args(["session", &format!("127.0.0.1:{}", server.tcp)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"1\n2\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    // One flow: both exchanges from the same local port.
    assert_eq!(lines[0]["pod"], "web");
    assert_eq!(lines[0]["client"], lines[1]["client"]);

    let closed = free_port(false);
    let targets = [
        format!("tcp:127.0.0.1:{}", server.tcp),
        format!("udp:127.0.0.1:{}", server.udp),
        format!("http:127.0.0.1:{}", server.http),
        format!("tcp:127.0.0.1:{closed}"),
    ];
    let (result, ok) = json(probe().arg("reach").args(&targets).output().unwrap());
    assert!(ok);
    for target in &targets[..3] {
        assert_eq!(result[target], true, "{result}");
    }
    assert_eq!(result[&targets[3]], false, "{result}");
}
