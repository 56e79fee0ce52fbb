//! The `SERVICES` and `BACKENDS` maps: primitives the service reconciler is built on.
//!
//! A service's backend set is switched atomically: backend slots are written first, then the
//! header (slot 0) with the new count, then slots beyond the new count are removed. A
//! `connect()` racing with the update sees either the old count (whose slots are all still
//! present, possibly already naming new backends) or the new one, never an empty slot.

use std::{fmt, net::Ipv4Addr};

use aya::{
    maps::{HashMap, MapData, MapError},
    Ebpf,
};
use skiff_common::{names, Backend, ServiceKey, ServiceValue, IPPROTO_TCP, IPPROTO_UDP};

use super::{ignore_missing, DataPlaneError};

/// A service frontend: what clients connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceFrontend {
    pub vip: Ipv4Addr,
    pub port: u16,
    /// IP protocol number: 6 (TCP) or 17 (UDP).
    pub proto: u8,
}

impl fmt::Display for ServiceFrontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            IPPROTO_TCP => "tcp",
            IPPROTO_UDP => "udp",
            _ => "proto?",
        };
        write!(f, "{}:{}/{}", self.vip, self.port, proto)
    }
}

impl ServiceFrontend {
    fn key(&self, slot: u16) -> ServiceKey {
        ServiceKey::new(
            u32::from(self.vip).to_be(),
            self.port.to_be(),
            self.proto,
            slot,
        )
    }
}

/// One endpoint a frontend balances to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceBackend {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// Writer of the service maps, borrowed from a [`super::DataPlane`].
pub struct Services<'a> {
    services: HashMap<&'a mut MapData, ServiceKey, ServiceValue>,
    backends: HashMap<&'a mut MapData, u32, Backend>,
}

impl<'a> Services<'a> {
    pub(super) fn new(ebpf: &'a mut Ebpf) -> Result<Self, DataPlaneError> {
        let [services, backends] = ebpf.maps_disjoint_mut([names::SERVICES, names::BACKENDS]);
        let services = services.ok_or(DataPlaneError::MissingMap(names::SERVICES))?;
        let backends = backends.ok_or(DataPlaneError::MissingMap(names::BACKENDS))?;
        Ok(Services {
            services: HashMap::try_from(services).map_err(DataPlaneError::map(names::SERVICES))?,
            backends: HashMap::try_from(backends).map_err(DataPlaneError::map(names::BACKENDS))?,
        })
    }

    pub fn upsert_backend(
        &mut self,
        id: u32,
        backend: ServiceBackend,
    ) -> Result<(), DataPlaneError> {
        let value = Backend {
            ipv4: u32::from(backend.ip).to_be(),
            port: backend.port.to_be(),
            _pad0: [0; 2],
        };
        self.backends
            .insert(id, value, 0)
            .map_err(DataPlaneError::map(names::BACKENDS))
    }

    pub fn remove_backend(&mut self, id: u32) -> Result<(), DataPlaneError> {
        ignore_missing(self.backends.remove(&id)).map_err(DataPlaneError::map(names::BACKENDS))
    }

    /// Points `frontend` at `backend_ids` (already written with [`Self::upsert_backend`]),
    /// switching atomically as the module doc describes.
    pub fn set_service(
        &mut self,
        frontend: ServiceFrontend,
        backend_ids: &[u32],
    ) -> Result<(), DataPlaneError> {
        let count = u16::try_from(backend_ids.len())
            .ok()
            .filter(|&n| n < u16::MAX)
            .ok_or_else(|| DataPlaneError::TooManyBackends {
                frontend: frontend.to_string(),
                count: backend_ids.len(),
                max: usize::from(u16::MAX) - 1,
            })?;
        let old_count = self.backend_count(frontend)?;
        for (slot, id) in (1u16..).zip(backend_ids) {
            let value = ServiceValue {
                backend_id: *id,
                ..Default::default()
            };
            self.services
                .insert(frontend.key(slot), value, 0)
                .map_err(DataPlaneError::map(names::SERVICES))?;
        }
        let header = ServiceValue {
            backend_count: count,
            ..Default::default()
        };
        self.services
            .insert(frontend.key(0), header, 0)
            .map_err(DataPlaneError::map(names::SERVICES))?;
        for slot in count + 1..=old_count {
            ignore_missing(self.services.remove(&frontend.key(slot)))
                .map_err(DataPlaneError::map(names::SERVICES))?;
        }
        Ok(())
    }

    /// Removes `frontend`: header first, so no new connection picks a slot being removed.
    pub fn remove_service(&mut self, frontend: ServiceFrontend) -> Result<(), DataPlaneError> {
        let old_count = self.backend_count(frontend)?;
        for slot in 0..=old_count {
            ignore_missing(self.services.remove(&frontend.key(slot)))
                .map_err(DataPlaneError::map(names::SERVICES))?;
        }
        Ok(())
    }

    /// The backend ids the kernel holds for `frontend`, in slot order.
    pub fn backend_ids(&self, frontend: ServiceFrontend) -> Result<Vec<u32>, DataPlaneError> {
        (1..=self.backend_count(frontend)?)
            .map(|slot| {
                self.services
                    .get(&frontend.key(slot), 0)
                    .map(|v| v.backend_id)
                    .map_err(DataPlaneError::map(names::SERVICES))
            })
            .collect()
    }

    /// The backend count in `frontend`'s header; 0 when the service is not in the map.
    fn backend_count(&self, frontend: ServiceFrontend) -> Result<u16, DataPlaneError> {
        match self.services.get(&frontend.key(0), 0) {
            Ok(header) => Ok(header.backend_count),
            Err(MapError::KeyNotFound) => Ok(0),
            Err(e) => Err(DataPlaneError::map(names::SERVICES)(e)),
        }
    }
}
