//! Pod addresses from the node's pod CIDR. The first host address is the gateway every pod
//! routes through; the rest go to pods, lowest free first. The pod manager is the only
//! caller, and after a restart it claims the addresses its records hold before it hands
//! out new ones.

use std::{collections::BTreeSet, net::Ipv4Addr};

use skiff_api::network_policy::Cidr;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("pod CIDR {cidr}: no free address (all {size} in use)")]
    Exhausted { cidr: String, size: u32 },
    #[error("pod CIDR {cidr}: expected a prefix of at most /30 (two pod addresses)")]
    TooSmall { cidr: String },
}

#[derive(Debug)]
pub struct PodAddresses {
    first: u32,
    last: u32,
    cidr: Cidr,
    used: BTreeSet<Ipv4Addr>,
}

impl PodAddresses {
    pub fn new(cidr: Cidr) -> Result<PodAddresses, IpamError> {
        if cidr.len > 30 {
            return Err(IpamError::TooSmall {
                cidr: cidr.to_string(),
            });
        }
        let network = u32::from(cidr.addr) & (u32::MAX << (32 - cidr.len));
        let broadcast = network | (u32::MAX >> cidr.len);
        Ok(PodAddresses {
            first: network + 2,
            last: broadcast - 1,
            cidr,
            used: BTreeSet::new(),
        })
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first - 1)
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// Marks an address a restarted daemon found in use. False when it is outside the CIDR.
    pub fn claim(&mut self, ip: Ipv4Addr) -> bool {
        let inside = (self.first..=self.last).contains(&u32::from(ip));
        if inside {
            self.used.insert(ip);
        }
        inside
    }

    pub fn allocate(&mut self) -> Result<Ipv4Addr, IpamError> {
        let ip = (self.first..=self.last)
            .map(Ipv4Addr::from)
            .find(|ip| !self.used.contains(ip))
            .ok_or_else(|| IpamError::Exhausted {
                cidr: self.cidr.to_string(),
                size: self.last - self.first + 1,
            })?;
        self.used.insert(ip);
        Ok(ip)
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_gateway_and_broadcast_and_are_reused() {
        let mut pool = PodAddresses::new("10.244.3.0/30".parse().unwrap()).unwrap();
        assert_eq!(pool.gateway(), Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(pool.allocate().unwrap(), Ipv4Addr::new(10, 244, 3, 2));
        let e = pool.allocate().unwrap_err().to_string();
        assert!(
            e.contains("10.244.3.0/30") && e.contains("all 1 in use"),
            "{e}"
        );
        pool.release(Ipv4Addr::new(10, 244, 3, 2));
        assert_eq!(pool.allocate().unwrap(), Ipv4Addr::new(10, 244, 3, 2));
    }

    #[test]
    fn claimed_addresses_are_not_handed_out() {
        let mut pool = PodAddresses::new("10.244.3.0/24".parse().unwrap()).unwrap();
        assert!(pool.claim(Ipv4Addr::new(10, 244, 3, 2)));
        assert!(!pool.claim(Ipv4Addr::new(10, 9, 9, 9)));
        assert_eq!(pool.allocate().unwrap(), Ipv4Addr::new(10, 244, 3, 3));
        assert!(PodAddresses::new("10.0.0.0/31".parse().unwrap()).is_err());
    }
}
