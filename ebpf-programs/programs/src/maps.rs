//! Every map of the object. Names and capacities come from `skiff_common` so user space
//! opens the same maps by the same names (and pins them under the same file names).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use skiff_common::{
    capacity, settings, AddressIdentity, AffinityKey, AffinityValue, Backend, CtKey, CtValue,
    DropReason, EndpointInfo, MaglevKey, PolicyCounters, PolicyCtValue, PolicyEntry, PolicyKey,
    ServiceKey, ServiceValue, SockNatKey, SockNatValue, TrafficCounters,
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

/// Service frontends: slot 0 is the header, slots 1..=count the active backend ids.
/// Written only by the service reconciler.
#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> =
    HashMap::with_max_entries(capacity::SERVICES, 0);

/// Backends by id. Written only by the service reconciler.
#[map]
pub static BACKENDS: HashMap<u32, Backend> = HashMap::with_max_entries(capacity::BACKENDS, 0);

/// Maglev lookup tables of the frontends that use Maglev: backend id by (frontend, index).
#[map]
pub static MAGLEV: HashMap<MaglevKey, u32> = HashMap::with_max_entries(capacity::MAGLEV, 0);

/// `sessionAffinity: ClientIP` memory: written by the programs, bounded by LRU eviction.
#[map]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> =
    LruHashMap::with_max_entries(capacity::AFFINITY, 0);

/// What the socket hooks remember per socket (backend chosen, service address to report).
#[map]
pub static SOCK_NAT: LruHashMap<SockNatKey, SockNatValue> =
    LruHashMap::with_max_entries(capacity::SOCK_NAT, 0);

/// Connection tracking of the per-packet NAT path.
#[map]
pub static CONNTRACK: LruHashMap<CtKey, CtValue> =
    LruHashMap::with_max_entries(capacity::CONNTRACK, 0);

/// Node settings by `skiff_common::settings` slot. Written only by the node daemon.
#[map]
pub static SETTINGS: Array<u64> = Array::with_max_entries(settings::COUNT, 0);

/// Identity and CIDR identity by address prefix. Written only by the policy reconciler.
#[map]
pub static IPCACHE: LpmTrie<u32, AddressIdentity> = LpmTrie::with_max_entries(capacity::IPCACHE, 0);

/// Compiled NetworkPolicy entries (see `skiff_common::policy`). Written only by the policy
/// reconciler.
#[map]
pub static POLICY: LpmTrie<PolicyKey, PolicyEntry> = LpmTrie::with_max_entries(capacity::POLICY, 0);

/// Flows a policy check let through, so their later packets and replies skip the lookups.
#[map]
pub static POLICY_CT: LruHashMap<CtKey, PolicyCtValue> =
    LruHashMap::with_max_entries(capacity::POLICY_CT, 0);

/// Per-CPU allow/deny counters by packed rule reference.
#[map]
pub static POLICY_COUNTERS: PerCpuHashMap<u32, PolicyCounters> =
    PerCpuHashMap::with_max_entries(capacity::POLICY_COUNTERS, 0);

/// Policy verdicts and drops for `skiff observe`. Dropped silently when user space lags.
#[map]
pub static FLOW_EVENTS: RingBuf = RingBuf::with_byte_size(capacity::FLOW_EVENTS, 0);

#[inline(always)]
pub fn setting(slot: u32) -> u64 {
    SETTINGS.get(slot).copied().unwrap_or(0)
}

#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(counter) = DROP_COUNTERS.get_ptr_mut(reason.index()) {
        // SAFETY: per-CPU slot, so no other program instance writes it concurrently.
        unsafe { *counter += 1 };
    }
}
