//! Pods on this node.
//!
//! - [`manager`]: the only writer of the node's pods. It follows the pods the control plane
//!   assigns here, runs each on a [`worker`] thread, and adopts what a previous daemon run
//!   left running;
//! - [`worker`]: one pod's life: address, network, cgroup, containers through the runtime,
//!   restarts, probes, status reports, graceful termination;
//! - [`network`]: the pod's namespace, veth pair and routes, through rtnetlink;
//! - [`ipam`]: addresses from the node's pod CIDR;
//! - [`probe`]: liveness and readiness probes;
//! - [`record`]: what is written down per pod so a restarted daemon adopts it.
//!
//! [`PodDirectory`] is the read side: which container runs for which pod, for logs, exec and
//! per-pod usage.

pub mod ipam;
pub mod manager;
pub mod network;
pub mod probe;
pub mod record;
pub mod worker;

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use crate::runtime::{ContainerId, Runtime, Usage};

/// A container of a running pod, as the node API looks it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalContainer {
    pub name: String,
    pub current: ContainerId,
    /// The run before the last restart, kept for `logs --previous`.
    pub previous: Option<ContainerId>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalPod {
    pub uid: String,
    pub containers: Vec<LocalContainer>,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    #[error("pod {0} does not run on this node")]
    NoPod(String),
    #[error("pod {pod} has no container {container:?}; it has: {known}")]
    NoContainer {
        pod: String,
        container: String,
        known: String,
    },
    #[error("pod {pod} has several containers ({known}): name one with container=")]
    Ambiguous { pod: String, known: String },
    #[error("container {container} of pod {pod} has not restarted: there is no previous run")]
    NoPrevious { pod: String, container: String },
}

/// The pods this node runs, keyed `namespace/name`; written by the workers.
#[derive(Clone)]
pub struct PodDirectory {
    pub runtime: Arc<dyn Runtime>,
    pods: Arc<RwLock<BTreeMap<String, LocalPod>>>,
}

impl PodDirectory {
    pub fn new(runtime: Arc<dyn Runtime>) -> PodDirectory {
        PodDirectory {
            runtime,
            pods: Arc::default(),
        }
    }

    pub(crate) fn set(&self, key: &str, pod: Option<LocalPod>) {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        match pod {
            Some(pod) => pods.insert(key.to_string(), pod),
            None => pods.remove(key),
        };
    }

    pub fn pods(&self) -> BTreeMap<String, LocalPod> {
        self.pods.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The container `container` (or the pod's only one) of `pod` (`namespace/name`).
    pub fn container(
        &self,
        pod: &str,
        container: Option<&str>,
        previous: bool,
    ) -> Result<ContainerId, LookupError> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        let local = pods
            .get(pod)
            .ok_or_else(|| LookupError::NoPod(pod.to_string()))?;
        let known = || {
            local
                .containers
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let found = match container {
            Some(name) => local
                .containers
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| LookupError::NoContainer {
                    pod: pod.to_string(),
                    container: name.to_string(),
                    known: known(),
                })?,
            None => match local.containers.as_slice() {
                [only] => only,
                _ => {
                    return Err(LookupError::Ambiguous {
                        pod: pod.to_string(),
                        known: known(),
                    })
                }
            },
        };
        if !previous {
            return Ok(found.current.clone());
        }
        found
            .previous
            .clone()
            .ok_or_else(|| LookupError::NoPrevious {
                pod: pod.to_string(),
                container: found.name.clone(),
            })
    }
}
