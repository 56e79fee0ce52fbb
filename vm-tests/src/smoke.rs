//! The smoke scenario: a control plane in a lab namespace on the host kernel, node daemons
//! in VMs on the guest kernel, and across them: every program loaded with the attach path
//! that kernel has, a Service answered by endpoints on both VMs, a NodePort from outside the
//! cluster on every VM, and a NetworkPolicy enforced (and counted) on both.

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use skiff_local_cluster::{has_condition, Binaries, Cluster, Options};

use crate::{
    image::{self, Kernel},
    vm::{self, Vm, VmSpec},
};

const APPLICATION: &str = include_str!("../smoke.yaml");
const POLICY: &str = include_str!("../policy.yaml");
const NAMESPACE: &str = "smoke";
const NODE_PORT: u16 = 30090;
const NODE_API_PORT: u16 = 10250;
/// Emulated CPUs boot, load the data plane and start pods many times slower than the host.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const PODS_TIMEOUT: Duration = Duration::from_secs(180);

pub struct Settings {
    pub kernel_root: PathBuf,
    pub vms: usize,
    pub memory_mib: u32,
    pub state_dir: PathBuf,
    pub result: Option<PathBuf>,
}

/// What passed, and when (seconds from the start), for the result file.
struct Report {
    started: Instant,
    checks: Vec<Value>,
}

impl Report {
    fn passed(&mut self, check: &str) {
        let at = self.started.elapsed().as_secs_f64();
        println!("vm-test: [{at:6.1} s] ok: {check}");
        self.checks
            .push(json!({"check": check, "at_s": (at * 10.0).round() / 10.0}));
    }
}

fn say(message: &str) {
    println!("vm-test: {message}");
}

pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut report = Report {
        started,
        checks: Vec::new(),
    };
    let kernel = Kernel::find(&settings.kernel_root)?;
    say(&format!(
        "guest kernel {} ({}), {} VMs of {} MiB under QEMU's CPU emulation",
        kernel.release,
        kernel.vmlinuz.display(),
        settings.vms,
        settings.memory_mib
    ));
    let state = &settings.state_dir;
    if state.exists() {
        std::fs::remove_dir_all(state).with_context(|| format!("emptying {}", state.display()))?;
    }
    std::fs::create_dir_all(state)?;
    let binaries = Binaries::beside_current_exe().context("cargo xtask build")?;
    if !binaries.static_probe.is_file() {
        bail!(
            "no static skiff-probe at {} (cargo xtask build makes it)",
            binaries.static_probe.display()
        );
    }

    let mut options = Options::new(binaries.clone(), state.join("cluster"));
    options.nodes = 0;
    options.log_filter = "info".into();
    // An emulated node's heartbeats can lag while it loads programs; no node loss here.
    options.node_grace_seconds = 60;
    let mut cluster = Cluster::start(options, &mut |step| say(step))?;

    let specs: Vec<VmSpec> = (0..settings.vms)
        .map(|i| VmSpec {
            name: format!("vm{}", i + 1),
            address: Ipv4Addr::new(10, 200, 0, 101 + i as u8),
            memory_mib: settings.memory_mib,
        })
        .collect();
    for (i, spec) in specs.iter().enumerate() {
        cluster.admin.post(
            "/api/v1/nodes",
            &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": spec.name},
                "spec": {"podCIDR": format!("10.244.{}.0/24", 101 + i)}}),
        )?;
    }

    let node_conf_path = state.join("cluster/node.conf");
    let node_conf = std::fs::read_to_string(&node_conf_path)
        .with_context(|| format!("reading {}", node_conf_path.display()))?;
    let initramfs = state.join("initramfs.cpio");
    let busybox = static_busybox()?;
    let size = image::build_initramfs(
        &kernel,
        &image::Contents {
            node: &binaries.node,
            static_probe: &binaries.static_probe,
            busybox: &busybox,
            node_conf: &node_conf,
        },
        &initramfs,
    )?;
    say(&format!(
        "initramfs: {} MiB (busybox, skiff-node stripped, static skiff-probe, modules)",
        size >> 20
    ));

    let mut vms = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        say(&format!("booting {} at {}", spec.name, spec.address));
        vms.push(vm::start(
            &mut cluster.lab,
            i,
            spec,
            &kernel.vmlinuz,
            &initramfs,
            state,
        )?);
    }
    wait_nodes_ready(&cluster, &vms)?;
    report.passed("every VM booted, its daemon joined and its node is Ready");

    for vm in &vms {
        let status = node_api(&cluster, vm, "/status")?;
        let status: Value = serde_json::from_str(&status)
            .with_context(|| format!("{}'s /status: {status}", vm.name))?;
        if status["kernel"] != kernel.release.as_str() {
            bail!(
                "{} runs kernel {}, not {}",
                vm.name,
                status["kernel"],
                kernel.release
            );
        }
        let expected = if kernel_has_tcx(&kernel.release) {
            "tcx"
        } else {
            "clsact"
        };
        if status["tc_attach_mode"] != expected {
            bail!(
                "{} attached its TC programs with {}, expected {expected} on {}",
                vm.name,
                status["tc_attach_mode"],
                kernel.release
            );
        }
        let metrics = node_api(&cluster, vm, "/metrics")?;
        let programs = metrics
            .lines()
            .filter(|l| l.starts_with("skiff_program_runs_total{"))
            .count();
        if programs == 0 {
            bail!("{}'s /metrics lists no loaded program", vm.name);
        }
    }
    report.passed(&format!(
        "every daemon loaded the data plane on {} with its {} attach path",
        kernel.release,
        if kernel_has_tcx(&kernel.release) {
            "TCX"
        } else {
            "clsact"
        }
    ));

    let application = state.join("smoke.yaml");
    std::fs::write(&application, APPLICATION)?;
    cluster.skiff_ok(&["apply", "-f", &application.to_string_lossy()])?;
    let web = wait_pods(&cluster, &vms)?;
    report.passed("web runs on two VMs, a client pod on each");

    // The Service from a pod on vm1 reaches both endpoints: the local one and, across the
    // virtual network, the one on the other VM. By name: the VM's node serves cluster DNS.
    let mut answered = BTreeSet::new();
    for _ in 0..16 {
        let (answer, ok) = probe_in_pod(&cluster, "client", &["connect", "web:80"])?;
        if !ok {
            bail!("client -> web:80 failed before any policy: {answer}");
        }
        answered.insert(answer["pod"].as_str().unwrap_or_default().to_string());
        if answered.len() == web.len() {
            break;
        }
    }
    let names: BTreeSet<String> = web.iter().map(|(name, _, _)| name.clone()).collect();
    if answered != names {
        bail!("web:80 from vm1 was answered by {answered:?}, expected every one of {names:?}");
    }
    report.passed("the ClusterIP from a pod reaches the endpoints on both VMs");

    for vm in &vms {
        let target = format!("{}:{NODE_PORT}", vm.address);
        let output = cluster.probe_from_outside(&[
            "connect",
            &target,
            "--proto",
            "http",
            "--timeout",
            "5s",
        ])?;
        if !output.status.success() {
            bail!(
                "NodePort {target} from outside the cluster: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
    }
    report.passed("the NodePort answers from outside the cluster on every VM");

    let policy = state.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    cluster.skiff_ok(&["apply", "-f", &policy.to_string_lossy()])?;
    let applied = Instant::now();
    // Each web pod by its own address: ingress is enforced on the node of the receiving pod,
    // so this covers the policy programs of both VMs.
    loop {
        let mut stranger_through = Vec::new();
        for (name, _, ip) in &web {
            let target = format!("{ip}:8080");
            let (_, ok) = probe_in_pod(&cluster, "stranger", &["connect", &target])?;
            if ok {
                stranger_through.push(name.clone());
            }
        }
        if stranger_through.is_empty() {
            break;
        }
        if applied.elapsed() > Duration::from_secs(20) {
            bail!("the stranger still reaches {stranger_through:?} 20 s after the policy");
        }
    }
    for (name, _, ip) in &web {
        let target = format!("{ip}:8080");
        let (answer, ok) = probe_in_pod(&cluster, "client", &["connect", &target])?;
        if !ok {
            bail!("the policy dropped the client's connection to {name}: {answer}");
        }
    }
    report.passed("the NetworkPolicy drops the stranger and lets the client through on both VMs");

    for (name, node, _) in &web {
        let vm = vms
            .iter()
            .find(|vm| &vm.name == node)
            .expect("pods are on the VMs");
        let metrics = node_api(&cluster, vm, "/metrics")?;
        let denied = metrics
            .lines()
            .filter(|l| {
                l.starts_with("skiff_policy_verdicts_total{")
                    && l.contains("web-from-clients")
                    && l.contains("verdict=\"denied\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
        if denied == 0 {
            bail!("{}'s /metrics counts no denied packet for {name}", vm.name);
        }
    }
    report.passed("each VM counts the drops against the policy in /metrics");

    let elapsed = started.elapsed().as_secs_f64();
    say(&format!("PASSED in {elapsed:.0} s"));
    if let Some(path) = &settings.result {
        let result = json!({
            "kernel": kernel.release,
            "vms": settings.vms,
            "memory_mib": settings.memory_mib,
            "seconds": elapsed.round(),
            "checks": report.checks,
        });
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// TCX arrived in Linux 6.6.
fn kernel_has_tcx(release: &str) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 6)
}

fn static_busybox() -> anyhow::Result<PathBuf> {
    for candidate in ["/usr/bin/busybox", "/bin/busybox"] {
        let path = Path::new(candidate);
        if let Ok(elf) = std::fs::read(path) {
            if has_interpreter(&elf) {
                bail!("{candidate} is linked dynamically: install busybox-static");
            }
            return Ok(path.to_path_buf());
        }
    }
    bail!("no busybox: install busybox-static (cargo xtask setup does)")
}

/// A dynamically linked ELF64 has a PT_INTERP program header naming its loader.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let Some(phoff) = elf
        .get(0x20..0x28)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return false;
    };
    let (Some(size), Some(count)) = (u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..count as usize).any(|i| {
        let at = phoff + i * size as usize;
        elf.get(at..at + 4)
            .is_some_and(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) == PT_INTERP)
    })
}

/// Fails with the console of the first VM that stopped (a dead daemon powers its VM off).
fn all_running(vms: &[Vm]) -> anyhow::Result<()> {
    match vms.iter().find(|vm| vm.process.has_exited()) {
        Some(dead) => bail!(
            "{}'s VM stopped; its console ends with:\n{}",
            dead.name,
            dead.process.log_tail(30)
        ),
        None => Ok(()),
    }
}

fn wait_nodes_ready(cluster: &Cluster, vms: &[Vm]) -> anyhow::Result<()> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut last = String::new();
    loop {
        let nodes = cluster.admin.get("/api/v1/nodes")?;
        let waiting: Vec<&str> =
            vms.iter()
                .filter(|vm| {
                    !nodes["items"].as_array().into_iter().flatten().any(|n| {
                        n["metadata"]["name"] == vm.name.as_str() && has_condition(n, "Ready")
                    })
                })
                .map(|vm| vm.name.as_str())
                .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        let now = format!("waiting for {waiting:?} to boot and join");
        if now != last {
            say(&now);
            last = now;
        }
        all_running(vms)?;
        if Instant::now() > deadline {
            let consoles: String = vms
                .iter()
                .map(|vm| format!("\n--- {} console:\n{}", vm.name, vm.process.log_tail(20)))
                .collect();
            bail!(
                "{waiting:?} not Ready within {} s{consoles}",
                BOOT_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits for the web pods (Ready, on two different VMs) and the two clients (Running);
/// returns (name, node, IP) of each web pod.
fn wait_pods(cluster: &Cluster, vms: &[Vm]) -> anyhow::Result<Vec<(String, String, String)>> {
    let deadline = Instant::now() + PODS_TIMEOUT;
    loop {
        let pods = cluster
            .admin
            .get(&format!("/api/v1/namespaces/{NAMESPACE}/pods"))?;
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let web: Vec<(String, String, String)> = items
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "web" && has_condition(p, "Ready"))
            .map(|p| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (
                    s(&p["metadata"]["name"]),
                    s(&p["spec"]["nodeName"]),
                    s(&p["status"]["podIP"]),
                )
            })
            .collect();
        let clients_running = ["client", "stranger"].iter().all(|name| {
            items
                .iter()
                .any(|p| p["metadata"]["name"] == *name && p["status"]["phase"] == "Running")
        });
        let nodes: BTreeSet<&str> = web.iter().map(|(_, node, _)| node.as_str()).collect();
        if web.len() == 2 && clients_running {
            if nodes.len() != 2 {
                bail!("both web pods were scheduled onto {nodes:?}; the scenario needs one per VM");
            }
            return Ok(web);
        }
        all_running(vms)?;
        if Instant::now() > deadline {
            let summary: Vec<String> = items
                .iter()
                .map(|p| {
                    format!(
                        "{} on {}: {}",
                        p["metadata"]["name"], p["spec"]["nodeName"], p["status"]["phase"]
                    )
                })
                .collect();
            bail!(
                "the smoke pods did not come up within {} s: {summary:?}",
                PODS_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `skiff-probe connect TARGET --proto http` inside a pod (through `skiff exec`).
fn probe_in_pod(cluster: &Cluster, pod: &str, args: &[&str]) -> anyhow::Result<(Value, bool)> {
    let mut command = vec![
        "exec",
        "-n",
        NAMESPACE,
        "--timeout",
        "1m",
        pod,
        "--",
        "skiff-probe",
    ];
    command.extend_from_slice(args);
    command.extend_from_slice(&["--proto", "http", "--timeout", "2s"]);
    let output = cluster.skiff(&command)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        Value::String(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    });
    Ok((value, output.status.success()))
}

/// GET `path` from a VM's node API, from the control-plane node (the API is plain HTTP on
/// the node's address).
fn node_api(cluster: &Cluster, vm: &Vm, path: &str) -> anyhow::Result<String> {
    let address = (vm.address, NODE_API_PORT);
    let netns = &cluster.lab.node(cluster.control_node).netns;
    let response = netns.run(|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&address.into(), Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            vm.address
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    });
    let response = response.with_context(|| format!("GET {path} from {}'s node API", vm.name))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("{}'s node API answered {response:?}", vm.name))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{}'s node API answered {path} with {head}", vm.name);
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_has_an_interpreter_and_the_static_probe_none() {
        assert!(has_interpreter(
            &std::fs::read(std::env::current_exe().unwrap()).unwrap()
        ));
        if let Ok(busybox) = std::fs::read("/bin/busybox") {
            assert!(!has_interpreter(&busybox));
        }
    }

    #[test]
    fn tcx_is_expected_from_6_6_on() {
        assert!(!kernel_has_tcx("6.1.0-57-amd64"));
        assert!(!kernel_has_tcx("5.15.0"));
        assert!(kernel_has_tcx("6.6.0"));
        assert!(kernel_has_tcx("6.18.44-fc-v1252"));
    }
}
