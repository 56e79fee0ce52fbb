//! A small cluster in the lab for service tests: nodes with pods, one data plane per node
//! (pinned under the lab's bpffs folder, as a node daemon pins it), each with its own service
//! reconciler, and helpers to run probes as pods, node processes and external clients.

#![allow(dead_code)] // each test binary uses a different part of the support code

pub mod control;
pub mod netpol_reference;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    net::Ipv4Addr,
    path::PathBuf,
    process::{ChildStdin, ChildStdout, Command, Stdio},
};

use serde_json::Value;
use skiff_lab::{ExternalId, Lab, NodeId, PodId};
use skiff_node::{
    dataplane::{AttachMode, DataPlane, LoadOptions},
    policy::{cluster_from_manifest, compile, PolicyReconciler},
    service_lb::{
        desired::{Endpoint, Service},
        health::HealthChecks,
        DesiredServices, ServiceReconciler,
    },
};

pub struct Cluster {
    pub lab: Lab,
    pub nodes: Vec<NodeId>,
    pub pods: BTreeMap<String, PodId>,
    pub planes: Vec<DataPlane>,
    pub reconcilers: Vec<ServiceReconciler>,
    pub policies: Vec<PolicyReconciler>,
    pub health: Vec<HealthChecks>,
}

impl Cluster {
    /// `layout[i]` lists the pods of node `n{i+1}`.
    pub fn new(layout: &[&[&str]]) -> Cluster {
        let layout: Vec<Vec<(&str, Option<u8>)>> = layout
            .iter()
            .map(|pods| pods.iter().map(|p| (*p, None)).collect())
            .collect();
        Self::build(&layout)
    }

    /// Like `new`, with each pod at a chosen host number of its node's pod CIDR.
    pub fn with_addresses(layout: &[&[(&str, u8)]]) -> Cluster {
        let layout: Vec<Vec<(&str, Option<u8>)>> = layout
            .iter()
            .map(|pods| pods.iter().map(|(p, h)| (*p, Some(*h))).collect())
            .collect();
        Self::build(&layout)
    }

    fn build(layout: &[Vec<(&str, Option<u8>)>]) -> Cluster {
        let mut lab = Lab::new().expect("lab");
        let mut nodes = Vec::new();
        let mut pods = BTreeMap::new();
        for (i, node_pods) in layout.iter().enumerate() {
            let node = lab.add_node(&format!("n{}", i + 1)).expect("node");
            nodes.push(node);
            for (name, host) in node_pods {
                let pod = match host {
                    Some(host) => lab.add_pod_at(node, name, *host),
                    None => lab.add_pod(node, name),
                };
                pods.insert(name.to_string(), pod.expect("pod"));
            }
        }
        lab.route_pod_cidrs().expect("routes");
        let mut planes = Vec::new();
        let mut reconcilers = Vec::new();
        let mut policies = Vec::new();
        let mut health = Vec::new();
        for &node in &nodes {
            let (plane, reconciler, policy) = Self::start_node(&lab, &pods, node);
            planes.push(plane);
            reconcilers.push(reconciler);
            policies.push(policy);
            health.push(HealthChecks::new());
        }
        Cluster {
            lab,
            nodes,
            pods,
            planes,
            reconcilers,
            policies,
            health,
        }
    }

    /// Loads (or reloads from the pins) a node's data plane and attaches it as the node
    /// daemon does.
    fn start_node(
        lab: &Lab,
        pods: &BTreeMap<String, PodId>,
        node: NodeId,
    ) -> (DataPlane, ServiceReconciler, PolicyReconciler) {
        let n = lab.node(node);
        let mut options = LoadOptions::unpinned(AttachMode::detect());
        options.pin_dir = Some(pin_dir(lab, node));
        let mut plane = DataPlane::load_with(&options).expect("load data plane");
        let reconciler =
            ServiceReconciler::new(plane.take_service_maps().unwrap()).expect("reconciler");
        let policy =
            PolicyReconciler::new(plane.take_policy_maps().unwrap()).expect("policy reconciler");
        for pod in pods.values().filter(|p| lab.pod(**p).node == node) {
            let pod = lab.pod(*pod);
            plane
                .endpoints()
                .unwrap()
                .upsert(pod.host_ifindex, pod.ip)
                .unwrap();
            let interface = pod.host_interface.clone();
            n.netns
                .run(|| plane.attach_pod_interface(&interface))
                .expect("attach pod programs");
        }
        n.netns
            .run(|| plane.attach_uplink(n.uplink))
            .expect("attach uplink");
        n.netns
            .run(|| plane.mark_host_netns())
            .expect("mark the node's namespace");
        plane.attach_cgroup(&n.cgroup).expect("attach socket hooks");
        (plane, reconciler, policy)
    }

    /// Compiles a manifest of Namespaces, Pods and NetworkPolicies and writes each node's
    /// share, as the node daemon does with its `--cluster` file.
    pub fn apply_policy(&mut self, manifest: &str) {
        let state = cluster_from_manifest(manifest).expect("cluster manifest");
        for (i, &node) in self.nodes.iter().enumerate() {
            let local: Vec<Ipv4Addr> = self
                .pods
                .values()
                .filter(|p| self.lab.pod(**p).node == node)
                .map(|p| self.lab.pod(*p).ip)
                .collect();
            let compiled = compile(&state, &[self.lab.node(node).address], &local);
            self.policies[i]
                .reconcile(&compiled)
                .expect("policy reconcile");
        }
    }

    pub fn pod(&self, name: &str) -> PodId {
        self.pods[name]
    }

    pub fn pod_ip(&self, name: &str) -> Ipv4Addr {
        self.lab.pod(self.pod(name)).ip
    }

    pub fn node_ip(&self, index: usize) -> Ipv4Addr {
        self.lab.node(self.nodes[index]).address
    }

    /// An endpoint for `pod`, with named container ports.
    pub fn endpoint(&self, pod: &str, named_ports: &[(&str, u16)]) -> Endpoint {
        Endpoint {
            ip: self.pod_ip(pod),
            local: false,
            ready: true,
            terminating: false,
            ports: named_ports
                .iter()
                .map(|(n, p)| (n.to_string(), *p))
                .collect(),
        }
    }

    /// The desired state as node `index` sees it (its address, its local endpoints).
    pub fn desired_for(&self, index: usize, services: &[Service]) -> DesiredServices {
        let node = self.lab.node(self.nodes[index]);
        let local_prefix = &node.pod_cidr.octets()[..3];
        let mut services = services.to_vec();
        for service in &mut services {
            for endpoint in &mut service.endpoints {
                endpoint.local = &endpoint.ip.octets()[..3] == local_prefix;
            }
        }
        DesiredServices {
            node_addresses: vec![node.address],
            services,
            ..Default::default()
        }
    }

    /// Reconciles every node to `services` (health-check ports included).
    pub fn apply(&mut self, services: &[Service]) {
        for i in 0..self.nodes.len() {
            let desired = self.desired_for(i, services);
            self.reconcilers[i].reconcile(&desired).expect("reconcile");
            let netns = &self.lab.node(self.nodes[i]).netns;
            let health = &mut self.health[i];
            netns.run(|| health.update(&desired)).expect("health ports");
        }
    }

    /// Starts `skiff-probe serve --name POD ARGS` in `pod` and waits until it listens.
    pub fn serve(&mut self, pod: &str, args: &[&str]) {
        let id = self.pod(pod);
        serve(&mut self.lab, id, pod, args);
    }
}

/// Starts `skiff-probe serve --name NAME ARGS` in `pod` and waits until it listens.
pub fn serve(lab: &mut Lab, pod: PodId, name: &str, args: &[&str]) {
    let mut command = probe();
    command
        .args(["serve", "--name", name])
        .args(args)
        .stdout(Stdio::piped());
    let child = lab.spawn_in_pod(pod, command).expect("start server");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "serving", "server {name} did not start");
}

/// The pipes of a long-running probe (`session`, `load`) in a pod. The lab owns the process
/// and kills it on drop.
pub struct ProbePipes {
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl ProbePipes {
    /// Starts `skiff-probe ARGS` in `pod`, in its cgroup or (per-packet path) outside it.
    pub fn spawn(lab: &mut Lab, pod: PodId, outside_cgroup: bool, args: &[&str]) -> ProbePipes {
        let mut command = probe();
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let child = if outside_cgroup {
            lab.spawn_in_pod_netns_only(pod, command)
        } else {
            lab.spawn_in_pod(pod, command)
        }
        .expect("start probe");
        ProbePipes {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
        }
    }

    /// The next JSON line the probe prints.
    pub fn line(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// One exchange of a `skiff-probe session`.
    pub fn exchange(&mut self) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
        self.line()
    }

    /// Ends a `skiff-probe load` (closes its stdin) and returns its summary.
    pub fn finish(mut self) -> Value {
        drop(self.stdin.take());
        self.line()
    }
}

pub fn pin_dir(lab: &Lab, node: NodeId) -> PathBuf {
    lab.bpffs().join(&lab.node(node).name)
}

pub fn probe() -> Command {
    Command::new(skiff_lab::probe_binary().expect("skiff-probe"))
}

pub fn connect_command(target: &str, proto: &str, extra: &[&str]) -> Command {
    let mut command = probe();
    command
        .args(["connect", target, "--proto", proto, "--timeout-ms", "1000"])
        .args(extra);
    command
}

/// The JSON line a probe printed.
pub fn parse(output: std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "probe printed no JSON ({e}): {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Who a client is, for the flow table.
#[derive(Clone, Copy, Debug)]
pub enum Client<'a> {
    /// A process in the pod (its netns and cgroup: the socket hooks apply).
    Pod(&'a str),
    /// A process in the pod's netns but outside every cgroup with hooks: per-packet path.
    PodOutsideCgroup(&'a str),
    /// One of node `i`'s own processes.
    Node(usize),
    External(ExternalId),
}

impl Cluster {
    pub fn run(&self, client: Client, command: Command) -> Value {
        let output = match client {
            Client::Pod(pod) => self.lab.run_in_pod(self.pod(pod), command),
            Client::PodOutsideCgroup(pod) => self.lab.run_in_pod_netns_only(self.pod(pod), command),
            Client::Node(i) => self.lab.run_on_node(self.nodes[i], command),
            Client::External(id) => self.lab.run_in_external(id, command),
        };
        parse(output.expect("run probe"))
    }

    /// Connects once and returns (answering pod, address the server saw the client as).
    pub fn reach(
        &self,
        client: Client,
        target: &str,
        proto: &str,
    ) -> Result<(String, String), Value> {
        let result = self.run(client, connect_command(target, proto, &[]));
        if result["ok"] != true {
            return Err(result);
        }
        let answer = result["answer"].as_str().unwrap_or_default().to_string();
        let (name, seen) = answer.split_once(' ').unwrap_or((&answer, ""));
        let seen_ip = seen.split(':').next().unwrap_or_default();
        Ok((name.to_string(), seen_ip.to_string()))
    }
}

/// A service with the fields the tests vary; the rest defaulted.
pub fn service(
    name: &str,
    cluster_ip: &str,
    ports: serde_json::Value,
    endpoints: Vec<Endpoint>,
) -> Service {
    let mut service: Service = serde_json::from_value(serde_json::json!({
        "name": name,
        "clusterIp": cluster_ip,
        "ports": ports,
    }))
    .expect("service literal");
    service.endpoints = endpoints;
    service
}
