//! NetworkPolicy truth tables on real traffic: every case in `tests/netpol_cases/` (most of
//! them Kubernetes' own netpol e2e tests, see its README) is applied to a two-node lab cluster
//! of nine pods, and every pod probes every other one on TCP and UDP ports 80 and 81 with
//! real connections. The reachability matrix must equal the case's expectation exactly.

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::json;
use skiff_lab::PodId;
use support::{probe, service, Cluster};

type Labels = BTreeMap<String, String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Step {
    #[serde(default)]
    policies: Option<String>,
    #[serde(default)]
    pod_labels: BTreeMap<String, Labels>,
    #[serde(default)]
    namespace_labels: BTreeMap<String, Labels>,
    #[serde(default)]
    via: Via,
    expect: Vec<Expectation>,
}

#[derive(Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Via {
    #[default]
    Pod,
    Service,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    from: String,
    to: String,
    port: Option<u16>,
    proto: Option<String>,
    allow: bool,
}

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 2] = [80, 81];
const PROTOS: [&str; 2] = ["tcp", "udp"];

/// Pods as `ns/pod` with their node and host number (see the cases' README).
fn layout() -> Vec<(String, usize, u8)> {
    let mut pods = Vec::new();
    for (ns, node, first) in [("x", 0, 10), ("y", 0, 20), ("z", 1, 30)] {
        for (i, pod) in PODS.iter().enumerate() {
            pods.push((format!("{ns}/{pod}"), node, first + i as u8));
        }
    }
    pods
}

fn lab_name(pod: &str) -> String {
    pod.replace('/', "-")
}

fn matches(pattern: &str, pod: &str) -> bool {
    let (pns, ppod) = pattern.split_once('/').unwrap_or(("*", "*"));
    let (ns, name) = pod.split_once('/').unwrap();
    (pns == "*" || pns == ns) && (ppod == "*" || ppod == name)
}

fn expected(rules: &[Expectation], from: &str, to: &str, port: u16, proto: &str) -> bool {
    let mut allow = true;
    for r in rules {
        if matches(&r.from, from)
            && matches(&r.to, to)
            && r.port.is_none_or(|p| p == port)
            && r.proto.as_deref().is_none_or(|p| p == proto)
        {
            allow = r.allow;
        }
    }
    allow
}

/// Namespaces, pods (labels, address, named ports) and the step's policies as one manifest.
fn manifest(
    c: &Cluster,
    namespace_labels: &BTreeMap<String, Labels>,
    pod_labels: &BTreeMap<String, Labels>,
    policies: &str,
) -> String {
    let mut docs = Vec::new();
    for ns in NAMESPACES {
        docs.push(
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": ns, "labels": namespace_labels[ns]}})
            .to_string(),
        );
    }
    for (pod, _, _) in layout() {
        let (ns, name) = pod.split_once('/').unwrap();
        let ports: Vec<_> = PORTS
            .iter()
            .flat_map(|port| {
                PROTOS.iter().map(move |proto| {
                    json!({"name": format!("serve-{port}-{proto}"), "containerPort": port,
                           "protocol": proto.to_uppercase()})
                })
            })
            .collect();
        docs.push(
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": ns, "labels": pod_labels[&pod]},
                   "spec": {"containers": [{"name": "probe", "image": "skiff-probe", "ports": ports}]},
                   "status": {"podIP": c.pod_ip(&lab_name(&pod)).to_string()}})
            .to_string(),
        );
    }
    docs.push(policies.to_string());
    docs.join("\n---\n")
}

/// Every pod probes every other pod (or its service) on both ports and protocols at once.
/// Returns (from, to, port, proto) -> reached.
fn probe_all(c: &Cluster, via: Via) -> BTreeMap<(String, String, u16, String), bool> {
    let pods = layout();
    let target_ip = |pod: &str| {
        let ip = c.pod_ip(&lab_name(pod));
        match via {
            Via::Pod => ip,
            Via::Service => {
                let o = ip.octets();
                std::net::Ipv4Addr::new(10, 96, o[2], o[3])
            }
        }
    };
    let outputs: Vec<(String, Vec<String>, std::process::Output)> = std::thread::scope(|s| {
        let workers: Vec<_> = pods
            .iter()
            .map(|(from, _, _)| {
                let mut targets = Vec::new();
                let mut names = Vec::new();
                for (to, _, _) in pods.iter().filter(|(to, _, _)| to != from) {
                    for port in PORTS {
                        for proto in PROTOS {
                            targets.push(format!("{proto}:{}:{port}", target_ip(to)));
                            names.push(to.clone());
                        }
                    }
                }
                let pod: PodId = c.pod(&lab_name(from));
                s.spawn(move || {
                    let mut command = probe();
                    command
                        .args(["reach", "--timeout-ms", "600"])
                        .args(&targets);
                    let output = c.lab.run_in_pod(pod, command).expect("run reach");
                    (from.clone(), names, output)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut results = BTreeMap::new();
    for (from, _, output) in outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let map: BTreeMap<String, bool> = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "reach from {from} printed no JSON ({e}): {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        for (target, ok) in map {
            let mut parts = target.split(':');
            let proto = parts.next().unwrap().to_string();
            let ip: std::net::Ipv4Addr = parts.next().unwrap().parse().unwrap();
            let port: u16 = parts.next().unwrap().parse().unwrap();
            let to = pods
                .iter()
                .find(|(p, _, _)| target_ip(p) == ip)
                .map(|(p, _, _)| p.clone())
                .expect("a known target");
            results.insert((from.clone(), to, port, proto), ok);
        }
    }
    results
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netpol_cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("netpol_cases")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_netpol_truth_tables() {
    if !skiff_lab::privileged() {
        return;
    }
    let pods = layout();
    let mut nodes: Vec<Vec<(String, u8)>> = vec![Vec::new(), Vec::new()];
    for (pod, node, host) in &pods {
        nodes[*node].push((lab_name(pod), *host));
    }
    let node_refs: Vec<Vec<(&str, u8)>> = nodes
        .iter()
        .map(|n| n.iter().map(|(p, h)| (p.as_str(), *h)).collect())
        .collect();
    let layout_refs: Vec<&[(&str, u8)]> = node_refs.iter().map(|n| n.as_slice()).collect();
    let mut c = Cluster::with_addresses(&layout_refs);
    let mut services = Vec::new();
    for (pod, _, _) in &pods {
        let name = lab_name(pod);
        c.serve(
            &name,
            &["--tcp", "80", "--tcp", "81", "--udp", "80", "--udp", "81"],
        );
        let o = c.pod_ip(&name).octets();
        let ports: Vec<_> = PORTS
            .iter()
            .flat_map(|port| {
                PROTOS.iter().map(move |proto| {
                    json!({"name": format!("{proto}-{port}"), "port": port,
                           "protocol": proto.to_uppercase()})
                })
            })
            .collect();
        services.push(service(
            &format!("s-{name}"),
            &format!("10.96.{}.{}", o[2], o[3]),
            json!(ports),
            vec![c.endpoint(&name, &[])],
        ));
    }
    c.apply(&services);

    let files = case_files();
    assert!(files.len() >= 30, "the suite needs at least 30 cases");
    let mut failures = Vec::new();
    let mut probes = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let case: Case =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut namespace_labels: BTreeMap<String, Labels> = NAMESPACES
            .iter()
            .map(|ns| {
                (
                    ns.to_string(),
                    Labels::from([("ns".into(), ns.to_string())]),
                )
            })
            .collect();
        let mut pod_labels: BTreeMap<String, Labels> = pods
            .iter()
            .map(|(pod, _, _)| {
                let name = pod.split_once('/').unwrap().1;
                (
                    pod.clone(),
                    Labels::from([("pod".into(), name.to_string())]),
                )
            })
            .collect();
        for (i, step) in case.steps.iter().enumerate() {
            namespace_labels.extend(step.namespace_labels.clone());
            pod_labels.extend(step.pod_labels.clone());
            let policies = step.policies.clone().unwrap_or_default();
            c.apply_policy(&manifest(&c, &namespace_labels, &pod_labels, &policies));
            let reached = probe_all(&c, step.via);
            for ((from, to, port, proto), ok) in reached {
                probes += 1;
                let want = expected(&step.expect, &from, &to, port, &proto);
                if ok != want {
                    failures.push(format!(
                        "{} step {}: {from} -> {to} {proto}/{port}: {} but expected {}",
                        case.name,
                        i + 1,
                        if ok { "reached" } else { "blocked" },
                        if want { "reached" } else { "blocked" },
                    ));
                }
            }
        }
    }
    eprintln!(
        "{} cases, {probes} probes, {} mismatches",
        files.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}
