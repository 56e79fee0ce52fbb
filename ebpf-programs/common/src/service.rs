//! Service load-balancing map types: frontends, backends, Maglev tables, affinity and the
//! socket-level NAT memory.
//!
//! A *frontend* is one (address, port, protocol) clients reach: a ClusterIP port, or a node
//! address and node port. Backends are endpoints (pod address and target port) with an id
//! shared by every frontend that uses them.

use crate::assert_layout;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// Policy only: SCTP ports are judged, SCTP is never load balanced.
pub const IPPROTO_SCTP: u8 = 132;

/// Entries in one generation of a Maglev lookup table (prime, as Maglev requires). The
/// kernel indexes it with a flow hash modulo this size.
pub const MAGLEV_TABLE_SIZE: u32 = 1021;

/// [`ServiceValue::flags`]: served to clients outside the cluster by `from_network`.
pub const SVC_FLAG_NODE_PORT: u8 = 1 << 0;
/// [`ServiceValue::flags`]: source-NAT external clients to the node address they reached
/// (`externalTrafficPolicy: Cluster`), so replies come back through this node.
pub const SVC_FLAG_MASQUERADE: u8 = 1 << 1;
/// [`ServiceValue::flags`]: pick backends from the frontend's Maglev table.
pub const SVC_FLAG_MAGLEV: u8 = 1 << 2;
/// [`ServiceValue::flags`]: `sessionAffinity: ClientIP`.
pub const SVC_FLAG_AFFINITY: u8 = 1 << 3;

/// [`Backend::state`]: ready; new connections may pick it.
pub const BACKEND_ACTIVE: u8 = 1;
/// [`Backend::state`]: terminating or not ready; only flows already on it keep it.
pub const BACKEND_DRAINING: u8 = 2;

/// Key of the `SERVICES` map: a frontend and a slot.
///
/// Slot 0 is the frontend's header; slots `1..=count` each name one active backend. Writers
/// fill the backend slots first and switch the header last, so a lookup never sees a count
/// that covers unwritten slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// Frontend IPv4 address, network byte order.
    pub addr: u32,
    /// Frontend port, network byte order.
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
    addr = 0,
    port = 4,
    proto = 6,
    slot = 8
);

impl ServiceKey {
    pub const fn new(addr: u32, port: u16, proto: u8, slot: u16) -> Self {
        Self {
            addr,
            port,
            proto,
            _pad0: 0,
            slot,
            _pad1: [0; 2],
        }
    }
}

/// Value of the `SERVICES` map. In a backend slot only `backend_id` is meaningful; the other
/// fields are the header's (slot 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    pub backend_id: u32,
    /// Active backends (slots `1..=count`). Zero: the service refuses new connections.
    pub count: u16,
    /// `SVC_FLAG_*` bits.
    pub flags: u8,
    /// Which half of the frontend's Maglev table is live (0 or 1).
    pub maglev_generation: u8,
    /// Stable id of this frontend: keys its Maglev table and affinity entries.
    pub frontend_id: u32,
    /// `sessionAffinity` timeout in seconds (with [`SVC_FLAG_AFFINITY`]).
    pub affinity_timeout_secs: u32,
}
assert_layout!(
    ServiceValue,
    size = 16,
    backend_id = 0,
    count = 4,
    flags = 6,
    maglev_generation = 7,
    frontend_id = 8,
    affinity_timeout_secs = 12,
);

/// Value of the `BACKENDS` map, keyed by a `u32` backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Endpoint IPv4 address, network byte order.
    pub ipv4: u32,
    /// Endpoint port, network byte order.
    pub port: u16,
    /// [`BACKEND_ACTIVE`] or [`BACKEND_DRAINING`].
    pub state: u8,
    pub _pad0: u8,
}
assert_layout!(Backend, size = 8, ipv4 = 0, port = 4, state = 6);

/// Key of the `MAGLEV` map; the value is a backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MaglevKey {
    pub frontend_id: u32,
    /// `generation * MAGLEV_TABLE_SIZE + position`.
    pub index: u32,
}
assert_layout!(MaglevKey, size = 8, frontend_id = 0, index = 4);

/// Key of the `AFFINITY` LRU map (`sessionAffinity: ClientIP`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// The client: its IPv4 address (per-packet path) or its network namespace cookie
    /// (socket path, where the source address is not known yet at `connect()`).
    pub client: u64,
    pub frontend_id: u32,
    pub _pad0: u32,
}
assert_layout!(AffinityKey, size = 16, client = 0, frontend_id = 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityValue {
    pub backend_id: u32,
    pub _pad0: u32,
    /// `bpf_ktime_get_ns()` of the last connection that used this entry.
    pub last_used_ns: u64,
}
assert_layout!(AffinityValue, size = 16, backend_id = 0, last_used_ns = 8);

/// [`SockNatKey::direction`]: (socket, service address) -> chosen backend.
pub const SOCK_NAT_FORWARD: u8 = 0;
/// [`SockNatKey::direction`]: (socket, backend address) -> service address to report.
pub const SOCK_NAT_REVERSE: u8 = 1;

/// Key of the `SOCK_NAT` LRU map: what the socket hooks remember per socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockNatKey {
    /// `bpf_get_socket_cookie()`.
    pub cookie: u64,
    /// Address, network byte order: the service's (forward) or the backend's (reverse).
    pub addr: u32,
    /// Port, network byte order.
    pub port: u16,
    pub direction: u8,
    pub _pad0: u8,
}
assert_layout!(
    SockNatKey,
    size = 16,
    cookie = 0,
    addr = 8,
    port = 12,
    direction = 14
);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockNatValue {
    /// Forward: the backend's address; reverse: the service's. Network byte order.
    pub addr: u32,
    pub port: u16,
    pub _pad0: [u8; 2],
    pub backend_id: u32,
    pub frontend_id: u32,
}
assert_layout!(
    SockNatValue,
    size = 16,
    addr = 0,
    port = 4,
    backend_id = 8,
    frontend_id = 12
);

#[cfg(feature = "user")]
mod pod_impls {
    use super::*;
    // SAFETY: repr(C), integers only, explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for MaglevKey {}
    unsafe impl aya::Pod for AffinityKey {}
    unsafe impl aya::Pod for AffinityValue {}
    unsafe impl aya::Pod for SockNatKey {}
    unsafe impl aya::Pod for SockNatValue {}
}
