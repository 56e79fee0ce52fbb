//! The service maps (`SERVICES`, `BACKENDS`, `MAGLEV`): typed access for the service
//! reconciler, which owns them, and for inspection of a running node's pinned maps.
//!
//! Writes are collected into [`ServiceWrites`] and applied in batches (one syscall per step,
//! not per entry). A frontend's backend set is switched atomically: backend slots are written
//! first, then the header (slot 0) with the new count, then slots beyond the new count are
//! removed. A lookup racing with the update sees either the old count (whose slots are all
//! still present, possibly already naming new backends) or the new one, never an empty slot.
//! Maglev tables have two generations: the new table is written into the idle one and the
//! header's generation switched last.

use std::{collections::BTreeMap, fmt, net::Ipv4Addr, path::Path};

use aya::maps::{HashMap, MapData, MapError};
use skiff_common::{
    names, Backend, MaglevKey, ServiceKey, ServiceValue, BACKEND_ACTIVE, BACKEND_DRAINING,
    IPPROTO_TCP, IPPROTO_UDP, MAGLEV_TABLE_SIZE, SVC_FLAG_MAGLEV,
};

use super::{batch, DataPlaneError};

/// A service frontend: what clients reach (a ClusterIP port or a node address and node port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// IP protocol number: 6 (TCP) or 17 (UDP).
    pub proto: u8,
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.addr, self.port, proto_name(self.proto))
    }
}

pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        _ => "proto?",
    }
}

impl Frontend {
    fn key(&self, slot: u16) -> ServiceKey {
        ServiceKey::new(
            u32::from(self.addr).to_be(),
            self.port.to_be(),
            self.proto,
            slot,
        )
    }

    fn from_key(key: &ServiceKey) -> Frontend {
        Frontend {
            addr: Ipv4Addr::from(u32::from_be(key.addr)),
            port: u16::from_be(key.port),
            proto: key.proto,
        }
    }
}

/// An endpoint as the kernel holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendEntry {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// Ready: new flows may pick it. Otherwise it only keeps flows it already has.
    pub active: bool,
}

impl BackendEntry {
    fn to_kernel(self) -> Backend {
        Backend {
            ipv4: u32::from(self.ip).to_be(),
            port: self.port.to_be(),
            state: if self.active {
                BACKEND_ACTIVE
            } else {
                BACKEND_DRAINING
            },
            _pad0: 0,
        }
    }

    fn from_kernel(b: &Backend) -> BackendEntry {
        BackendEntry {
            ip: Ipv4Addr::from(u32::from_be(b.ipv4)),
            port: u16::from_be(b.port),
            active: b.state == BACKEND_ACTIVE,
        }
    }
}

/// A frontend's header: everything but its backend list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrontendHeader {
    pub frontend_id: u32,
    /// `SVC_FLAG_*` bits.
    pub flags: u8,
    pub affinity_timeout_secs: u32,
}

/// A frontend as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendEntry {
    pub header: FrontendHeader,
    pub maglev_generation: u8,
    /// Active backend ids in slot order.
    pub backend_ids: Vec<u32>,
}

/// Everything the service maps hold, read back (startup recovery and inspection).
#[derive(Clone, Debug, Default)]
pub struct ServiceMapsSnapshot {
    pub frontends: BTreeMap<Frontend, FrontendEntry>,
    pub backends: BTreeMap<u32, BackendEntry>,
}

/// Typed access to the service maps, owned: taken from the loaded object (by the reconciler)
/// or opened from their pins (by inspection).
pub struct ServiceMaps {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, u32, Backend>,
    maglev: HashMap<MapData, MaglevKey, u32>,
}

impl ServiceMaps {
    pub(super) fn from_maps(
        services: aya::maps::Map,
        backends: aya::maps::Map,
        maglev: aya::maps::Map,
    ) -> Result<Self, DataPlaneError> {
        Ok(ServiceMaps {
            services: HashMap::try_from(services).map_err(DataPlaneError::map(names::SERVICES))?,
            backends: HashMap::try_from(backends).map_err(DataPlaneError::map(names::BACKENDS))?,
            maglev: HashMap::try_from(maglev).map_err(DataPlaneError::map(names::MAGLEV))?,
        })
    }

    /// Opens the maps a node daemon pinned under `pin_dir` (see [`super::PinLayout`]).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DataPlaneError> {
        let open = |name: &'static str| -> Result<aya::maps::Map, DataPlaneError> {
            let path = super::PinLayout::new(pin_dir).map(name);
            let data = MapData::from_pin(&path).map_err(DataPlaneError::map(name))?;
            aya::maps::Map::from_map_data(data).map_err(DataPlaneError::map(name))
        };
        Self::from_maps(
            open(names::SERVICES)?,
            open(names::BACKENDS)?,
            open(names::MAGLEV)?,
        )
    }
}

impl ServiceMaps {
    /// Reads every frontend and backend.
    pub fn snapshot(&self) -> Result<ServiceMapsSnapshot, DataPlaneError> {
        let mut headers: BTreeMap<Frontend, ServiceValue> = BTreeMap::new();
        let mut slots: BTreeMap<Frontend, BTreeMap<u16, u32>> = BTreeMap::new();
        for entry in self.services.iter() {
            let (key, value) = entry.map_err(DataPlaneError::map(names::SERVICES))?;
            let frontend = Frontend::from_key(&key);
            if key.slot == 0 {
                headers.insert(frontend, value);
            } else {
                slots
                    .entry(frontend)
                    .or_default()
                    .insert(key.slot, value.backend_id);
            }
        }
        let mut snapshot = ServiceMapsSnapshot::default();
        for (frontend, header) in headers {
            // Slots beyond the count are leftovers of an interrupted shrink, not live.
            let frontend_slots = slots.remove(&frontend).unwrap_or_default();
            let backend_ids = (1..=header.count)
                .filter_map(|slot| frontend_slots.get(&slot).copied())
                .collect();
            snapshot.frontends.insert(
                frontend,
                FrontendEntry {
                    header: FrontendHeader {
                        frontend_id: header.frontend_id,
                        flags: header.flags,
                        affinity_timeout_secs: header.affinity_timeout_secs,
                    },
                    maglev_generation: header.maglev_generation,
                    backend_ids,
                },
            );
        }
        for entry in self.backends.iter() {
            let (id, backend) = entry.map_err(DataPlaneError::map(names::BACKENDS))?;
            snapshot
                .backends
                .insert(id, BackendEntry::from_kernel(&backend));
        }
        Ok(snapshot)
    }

    /// The live Maglev table of a frontend (backend id per position), if it uses Maglev.
    pub fn maglev_table(&self, entry: &FrontendEntry) -> Result<Vec<u32>, DataPlaneError> {
        if entry.header.flags & SVC_FLAG_MAGLEV == 0 {
            return Ok(Vec::new());
        }
        let base = entry.maglev_generation as u32 * MAGLEV_TABLE_SIZE;
        (0..MAGLEV_TABLE_SIZE)
            .map(|i| {
                let key = MaglevKey {
                    frontend_id: entry.header.frontend_id,
                    index: base + i,
                };
                self.maglev
                    .get(&key, 0)
                    .map_err(DataPlaneError::map(names::MAGLEV))
            })
            .collect()
    }
}

/// A frontend's state before a write, as the writer needs it (from the last snapshot or
/// reconcile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OldFrontend {
    pub frontend_id: u32,
    pub count: u16,
    pub flags: u8,
    pub maglev_generation: u8,
}

/// The map changes of one reconcile pass, applied by [`ServiceMaps::apply`] in an order that
/// keeps every frontend's switch atomic, one batch syscall per step:
/// 1. backends; 2. backend slots and the idle Maglev generation; 3. headers (the switch);
/// 4. removed headers, then slots beyond new counts and of removed frontends, retired Maglev
///    entries, and retired backends.
#[derive(Default)]
pub struct ServiceWrites {
    backends: Vec<(u32, Backend)>,
    slots: Vec<(ServiceKey, ServiceValue)>,
    maglev: Vec<(MaglevKey, u32)>,
    headers: Vec<(ServiceKey, ServiceValue)>,
    removed_headers: Vec<ServiceKey>,
    removed_slots: Vec<ServiceKey>,
    removed_maglev: Vec<MaglevKey>,
    removed_backends: Vec<u32>,
}

impl ServiceWrites {
    pub fn upsert_backend(&mut self, id: u32, backend: BackendEntry) {
        self.backends.push((id, backend.to_kernel()));
    }

    pub fn remove_backend(&mut self, id: u32) {
        self.removed_backends.push(id);
    }

    /// Points `frontend` at `backend_ids` and, for a Maglev frontend, `maglev_table` (written
    /// into the generation `old` is not using). Returns the generation the header names.
    pub fn write_frontend(
        &mut self,
        frontend: Frontend,
        old: Option<OldFrontend>,
        header: FrontendHeader,
        backend_ids: &[u32],
        maglev_table: Option<&[u32]>,
    ) -> Result<u8, DataPlaneError> {
        let count = u16::try_from(backend_ids.len())
            .ok()
            .filter(|&n| n < u16::MAX)
            .ok_or_else(|| DataPlaneError::TooManyBackends {
                frontend: frontend.to_string(),
                count: backend_ids.len(),
                max: usize::from(u16::MAX) - 1,
            })?;
        for (slot, id) in (1u16..).zip(backend_ids) {
            let value = ServiceValue {
                backend_id: *id,
                ..Default::default()
            };
            self.slots.push((frontend.key(slot), value));
        }
        let old_generation = old.map_or(1, |o| o.maglev_generation);
        let mut generation = old_generation;
        if let Some(table) = maglev_table {
            generation = 1 - old_generation.min(1);
            let base = generation as u32 * MAGLEV_TABLE_SIZE;
            for (i, id) in table.iter().enumerate() {
                let key = MaglevKey {
                    frontend_id: header.frontend_id,
                    index: base + i as u32,
                };
                self.maglev.push((key, *id));
            }
        }
        let value = ServiceValue {
            backend_id: 0,
            count,
            flags: header.flags,
            maglev_generation: generation,
            frontend_id: header.frontend_id,
            affinity_timeout_secs: header.affinity_timeout_secs,
        };
        self.headers.push((frontend.key(0), value));
        if let Some(old) = old {
            for slot in count + 1..=old.count {
                self.removed_slots.push(frontend.key(slot));
            }
            if maglev_table.is_none() && old.flags & SVC_FLAG_MAGLEV != 0 {
                self.remove_maglev(old.frontend_id);
            }
        }
        Ok(generation)
    }

    /// Removes `frontend`: its header goes before its slots, so no new flow picks a slot
    /// being removed.
    pub fn remove_frontend(&mut self, frontend: Frontend, old: OldFrontend) {
        self.removed_headers.push(frontend.key(0));
        for slot in 1..=old.count {
            self.removed_slots.push(frontend.key(slot));
        }
        if old.flags & SVC_FLAG_MAGLEV != 0 {
            self.remove_maglev(old.frontend_id);
        }
    }

    fn remove_maglev(&mut self, frontend_id: u32) {
        self.removed_maglev
            .extend((0..2 * MAGLEV_TABLE_SIZE).map(|index| MaglevKey { frontend_id, index }));
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
            && self.slots.is_empty()
            && self.maglev.is_empty()
            && self.headers.is_empty()
            && self.removed_headers.is_empty()
            && self.removed_slots.is_empty()
            && self.removed_maglev.is_empty()
            && self.removed_backends.is_empty()
    }
}

impl ServiceMaps {
    /// Applies `writes` in the order [`ServiceWrites`] describes. On an error the maps may hold
    /// part of the pass (each step is still consistent); the caller re-reads them.
    pub fn apply(&mut self, writes: &ServiceWrites) -> Result<(), DataPlaneError> {
        let services = fd_of(&self.services);
        let backends = fd_of(&self.backends);
        let maglev = fd_of(&self.maglev);
        let err = |map: &'static str| {
            move |e: std::io::Error| DataPlaneError::Map {
                map,
                source: MapError::SyscallError(aya::sys::SyscallError {
                    call: "bpf_map_batch",
                    io_error: e,
                }),
            }
        };
        batch::update(backends, &writes.backends).map_err(err(names::BACKENDS))?;
        batch::update(services, &writes.slots).map_err(err(names::SERVICES))?;
        batch::update(maglev, &writes.maglev).map_err(err(names::MAGLEV))?;
        batch::update(services, &writes.headers).map_err(err(names::SERVICES))?;
        batch::delete(services, &writes.removed_headers).map_err(err(names::SERVICES))?;
        batch::delete(services, &writes.removed_slots).map_err(err(names::SERVICES))?;
        batch::delete(maglev, &writes.removed_maglev).map_err(err(names::MAGLEV))?;
        batch::delete(backends, &writes.removed_backends).map_err(err(names::BACKENDS))?;
        Ok(())
    }
}

fn fd_of<K: aya::Pod, V: aya::Pod>(map: &HashMap<MapData, K, V>) -> std::os::fd::BorrowedFd<'_> {
    use std::os::fd::AsFd as _;
    aya::maps::IterableMap::map(map).fd().as_fd()
}
