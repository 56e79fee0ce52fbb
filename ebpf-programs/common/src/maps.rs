//! Map names, default sizes and the key/value types stored in them.

use crate::assert_layout;

/// Map names as they appear in the eBPF object (and so as pin file names).
pub mod names {
    pub const ENDPOINTS: &str = "ENDPOINTS";
    pub const POD_TRAFFIC: &str = "POD_TRAFFIC";
    pub const DROP_COUNTERS: &str = "DROP_COUNTERS";
    pub const SERVICES: &str = "SERVICES";
    pub const BACKENDS: &str = "BACKENDS";
    pub const MAGLEV: &str = "MAGLEV";
    pub const AFFINITY: &str = "AFFINITY";
    pub const SOCK_NAT: &str = "SOCK_NAT";
    pub const CONNTRACK: &str = "CONNTRACK";
    pub const SETTINGS: &str = "SETTINGS";
    pub const IPCACHE: &str = "IPCACHE";
    pub const POLICY: &str = "POLICY";
    pub const POLICY_CT: &str = "POLICY_CT";
    pub const POLICY_COUNTERS: &str = "POLICY_COUNTERS";
    pub const FLOW_EVENTS: &str = "FLOW_EVENTS";

    /// Every map, in the order inspection lists them.
    pub const ALL: [&str; 15] = [
        ENDPOINTS,
        POD_TRAFFIC,
        DROP_COUNTERS,
        SERVICES,
        BACKENDS,
        MAGLEV,
        AFFINITY,
        SOCK_NAT,
        CONNTRACK,
        SETTINGS,
        IPCACHE,
        POLICY,
        POLICY_CT,
        POLICY_COUNTERS,
        FLOW_EVENTS,
    ];
}

/// Slots of the `SETTINGS` array (`u64` values) the node daemon writes at start.
pub mod settings {
    /// Network namespace cookie of the node itself. Connected UDP sockets of processes in
    /// other namespaces (pods) are left to the per-packet path, which moves a flow when its
    /// backend goes away; the node's own processes have no such path and are translated at
    /// `connect()`. Zero (unset): translate every socket.
    pub const HOST_NETNS_COOKIE: u32 = 0;
    /// Revision of the policy maps, bumped by the policy reconciler after each change; flows
    /// judged under an older revision are judged again (see `PolicyCtValue`).
    pub const POLICY_REVISION: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// Program names as they appear in the eBPF object.
pub mod programs {
    /// TC program for packets a pod sends (ingress of its host-side veth).
    pub const FROM_POD: &str = "from_pod";
    /// TC program for packets delivered to a pod (egress of its host-side veth).
    pub const TO_POD: &str = "to_pod";
    /// TC program on the node's uplink ingress: NodePort and replies of NAT'd flows.
    pub const FROM_NETWORK: &str = "from_network";
    /// cgroup `connect4` hook: socket-level service load balancing (TCP and connected UDP).
    pub const SOCK_CONNECT4: &str = "sock_connect4";
    /// cgroup `sendmsg4` hook: unconnected UDP `sendto()` to a service.
    pub const SOCK_SENDMSG4: &str = "sock_sendmsg4";
    /// cgroup `recvmsg4` hook: UDP replies appear to come from the service address.
    pub const SOCK_RECVMSG4: &str = "sock_recvmsg4";
    /// cgroup `getpeername4` hook: connected sockets report the service address as peer.
    pub const SOCK_GETPEERNAME4: &str = "sock_getpeername4";

    /// The cgroup socket hooks, attached together.
    pub const SOCK_HOOKS: [&str; 4] = [
        SOCK_CONNECT4,
        SOCK_SENDMSG4,
        SOCK_RECVMSG4,
        SOCK_GETPEERNAME4,
    ];
}

/// Default capacities. The node daemon may load the object with other sizes.
pub mod capacity {
    pub const ENDPOINTS: u32 = 4096;
    /// Entries, not services: a service port takes one header plus one entry per backend.
    pub const SERVICES: u32 = 262_144;
    pub const BACKENDS: u32 = 65_536;
    /// Entries: each Maglev frontend takes `2 * MAGLEV_TABLE_SIZE` (two generations).
    pub const MAGLEV: u32 = 2 * crate::MAGLEV_TABLE_SIZE * 64;
    pub const AFFINITY: u32 = 65_536;
    pub const SOCK_NAT: u32 = 131_072;
    /// Entries: a translated flow takes two (forward and reply).
    pub const CONNTRACK: u32 = 262_144;
    /// Prefixes: pod addresses, this node's addresses and every `ipBlock` boundary.
    pub const IPCACHE: u32 = 131_072;
    /// Compiled policy entries of the identities that have pods on this node.
    pub const POLICY: u32 = 524_288;
    /// Entries: a flow takes one per policy check it passed (two between local pods).
    pub const POLICY_CT: u32 = 262_144;
    pub const POLICY_COUNTERS: u32 = 65_536;
    /// Bytes of the flow event ring buffer (a power of two, page aligned).
    pub const FLOW_EVENTS: u32 = 1 << 20;
}

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

#[cfg(feature = "user")]
mod pod_impls {
    use super::*;
    // SAFETY: all these types are repr(C), made only of integers with explicit padding
    // fields, so every bit pattern is valid and no byte is uninitialised.
    unsafe impl aya::Pod for EndpointInfo {}
    unsafe impl aya::Pod for TrafficCounters {}
}
