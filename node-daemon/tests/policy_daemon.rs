//! NetworkPolicy through the real binaries: `skiff-node run --cluster FILE --api ADDR` enforces
//! the policy of a manifest, and the `skiff` CLI explains verdicts (cross-checked against real
//! connections) and shows the flows the kernel reported. Policy changes reach established
//! flows: those still allowed go on undisturbed, those now denied stop. A manifest that does
//! not validate is rejected with the field named, and the applied policy stays.

mod support;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use skiff_lab::{Lab, NodeId, PodId};
use support::{connect_command, parse, pin_dir, ProbePipes};

const DAEMON: &str = env!("CARGO_BIN_EXE_skiff-node");
const API: &str = "127.0.0.1:9465";

struct Setup {
    lab: Lab,
    node: NodeId,
    /// x/a, x/b, y/c
    pods: [(PodId, &'static str); 3],
    cluster_file: std::path::PathBuf,
}

impl Setup {
    fn pod(&self, name: &str) -> PodId {
        self.pods.iter().find(|(_, n)| *n == name).unwrap().0
    }

    fn ip(&self, name: &str) -> String {
        self.lab.pod(self.pod(name)).ip.to_string()
    }

    /// The cluster manifest: x/a (app=client), x/b (app=web, port "http" 80), y/c, plus
    /// `policies`.
    fn manifest(&self, policies: &str) -> String {
        let pod = |ns: &str, name: &str, app: &str| {
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
                   "spec": {"containers": [{"name": "main", "image": "skiff-probe",
                            "ports": [{"name": "http", "containerPort": 80}]}]},
                   "status": {"podIP": self.ip(&format!("{ns}-{name}"))}})
            .to_string()
        };
        [
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}).to_string(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "y"}}).to_string(),
            pod("x", "a", "client"),
            pod("x", "b", "web"),
            pod("y", "c", "client"),
            policies.to_string(),
        ]
        .join("\n---\n")
    }

    /// Writes the cluster file and waits until the daemon reports it applied (or rejected).
    fn write_cluster(&self, text: &str) -> Value {
        std::fs::write(&self.cluster_file, text).unwrap();
        let digest = skiff_node::api::digest(text);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status: Value = serde_json::from_str(&self.get("/status")).unwrap();
            let applied = status["cluster_applied"].as_str() == Some(digest.as_str());
            let rejected = status["cluster_rejected"].as_str() == Some(digest.as_str());
            if applied || rejected {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cluster file not picked up: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET on the daemon API from inside the node.
    fn get(&self, path: &str) -> String {
        self.lab.node(self.node).netns.run(|| {
            let mut stream = TcpStream::connect(API).expect("daemon API");
            write!(stream, "GET {path} HTTP/1.1\r\nHost: node\r\n\r\n").unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.to_string())
                .unwrap_or_default()
        })
    }

    fn skiff(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(skiff_binary());
        command.args(["--node", API]).args(args);
        self.lab.run_on_node(self.node, command).expect("run skiff")
    }

    /// A real connection from `from` to `to`'s address.
    fn reaches(&self, from: &str, to: &str, port: u16, proto: &str) -> bool {
        let command = connect_command(&format!("{}:{port}", self.ip(to)), proto, &[]);
        let result = parse(self.lab.run_in_pod(self.pod(from), command).unwrap());
        result["ok"] == true
    }
}

fn skiff_binary() -> std::path::PathBuf {
    // The CLI is a sibling crate's binary in the same target folder.
    let mut path = std::path::PathBuf::from(DAEMON);
    path.set_file_name("skiff");
    assert!(
        path.exists(),
        "{} missing: build it with `cargo build -p skiff-cli` (cargo xtask test does)",
        path.display()
    );
    path
}

const WEB_POLICY: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
";

fn start() -> Setup {
    let mut lab = Lab::new().expect("lab");
    let node = lab.add_node("n1").expect("node");
    let names = ["x-a", "x-b", "y-c"];
    let pods = names.map(|n| (lab.add_pod(node, n).expect("pod"), n));
    for (pod, name) in pods {
        support::serve(
            &mut lab,
            pod,
            name,
            &["--tcp", "80", "--tcp", "81", "--udp", "80"],
        );
    }
    let cluster_file = std::env::temp_dir().join(format!("{}-cluster.yaml", lab.id()));
    let setup = Setup {
        lab,
        node,
        pods,
        cluster_file,
    };
    std::fs::write(&setup.cluster_file, setup.manifest(WEB_POLICY)).unwrap();
    let mut args: Vec<String> = [
        "run",
        "--pin-dir",
        &pin_dir(&setup.lab, node).display().to_string(),
        "--cgroup",
        &setup.lab.node(node).cgroup.display().to_string(),
        "--cluster",
        &setup.cluster_file.display().to_string(),
        "--api",
        API,
    ]
    .map(String::from)
    .to_vec();
    for (pod, _) in pods {
        let p = setup.lab.pod(pod);
        args.extend(["--pod".into(), format!("{}={}", p.host_interface, p.ip)]);
    }
    let mut setup = setup;
    let mut command = Command::new(DAEMON);
    command
        .args(&args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let child = setup
        .lab
        .spawn_on_node(node, command)
        .expect("start skiff-node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "skiff-node did not start");
    setup
}

#[test]
fn explain_matches_real_traffic_and_observe_names_the_policy() {
    if !skiff_lab::privileged() {
        return;
    }
    let s = start();
    let probes = [
        ("x/a", "x/b", 80, "tcp"),
        ("x/a", "x/b", 81, "tcp"),
        ("x/a", "x/b", 80, "udp"),
        ("y/c", "x/b", 80, "tcp"),
        ("x/b", "x/a", 80, "tcp"),
        ("x/b", "y/c", 81, "tcp"),
    ];
    let mut allowed = 0;
    for (from, to, port, proto) in probes {
        let output = s.skiff(&[
            "policy",
            "explain",
            "--from",
            from,
            "--to",
            to,
            "--port",
            &port.to_string(),
            "--proto",
            proto,
            "--json",
        ]);
        assert!(output.status.success(), "{output:?}");
        let explanation: Value = serde_json::from_slice(&output.stdout).unwrap();
        let reached = s.reaches(&from.replace('/', "-"), &to.replace('/', "-"), port, proto);
        assert_eq!(
            explanation["verdict"] == "allowed",
            reached,
            "explain and real traffic disagree for {from} -> {to} {proto}/{port}: {explanation}"
        );
        allowed += reached as usize;
    }
    assert_eq!(allowed, 3, "x/a -> x/b tcp/80, x/b -> x/a and x/b -> y/c");

    // The deciding policies, in words.
    let text = s.skiff(&[
        "policy", "explain", "--from", "y/c", "--to", "x/b", "--port", "80",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("y/c -> x/b tcp/80: DENIED"), "{text}");
    assert!(text.contains("selected for ingress by x/web"), "{text}");
    let text = s.skiff(&[
        "policy", "explain", "--from", "x/a", "--to", "x/b", "--port", "80",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("allowed by x/web ingress[0]"), "{text}");

    // The flows the kernel reported for those probes.
    let flows = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["observe", "--json", "--last", "100"];
        all.extend_from_slice(args);
        let output = s.skiff(&all);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let denied = flows(&["--pod", "x/b", "--verdict", "denied"]);
    assert!(
        denied.iter().any(|f| f["source"]["pod"] == "y/c"
            && f["destination"]["port"] == 80
            && f["policy"] == "x/web (selects the pod for ingress)"
            && f["drop_reason"] == "policy_denied_ingress"),
        "{denied:#?}"
    );
    let allowed_flows = flows(&["--namespace", "x", "--verdict", "allowed"]);
    assert!(
        allowed_flows
            .iter()
            .any(|f| f["source"]["pod"] == "x/a" && f["policy"] == "x/web ingress[0]"),
        "{allowed_flows:#?}"
    );
    assert!(allowed_flows.iter().all(|f| f["verdict"] == "allowed"));
    let table = s.skiff(&["observe", "--pod", "y/c"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("TIME"), "{table}");
    assert!(table.contains("denied"), "{table}");

    // Follow: a new denied flow shows up live.
    let mut command = Command::new(skiff_binary());
    command
        .args([
            "--node",
            API,
            "observe",
            "-f",
            "--json",
            "--last",
            "0",
            "--verdict",
            "denied",
        ])
        .stdout(Stdio::piped());
    let mut s = s;
    let child = s.lab.spawn_on_node(s.node, command).unwrap();
    let mut live = BufReader::new(child.stdout.take().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert!(!s.reaches("y-c", "x-b", 81, "tcp"));
    let mut line = String::new();
    live.read_line(&mut line).unwrap();
    let flow: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(flow["source"]["pod"], "y/c", "{flow}");
    assert_eq!(flow["destination"]["port"], 81, "{flow}");

    // Counters by policy rule, and drops by reason.
    let metrics = s.get("/metrics");
    let counter = |needle: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in\n{metrics}"))
    };
    assert!(
        counter(
            "skiff_policy_verdicts_total{policy=\"x/web\",rule=\"ingress[0]\",verdict=\"allowed\"}"
        ) >= 1
    );
    assert!(counter("skiff_policy_verdicts_total{policy=\"x/web\",rule=\"ingress:selection\",verdict=\"denied\"}") >= 3);
    assert!(counter("skiff_drops_total{reason=\"policy_denied_ingress\"}") >= 3);
}

#[test]
fn policy_changes_reach_established_flows_and_bad_input_changes_nothing() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut s = start();
    let target = format!("{}:80", s.ip("x-b"));
    let a = s.pod("x-a");
    let mut session = ProbePipes::spawn(
        &mut s.lab,
        a,
        false,
        &["session", &target, "--timeout-ms", "800"],
    );
    assert_eq!(session.exchange()["ok"], true);

    // Still allowed, by another rule: the connection is judged again and goes on.
    let by_namespace = WEB_POLICY.replace(
        "from: [{podSelector: {matchLabels: {app: client}}}]",
        "from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}}]",
    );
    let status = s.write_cluster(&s.manifest(&by_namespace));
    assert!(status["cluster_error"].is_null(), "{status}");
    for _ in 0..3 {
        assert_eq!(
            session.exchange()["ok"],
            true,
            "an allowed flow was disturbed"
        );
    }

    // A manifest with a typo is rejected, naming the field; the applied policy stays.
    let typo = by_namespace.replace("podSelector: {matchLabels: {app: web}}", "podselector: {}");
    let status = s.write_cluster(&s.manifest(&typo));
    let error = status["cluster_error"].as_str().expect("rejected");
    assert!(error.contains("unknown field `podselector`"), "{error}");
    assert!(error.contains("document 6"), "{error}");
    assert_eq!(session.exchange()["ok"], true);
    assert!(
        !s.reaches("y-c", "x-b", 80, "tcp"),
        "the applied policy must stay"
    );

    // Now denied: the established connection stops at its next packet.
    let deny_all = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
";
    let status = s.write_cluster(&s.manifest(deny_all));
    assert!(status["cluster_error"].is_null(), "{status}");
    let result = session.exchange();
    assert_eq!(result["ok"], false, "a denied flow went on: {result}");
    assert!(!s.reaches("x-a", "x-b", 80, "tcp"));

    // Deleting the policy restores traffic.
    s.write_cluster(&s.manifest(""));
    assert!(s.reaches("y-c", "x-b", 80, "tcp"));
}
