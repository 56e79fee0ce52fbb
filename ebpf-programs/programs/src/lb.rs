//! Backend selection shared by the socket hooks and the per-packet NAT path.
//!
//! Order: a live `sessionAffinity` entry wins; otherwise the frontend's Maglev table (one
//! lookup by flow hash) or a random active slot. Only active backends are ever picked for a
//! new flow: draining ones are not in the slots or Maglev tables, and affinity to one ends.

use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns};
use skiff_common::{
    AffinityKey, AffinityValue, Backend, MaglevKey, ServiceKey, ServiceValue, BACKEND_ACTIVE,
    MAGLEV_TABLE_SIZE, SVC_FLAG_AFFINITY, SVC_FLAG_MAGLEV,
};

use crate::maps::{AFFINITY, BACKENDS, MAGLEV, SERVICES};

/// A frontend as a packet or socket address names it (network byte order).
#[derive(Clone, Copy)]
pub struct Frontend {
    pub addr: u32,
    pub port: u16,
    pub proto: u8,
}

/// The header (slot 0) of a frontend, if the address is a service.
#[inline(always)]
pub fn service_header(frontend: &Frontend) -> Option<ServiceValue> {
    let key = ServiceKey::new(frontend.addr, frontend.port, frontend.proto, 0);
    // SAFETY: the value is copied out at once.
    unsafe { SERVICES.get(&key) }.copied()
}

#[inline(always)]
pub fn backend(id: u32) -> Option<Backend> {
    // SAFETY: the value is copied out at once.
    unsafe { BACKENDS.get(&id) }.copied()
}

/// Picks a backend for a new flow. `client` identifies the client for affinity; `flow_hash`
/// feeds Maglev. `None`: no active backend (the caller refuses or drops).
#[inline(always)]
pub fn select_backend(
    frontend: &Frontend,
    header: &ServiceValue,
    client: u64,
    flow_hash: u32,
) -> Option<(u32, Backend)> {
    if header.count == 0 {
        return None;
    }
    let affinity = header.flags & SVC_FLAG_AFFINITY != 0;
    let affinity_key = AffinityKey {
        client,
        frontend_id: header.frontend_id,
        _pad0: 0,
    };
    // The clock is read only for affinity services: new flows of the others skip the helper.
    let now = if affinity {
        // SAFETY: plain helper call.
        unsafe { bpf_ktime_get_ns() }
    } else {
        0
    };
    if affinity {
        if let Some(pinned) = remembered_backend(&affinity_key, header, now) {
            return Some(pinned);
        }
    }
    let id = if header.flags & SVC_FLAG_MAGLEV != 0 {
        let key = MaglevKey {
            frontend_id: header.frontend_id,
            index: header.maglev_generation as u32 * MAGLEV_TABLE_SIZE
                + flow_hash % MAGLEV_TABLE_SIZE,
        };
        // SAFETY: the value is copied out at once.
        unsafe { MAGLEV.get(&key) }.copied()?
    } else {
        // SAFETY: plain helper call.
        let pick = unsafe { bpf_get_prandom_u32() } % header.count as u32;
        let key = ServiceKey::new(
            frontend.addr,
            frontend.port,
            frontend.proto,
            pick as u16 + 1,
        );
        // SAFETY: the value is copied out at once.
        unsafe { SERVICES.get(&key) }.copied()?.backend_id
    };
    let chosen = backend(id)?;
    if affinity {
        let value = AffinityValue {
            backend_id: id,
            _pad0: 0,
            last_used_ns: now,
        };
        // Best effort: a full LRU map evicts the oldest entry instead of failing.
        let _ = AFFINITY.insert(&affinity_key, &value, 0);
    }
    Some((id, chosen))
}

/// The client's affinity backend if the entry is within the timeout and the backend is still
/// active; refreshes the entry's timestamp (Kubernetes measures the timeout from the last use).
#[inline(always)]
fn remembered_backend(
    key: &AffinityKey,
    header: &ServiceValue,
    now: u64,
) -> Option<(u32, Backend)> {
    let entry = AFFINITY.get_ptr_mut(key)?;
    // SAFETY: the pointer comes from a successful lookup; concurrent writers only race on a
    // timestamp, which is harmless.
    let entry = unsafe { &mut *entry };
    let timeout_ns = header.affinity_timeout_secs as u64 * 1_000_000_000;
    if now.saturating_sub(entry.last_used_ns) > timeout_ns {
        return None;
    }
    let chosen = backend(entry.backend_id)?;
    if chosen.state != BACKEND_ACTIVE {
        return None;
    }
    entry.last_used_ns = now;
    Some((entry.backend_id, chosen))
}

/// A well-mixed 32-bit hash (MurmurHash3's finaliser over the folded inputs).
#[inline(always)]
pub fn mix_hash(a: u32, b: u32, c: u32) -> u32 {
    let mut h = a ^ b.rotate_left(13) ^ c.rotate_left(26) ^ 0x9e37_79b9;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}
