//! Address allocators: ClusterIPs, NodePorts and node pod CIDRs.
//!
//! Two services with one ClusterIP, or two nodes with overlapping pod CIDRs, would send
//! traffic to the wrong place with nothing failing loudly; so each allocator is built from
//! everything already in use (read from the store when the runner starts) and is then the
//! only place new values come from. It hands out the lowest free value (predictable, and
//! what tests and humans expect), accepts user-chosen values only when free and in range,
//! and takes values back on release.

use std::{collections::BTreeSet, net::Ipv4Addr, ops::RangeInclusive};

use skiff_api::Cidr;

/// Why a value could not be handed out or reserved. Each names the kind of value and the
/// range, so the API can return it to the user as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("no free {what} left in {range}")]
    Exhausted { what: &'static str, range: String },
    #[error("{what} {value} is outside {range}")]
    OutOfRange {
        what: &'static str,
        value: String,
        range: String,
    },
    #[error("{what} {value} is already allocated (range {range})")]
    Taken {
        what: &'static str,
        value: String,
        range: String,
    },
}

/// ClusterIPs from the service CIDR. The network and broadcast addresses are never handed
/// out; everything between is.
pub struct ServiceIpAllocator {
    pool: Pool,
    range: String,
}

impl ServiceIpAllocator {
    /// `used`: the ClusterIPs existing services hold (values outside `cidr` are ignored).
    pub fn new(cidr: Cidr, used: impl IntoIterator<Item = Ipv4Addr>) -> ServiceIpAllocator {
        let (network, broadcast) = bounds(cidr);
        // /31 and /32 have no network or broadcast address to set aside (RFC 3021).
        let (first, last) = if cidr.len >= 31 {
            (network, broadcast)
        } else {
            (network + 1, broadcast - 1)
        };
        ServiceIpAllocator {
            pool: Pool::new(first, last, used.into_iter().map(|ip| u32::from(ip).into())),
            range: format!("{cidr} ({}-{})", ip(first), ip(last)),
        }
    }

    pub fn allocate(&mut self) -> Result<Ipv4Addr, AllocError> {
        self.pool
            .allocate()
            .map(ip)
            .ok_or_else(|| AllocError::Exhausted {
                what: "ClusterIP",
                range: self.range.clone(),
            })
    }

    /// Takes a ClusterIP the user chose.
    pub fn reserve(&mut self, addr: Ipv4Addr) -> Result<(), AllocError> {
        self.pool
            .reserve(u32::from(addr).into(), "ClusterIP", &addr, &self.range)
    }

    pub fn release(&mut self, addr: Ipv4Addr) {
        self.pool.release(u32::from(addr).into());
    }
}

/// NodePorts from the node-port range (Kubernetes' default is 30000-32767).
pub struct NodePortAllocator {
    pool: Pool,
    range: String,
}

impl NodePortAllocator {
    /// `used`: the NodePorts existing services hold (values outside `range` are ignored).
    pub fn new(
        range: RangeInclusive<u16>,
        used: impl IntoIterator<Item = u16>,
    ) -> NodePortAllocator {
        NodePortAllocator {
            pool: Pool::new(
                (*range.start()).into(),
                (*range.end()).into(),
                used.into_iter().map(u64::from),
            ),
            range: format!("{}-{}", range.start(), range.end()),
        }
    }

    pub fn allocate(&mut self) -> Result<u16, AllocError> {
        self.pool
            .allocate()
            .map(|port| port as u16)
            .ok_or_else(|| AllocError::Exhausted {
                what: "NodePort",
                range: self.range.clone(),
            })
    }

    /// Takes a NodePort the user chose.
    pub fn reserve(&mut self, port: u16) -> Result<(), AllocError> {
        self.pool
            .reserve(port.into(), "NodePort", &port, &self.range)
    }

    pub fn release(&mut self, port: u16) {
        self.pool.release(port.into());
    }
}

/// Per-node pod CIDRs: the cluster's pod network cut into blocks of one prefix length
/// (10.244.0.0/16 into 10.244.0.0/24, 10.244.1.0/24...).
pub struct PodCidrAllocator {
    cluster: Cidr,
    node_prefix_len: u8,
    pool: Pool,
    range: String,
}

impl PodCidrAllocator {
    /// `used`: the pod CIDRs nodes hold. Each blocks every block it overlaps, so a CIDR of
    /// another size (from an earlier configuration) still never gets shared.
    ///
    /// A `node_prefix_len` shorter than the cluster's or longer than 32 leaves nothing to
    /// hand out, and [`allocate`](Self::allocate)'s error says why: a mistyped flag then
    /// fails node registration with a message instead of stopping the server.
    pub fn new(
        cluster: Cidr,
        node_prefix_len: u8,
        used: impl IntoIterator<Item = Cidr>,
    ) -> PodCidrAllocator {
        let cluster = Cidr::new(cluster.addr, cluster.len);
        if !(cluster.len..=32).contains(&node_prefix_len) {
            return PodCidrAllocator {
                cluster,
                node_prefix_len,
                pool: Pool::new(1, 0, std::iter::empty()),
                range: format!(
                    "{cluster} (one /{node_prefix_len} per node is impossible: the node prefix \
                     length must be {}-32)",
                    cluster.len
                ),
            };
        }
        let range = format!("{cluster} (one /{node_prefix_len} per node)");
        let shift = 32 - u32::from(node_prefix_len);
        let blocks = 1u64 << (u32::from(node_prefix_len) - u32::from(cluster.len));
        let (cluster_start, cluster_end) = bounds(cluster);
        let overlapped_blocks = move |c: Cidr| {
            let (start, end) = bounds(c);
            (end >= cluster_start && start <= cluster_end).then(|| {
                ((start.max(cluster_start) - cluster_start) >> shift)
                    ..=((end.min(cluster_end) - cluster_start) >> shift)
            })
        };
        let used = used.into_iter().filter_map(overlapped_blocks).flatten();
        PodCidrAllocator {
            cluster,
            node_prefix_len,
            pool: Pool::new(0, blocks - 1, used),
            range,
        }
    }

    pub fn allocate(&mut self) -> Result<Cidr, AllocError> {
        let block = self.pool.allocate().ok_or_else(|| AllocError::Exhausted {
            what: "node pod CIDR",
            range: self.range.clone(),
        })?;
        let start = bounds(self.cluster).0 + (block << (32 - u32::from(self.node_prefix_len)));
        Ok(Cidr::new(ip(start), self.node_prefix_len))
    }

    /// Takes a pod CIDR chosen for a node by hand: one whole block of the cluster network.
    pub fn reserve(&mut self, cidr: Cidr) -> Result<(), AllocError> {
        let Some(block) = self.block(cidr) else {
            return Err(AllocError::OutOfRange {
                what: "node pod CIDR",
                value: cidr.to_string(),
                range: self.range.clone(),
            });
        };
        self.pool
            .reserve(block, "node pod CIDR", &cidr, &self.range)
    }

    pub fn release(&mut self, cidr: Cidr) {
        if let Some(block) = self.block(cidr) {
            self.pool.release(block);
        }
    }

    /// The block number of `cidr`, if it is exactly one block of the cluster network.
    fn block(&self, cidr: Cidr) -> Option<u64> {
        let cidr = Cidr::new(cidr.addr, cidr.len);
        (cidr.len == self.node_prefix_len && self.cluster.covers(&cidr)).then(|| {
            (bounds(cidr).0 - bounds(self.cluster).0) >> (32 - u32::from(self.node_prefix_len))
        })
    }
}

/// First and last address of `cidr`, as numbers (u64 so that the end of 0.0.0.0/0 fits).
fn bounds(cidr: Cidr) -> (u64, u64) {
    let start = u64::from(u32::from(Cidr::new(cidr.addr, cidr.len).addr));
    (start, start + (1u64 << (32 - u32::from(cidr.len))) - 1)
}

/// The free/used state of a range of integers; see the module documentation.
struct Pool {
    first: u64,
    last: u64,
    used: BTreeSet<u64>,
    /// Every value from `first` up to here is used: allocation starts looking here, so
    /// handing out N values in a row costs O(N log N), not O(N²).
    lowest_maybe_free: u64,
}

impl Pool {
    fn new(first: u64, last: u64, used: impl Iterator<Item = u64>) -> Pool {
        Pool {
            first,
            last,
            used: used.filter(|v| (first..=last).contains(v)).collect(),
            lowest_maybe_free: first,
        }
    }

    fn allocate(&mut self) -> Option<u64> {
        let mut candidate = self.lowest_maybe_free;
        for &used in self.used.range(candidate..) {
            if used != candidate {
                break;
            }
            candidate += 1;
        }
        self.lowest_maybe_free = candidate;
        if candidate > self.last {
            return None;
        }
        self.used.insert(candidate);
        self.lowest_maybe_free = candidate + 1;
        Some(candidate)
    }

    fn reserve(
        &mut self,
        value: u64,
        what: &'static str,
        shown: &dyn std::fmt::Display,
        range: &str,
    ) -> Result<(), AllocError> {
        if !(self.first..=self.last).contains(&value) {
            return Err(AllocError::OutOfRange {
                what,
                value: shown.to_string(),
                range: range.into(),
            });
        }
        if !self.used.insert(value) {
            return Err(AllocError::Taken {
                what,
                value: shown.to_string(),
                range: range.into(),
            });
        }
        Ok(())
    }

    fn release(&mut self, value: u64) {
        if self.used.remove(&value) {
            self.lowest_maybe_free = self.lowest_maybe_free.min(value);
        }
    }
}

fn ip(value: u64) -> Ipv4Addr {
    Ipv4Addr::from(value as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ipv4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cluster_ips_skip_network_broadcast_and_used_addresses() {
        let mut ips = ServiceIpAllocator::new(
            cidr("10.96.0.0/29"),
            [ipv4("10.96.0.2"), ipv4("192.168.0.1")],
        );
        let handed: Vec<String> = std::iter::from_fn(|| ips.allocate().ok())
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(
            handed,
            [
                "10.96.0.1",
                "10.96.0.3",
                "10.96.0.4",
                "10.96.0.5",
                "10.96.0.6"
            ]
        );
        assert_eq!(
            ips.allocate().unwrap_err().to_string(),
            "no free ClusterIP left in 10.96.0.0/29 (10.96.0.1-10.96.0.6)"
        );
        ips.release(ipv4("10.96.0.4"));
        ips.release(ipv4("10.96.0.3"));
        assert_eq!(ips.allocate(), Ok(ipv4("10.96.0.3")));
        assert_eq!(ips.allocate(), Ok(ipv4("10.96.0.4")));
    }

    #[test]
    fn reserving_checks_range_and_ownership() {
        let mut ips = ServiceIpAllocator::new(cidr("10.96.0.0/12"), []);
        assert_eq!(ips.reserve(ipv4("10.96.0.10")), Ok(()));
        assert_eq!(
            ips.reserve(ipv4("10.96.0.10")).unwrap_err().to_string(),
            "ClusterIP 10.96.0.10 is already allocated (range 10.96.0.0/12 \
             (10.96.0.1-10.111.255.254))"
        );
        for outside in ["10.96.0.0", "10.111.255.255", "10.112.0.1"] {
            assert!(matches!(
                ips.reserve(ipv4(outside)),
                Err(AllocError::OutOfRange { .. })
            ));
        }
        // Allocation steps over the reserved address.
        let first: Vec<Ipv4Addr> = (0..10).map(|_| ips.allocate().unwrap()).collect();
        assert_eq!(first[9], ipv4("10.96.0.11"));
        assert!(!first.contains(&ipv4("10.96.0.10")));
    }

    #[test]
    fn node_ports_come_from_their_range() {
        let mut ports = NodePortAllocator::new(30000..=30002, [30001, 8080]);
        assert_eq!(ports.allocate(), Ok(30000));
        assert_eq!(ports.allocate(), Ok(30002));
        assert_eq!(
            ports.allocate().unwrap_err(),
            AllocError::Exhausted {
                what: "NodePort",
                range: "30000-30002".into()
            }
        );
        assert_eq!(
            ports.reserve(80).unwrap_err().to_string(),
            "NodePort 80 is outside 30000-30002"
        );
        ports.release(30001);
        assert_eq!(ports.reserve(30001), Ok(()));
        assert!(matches!(
            ports.reserve(30001),
            Err(AllocError::Taken { .. })
        ));
    }

    #[test]
    fn pod_cidrs_are_disjoint_blocks() {
        let used = [
            cidr("10.244.1.0/24"),
            cidr("10.244.4.0/23"),
            cidr("10.0.0.0/8"),
        ];
        let mut blocks = PodCidrAllocator::new(cidr("10.244.0.0/16"), 24, used[..2].to_vec());
        let handed: Vec<String> = (0..4)
            .map(|_| blocks.allocate().unwrap().to_string())
            .collect();
        assert_eq!(
            handed,
            [
                "10.244.0.0/24",
                "10.244.2.0/24",
                "10.244.3.0/24",
                "10.244.6.0/24"
            ]
        );
        assert!(matches!(
            blocks.reserve(cidr("10.244.6.0/24")),
            Err(AllocError::Taken { .. })
        ));
        assert_eq!(
            blocks
                .reserve(cidr("10.245.0.0/24"))
                .unwrap_err()
                .to_string(),
            "node pod CIDR 10.245.0.0/24 is outside 10.244.0.0/16 (one /24 per node)"
        );
        assert!(blocks.reserve(cidr("10.244.8.0/25")).is_err());
        assert_eq!(blocks.reserve(cidr("10.244.200.0/24")), Ok(()));
        blocks.release(cidr("10.244.2.0/24"));
        assert_eq!(blocks.allocate().unwrap(), cidr("10.244.2.0/24"));

        // A used CIDR covering the whole cluster network leaves nothing.
        let mut none = PodCidrAllocator::new(cidr("10.244.0.0/16"), 24, [used[2]]);
        assert!(matches!(none.allocate(), Err(AllocError::Exhausted { .. })));

        let mut two = PodCidrAllocator::new(cidr("10.244.0.0/23"), 24, []);
        assert!(two.allocate().is_ok() && two.allocate().is_ok());
        assert!(two.allocate().is_err());
        let mut whole = PodCidrAllocator::new(cidr("10.244.0.0/24"), 24, []);
        assert_eq!(whole.allocate(), Ok(cidr("10.244.0.0/24")));
        assert_eq!(
            PodCidrAllocator::new(cidr("10.244.0.0/16"), 8, [])
                .allocate()
                .unwrap_err()
                .to_string(),
            "no free node pod CIDR left in 10.244.0.0/16 (one /8 per node is impossible: the \
             node prefix length must be 16-32)"
        );
    }

    #[test]
    fn allocating_a_large_range_in_a_row_stays_fast() {
        let mut ips = ServiceIpAllocator::new(cidr("10.96.0.0/16"), []);
        for _ in 0..65_534 {
            ips.allocate().unwrap();
        }
        assert!(ips.allocate().is_err());
    }
}
