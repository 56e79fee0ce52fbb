//! Containers in a Docker engine, through bollard.
//!
//! Each pod gets a pause container (`skiff-probe pause` from the probe image) started with
//! `--network none`: its network namespace is the pod's, and the node wires the pod's veth
//! into it. The pod's containers join it (`--network container:<pause>`), run in a cgroup
//! below the pod's, and carry labels saying whose they are and what they run, so a
//! restarted daemon lists and adopts them. Docker keeps the logs; restarts stay with the
//! supervisor, as for every runtime (Docker's own restart policy is off).

use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, SystemTime},
};

use bollard::{
    exec::{CreateExecOptions, StartExecResults},
    models::{ContainerCreateBody, HostConfig},
    query_parameters::{
        CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
        RemoveContainerOptions, StatsOptions, StopContainerOptions,
    },
    Docker,
};
use futures_util::StreamExt as _;

use crate::dns::ResolverConfig;

use super::{
    image::PROBE_IMAGE_REF, logs::ChannelLog, ContainerId, ContainerSpec, ContainerState,
    ExecOutput, Runtime, RuntimeError, RuntimeSandbox, Sandbox, Usage,
};

/// Labels on every container Skiff makes.
const LABEL_POD: &str = "io.skiff.pod";
const LABEL_SPEC: &str = "io.skiff.spec";
const LABEL_INFRA: &str = "io.skiff.infra";

pub struct DockerRuntime {
    docker: Docker,
    io: tokio::runtime::Runtime,
    /// The cgroup v2 mount: Docker takes cgroup parents relative to it.
    cgroup_mount: PathBuf,
}

fn docker_error(step: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> RuntimeError {
    let step = step.into();
    move |e| RuntimeError::Docker {
        step,
        message: e.to_string(),
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn parse_time(value: Option<&str>) -> SystemTime {
    value
        .and_then(skiff_api::time::parse_rfc3339)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl DockerRuntime {
    /// Connects to the engine at `socket` and checks that it answers.
    pub fn connect(socket: &Path, cgroup_mount: &Path) -> Result<DockerRuntime, RuntimeError> {
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| RuntimeError::Docker {
                step: "starting its I/O thread".into(),
                message: e.to_string(),
            })?;
        let address = socket.display().to_string();
        let docker = Docker::connect_with_unix(&address, 120, bollard::API_DEFAULT_VERSION)
            .map_err(docker_error(format!("connecting to {address}")))?;
        let docker = io
            .block_on(docker.negotiate_version())
            .map_err(docker_error(format!("talking to the engine at {address}")))?;
        io.block_on(docker.ping())
            .map_err(docker_error(format!("pinging the engine at {address}")))?;
        Ok(DockerRuntime {
            docker,
            io,
            cgroup_mount: cgroup_mount.to_path_buf(),
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.io.block_on(future)
    }

    /// Docker's cgroup parent for a pod cgroup: the path below the cgroup v2 mount.
    fn cgroup_parent(&self, cgroup: &Path) -> String {
        match cgroup.strip_prefix(&self.cgroup_mount) {
            Ok(relative) => format!("/{}", relative.display()),
            Err(_) => cgroup.display().to_string(),
        }
    }

    fn inspect(
        &self,
        id: &ContainerId,
    ) -> Result<bollard::models::ContainerInspectResponse, RuntimeError> {
        self.block_on(
            self.docker
                .inspect_container(&id.0, None::<InspectContainerOptions>),
        )
        .map_err(|e| {
            if is_not_found(&e) {
                RuntimeError::NotFound(id.clone())
            } else {
                docker_error(format!("inspecting {id}"))(e)
            }
        })
    }

    fn create_and_start(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<ContainerId, RuntimeError> {
        let image = body.image.clone().unwrap_or_default();
        let created = self
            .block_on(self.docker.create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    ..Default::default()
                }),
                body,
            ))
            .map_err(|e| match &e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => RuntimeError::InvalidSpec {
                    container: name.to_string(),
                    reason: format!(
                        "image {image:?} is not in the engine and no registry is reachable: build it with `skiff-node image build` or import it"
                    ),
                },
                _ => docker_error(format!("creating {name}"))(e),
            })?;
        let id = ContainerId(created.id);
        if let Err(e) = self.block_on(self.docker.start_container(&id.0, None)) {
            let _ = self.remove(&id);
            return Err(docker_error(format!("starting {name}"))(e));
        }
        Ok(id)
    }
}

/// A container name Docker accepts, unique per start.
fn container_name(pod: &str, name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "skiff_{}_{}_{:x}",
        clean(pod),
        clean(name),
        nanos & 0xffff_ffff_ffff
    )
}

impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn create_sandbox(
        &self,
        pod: &str,
        cgroup: &Path,
        dns: Option<&ResolverConfig>,
    ) -> Result<Option<RuntimeSandbox>, RuntimeError> {
        // Containers joining its network take its hostname: the pod's name.
        let hostname = pod.rsplit('/').next().unwrap_or(pod).to_string();
        let body = ContainerCreateBody {
            image: Some(PROBE_IMAGE_REF.to_string()),
            hostname: Some(hostname),
            entrypoint: Some(vec!["skiff-probe".into()]),
            cmd: Some(vec!["pause".into()]),
            labels: Some(HashMap::from([
                (LABEL_POD.to_string(), pod.to_string()),
                (LABEL_INFRA.to_string(), "true".to_string()),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                cgroup_parent: Some(self.cgroup_parent(cgroup)),
                // Docker writes the resolv.conf every container of the pod shares.
                dns: dns.map(|d| d.nameservers.iter().map(|ip| ip.to_string()).collect()),
                dns_search: dns.map(|d| d.searches.clone()),
                dns_options: dns.map(|d| d.options.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let infra = self.create_and_start(&container_name(pod, "pause"), body)?;
        let pid = match self.state(&infra)? {
            ContainerState::Running { pid, .. } => pid,
            state => {
                let _ = self.remove(&infra);
                return Err(RuntimeError::Docker {
                    step: format!("starting the pause container of {pod}"),
                    message: format!("it ended at once: {state:?}"),
                });
            }
        };
        Ok(Some(RuntimeSandbox {
            infra,
            netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
        }))
    }

    fn start(&self, sandbox: &Sandbox, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let Some(infra) = &sandbox.infra else {
            return Err(RuntimeError::InvalidSpec {
                container: spec.name.clone(),
                reason: "the Docker runtime needs the pod's pause container".into(),
            });
        };
        let Some(image) = &spec.image else {
            return Err(RuntimeError::InvalidSpec {
                container: spec.name.clone(),
                reason: "image: missing (the Docker runtime runs images)".into(),
            });
        };
        let (entrypoint, cmd) = if spec.image_entrypoint {
            (None, (!spec.argv.is_empty()).then(|| spec.argv.clone()))
        } else {
            (Some(spec.argv.clone()), Some(Vec::new()))
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint,
            cmd,
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: spec.working_dir.as_ref().map(|d| d.display().to_string()),
            labels: Some(HashMap::from([
                (LABEL_POD.to_string(), spec.pod.clone()),
                (
                    LABEL_SPEC.to_string(),
                    serde_json::to_string(spec).unwrap_or_default(),
                ),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{infra}")),
                cgroup_parent: Some(self.cgroup_parent(&sandbox.cgroup)),
                memory: spec.memory_limit_bytes.map(|b| b as i64),
                // Equal to the memory limit: no swap, so a hog is stopped, not slowed.
                memory_swap: spec.memory_limit_bytes.map(|b| b as i64),
                nano_cpus: spec.cpu_limit_millis.map(|m| (m * 1_000_000) as i64),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.create_and_start(&container_name(&spec.pod, &spec.name), body)
    }

    fn state(&self, id: &ContainerId) -> Result<ContainerState, RuntimeError> {
        let inspected = self.inspect(id)?;
        let state = inspected.state.unwrap_or_default();
        if state.running == Some(true) {
            return Ok(ContainerState::Running {
                pid: state.pid.unwrap_or(0) as u32,
                started: parse_time(state.started_at.as_deref()),
            });
        }
        let code = state.exit_code.unwrap_or(0) as i32;
        Ok(ContainerState::Exited {
            // Docker reports a signal death as 128 + the signal.
            code: (code <= 128).then_some(code),
            signal: (code > 128).then_some(code - 128),
            oom_killed: state.oom_killed == Some(true),
            finished: parse_time(state.finished_at.as_deref()),
        })
    }

    fn stop(&self, id: &ContainerId, grace: Duration) -> Result<ContainerState, RuntimeError> {
        let seconds = grace.as_secs_f64().ceil() as i32;
        let stopped = self.block_on(self.docker.stop_container(
            &id.0,
            Some(StopContainerOptions {
                t: Some(seconds),
                signal: None,
            }),
        ));
        match stopped {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Err(RuntimeError::NotFound(id.clone())),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(docker_error(format!("stopping {id}"))(e)),
        }
        self.state(id)
    }

    fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let removed = self.block_on(self.docker.remove_container(
            &id.0,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        ));
        match removed {
            Err(e) if !is_not_found(&e) => Err(docker_error(format!("removing {id}"))(e)),
            _ => Ok(()),
        }
    }

    fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        if !self.state(id)?.is_running() {
            return Err(RuntimeError::NotRunning(id.clone()));
        }
        let created = self
            .block_on(self.docker.create_exec(
                &id.0,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(argv.to_vec()),
                    ..Default::default()
                },
            ))
            .map_err(docker_error(format!("exec in {id}")))?;
        let run = async {
            let mut output = ExecOutput {
                stdout: Vec::new(),
                stderr: Vec::new(),
                exit_code: 0,
            };
            if let StartExecResults::Attached {
                output: mut stream, ..
            } = self.docker.start_exec(&created.id, None).await?
            {
                while let Some(chunk) = stream.next().await {
                    match chunk? {
                        bollard::container::LogOutput::StdErr { message } => {
                            output.stderr.extend_from_slice(&message)
                        }
                        other => output.stdout.extend_from_slice(&other.into_bytes()),
                    }
                }
            }
            let inspected = self.docker.inspect_exec(&created.id).await?;
            output.exit_code = inspected.exit_code.unwrap_or(-1) as i32;
            Ok::<_, bollard::errors::Error>(output)
        };
        match self.block_on(async { tokio::time::timeout(timeout, run).await }) {
            Ok(result) => result.map_err(docker_error(format!("exec in {id}"))),
            Err(_) => Err(RuntimeError::ExecTimeout {
                container: id.0.clone(),
                argv: argv.to_vec(),
                timeout,
            }),
        }
    }

    fn logs(&self, id: &ContainerId, follow: bool) -> Result<Box<dyn Read + Send>, RuntimeError> {
        self.inspect(id)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
        let docker = self.docker.clone();
        let id = id.0.clone();
        self.io.spawn(async move {
            let mut stream = docker.logs(
                &id,
                Some(LogsOptions {
                    follow,
                    stdout: true,
                    stderr: true,
                    tail: "all".into(),
                    ..Default::default()
                }),
            );
            while let Some(Ok(chunk)) = stream.next().await {
                let bytes = chunk.into_bytes().to_vec();
                // The reader went away: stop following.
                if tokio::task::block_in_place(|| tx.send(bytes)).is_err() {
                    return;
                }
            }
        });
        Ok(Box::new(ChannelLog::new(rx)))
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, RuntimeError> {
        let mut stats = self.docker.stats(
            &id.0,
            Some(StatsOptions {
                stream: false,
                one_shot: true,
            }),
        );
        let sample = self
            .block_on(stats.next())
            .ok_or_else(|| RuntimeError::NotFound(id.clone()))?
            .map_err(docker_error(format!("stats of {id}")))?;
        Ok(Usage {
            // Docker reports CPU time in nanoseconds.
            cpu_usage_usec: sample
                .cpu_stats
                .and_then(|c| c.cpu_usage)
                .and_then(|u| u.total_usage)
                .unwrap_or(0)
                / 1000,
            memory_bytes: sample.memory_stats.and_then(|m| m.usage).unwrap_or(0),
        })
    }

    fn list(&self) -> Result<Vec<(ContainerId, ContainerSpec)>, RuntimeError> {
        let containers = self
            .block_on(self.docker.list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![LABEL_POD.to_string()],
                )])),
                ..Default::default()
            })))
            .map_err(docker_error("listing containers"))?;
        let mut found = Vec::new();
        for c in containers {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            let spec = match labels.get(LABEL_SPEC) {
                Some(json) => match serde_json::from_str(json) {
                    Ok(spec) => spec,
                    Err(_) => continue,
                },
                // A pause container: listed so orphans are removed too.
                None => ContainerSpec {
                    pod: labels.get(LABEL_POD).cloned().unwrap_or_default(),
                    name: "pause".into(),
                    image: Some(PROBE_IMAGE_REF.into()),
                    image_entrypoint: false,
                    argv: vec!["skiff-probe".into(), "pause".into()],
                    env: Vec::new(),
                    working_dir: None,
                    hostname: String::new(),
                    cpu_limit_millis: None,
                    memory_limit_bytes: None,
                    resolv_conf: None,
                },
            };
            found.push((ContainerId(id), spec));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_are_what_docker_accepts() {
        let name = container_name("shop/web server", "app");
        assert!(name.starts_with("skiff_shop_web_server_app_"), "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
    }
}
