//! `networking.k8s.io/v1` NetworkPolicy, with Kubernetes' validation and defaulting.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{core::Protocol, meta::LabelSelector, meta::ObjectMeta, FieldError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: NetworkPolicySpec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    pub pod_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<PolicyType>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<NetworkPolicyIngressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyEgressRule>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

/// An ingress rule: traffic from any of `from` (all sources when empty) to any of `ports`
/// (every port and protocol when empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyIngressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<NetworkPolicyPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyEgressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<NetworkPolicyPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
}

/// One peer: `ipBlock` alone, or pod and/or namespace selectors (both given: AND).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: Cidr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<Cidr>,
}

impl IpBlock {
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.cidr.contains(addr) && !self.except.iter().any(|e| e.contains(addr))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPort {
    /// TCP when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Every port of the protocol when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

impl NetworkPolicyPort {
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or_default()
    }
}

/// A port by number or by the name of a container port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

/// An IPv4 prefix. Host bits after the prefix length are cleared when parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, len: u8) -> Cidr {
        Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask(len)),
            len,
        }
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.len) == u32::from(self.addr)
    }

    /// Whether `other` lies inside this prefix (equal counts).
    pub fn covers(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let expected = || format!("{s:?} is not an IPv4 CIDR (like 10.0.0.0/8)");
        let (addr, len) = s.split_once('/').ok_or_else(expected)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| expected())?;
        let len: u8 = len.parse().map_err(|_| expected())?;
        if len > 32 {
            return Err(expected());
        }
        Ok(Cidr::new(addr, len))
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl NetworkPolicy {
    /// Kubernetes' defaulting of `policyTypes`: Ingress always, Egress when egress rules exist.
    pub fn policy_types(&self) -> Vec<PolicyType> {
        match &self.spec.policy_types {
            Some(types) if !types.is_empty() => types.clone(),
            _ => {
                let mut types = vec![PolicyType::Ingress];
                if !self.spec.egress.is_empty() {
                    types.push(PolicyType::Egress);
                }
                types
            }
        }
    }

    pub fn applies_to(&self, direction: PolicyType) -> bool {
        self.policy_types().contains(&direction)
    }

    /// Every problem Kubernetes' API validation would report, with field paths.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.api_version != "networking.k8s.io/v1" {
            errors.push(FieldError::new(
                "apiVersion",
                &self.api_version,
                "networking.k8s.io/v1",
            ));
        }
        self.spec
            .pod_selector
            .validate("spec.podSelector", &mut errors);
        for (i, rule) in self.spec.ingress.iter().enumerate() {
            validate_rule(
                &format!("spec.ingress[{i}]"),
                "from",
                &rule.from,
                &rule.ports,
                &mut errors,
            );
        }
        for (i, rule) in self.spec.egress.iter().enumerate() {
            validate_rule(
                &format!("spec.egress[{i}]"),
                "to",
                &rule.to,
                &rule.ports,
                &mut errors,
            );
        }
        let rules = self.spec.ingress.len().max(self.spec.egress.len());
        if rules > 2046 {
            errors.push(FieldError::new(
                "spec",
                format!("{rules} rules in one direction"),
                "at most 2046 per direction",
            ));
        }
        errors
    }
}

fn validate_rule(
    path: &str,
    peers_field: &str,
    peers: &[NetworkPolicyPeer],
    ports: &[NetworkPolicyPort],
    errors: &mut Vec<FieldError>,
) {
    for (i, peer) in peers.iter().enumerate() {
        let path = format!("{path}.{peers_field}[{i}]");
        let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        match (&peer.ip_block, selectors) {
            (None, false) => errors.push(FieldError::new(
                &path,
                "{}",
                "one of podSelector, namespaceSelector or ipBlock",
            )),
            (Some(_), true) => errors.push(FieldError::new(
                &path,
                "ipBlock together with a selector",
                "ipBlock alone, or podSelector and/or namespaceSelector",
            )),
            (Some(block), false) => {
                for (j, except) in block.except.iter().enumerate() {
                    if !(block.cidr.covers(except) && except.len > block.cidr.len) {
                        errors.push(FieldError::new(
                            format!("{path}.ipBlock.except[{j}]"),
                            except,
                            format!("a prefix strictly inside {}", block.cidr),
                        ));
                    }
                }
            }
            (None, true) => {
                if let Some(s) = &peer.pod_selector {
                    s.validate(&format!("{path}.podSelector"), errors);
                }
                if let Some(s) = &peer.namespace_selector {
                    s.validate(&format!("{path}.namespaceSelector"), errors);
                }
            }
        }
    }
    for (i, port) in ports.iter().enumerate() {
        let path = format!("{path}.ports[{i}]");
        match (&port.port, port.end_port) {
            (Some(PortRef::Number(0)), _) => {
                errors.push(FieldError::new(format!("{path}.port"), 0, "1-65535"))
            }
            (Some(PortRef::Name(name)), end_port) => {
                if !is_port_name(name) {
                    errors.push(FieldError::new(
                        format!("{path}.port"),
                        format!("{name:?}"),
                        "a port number or a name of at most 15 lowercase letters, digits and '-' \
                         with at least one letter",
                    ));
                }
                if let Some(end) = end_port {
                    errors.push(FieldError::new(
                        format!("{path}.endPort"),
                        end,
                        "no endPort with a named port",
                    ));
                }
            }
            (Some(PortRef::Number(start)), Some(end)) if end < *start => errors.push(
                FieldError::new(format!("{path}.endPort"), end, format!(">= port ({start})")),
            ),
            (None, Some(end)) => errors.push(FieldError::new(
                format!("{path}.endPort"),
                end,
                "no endPort without a port",
            )),
            _ => {}
        }
    }
}

/// Kubernetes' IANA_SVC_NAME rule for container port names.
fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_mask_and_cover() {
        let c: Cidr = "10.244.1.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert!(c.contains("10.244.1.200".parse().unwrap()));
        assert!(!c.contains("10.244.2.1".parse().unwrap()));
        assert!(c.covers(&"10.244.1.10/32".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().covers(&c));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn port_names_follow_kubernetes() {
        assert!(is_port_name("serve-80-tcp"));
        assert!(!is_port_name("80"));
        assert!(!is_port_name("Http"));
        assert!(!is_port_name("a-very-long-port-name"));
    }
}
