//! The pod manager: the only writer of this node's pods. Each sync hands it the pods the
//! control plane assigns to this node; it starts a [`worker`](super::worker) for each new
//! one, passes spec changes on, and tells the workers of deleted pods to terminate.
//!
//! The first sync after a start adopts: pods with a record keep their address, network
//! and running containers; records of pods that are gone are torn down; containers the
//! runtime holds without a record (a crash between start and record) are removed.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    sync::{atomic::AtomicBool, mpsc, Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use skiff_api::{core::PodStatus, Pod};

use super::{
    ipam::PodAddresses,
    network::PodNetwork,
    record::Records,
    worker::{self, pod_key, uid},
    PodDirectory,
};
use crate::{
    dns::ZoneHandle,
    runtime::{supervisor::Backoff, Runtime},
    service_lb::ServingEndpoints,
};

/// What a worker tells the control plane.
#[derive(Clone, Debug, PartialEq)]
pub enum PodReport {
    Status {
        namespace: String,
        name: String,
        uid: String,
        status: PodStatus,
    },
    /// The pod is stopped and removed from the node: its object may go.
    Deleted {
        namespace: String,
        name: String,
        uid: String,
    },
}

/// Data-plane work a worker needs from the daemon's main loop (which owns the data plane).
#[derive(Debug)]
pub enum DataPlaneRequest {
    Attach {
        interface: String,
        ip: Ipv4Addr,
        reply: mpsc::Sender<Result<(), String>>,
    },
    Detach {
        interface: String,
        ip: Ipv4Addr,
    },
}

/// What every worker shares.
pub struct Context {
    pub node_ip: Option<Ipv4Addr>,
    pub runtime: Arc<dyn Runtime>,
    pub network: PodNetwork,
    pub addresses: Mutex<PodAddresses>,
    /// Pods' cgroups go below it, one per pod uid.
    pub cgroup_root: PathBuf,
    pub records: Records,
    /// Put first on every container's PATH (the probe binary is there).
    pub tools_dir: Option<PathBuf>,
    pub backoff: Backoff,
    pub directory: PodDirectory,
    pub reports: Box<dyn Fn(PodReport) + Send + Sync>,
    pub dataplane: Mutex<mpsc::Sender<DataPlaneRequest>>,
    /// The cluster's names now: service environment variables and pods' resolver.
    pub zone: ZoneHandle,
    /// The node serves cluster DNS: pods (dnsPolicy ClusterFirst) resolve through it.
    pub cluster_dns: bool,
    /// Pod addresses this node's data plane sends new connections to: a terminating pod
    /// waits to leave it before its containers are stopped.
    pub serving: ServingEndpoints,
}

impl Context {
    /// The cluster's names as the agent saw them last.
    pub fn zone(&self) -> Arc<crate::dns::Zone> {
        self.zone.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The manager's handle on one worker.
pub(crate) struct PodControl {
    pod: Mutex<Pod>,
    pub terminating: AtomicBool,
}

impl PodControl {
    pub fn pod(&self) -> Pod {
        self.pod.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Worker {
    control: Arc<PodControl>,
    thread: JoinHandle<()>,
}

pub struct PodManager {
    ctx: Arc<Context>,
    workers: BTreeMap<String, Worker>,
    adopted: bool,
}

impl PodManager {
    pub fn new(ctx: Context) -> PodManager {
        PodManager {
            ctx: Arc::new(ctx),
            workers: BTreeMap::new(),
            adopted: false,
        }
    }

    pub fn directory(&self) -> &PodDirectory {
        &self.ctx.directory
    }

    /// Brings the node's pods in line with `pods`, the ones assigned to this node.
    pub fn sync(&mut self, pods: &[Pod]) {
        let desired: BTreeMap<String, &Pod> = pods
            .iter()
            .filter(|p| p.metadata.uid.is_some())
            .map(|p| (uid(p), p))
            .collect();
        let mut records = BTreeMap::new();
        if !self.adopted {
            self.adopted = true;
            records = self.adopt_or_clean(&desired);
        }
        self.workers.retain(|_, w| !w.thread.is_finished());
        for (uid, worker) in &self.workers {
            match desired.get(uid) {
                Some(pod) if pod.metadata.deletion_timestamp.is_none() => {
                    *worker.control.pod.lock().unwrap_or_else(|e| e.into_inner()) = (*pod).clone();
                }
                Some(pod) => {
                    *worker.control.pod.lock().unwrap_or_else(|e| e.into_inner()) = (*pod).clone();
                    worker
                        .control
                        .terminating
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                None => worker
                    .control
                    .terminating
                    .store(true, std::sync::atomic::Ordering::Relaxed),
            }
        }
        for (uid, pod) in desired {
            if self.workers.contains_key(&uid) {
                continue;
            }
            // A deleted pod without a record never ran here: report it gone at once.
            let record = records.remove(&uid);
            if pod.metadata.deletion_timestamp.is_some() && record.is_none() {
                (self.ctx.reports)(PodReport::Deleted {
                    namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                    name: pod.metadata.name.clone(),
                    uid: uid.clone(),
                });
                continue;
            }
            let control = Arc::new(PodControl {
                pod: Mutex::new(pod.clone()),
                terminating: AtomicBool::new(pod.metadata.deletion_timestamp.is_some()),
            });
            let (ctx, c) = (self.ctx.clone(), control.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("pod {}", pod_key(pod)))
                .spawn(move || worker::run(ctx, c, record));
            match spawned {
                Ok(thread) => {
                    self.workers.insert(uid, Worker { control, thread });
                }
                Err(e) => {
                    tracing::error!(pod = %pod_key(pod), "cannot start the pod's worker: {e}")
                }
            }
        }
    }

    /// Claims recorded addresses, returns the records of pods still wanted and tears down
    /// the others; removes containers no record knows.
    fn adopt_or_clean(
        &self,
        desired: &BTreeMap<String, &Pod>,
    ) -> BTreeMap<String, super::record::PodRecord> {
        let mut kept = BTreeMap::new();
        let mut known = Vec::new();
        for record in self.ctx.records.load_all() {
            known.extend(record.containers.iter().map(|c| c.id.clone()));
            known.extend(record.infra.clone());
            let claimed = self
                .ctx
                .addresses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .claim(record.ip);
            if desired.contains_key(&record.uid) && claimed {
                kept.insert(record.uid.clone(), record);
            } else {
                tracing::info!(pod = %format!("{}/{}", record.namespace, record.name), "pod gone while the daemon was down; removing it");
                worker::teardown(&self.ctx, &record, Vec::new(), Duration::ZERO);
            }
        }
        match self.ctx.runtime.list() {
            Ok(containers) => {
                for (id, spec) in containers {
                    if !known.contains(&id) {
                        tracing::info!(container = %id, pod = %spec.pod, "removing a container no pod record knows");
                        if let Err(e) = self.ctx.runtime.remove(&id) {
                            tracing::warn!("{e}");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("listing the runtime's containers: {e}"),
        }
        kept
    }

    /// Stops managing without touching the pods: they keep running for the next daemon run
    /// to adopt.
    pub fn leave(self) {
        tracing::info!(
            pods = self.workers.len(),
            "leaving pods running for the next daemon run"
        );
    }
}
