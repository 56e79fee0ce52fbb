//! One pod's life on this node, on a thread of its own (so a slow stop or probe of one pod
//! never holds up another): address, network, cgroup and containers, then restarts, probes
//! and status reports every tick, then graceful termination and teardown.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::{atomic::Ordering, mpsc, Arc},
    time::{Duration, Instant, SystemTime},
};

use serde_json::json;
use skiff_api::{
    core::{Condition, Container, ContainerStatus, PodPhase, PodStatus, RestartPolicy},
    time::rfc3339,
    Pod,
};

use super::{
    manager::{Context, DataPlaneRequest, PodControl, PodReport},
    network::Sandbox as NetSandbox,
    probe::{self, ProbeState},
    record::{ContainerRecord, PodRecord},
    LocalContainer, LocalPod,
};
use crate::dns::ResolverConfig;
use crate::runtime::{
    image::{is_probe_image, PROBE_IMAGE, PROBE_IMAGE_CMD},
    supervisor::{Status, Supervisor},
    ContainerSpec, ContainerState, Sandbox, Usage,
};

/// Kubernetes' default termination grace period.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;
const TICK: Duration = Duration::from_millis(100);
/// Between attempts to set a pod up after a failure.
const RETRY: Duration = Duration::from_secs(2);
/// At most this much of a terminating pod's grace period goes to draining it from services.
const DRAIN_MAX: Duration = Duration::from_secs(3);
/// How long the other nodes get to apply an endpoint change this node has applied: each
/// watches the control plane and programs its kernel within a few of its 50 ms ticks.
const DRAIN_MARGIN: Duration = Duration::from_millis(500);
const DRAIN_POLL: Duration = Duration::from_millis(20);

struct RunningContainer {
    spec: Container,
    supervisor: Supervisor,
    status: Status,
    readiness: Option<ProbeState>,
    liveness: Option<ProbeState>,
}

/// Sets the pod up (or adopts it from `record`), keeps it running until it is told to
/// terminate, then tears it down.
pub(crate) fn run(ctx: Arc<Context>, control: Arc<PodControl>, mut record: Option<PodRecord>) {
    let pod = control.pod();
    let key = pod_key(&pod);
    let mut containers = loop {
        if control.terminating.load(Ordering::Relaxed) {
            if let Some(record) = record.take() {
                teardown(&ctx, &record, Vec::new(), Duration::ZERO);
            }
            report_deleted(&ctx, &pod);
            return;
        }
        match set_up(&ctx, &control.pod(), record.take()) {
            Ok(set) => break set,
            Err(message) => {
                tracing::warn!(pod = %key, "setting the pod up failed; retrying: {message}");
                (ctx.reports)(PodReport::Status {
                    namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                    name: pod.metadata.name.clone(),
                    uid: uid(&pod),
                    status: pending(&ctx, &control.pod(), &message),
                });
                std::thread::sleep(RETRY);
            }
        }
    };
    let (mut record, ref mut running) = containers;
    let started_at = SystemTime::now();
    let mut reported: Option<PodStatus> = None;
    let mut was_serving = false;
    while !control.terminating.load(Ordering::Relaxed) {
        was_serving |= ctx.serving.contains(record.ip);
        let now = SystemTime::now();
        let mut changed_record = false;
        for (c, rec) in running.iter_mut().zip(record.containers.iter_mut()) {
            match c.supervisor.poll(now) {
                Ok(status) => c.status = status,
                Err(e) => {
                    tracing::warn!(pod = %key, container = %c.spec.name, "polling failed: {e}")
                }
            }
            if rec.id != *c.supervisor.container() || rec.restarts != c.supervisor.restarts() {
                rec.id = c.supervisor.container().clone();
                rec.restarts = c.supervisor.restarts();
                changed_record = true;
                // A new run is probed from scratch.
                c.readiness = c
                    .spec
                    .readiness_probe
                    .clone()
                    .map(|p| ProbeState::new(p, Instant::now(), false));
                c.liveness = c
                    .spec
                    .liveness_probe
                    .clone()
                    .map(|p| ProbeState::new(p, Instant::now(), true));
            }
            run_probes(&ctx, &key, record.ip, c);
        }
        if changed_record {
            if let Err(e) = ctx.records.save(&record) {
                tracing::error!(pod = %key, "{e}");
            }
        }
        publish(&ctx, &key, &record, running);
        let status = status(&ctx, &record, running, started_at);
        if reported.as_ref() != Some(&status) {
            (ctx.reports)(PodReport::Status {
                namespace: record.namespace.clone(),
                name: record.name.clone(),
                uid: record.uid.clone(),
                status: status.clone(),
            });
            reported = Some(status);
        }
        std::thread::sleep(TICK);
    }
    // Endpoints drop the pod before its containers get SIGTERM.
    if let Some(mut status) = reported {
        for c in &mut status.conditions {
            if c.type_ == "Ready" || c.type_ == "ContainersReady" {
                c.status = "False".into();
            }
        }
        for c in &mut status.container_statuses {
            c.ready = false;
        }
        (ctx.reports)(PodReport::Status {
            namespace: record.namespace.clone(),
            name: record.name.clone(),
            uid: record.uid.clone(),
            status,
        });
    }
    let grace = grace_period(&control.pod());
    let drained = if was_serving {
        drain(&ctx, &key, record.ip, grace)
    } else {
        Duration::ZERO
    };
    let supervisors = std::mem::take(running)
        .into_iter()
        .map(|c| c.supervisor)
        .collect();
    teardown(&ctx, &record, supervisors, grace.saturating_sub(drained));
    ctx.directory.set(&key, None);
    report_deleted(&ctx, &pod);
}

/// Waits, within part of the grace period, until new connections no longer reach the pod:
/// first until this node's data plane has dropped it (the control plane has published the
/// change), then [`DRAIN_MARGIN`] for the other nodes, which get the same change at the same
/// time. Stopping the containers at once, as Kubernetes does, races that change, and clients
/// see refused connections during every scale-down. Returns the time spent.
fn drain(ctx: &Context, key: &str, ip: Ipv4Addr, grace: Duration) -> Duration {
    let started = Instant::now();
    let budget = (grace / 2).min(DRAIN_MAX);
    while ctx.serving.contains(ip) && started.elapsed() < budget {
        std::thread::sleep(DRAIN_POLL);
    }
    let left_local = started.elapsed();
    std::thread::sleep(DRAIN_MARGIN.min(budget.saturating_sub(left_local)));
    let drained = started.elapsed();
    tracing::info!(
        pod = %key,
        left_this_node_ms = left_local.as_millis() as u64,
        drained_ms = drained.as_millis() as u64,
        "drained from the services before stopping"
    );
    drained
}

fn report_deleted(ctx: &Context, pod: &Pod) {
    (ctx.reports)(PodReport::Deleted {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone(),
        uid: uid(pod),
    });
}

pub(crate) fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name
    )
}

pub(crate) fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .spec
        .termination_grace_period_seconds
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .max(0);
    Duration::from_secs(seconds as u64)
}

/// What the runtime runs for `container`: its command and args, or the image's own
/// entrypoint, which the embedded runtime knows only for the probe image.
fn argv(ctx: &Context, container: &Container) -> Result<Vec<String>, String> {
    if !container.command.is_empty() {
        return Ok(container
            .command
            .iter()
            .chain(&container.args)
            .cloned()
            .collect());
    }
    let image = container.image.as_deref().unwrap_or("");
    if ctx.runtime.name() == "embedded" {
        if !is_probe_image(image) {
            return Err(format!(
                "container {}: image {image:?}: the embedded runtime runs the node's own programs and knows no entrypoint for this image; give the container a command, or use image {PROBE_IMAGE}",
                container.name
            ));
        }
        let args = if container.args.is_empty() {
            PROBE_IMAGE_CMD.iter().map(|a| a.to_string()).collect()
        } else {
            container.args.clone()
        };
        return Ok(std::iter::once(PROBE_IMAGE.to_string())
            .chain(args)
            .collect());
    }
    // The runtime resolves the image's entrypoint; args replace its command.
    Ok(container.args.clone())
}

fn container_spec(
    ctx: &Context,
    pod: &Pod,
    container: &Container,
) -> Result<ContainerSpec, String> {
    let image_entrypoint = container.command.is_empty() && ctx.runtime.name() != "embedded";
    let limits = &container.resources.limits;
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(tools) = &ctx.tools_dir {
        env.push((
            "PATH".into(),
            format!(
                "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                tools.display()
            ),
        ));
    }
    if pod.spec.enable_service_links != Some(false) {
        // Before the container's own variables, which win over them.
        env.extend(ctx.zone().service_env(pod.metadata.namespace()));
    }
    env.extend(
        container
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone())),
    );
    let resolv_conf = ctx.records.resolv_conf_path(&uid(pod));
    Ok(ContainerSpec {
        pod: pod_key(pod),
        name: container.name.clone(),
        argv: argv(ctx, container)?,
        image_entrypoint,
        image: container.image.clone(),
        env,
        working_dir: container.working_dir.as_ref().map(PathBuf::from),
        hostname: pod.metadata.name.clone(),
        cpu_limit_millis: limits.get("cpu").and_then(|q| q.millicores()),
        memory_limit_bytes: limits.get("memory").and_then(|q| q.bytes()),
        // Written at set-up when the pod resolves through the cluster DNS (kept across
        // daemon restarts with the record), so restarted containers find it too.
        resolv_conf: resolv_conf.exists().then_some(resolv_conf),
    })
}

/// The pod's resolver, as the kubelet writes it, when it uses the cluster DNS.
fn cluster_resolver(ctx: &Context, pod: &Pod) -> Option<ResolverConfig> {
    if !(ctx.cluster_dns && pod.spec.uses_cluster_dns()) {
        return None;
    }
    ctx.zone().pod_resolver(pod.metadata.namespace())
}

fn restart_policy(pod: &Pod) -> RestartPolicy {
    pod.spec.restart_policy.unwrap_or(RestartPolicy::Always)
}

fn runtime_sandbox(record: &PodRecord) -> Sandbox {
    Sandbox {
        netns: record.netns.clone(),
        cgroup: record.cgroup.clone(),
        infra: record.infra.clone(),
    }
}

fn net_sandbox(record: &PodRecord) -> NetSandbox {
    NetSandbox {
        pod: format!("{}/{}", record.namespace, record.name),
        netns: record.netns.clone(),
        host_interface: record.host_interface.clone(),
        ip: record.ip,
    }
}

/// Address, cgroup, network, data plane and containers: on any failure, what was made is
/// removed again and the error says which step failed.
fn set_up(
    ctx: &Context,
    pod: &Pod,
    adopted: Option<PodRecord>,
) -> Result<(PodRecord, Vec<RunningContainer>), String> {
    let resolver = match &adopted {
        Some(_) => None,
        None => cluster_resolver(ctx, pod),
    };
    if let Some(resolver) = &resolver {
        ctx.records
            .write_resolv_conf(&uid(pod), &resolver.render())
            .map_err(|e| e.to_string())?;
    }
    let specs: Vec<ContainerSpec> = pod
        .spec
        .containers
        .iter()
        .map(|c| container_spec(ctx, pod, c))
        .collect::<Result<_, _>>()?;
    if let Some(record) = adopted {
        return adopt(ctx, pod, record, specs);
    }
    let key = pod_key(pod);
    let ip = ctx
        .addresses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allocate()
        .map_err(|e| e.to_string())?;
    let cgroup = ctx.cgroup_root.join(uid(pod));
    let mut record = PodRecord {
        uid: uid(pod),
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: pod.metadata.name.clone(),
        ip,
        netns: PathBuf::new(),
        host_interface: String::new(),
        cgroup: cgroup.clone(),
        infra: None,
        containers: Vec::new(),
    };
    let result = (|| -> Result<Vec<RunningContainer>, String> {
        std::fs::create_dir_all(&cgroup)
            .map_err(|e| format!("creating the pod cgroup {}: {e}", cgroup.display()))?;
        let made = ctx
            .runtime
            .create_sandbox(&key, &cgroup, resolver.as_ref())
            .map_err(|e| e.to_string())?;
        record.infra = made.as_ref().map(|m| m.infra.clone());
        let net = ctx
            .network
            .create(&key, ip, made.as_ref().map(|m| m.netns.as_path()))
            .map_err(|e| e.to_string())?;
        record.netns = net.netns.clone();
        record.host_interface = net.host_interface.clone();
        ctx.records.save(&record).map_err(|e| e.to_string())?;
        attach(ctx, &record)?;
        let mut running = Vec::new();
        for (container, spec) in pod.spec.containers.iter().zip(specs) {
            let supervisor = Supervisor::start(
                ctx.runtime.clone(),
                runtime_sandbox(&record),
                spec,
                restart_policy(pod),
                ctx.backoff,
            )
            .map_err(|e| e.to_string())?;
            record.containers.push(ContainerRecord {
                name: container.name.clone(),
                id: supervisor.container().clone(),
                restarts: 0,
            });
            ctx.records.save(&record).map_err(|e| e.to_string())?;
            running.push(new_running(container, supervisor));
        }
        Ok(running)
    })();
    match result {
        Ok(running) => {
            tracing::info!(pod = %key, %ip, interface = %record.host_interface, "pod started");
            Ok((record, running))
        }
        Err(e) => {
            teardown(ctx, &record, Vec::new(), Duration::ZERO);
            Err(e)
        }
    }
}

fn new_running(container: &Container, supervisor: Supervisor) -> RunningContainer {
    let now = Instant::now();
    RunningContainer {
        spec: container.clone(),
        supervisor,
        status: Status::Running,
        readiness: container
            .readiness_probe
            .clone()
            .map(|p| ProbeState::new(p, now, false)),
        liveness: container
            .liveness_probe
            .clone()
            .map(|p| ProbeState::new(p, now, true)),
    }
}

/// Takes over a pod a previous daemon run started: its containers keep running.
fn adopt(
    ctx: &Context,
    pod: &Pod,
    mut record: PodRecord,
    specs: Vec<ContainerSpec>,
) -> Result<(PodRecord, Vec<RunningContainer>), String> {
    attach(ctx, &record)?;
    let mut running = Vec::new();
    for (container, spec) in pod.spec.containers.iter().zip(specs) {
        let found = record.containers.iter().find(|c| c.name == container.name);
        let supervisor = match found {
            Some(c) => Supervisor::adopt(
                ctx.runtime.clone(),
                runtime_sandbox(&record),
                spec,
                restart_policy(pod),
                ctx.backoff,
                c.id.clone(),
                c.restarts,
            ),
            None => Supervisor::start(
                ctx.runtime.clone(),
                runtime_sandbox(&record),
                spec,
                restart_policy(pod),
                ctx.backoff,
            ),
        }
        .map_err(|e| e.to_string())?;
        running.push(new_running(container, supervisor));
    }
    record.containers = running
        .iter()
        .map(|c| ContainerRecord {
            name: c.spec.name.clone(),
            id: c.supervisor.container().clone(),
            restarts: c.supervisor.restarts(),
        })
        .collect();
    ctx.records.save(&record).map_err(|e| e.to_string())?;
    tracing::info!(pod = %pod_key(pod), ip = %record.ip, "pod adopted; its containers kept running");
    Ok((record, running))
}

/// Asks the daemon's main loop, which owns the data plane, to attach the pod's veth.
fn attach(ctx: &Context, record: &PodRecord) -> Result<(), String> {
    let (reply, answer) = mpsc::channel();
    let request = DataPlaneRequest::Attach {
        interface: record.host_interface.clone(),
        ip: record.ip,
        reply,
    };
    let sent = ctx
        .dataplane
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(request);
    if sent.is_err() {
        return Err("the daemon is stopping".into());
    }
    answer
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "the data plane did not answer the attach".to_string())?
}

/// Stops what runs (all containers at once, each with `grace`) and removes everything the
/// pod had. Missing pieces are fine: teardown also finishes what a crash interrupted.
pub(crate) fn teardown(
    ctx: &Context,
    record: &PodRecord,
    supervisors: Vec<Supervisor>,
    grace: Duration,
) {
    let key = format!("{}/{}", record.namespace, record.name);
    let started = Instant::now();
    let mut known: Vec<_> = supervisors
        .iter()
        .flat_map(|s| std::iter::once(s.container().clone()).chain(s.previous().cloned()))
        .collect();
    std::thread::scope(|scope| {
        for supervisor in supervisors {
            let key = key.clone();
            scope.spawn(move || {
                if let Err(e) = supervisor.shutdown(grace) {
                    tracing::warn!(pod = %key, "stopping a container: {e}");
                }
            });
        }
        for c in &record.containers {
            if known.contains(&c.id) {
                continue;
            }
            known.push(c.id.clone());
            let (runtime, id, key) = (ctx.runtime.clone(), c.id.clone(), key.clone());
            scope.spawn(move || {
                let _ = runtime.stop(&id, grace);
                if let Err(e) = runtime.remove(&id) {
                    tracing::warn!(pod = %key, "removing container {id}: {e}");
                }
            });
        }
    });
    if !record.host_interface.is_empty() {
        let _ = ctx
            .dataplane
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(DataPlaneRequest::Detach {
                interface: record.host_interface.clone(),
                ip: record.ip,
            });
        if let Err(e) = ctx.network.remove(&net_sandbox(record)) {
            tracing::warn!(pod = %key, "removing the pod network: {e}");
        }
    }
    if let Some(infra) = &record.infra {
        if let Err(e) = ctx.runtime.remove(infra) {
            tracing::warn!(pod = %key, "removing the pause container: {e}");
        }
    }
    let _ = std::fs::remove_dir(&record.cgroup);
    ctx.addresses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .release(record.ip);
    ctx.records.remove(&record.uid);
    tracing::info!(pod = %key, elapsed_ms = started.elapsed().as_millis() as u64, "pod stopped and removed");
}

fn run_probes(ctx: &Context, key: &str, ip: Ipv4Addr, c: &mut RunningContainer) {
    if c.status != Status::Running {
        return;
    }
    let now = Instant::now();
    let id = c.supervisor.container().clone();
    if let Some(readiness) = c.readiness.as_mut().filter(|p| p.due(now)) {
        let outcome = probe::attempt(&readiness.probe, &c.spec, ip, &ctx.runtime, &id);
        if readiness.record(outcome, Instant::now()) {
            tracing::info!(pod = %key, container = %c.spec.name, ready = readiness.passing, reason = readiness.last_error.as_deref().unwrap_or("-"), "readiness changed");
        }
    }
    if let Some(liveness) = c.liveness.as_mut().filter(|p| p.due(now)) {
        let outcome = probe::attempt(&liveness.probe, &c.spec, ip, &ctx.runtime, &id);
        if liveness.record(outcome, Instant::now()) && !liveness.passing {
            tracing::warn!(pod = %key, container = %c.spec.name, reason = liveness.last_error.as_deref().unwrap_or("-"), "liveness probe failed; restarting the container");
            if let Err(e) = c
                .supervisor
                .kill(Duration::from_secs(DEFAULT_GRACE_SECONDS as u64))
            {
                tracing::warn!(pod = %key, "stopping the unhealthy container: {e}");
            }
        }
    }
}

/// Shares which containers run (for logs and exec) and their usage.
fn publish(ctx: &Context, key: &str, record: &PodRecord, running: &[RunningContainer]) {
    let mut usage = Usage::default();
    for c in running {
        if let Ok(u) = ctx.runtime.usage(c.supervisor.container()) {
            usage.cpu_usage_usec += u.cpu_usage_usec;
            usage.memory_bytes += u.memory_bytes;
        }
    }
    ctx.directory.set(
        key,
        Some(LocalPod {
            uid: record.uid.clone(),
            containers: running
                .iter()
                .map(|c| LocalContainer {
                    name: c.spec.name.clone(),
                    current: c.supervisor.container().clone(),
                    previous: c.supervisor.previous().cloned(),
                })
                .collect(),
            usage,
        }),
    );
}

fn base_status(ctx: &Context, phase: PodPhase) -> PodStatus {
    PodStatus {
        phase: Some(phase),
        host_ip: ctx.node_ip,
        ..PodStatus::default()
    }
}

/// The status of a pod that could not be set up yet.
fn pending(ctx: &Context, pod: &Pod, message: &str) -> PodStatus {
    let reason = if message.contains("knows no entrypoint") {
        "ErrImageNeverPull"
    } else {
        "ContainerCreating"
    };
    let mut status = base_status(ctx, PodPhase::Pending);
    status.conditions = vec![
        Condition::new("PodScheduled", true, None, None),
        Condition::new("Ready", false, Some(reason), Some(message.to_string())),
    ];
    status.container_statuses = pod
        .spec
        .containers
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone(),
            state: Some(json!({"waiting": {"reason": reason, "message": message}})),
            ..ContainerStatus::default()
        })
        .collect();
    status
}

fn terminated(state: &ContainerState, started: SystemTime) -> serde_json::Value {
    let ContainerState::Exited {
        code,
        signal,
        oom_killed,
        finished,
    } = *state
    else {
        return json!({"running": {"startedAt": rfc3339(started)}});
    };
    let exit_code = code.unwrap_or(128 + signal.unwrap_or(0));
    let reason = if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let mut t = json!({
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": rfc3339(started),
        "finishedAt": rfc3339(finished),
    });
    if let Some(signal) = signal {
        t["signal"] = json!(signal);
    }
    json!({ "terminated": t })
}

/// The pod's status as Kubernetes reports it: phase, conditions and per-container state.
fn status(
    ctx: &Context,
    record: &PodRecord,
    running: &[RunningContainer],
    started_at: SystemTime,
) -> PodStatus {
    let mut containers = Vec::new();
    let (mut all_ready, mut any_running, mut all_done, mut any_failed) = (true, false, true, false);
    for c in running {
        let ready = c.status == Status::Running && c.readiness.as_ref().is_none_or(|r| r.passing);
        all_ready &= ready;
        let last = c.supervisor.last_exit();
        let state = match c.status {
            Status::Running => {
                any_running = true;
                all_done = false;
                json!({"running": {"startedAt": rfc3339(c.supervisor.started())}})
            }
            Status::BackingOff { until } => {
                all_done = false;
                let (exit, _) = last.copied().unwrap_or((
                    ContainerState::Exited {
                        code: None,
                        signal: None,
                        oom_killed: false,
                        finished: until,
                    },
                    until,
                ));
                let code = match exit {
                    ContainerState::Exited { code, signal, .. } => {
                        code.unwrap_or(128 + signal.unwrap_or(0))
                    }
                    ContainerState::Running { .. } => 0,
                };
                json!({"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": format!("back-off restarting the container (last exit code {code}); next start at {}", rfc3339(until)),
                }})
            }
            Status::Done(exit) => {
                if let ContainerState::Exited {
                    code,
                    signal,
                    oom_killed,
                    ..
                } = exit
                {
                    any_failed |= code != Some(0) || signal.is_some() || oom_killed;
                }
                terminated(&exit, c.supervisor.started())
            }
        };
        // The last termination shows as lastState once the container runs again (or waits
        // to); a container that is done shows it as its state.
        let last_state = match (c.status, last) {
            (Status::Done(_), _) | (_, None) => None,
            (_, Some((exit, started)))
                if c.supervisor.restarts() > 0 || matches!(c.status, Status::BackingOff { .. }) =>
            {
                Some(terminated(exit, *started))
            }
            _ => None,
        };
        containers.push(ContainerStatus {
            name: c.spec.name.clone(),
            ready,
            restart_count: c.supervisor.restarts(),
            image: c.spec.image.clone(),
            state: Some(state),
            last_state,
            container_id: Some(format!(
                "{}://{}",
                ctx.runtime.name(),
                c.supervisor.container()
            )),
        });
    }
    let phase = if all_done && !running.is_empty() {
        if any_failed {
            PodPhase::Failed
        } else {
            PodPhase::Succeeded
        }
    } else if any_running || !all_done {
        PodPhase::Running
    } else {
        PodPhase::Pending
    };
    let ready = all_ready && phase == PodPhase::Running;
    let mut status = base_status(ctx, phase);
    status.pod_ip = Some(record.ip);
    status.start_time = Some(rfc3339(started_at));
    status.conditions = vec![
        Condition::new("PodScheduled", true, None, None),
        Condition::new("Initialized", true, None, None),
        Condition::new("ContainersReady", ready, None, None),
        Condition::new("Ready", ready, None, None),
    ];
    status.container_statuses = containers;
    status
}
