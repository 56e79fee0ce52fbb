//! Map names, default sizes and the key/value types stored in them.

use crate::assert_layout;

/// Map names as they appear in the eBPF object (and so as pin file names).
pub mod names {
    pub const ENDPOINTS: &str = "ENDPOINTS";
    pub const POD_TRAFFIC: &str = "POD_TRAFFIC";
    pub const DROP_COUNTERS: &str = "DROP_COUNTERS";
    pub const SERVICES: &str = "SERVICES";
    pub const BACKENDS: &str = "BACKENDS";
}

/// Program names as they appear in the eBPF object.
pub mod programs {
    /// TC program for packets a pod sends (ingress of its host-side veth).
    pub const FROM_POD: &str = "from_pod";
    /// TC program for packets delivered to a pod (egress of its host-side veth).
    pub const TO_POD: &str = "to_pod";
    /// cgroup `connect4` hook: socket-level service load balancing.
    pub const SOCK_CONNECT4: &str = "sock_connect4";
}

/// Default capacities. The node daemon may load the object with other sizes.
pub mod capacity {
    pub const ENDPOINTS: u32 = 4096;
    pub const SERVICES: u32 = 65536;
    pub const BACKENDS: u32 = 65536;
}

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// A local pod as the per-pod TC programs see it, keyed by the host-side veth's ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The pod's IPv4 address, network byte order.
    pub ipv4: u32,
    /// Reserved for per-endpoint flags (policy enforcement, etc.); zero today.
    pub flags: u32,
}
assert_layout!(EndpointInfo, size = 8, ipv4 = 0, flags = 4);

/// Per-CPU IPv4 traffic counters of one pod, keyed by the host-side veth's ifindex.
/// Bytes count the whole frame as the TC hook sees it (Ethernet header included).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounters {
    pub from_pod_packets: u64,
    pub from_pod_bytes: u64,
    pub to_pod_packets: u64,
    pub to_pod_bytes: u64,
}
assert_layout!(
    TrafficCounters,
    size = 32,
    from_pod_packets = 0,
    from_pod_bytes = 8,
    to_pod_packets = 16,
    to_pod_bytes = 24,
);

/// Key of the `SERVICES` map: one service frontend (VIP, port, protocol) and a slot.
///
/// Slot 0 is the service's header ([`ServiceValue::backend_count`]); slots `1..=count` each
/// name one backend. Writers fill the backend slots first and switch the header last, so a
/// lookup never sees a count that covers unwritten slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// Virtual IPv4 address, network byte order.
    pub vip: u32,
    /// Service port, network byte order.
    pub port: u16,
    /// IP protocol number ([`IPPROTO_TCP`] or [`IPPROTO_UDP`]).
    pub proto: u8,
    pub _pad0: u8,
    pub slot: u16,
    pub _pad1: [u8; 2],
}
assert_layout!(
    ServiceKey,
    size = 12,
    vip = 0,
    port = 4,
    proto = 6,
    slot = 8
);

impl ServiceKey {
    pub const fn new(vip: u32, port: u16, proto: u8, slot: u16) -> Self {
        Self {
            vip,
            port,
            proto,
            _pad0: 0,
            slot,
            _pad1: [0; 2],
        }
    }
}

/// Value of the `SERVICES` map. In slot 0 only `backend_count` is meaningful; in the other
/// slots only `backend_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    pub backend_id: u32,
    pub backend_count: u16,
    pub _pad0: [u8; 2],
}
assert_layout!(ServiceValue, size = 8, backend_id = 0, backend_count = 4);

/// Value of the `BACKENDS` map, keyed by a `u32` backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Endpoint IPv4 address, network byte order.
    pub ipv4: u32,
    /// Endpoint port, network byte order.
    pub port: u16,
    pub _pad0: [u8; 2],
}
assert_layout!(Backend, size = 8, ipv4 = 0, port = 4);

#[cfg(feature = "user")]
mod pod_impls {
    use super::*;
    // SAFETY: all these types are repr(C), made only of integers with explicit padding
    // fields, so every bit pattern is valid and no byte is uninitialised.
    unsafe impl aya::Pod for EndpointInfo {}
    unsafe impl aya::Pod for TrafficCounters {}
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for Backend {}
}
