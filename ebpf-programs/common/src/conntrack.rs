//! Connection tracking for the per-packet NAT path (`CONNTRACK`, an LRU hash).
//!
//! A translated flow has two entries. The *forward* entry is keyed by the packet as the client
//! sent it and rewrites it towards the backend; the *reply* entry is keyed by the backend's
//! reply as it arrives and rewrites it back, so the client only ever sees the address it
//! reached. Both entries hold the full rewrite (not a reverse-NAT id to look up again): one
//! lookup per packet, and a reply can be restored even after its service was deleted.

use crate::assert_layout;

/// [`CtKey::direction`] of a forward entry.
pub const CT_FORWARD: u8 = 0;
/// [`CtKey::direction`] of a reply entry.
pub const CT_REPLY: u8 = 1;

/// [`CtValue::flags`]: the flow is source-NAT'd (masquerade or hairpin).
pub const CT_FLAG_SNAT: u8 = 1 << 0;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Addresses and ports as the packet carries them (network byte order).
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub direction: u8,
    pub _pad0: [u8; 2],
}
assert_layout!(
    CtKey,
    size = 16,
    saddr = 0,
    daddr = 4,
    sport = 8,
    dport = 10,
    proto = 12,
    direction = 13
);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// The packet's addresses and ports after translation (network byte order).
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// Forward entries: the backend, checked on every packet so a flow whose backend is gone
    /// is moved (UDP) instead of black-holed.
    pub backend_id: u32,
    pub frontend_id: u32,
    /// `CT_FLAG_*` bits.
    pub flags: u8,
    pub _pad0: [u8; 3],
}
assert_layout!(
    CtValue,
    size = 24,
    saddr = 0,
    daddr = 4,
    sport = 8,
    dport = 10,
    backend_id = 12,
    frontend_id = 16,
    flags = 20
);

#[cfg(feature = "user")]
mod pod_impls {
    use super::*;
    // SAFETY: repr(C), integers only, explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
}
