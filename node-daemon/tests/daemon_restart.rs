//! The node daemon binary under kill -9: its data plane is pinned, so established connections
//! survive, new connections keep being balanced while it is down, and the restarted daemon
//! adopts the maps without rewriting (let alone flushing) anything.

mod support;

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{ChildStderr, Command, Stdio},
    time::Duration,
};

use serde_json::{json, Value};
use skiff_lab::{Lab, NodeId};
use support::{pin_dir, service, ProbePipes};

const DAEMON: &str = env!("CARGO_BIN_EXE_skiff-node");
const VIP: &str = "10.96.0.10:80";

/// Starts `skiff-node run ARGS` as one of the node's processes; returns its pid and log.
fn start_daemon(lab: &mut Lab, node: NodeId, args: &[String]) -> (i32, ChildStderr) {
    let mut command = Command::new(DAEMON);
    command
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = lab.spawn_on_node(node, command).expect("start skiff-node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    if line.trim() != "ready" {
        let mut log = String::new();
        let mut stderr = stderr;
        let _ = stderr.read_to_string(&mut log);
        panic!("skiff-node did not start: {line}\n{log}");
    }
    (child.id() as i32, stderr)
}

#[test]
fn kill_9_of_the_daemon_breaks_no_connection_tcx() {
    if skiff_lab::privileged() {
        kill_9_breaks_no_connection("tcx");
    }
}

/// clsact filters are not owned by a file descriptor: the restarted daemon replaces its own
/// filters in place (fixed priority and handle) instead of stacking new ones.
#[test]
fn kill_9_of_the_daemon_breaks_no_connection_clsact() {
    if skiff_lab::privileged() {
        kill_9_breaks_no_connection("clsact");
    }
}

fn kill_9_breaks_no_connection(attach_mode: &str) {
    let mut lab = Lab::new().expect("lab");
    let node = lab.add_node("n1").expect("node");
    let client = lab.add_pod(node, "client").expect("pod");
    let web1 = lab.add_pod(node, "web1").expect("pod");
    let web2 = lab.add_pod(node, "web2").expect("pod");
    for (pod, name) in [(web1, "web1"), (web2, "web2")] {
        support::serve(&mut lab, pod, name, &["--tcp", "8080"]);
    }
    let endpoints = [web1, web2]
        .map(|pod| json!({"ip": lab.pod(pod).ip, "local": true}))
        .to_vec();
    let mut web = service(
        "web",
        "10.96.0.10",
        json!([{"port": 80, "targetPort": 8080}]),
        vec![],
    );
    web.endpoints = serde_json::from_value(Value::Array(endpoints)).unwrap();
    let desired = json!({"nodeAddresses": [lab.node(node).address], "services": [web]});
    let services_file = std::env::temp_dir().join(format!("{}-services.json", lab.id()));
    std::fs::write(&services_file, desired.to_string()).unwrap();

    let mut args: Vec<String> = vec![
        "run".into(),
        "--attach-mode".into(),
        attach_mode.into(),
        "--pin-dir".into(),
        pin_dir(&lab, node).display().to_string(),
        "--cgroup".into(),
        lab.node(node).cgroup.display().to_string(),
        "--uplink".into(),
        "eth0".into(),
        "--services".into(),
        services_file.display().to_string(),
        "--metrics".into(),
        "127.0.0.1:9465".into(),
    ];
    for pod in [client, web1, web2] {
        let p = lab.pod(pod);
        args.extend(["--pod".into(), format!("{}={}", p.host_interface, p.ip)]);
    }
    let (pid, _first_log) = start_daemon(&mut lab, node, &args);

    // Established flows on both paths (socket hooks; conntrack outside the cgroup), and
    // continuous new connections on both.
    let mut sessions: Vec<ProbePipes> = [false, true]
        .map(|outside| ProbePipes::spawn(&mut lab, client, outside, &["session", VIP]))
        .into();
    for (i, session) in sessions.iter_mut().enumerate() {
        let result = session.exchange();
        assert_eq!(result["ok"], true, "session {i} before the kill: {result}");
    }
    let loads: Vec<ProbePipes> = [false, true]
        .map(|outside| {
            ProbePipes::spawn(
                &mut lab,
                client,
                outside,
                &["load", VIP, "--interval-ms", "20"],
            )
        })
        .into();
    std::thread::sleep(Duration::from_millis(300));

    // SAFETY: kill(2) of the daemon's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(1000));
    for (i, session) in sessions.iter_mut().enumerate() {
        let result = session.exchange();
        assert_eq!(
            result["ok"], true,
            "session {i} while the daemon is down: {result}"
        );
    }

    let (_, log) = start_daemon(&mut lab, node, &args);
    std::thread::sleep(Duration::from_millis(500));
    for (i, session) in sessions.iter_mut().enumerate() {
        let result = session.exchange();
        assert_eq!(
            result["ok"], true,
            "session {i} after the restart: {result}"
        );
    }
    for (i, load) in loads.into_iter().enumerate() {
        let summary = load.finish();
        assert!(
            summary["attempts"].as_u64().unwrap() > 20,
            "load {i}: {summary}"
        );
        assert_eq!(
            summary["failures"], 0,
            "load {i} saw failed connections: {summary}"
        );
    }

    // The restarted daemon adopted the service and had nothing to rewrite.
    let mut log_lines = BufReader::new(log).lines();
    let mut adopted = false;
    let mut reconciled = None;
    for line in log_lines.by_ref().take(50) {
        let line = line.unwrap();
        adopted |= line.contains("service maps adopted") && line.contains("frontends=1");
        if line.contains("services reconciled") {
            reconciled = Some(line);
            break;
        }
    }
    assert!(
        adopted,
        "the restarted daemon did not report adopting the pinned service"
    );
    let reconciled = reconciled.expect("a reconcile log line");
    assert!(
        reconciled.contains("frontends_written: 0") && reconciled.contains("backends_written: 0"),
        "a restart must not rewrite the maps: {reconciled}"
    );

    // One program per hook after the restart: replaced, not stacked.
    let interface = lab.pod(client).host_interface.clone();
    let filters = Command::new("tc")
        .args([
            "-n",
            lab.node(node).netns.name(),
            "filter",
            "show",
            "dev",
            &interface,
            "ingress",
        ])
        .output()
        .unwrap();
    let filters = String::from_utf8_lossy(&filters.stdout);
    if attach_mode == "clsact" {
        assert_eq!(filters.matches("direct-action").count(), 1, "{filters}");
    } else {
        let programs = lab.node(node).netns.run(|| {
            aya::programs::SchedClassifier::query_tcx(
                &interface,
                aya::programs::TcAttachType::Ingress,
            )
            .unwrap()
            .1
        });
        assert_eq!(programs.len(), 1, "TCX ingress programs after the restart");
    }

    // Metrics describe the same kernel state: one header and two backend slots.
    let mut get = Command::new("bash");
    get.args([
        "-c",
        "exec 3<>/dev/tcp/127.0.0.1/9465; printf 'GET /metrics HTTP/1.1\\r\\n\\r\\n' >&3; timeout 2 cat <&3",
    ]);
    let metrics = lab.run_on_node(node, get).unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for expected in [
        "HTTP/1.1 200 OK",
        "skiff_map_entries{map=\"SERVICES\"} 3",
        "skiff_map_capacity{map=\"CONNTRACK\"} 262144",
        "skiff_drops_total{reason=\"no_service_backend\"} 0",
    ] {
        assert!(
            metrics.contains(expected),
            "/metrics lacks {expected}:\n{metrics}"
        );
    }

    // Inspection reads the kernel's view from the pins.
    let output = Command::new(DAEMON)
        .args([
            "services",
            "--pin-dir",
            &pin_dir(&lab, node).display().to_string(),
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{listing}");
    for expected in [
        "10.96.0.10:80/tcp",
        &format!("{}:8080", lab.pod(web1).ip),
        "CONNTRACK",
    ] {
        assert!(
            listing.contains(expected),
            "`skiff-node services` lacks {expected}:\n{listing}"
        );
    }
    // And bpftool reads the same pins (docs/services.md shows how).
    let services_pin = pin_dir(&lab, node)
        .join("maps")
        .join(skiff_node::dataplane::MAP_LAYOUT_VERSION)
        .join("SERVICES");
    let dump = Command::new("bpftool")
        .args(["map", "dump", "pinned"])
        .arg(&services_pin)
        .output()
        .expect("bpftool (installed by cargo xtask setup)");
    let dump = String::from_utf8_lossy(&dump.stdout);
    // The VIP 10.96.0.10 in network byte order starts the key of every entry.
    assert!(
        dump.contains("0a 60 00 0a"),
        "bpftool dump of SERVICES:\n{dump}"
    );
    let _ = std::fs::remove_file(services_file);
}
