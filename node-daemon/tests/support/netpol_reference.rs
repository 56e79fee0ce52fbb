//! A NetworkPolicy evaluator written straight from the Kubernetes specification, sharing no
//! code with the compiler: the oracle of the property test. Slow and obvious on purpose.

use std::{collections::BTreeMap, net::Ipv4Addr};

use skiff_api::{
    LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, PortRef, Protocol,
    SelectorOperator,
};

pub type Labels = BTreeMap<String, String>;

pub struct RefPod {
    pub namespace: String,
    pub labels: Labels,
    pub ip: Ipv4Addr,
    pub named_ports: Vec<(String, Protocol, u16)>,
}

pub struct RefCluster {
    /// Labels as the API reports them (`kubernetes.io/metadata.name` included).
    pub namespaces: BTreeMap<String, Labels>,
    pub pods: Vec<RefPod>,
    pub policies: Vec<NetworkPolicy>,
}

fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    for (k, v) in &selector.match_labels {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for r in &selector.match_expressions {
        let value = labels.get(&r.key);
        let ok = match r.operator {
            SelectorOperator::In => value.is_some() && r.values.contains(value.unwrap()),
            SelectorOperator::NotIn => value.is_none() || !r.values.contains(value.unwrap()),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        };
        if !ok {
            return false;
        }
    }
    true
}

fn in_cidr(ip: Ipv4Addr, cidr: &skiff_api::Cidr) -> bool {
    let bits = cidr.len as u32;
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    (u32::from(ip) & mask) == (u32::from(cidr.addr) & mask)
}

impl RefCluster {
    fn pod_at(&self, ip: Ipv4Addr) -> Option<&RefPod> {
        self.pods.iter().find(|p| p.ip == ip)
    }

    fn policy_types(policy: &NetworkPolicy) -> (bool, bool) {
        match &policy.spec.policy_types {
            Some(types) if !types.is_empty() => (
                types.contains(&skiff_api::PolicyType::Ingress),
                types.contains(&skiff_api::PolicyType::Egress),
            ),
            _ => (true, !policy.spec.egress.is_empty()),
        }
    }

    fn selects(policy: &NetworkPolicy, pod: &RefPod) -> bool {
        policy.metadata.namespace.as_deref().unwrap_or("default") == pod.namespace
            && selector_matches(&policy.spec.pod_selector, &pod.labels)
    }

    fn peer_matches(&self, policy: &NetworkPolicy, peer: &NetworkPolicyPeer, ip: Ipv4Addr) -> bool {
        if let Some(block) = &peer.ip_block {
            return in_cidr(ip, &block.cidr) && !block.except.iter().any(|e| in_cidr(ip, e));
        }
        let Some(pod) = self.pod_at(ip) else {
            return false;
        };
        let policy_ns = policy.metadata.namespace.as_deref().unwrap_or("default");
        let ns_ok = match &peer.namespace_selector {
            None => pod.namespace == policy_ns,
            Some(selector) => selector_matches(selector, &self.namespaces[&pod.namespace]),
        };
        let pod_ok = match &peer.pod_selector {
            None => true,
            Some(selector) => selector_matches(selector, &pod.labels),
        };
        ns_ok && pod_ok
    }

    fn port_matches(
        port: &NetworkPolicyPort,
        destination: Option<&RefPod>,
        proto: Protocol,
        number: u16,
    ) -> bool {
        if port.protocol.unwrap_or(Protocol::Tcp) != proto {
            return false;
        }
        match &port.port {
            None => true,
            Some(PortRef::Number(n)) => match port.end_port {
                None => number == *n,
                Some(end) => (*n..=end).contains(&number),
            },
            Some(PortRef::Name(name)) => destination.is_some_and(|pod| {
                pod.named_ports
                    .iter()
                    .any(|(n, p, num)| n == name && *p == proto && *num == number)
            }),
        }
    }

    /// Whether `pod`'s side lets the flow through: egress of the source when `ingress` is
    /// false, ingress of the destination when true. `peer` is the other end's address.
    pub fn allows(
        &self,
        pod_ip: Ipv4Addr,
        peer: Ipv4Addr,
        ingress: bool,
        proto: Protocol,
        port: u16,
    ) -> bool {
        let pod = self.pod_at(pod_ip).expect("a pod");
        let mut selected = false;
        for policy in &self.policies {
            let (has_ingress, has_egress) = Self::policy_types(policy);
            if !Self::selects(policy, pod) || !(if ingress { has_ingress } else { has_egress }) {
                continue;
            }
            selected = true;
            let destination = if ingress {
                Some(pod)
            } else {
                self.pod_at(peer)
            };
            let rules: Vec<(&Vec<NetworkPolicyPeer>, &Vec<NetworkPolicyPort>)> = if ingress {
                policy
                    .spec
                    .ingress
                    .iter()
                    .map(|r| (&r.from, &r.ports))
                    .collect()
            } else {
                policy
                    .spec
                    .egress
                    .iter()
                    .map(|r| (&r.to, &r.ports))
                    .collect()
            };
            for (peers, ports) in rules {
                let peer_ok =
                    peers.is_empty() || peers.iter().any(|p| self.peer_matches(policy, p, peer));
                let port_ok = ports.is_empty()
                    || ports
                        .iter()
                        .any(|p| Self::port_matches(p, destination, proto, port));
                if peer_ok && port_ok {
                    return true;
                }
            }
        }
        !selected
    }
}
