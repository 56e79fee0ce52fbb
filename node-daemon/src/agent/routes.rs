//! Routes to the other nodes' pod CIDRs (host-gateway style): `podCIDR via InternalIP` for
//! every other node that has both, kept in step as nodes join, move and leave.
//!
//! The routes carry their own protocol number, so this reconciler is the only writer of
//! exactly its own routes and never touches the ones an operator or another tool made.

use std::{collections::BTreeSet, net::Ipv4Addr};

use futures_util::TryStreamExt as _;
use rtnetlink::{
    packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol},
    Handle, RouteMessageBuilder,
};
use skiff_api::{network_policy::Cidr, Node};

/// Marks routes as Skiff's (`ip route show proto 0x5b`).
pub const ROUTE_PROTOCOL: u8 = 0x5b;

/// One route this node wants: a node's pod CIDR via that node's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRoute {
    pub cidr: Cidr,
    pub via: Ipv4Addr,
}

/// The routes to every node but `me` that has a pod CIDR and an InternalIP.
pub fn desired(nodes: &[Node], me: &str) -> BTreeSet<PodRoute> {
    nodes
        .iter()
        .filter(|n| n.metadata.name != me)
        .filter_map(|n| {
            Some(PodRoute {
                cidr: n.spec.pod_cidr.as_deref()?.parse().ok()?,
                via: n.internal_ip()?,
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("opening a netlink socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// The routing table writer; opens its netlink socket in the calling thread's namespace.
pub struct Routes {
    handle: Handle,
}

impl Routes {
    /// Needs a tokio runtime (the netlink connection runs as a task on it).
    pub fn new() -> Result<Routes, RouteError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Routes { handle })
    }

    /// Skiff's routes in the main table now.
    pub async fn current(&self) -> Result<BTreeSet<PodRoute>, RouteError> {
        let mut out = BTreeSet::new();
        let mut routes = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(route) = routes.try_next().await? {
            if route.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
                continue;
            }
            if let Some(r) = pod_route(&route) {
                out.insert(r);
            }
        }
        Ok(out)
    }

    /// Adds what is missing, replaces routes whose gateway changed, removes what is no longer
    /// wanted. Returns (added, removed).
    pub async fn reconcile(
        &self,
        desired: &BTreeSet<PodRoute>,
    ) -> Result<(usize, usize), RouteError> {
        let current = self.current().await?;
        let mut added = 0;
        for route in desired.difference(&current) {
            self.handle
                .route()
                .add(message(route))
                .replace()
                .execute()
                .await?;
            added += 1;
        }
        let wanted_cidrs: BTreeSet<Cidr> = desired.iter().map(|r| r.cidr).collect();
        let mut removed = 0;
        for route in current.difference(desired) {
            // A moved gateway was replaced above; only CIDRs no one has any more go.
            if wanted_cidrs.contains(&route.cidr) {
                continue;
            }
            self.handle.route().del(message(route)).execute().await?;
            removed += 1;
        }
        Ok((added, removed))
    }
}

fn message(route: &PodRoute) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.cidr.addr, route.cidr.len)
        .gateway(route.via)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .build()
}

fn pod_route(route: &RouteMessage) -> Option<PodRoute> {
    let mut destination = None;
    let mut gateway = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = Some(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            _ => {}
        }
    }
    Some(PodRoute {
        cidr: Cidr::new(destination?, route.header.destination_prefix_length),
        via: gateway?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_go_to_every_other_node_with_a_cidr_and_an_address() {
        let node = |name: &str, cidr: Option<&str>, ip: Option<&str>| -> Node {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                "spec": {"podCIDR": cidr},
                "status": {"addresses": ip.map(|ip| vec![serde_json::json!({"type": "InternalIP", "address": ip})]).unwrap_or_default()}
            }))
            .unwrap()
        };
        let nodes = [
            node("a", Some("10.244.0.0/24"), Some("192.168.1.1")),
            node("b", Some("10.244.1.0/24"), Some("192.168.1.2")),
            node("c", None, Some("192.168.1.3")),
            node("d", Some("10.244.3.0/24"), None),
        ];
        let routes: Vec<String> = desired(&nodes, "a")
            .iter()
            .map(|r| format!("{} via {}", r.cidr, r.via))
            .collect();
        assert_eq!(routes, ["10.244.1.0/24 via 192.168.1.2"]);
    }
}
