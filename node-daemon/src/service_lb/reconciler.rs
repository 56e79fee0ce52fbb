//! The service reconciler: the one writer of the service maps.
//!
//! It turns [`DesiredServices`] into frontends and backends, diffs them against what the
//! kernel holds and writes only the difference. On start it reads the (possibly pinned) maps
//! back, so a restarted daemon adopts the running data plane instead of flushing it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
};

use skiff_common::{SVC_FLAG_AFFINITY, SVC_FLAG_MAGLEV, SVC_FLAG_MASQUERADE, SVC_FLAG_NODE_PORT};

use super::{
    desired::{DesiredServices, LoadBalancing, ServiceType, SessionAffinity, TrafficPolicy},
    maglev::maglev_table,
};
use crate::dataplane::{
    BackendEntry, DataPlaneError, Frontend, FrontendHeader, OldFrontend, ServiceMaps, ServiceWrites,
};

/// What one reconcile pass changed in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileStats {
    pub frontends_written: usize,
    pub frontends_removed: usize,
    pub backends_written: usize,
    pub backends_removed: usize,
}

impl ReconcileStats {
    pub fn is_empty(&self) -> bool {
        *self == ReconcileStats::default()
    }
}

/// A frontend as the reconciler wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WantedFrontend {
    flags: u8,
    affinity_timeout_secs: u32,
    /// Serving backends, as (ip, port), sorted.
    backends: Vec<(Ipv4Addr, u16)>,
}

/// A frontend as last written.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AppliedFrontend {
    header: FrontendHeader,
    backend_ids: Vec<u32>,
    maglev_generation: u8,
}

impl AppliedFrontend {
    fn old(&self) -> OldFrontend {
        OldFrontend {
            frontend_id: self.header.frontend_id,
            count: self.backend_ids.len() as u16,
            flags: self.header.flags,
            maglev_generation: self.maglev_generation,
        }
    }
}

pub struct ServiceReconciler {
    maps: ServiceMaps,
    /// Backend id and state by (ip, port).
    backends: HashMap<(Ipv4Addr, u16), (u32, bool)>,
    frontends: BTreeMap<Frontend, AppliedFrontend>,
    next_backend_id: u32,
    next_frontend_id: u32,
}

impl ServiceReconciler {
    /// Takes ownership of the maps and adopts whatever they already hold.
    pub fn new(maps: ServiceMaps) -> Result<ServiceReconciler, DataPlaneError> {
        let mut reconciler = ServiceReconciler {
            maps,
            backends: HashMap::new(),
            frontends: BTreeMap::new(),
            next_backend_id: 1,
            next_frontend_id: 1,
        };
        reconciler.adopt()?;
        Ok(reconciler)
    }

    /// Rebuilds the in-memory view from the kernel's maps.
    fn adopt(&mut self) -> Result<(), DataPlaneError> {
        let snapshot = self.maps.snapshot()?;
        let backends: HashMap<_, _> = snapshot
            .backends
            .iter()
            .map(|(id, b)| ((b.ip, b.port), (*id, b.active)))
            .collect();
        let frontends: BTreeMap<_, _> = snapshot
            .frontends
            .iter()
            .map(|(frontend, entry)| {
                (
                    *frontend,
                    AppliedFrontend {
                        header: entry.header,
                        backend_ids: entry.backend_ids.clone(),
                        maglev_generation: entry.maglev_generation,
                    },
                )
            })
            .collect();
        let next_backend_id = snapshot.backends.keys().max().map_or(1, |id| id + 1);
        let next_frontend_id = frontends
            .values()
            .map(|f| f.header.frontend_id)
            .max()
            .map_or(1, |id| id + 1);
        self.backends = backends;
        self.frontends = frontends;
        self.next_backend_id = next_backend_id;
        self.next_frontend_id = next_frontend_id;
        Ok(())
    }

    /// Read access to the maps (inspection, tests).
    pub fn maps(&self) -> &ServiceMaps {
        &self.maps
    }

    /// Frontends the reconciler currently holds in the kernel.
    pub fn frontend_count(&self) -> usize {
        self.frontends.len()
    }

    /// Makes the kernel match `desired`, writing only what differs, in batches (see
    /// [`ServiceWrites`]). `desired` is validated first; an invalid state changes nothing. If
    /// the kernel rejects a write (a full map), the view is re-read from the maps, so the next
    /// pass repairs whatever this one left half done.
    pub fn reconcile(
        &mut self,
        desired: &DesiredServices,
    ) -> Result<ReconcileStats, ReconcileError> {
        desired.validate()?;
        let (wanted_frontends, wanted_backends) = wanted(desired);
        let mut writes = ServiceWrites::default();
        let mut stats = ReconcileStats::default();
        let mut backends = self.backends.clone();
        let mut frontends = self.frontends.clone();
        let (mut next_backend_id, mut next_frontend_id) =
            (self.next_backend_id, self.next_frontend_id);

        for (&(ip, port), &active) in &wanted_backends {
            let (id, unchanged) = match backends.get(&(ip, port)) {
                Some(&(id, was_active)) => (id, was_active == active),
                None => {
                    next_backend_id += 1;
                    (next_backend_id - 1, false)
                }
            };
            if !unchanged {
                writes.upsert_backend(id, BackendEntry { ip, port, active });
                backends.insert((ip, port), (id, active));
                stats.backends_written += 1;
            }
        }

        for (frontend, want) in &wanted_frontends {
            let backend_ids: Vec<u32> = want.backends.iter().map(|key| backends[key].0).collect();
            let old = frontends.get(frontend);
            let frontend_id = match old {
                Some(applied) => applied.header.frontend_id,
                None => {
                    next_frontend_id += 1;
                    next_frontend_id - 1
                }
            };
            let header = FrontendHeader {
                frontend_id,
                flags: want.flags,
                affinity_timeout_secs: want.affinity_timeout_secs,
            };
            if old.is_some_and(|o| o.header == header && o.backend_ids == backend_ids) {
                continue;
            }
            let table = (want.flags & SVC_FLAG_MAGLEV != 0).then(|| {
                let named: Vec<(String, u32)> = want
                    .backends
                    .iter()
                    .zip(&backend_ids)
                    .map(|((ip, port), id)| (format!("{ip}:{port}"), *id))
                    .collect();
                maglev_table(&named)
            });
            // An empty Maglev table cannot be looked up; count 0 refuses before it is used.
            let table = table.filter(|t| !t.is_empty());
            let maglev_generation = writes.write_frontend(
                *frontend,
                old.map(AppliedFrontend::old),
                header,
                &backend_ids,
                table.as_deref(),
            )?;
            frontends.insert(
                *frontend,
                AppliedFrontend {
                    header,
                    backend_ids,
                    maglev_generation,
                },
            );
            stats.frontends_written += 1;
        }
        frontends.retain(|frontend, applied| {
            let keep = wanted_frontends.contains_key(frontend);
            if !keep {
                writes.remove_frontend(*frontend, applied.old());
                stats.frontends_removed += 1;
            }
            keep
        });
        backends.retain(|key, (id, _)| {
            let keep = wanted_backends.contains_key(key);
            if !keep {
                writes.remove_backend(*id);
                stats.backends_removed += 1;
            }
            keep
        });

        if let Err(e) = self.maps.apply(&writes) {
            self.adopt()?;
            return Err(e.into());
        }
        self.backends = backends;
        self.frontends = frontends;
        self.next_backend_id = next_backend_id;
        self.next_frontend_id = next_frontend_id;
        Ok(stats)
    }
}

/// Every frontend and every backend (with its state) `desired` asks for.
fn wanted(
    desired: &DesiredServices,
) -> (
    BTreeMap<Frontend, WantedFrontend>,
    BTreeMap<(Ipv4Addr, u16), bool>,
) {
    let mut frontends = BTreeMap::new();
    let mut backends: BTreeMap<(Ipv4Addr, u16), bool> = BTreeMap::new();
    for service in &desired.services {
        let Some(cluster_ip) = service.cluster_ip else {
            continue; // headless: DNS only
        };
        let mut flags = 0;
        if service.load_balancing == LoadBalancing::Maglev {
            flags |= SVC_FLAG_MAGLEV;
        }
        if service.session_affinity == SessionAffinity::ClientIP {
            flags |= SVC_FLAG_AFFINITY;
        }
        for port in &service.ports {
            let target = port.target();
            let proto = port.protocol.number();
            let mut serving = BTreeSet::new();
            let mut serving_local = BTreeSet::new();
            for endpoint in &service.endpoints {
                let Some(target_port) = endpoint.resolve(&target) else {
                    continue;
                };
                let key = (endpoint.ip, target_port);
                // Draining unless some service sees it serving: then it is active everywhere.
                let active = backends.entry(key).or_insert(false);
                *active |= endpoint.serving();
                if endpoint.serving() {
                    serving.insert(key);
                    if endpoint.local {
                        serving_local.insert(key);
                    }
                }
            }
            frontends.insert(
                Frontend {
                    addr: cluster_ip,
                    port: port.port,
                    proto,
                },
                WantedFrontend {
                    flags,
                    affinity_timeout_secs: service.affinity_timeout_secs(),
                    backends: serving.iter().copied().collect(),
                },
            );
            let (Some(node_port), ServiceType::NodePort) = (port.node_port, service.service_type)
            else {
                continue;
            };
            let (node_flags, node_backends) = match service.external_traffic_policy {
                TrafficPolicy::Cluster => {
                    (flags | SVC_FLAG_NODE_PORT | SVC_FLAG_MASQUERADE, &serving)
                }
                TrafficPolicy::Local => (flags | SVC_FLAG_NODE_PORT, &serving_local),
            };
            for &addr in &desired.node_addresses {
                frontends.insert(
                    Frontend {
                        addr,
                        port: node_port,
                        proto,
                    },
                    WantedFrontend {
                        flags: node_flags,
                        affinity_timeout_secs: service.affinity_timeout_secs(),
                        backends: node_backends.iter().copied().collect(),
                    },
                );
            }
        }
    }
    (frontends, backends)
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Invalid(#[from] super::desired::InvalidService),
    #[error(transparent)]
    DataPlane(#[from] DataPlaneError),
}
