/// Why the data plane dropped a packet.
///
/// The discriminant is the index into the `DROP_COUNTERS` per-CPU array, and
/// [`DropReason::label`] is the Prometheus label value, so the kernel counter, the metric and
/// the documentation all use one name. New reasons are appended, never renumbered: the index is
/// part of the map layout that pinned maps keep across daemon upgrades.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A pod sent an IPv4 packet whose source is not the address it was given.
    SpoofedSource = 0,
    /// An IPv4 header too short, with a bad IHL, or cut off before its transport header.
    MalformedPacket = 1,
    /// A pod sent a packet of a network protocol Skiff does not route for pods (e.g. IPv6).
    UnsupportedProtocol = 2,
    /// A packet to a service frontend that has no usable backend (none ready, or for
    /// `externalTrafficPolicy: Local` none on this node).
    NoServiceBackend = 3,
    /// Masquerading an external client found no free source port on the node address.
    NatPortsExhausted = 4,
    /// A packet to a local pod that no NetworkPolicy selecting the pod for ingress allows.
    PolicyDeniedIngress = 5,
    /// A packet from a local pod that no NetworkPolicy selecting the pod for egress allows.
    PolicyDeniedEgress = 6,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 7] = [
        DropReason::SpoofedSource,
        DropReason::MalformedPacket,
        DropReason::UnsupportedProtocol,
        DropReason::NoServiceBackend,
        DropReason::NatPortsExhausted,
        DropReason::PolicyDeniedIngress,
        DropReason::PolicyDeniedEgress,
    ];

    /// Number of slots the `DROP_COUNTERS` array needs.
    pub const COUNT: u32 = Self::ALL.len() as u32;

    pub const fn index(self) -> u32 {
        self as u32
    }

    /// The metric label and the name used in docs and CLI output.
    pub const fn label(self) -> &'static str {
        match self {
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::MalformedPacket => "malformed_packet",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::NoServiceBackend => "no_service_backend",
            DropReason::NatPortsExhausted => "nat_ports_exhausted",
            DropReason::PolicyDeniedIngress => "policy_denied_ingress",
            DropReason::PolicyDeniedEgress => "policy_denied_egress",
        }
    }

    pub fn from_index(index: u32) -> Option<DropReason> {
        Self::ALL.get(index as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_labels_unique() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index() as usize, i);
            assert_eq!(DropReason::from_index(i as u32), Some(*reason));
        }
        for a in DropReason::ALL {
            for b in DropReason::ALL {
                if a != b {
                    assert_ne!(a.label(), b.label());
                }
            }
        }
        assert_eq!(DropReason::from_index(DropReason::COUNT), None);
    }
}
