//! Every map of the object. Names and capacities come from `skiff_common` so user space
//! opens the same maps by the same names.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
};
use skiff_common::{
    capacity, Backend, DropReason, EndpointInfo, ServiceKey, ServiceValue, TrafficCounters,
};

/// Local pods by host-side veth ifindex. Written only by the node daemon's endpoint reconciler.
#[map]
pub static ENDPOINTS: HashMap<u32, EndpointInfo> =
    HashMap::with_max_entries(capacity::ENDPOINTS, 0);

/// Per-CPU traffic counters by host-side veth ifindex.
#[map]
pub static POD_TRAFFIC: PerCpuHashMap<u32, TrafficCounters> =
    PerCpuHashMap::with_max_entries(capacity::ENDPOINTS, 0);

/// Per-CPU drop counters indexed by `DropReason`.
#[map]
pub static DROP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DropReason::COUNT, 0);

/// Service frontends: slot 0 is the header, slots 1..=n the backend ids.
#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> =
    HashMap::with_max_entries(capacity::SERVICES, 0);

/// Backends by id.
#[map]
pub static BACKENDS: HashMap<u32, Backend> = HashMap::with_max_entries(capacity::BACKENDS, 0);

#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(counter) = DROP_COUNTERS.get_ptr_mut(reason.index()) {
        // SAFETY: per-CPU slot, so no other program instance writes it concurrently.
        unsafe { *counter += 1 };
    }
}
