//! NetworkPolicy map types: who an address is (`IPCACHE`), what each local identity may send
//! and receive (`POLICY`), which flows were already judged (`POLICY_CT`), per-rule counters
//! (`POLICY_COUNTERS`) and the verdict stream (`FLOW_EVENTS`).
//!
//! The node daemon compiles Kubernetes NetworkPolicies into these maps; the kernel only does
//! longest-prefix lookups, so the per-packet cost does not depend on how many policies exist:
//!
//! 1. `IPCACHE` (LPM trie on the address) gives the peer's *identity* (one number per distinct
//!    namespace + pod labels) and its *CIDR identity* (one number per distinct set of `ipBlock`s
//!    the address falls in, `except`s applied).
//! 2. `POLICY` (LPM trie) is looked up for the subject (the local pod's identity), the
//!    direction, the protocol and destination port, with the peer field set to the peer's
//!    identity, then to its CIDR identity, then to [`identity::ANY`]. The key puts the peer
//!    before protocol and port, so one entry covers "this peer, every port" (prefix ends after
//!    the peer) and a port range is a handful of prefix-aligned blocks.
//! 3. An entry of kind [`POLICY_ENTRY_SELECTED`] whose prefix ends after the direction marks
//!    the subject as selected by some policy for that direction: a lookup that finds nothing
//!    longer is a default deny. No entry at all means "not selected": allowed.

use crate::assert_layout;
#[cfg(doc)]
use crate::CtKey;

/// Reserved identities. Pod identities start at [`identity::FIRST_POD`]; CIDR identities have
/// the top bit set.
pub mod identity {
    /// Wildcard peer in `POLICY` keys (an empty `from`/`to`, or a peer list left out).
    pub const ANY: u32 = 0;
    /// An address of this node: its traffic to and from local pods is always allowed.
    pub const HOST: u32 = 1;
    /// An address that is no pod's and not this node's.
    pub const WORLD: u32 = 2;
    pub const FIRST_POD: u32 = 256;
    /// CIDR identities: `CIDR_BIT | n`.
    pub const CIDR_BIT: u32 = 1 << 31;
}

/// [`PolicyKey::direction`] (and [`CtKey::direction`] in `POLICY_CT`).
pub const POLICY_INGRESS: u8 = 1;
pub const POLICY_EGRESS: u8 = 2;

/// Prefix lengths of `POLICY` keys, in bits of [`PolicyKey`].
pub mod prefix {
    /// Subject and direction: the "selected for this direction" marker.
    pub const SELECTED: u32 = 64;
    /// ... and the peer: every protocol and port.
    pub const PEER: u32 = 96;
    /// ... and the protocol (with its padding byte): every port of it.
    pub const PROTOCOL: u32 = 112;
    /// One exact port.
    pub const PORT: u32 = 128;
}

/// Key data of the `POLICY` LPM trie (the trie key is this behind a `u32` prefix length).
/// Fields are compared byte by byte in order, so the port is big-endian (network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// Identity of the local pod the policy applies to.
    pub subject: u32,
    /// [`POLICY_INGRESS`] or [`POLICY_EGRESS`].
    pub direction: u8,
    pub _pad0: [u8; 3],
    /// Peer identity, CIDR identity or [`identity::ANY`].
    pub peer: u32,
    pub proto: u8,
    pub _pad1: u8,
    /// Destination port, network byte order.
    pub dport: u16,
}
assert_layout!(
    PolicyKey,
    size = 16,
    subject = 0,
    direction = 4,
    peer = 8,
    proto = 12,
    dport = 14
);

/// [`PolicyEntry::kind`]: traffic matching the entry is allowed by `rule`.
pub const POLICY_ENTRY_ALLOW: u8 = 1;
/// [`PolicyEntry::kind`]: the subject is selected for the direction by `rule`'s policy; a
/// lookup ending here is a default deny.
pub const POLICY_ENTRY_SELECTED: u8 = 2;

/// Value of the `POLICY` trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyEntry {
    /// A [`RuleRef`] as a number: which policy and rule (counters, flow events, explain).
    pub rule: u32,
    pub kind: u8,
    pub _pad0: [u8; 3],
}
assert_layout!(PolicyEntry, size = 8, rule = 0, kind = 4);

/// A policy rule reference packed into 32 bits: 20 bits of policy id, 1 bit of direction,
/// 11 bits of rule index. [`RuleRef::SELECTION`] as index names the policy's selection itself
/// (the reason for a default deny).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    pub policy: u32,
    pub direction: u8,
    pub index: u16,
}

impl RuleRef {
    pub const MAX_POLICY: u32 = (1 << 20) - 1;
    pub const MAX_RULES: u16 = 0x7fe;
    pub const SELECTION: u16 = 0x7ff;

    pub const fn pack(self) -> u32 {
        (self.policy << 12) | (((self.direction == POLICY_EGRESS) as u32) << 11) | self.index as u32
    }

    pub const fn unpack(packed: u32) -> RuleRef {
        RuleRef {
            policy: packed >> 12,
            direction: if packed & (1 << 11) != 0 {
                POLICY_EGRESS
            } else {
                POLICY_INGRESS
            },
            index: (packed & 0x7ff) as u16,
        }
    }
}

/// Value of the `IPCACHE` trie (key data: the IPv4 address, network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddressIdentity {
    pub identity: u32,
    /// The CIDR identity of the addresses this entry covers, 0 when no `ipBlock` matches.
    pub cidr_identity: u32,
}
assert_layout!(AddressIdentity, size = 8, identity = 0, cidr_identity = 4);

/// [`PolicyCtValue::flags`]: a pod reaching itself through a service (always allowed).
pub const POLICY_CT_SELF: u32 = 1 << 0;

/// Value of `POLICY_CT`, keyed by a [`CtKey`] whose direction is [`POLICY_INGRESS`] (a flow a
/// local pod accepted) or [`POLICY_EGRESS`] (a flow a local pod opened), tuple as the packet
/// carried it at the check. Replies match the reversed tuple and pass without a lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyCtValue {
    /// `SETTINGS[POLICY_REVISION]` when the flow was last judged: a flow judged under an older
    /// revision is judged again by its next packet, so a policy change reaches established
    /// flows (allowed ones stay undisturbed, newly denied ones stop).
    pub revision: u32,
    /// Packed [`RuleRef`] that allowed the flow (0 for unselected pods and the node).
    pub rule: u32,
    pub flags: u32,
}
assert_layout!(PolicyCtValue, size = 12, revision = 0, rule = 4, flags = 8);

/// Per-CPU counters of one rule (`POLICY_COUNTERS`, keyed by packed [`RuleRef`]). Allowed
/// counts flows judged (first packet, and again after a policy change); denied counts packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyCounters {
    pub allowed: u64,
    pub denied: u64,
}
assert_layout!(PolicyCounters, size = 16, allowed = 0, denied = 8);

/// [`FlowEvent::verdict`].
pub const VERDICT_ALLOWED: u8 = 1;
pub const VERDICT_DENIED: u8 = 2;
/// [`FlowEvent::drop_reason`] of an allowed flow.
pub const NO_DROP_REASON: u8 = 0xff;

/// One record of the `FLOW_EVENTS` ring buffer: a new flow a policy check allowed, or a
/// packet the data plane denied.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// The packet's tuple at the check (after service translation), network byte order.
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub verdict: u8,
    /// [`POLICY_INGRESS`] or [`POLICY_EGRESS`], from the local pod's point of view.
    pub direction: u8,
    /// `DropReason` index, or [`NO_DROP_REASON`].
    pub drop_reason: u8,
    /// Host-side veth of the local pod.
    pub ifindex: u32,
    pub subject_identity: u32,
    pub peer_identity: u32,
    /// Packed [`RuleRef`]: the allowing rule, or the selection that made it a default deny.
    pub rule: u32,
}
assert_layout!(
    FlowEvent,
    size = 32,
    saddr = 0,
    daddr = 4,
    sport = 8,
    dport = 10,
    proto = 12,
    verdict = 13,
    direction = 14,
    drop_reason = 15,
    ifindex = 16,
    subject_identity = 20,
    peer_identity = 24,
    rule = 28
);

#[cfg(feature = "user")]
mod pod_impls {
    use super::*;
    // SAFETY: repr(C), integers only, explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for PolicyKey {}
    unsafe impl aya::Pod for PolicyEntry {}
    unsafe impl aya::Pod for AddressIdentity {}
    unsafe impl aya::Pod for PolicyCtValue {}
    unsafe impl aya::Pod for PolicyCounters {}
    unsafe impl aya::Pod for FlowEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_refs_round_trip() {
        for r in [
            RuleRef {
                policy: 0,
                direction: POLICY_INGRESS,
                index: 0,
            },
            RuleRef {
                policy: RuleRef::MAX_POLICY,
                direction: POLICY_EGRESS,
                index: RuleRef::SELECTION,
            },
            RuleRef {
                policy: 77,
                direction: POLICY_EGRESS,
                index: 3,
            },
        ] {
            assert_eq!(RuleRef::unpack(r.pack()), r);
        }
    }
}
