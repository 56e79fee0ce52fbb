//! Desired services and endpoints, in the shape of Kubernetes Service and EndpointSlice
//! fields. Until the control plane feeds the node agent, a JSON file of this shape drives
//! `skiff-node run --services FILE` (see docs/services.md for an example).

use std::{collections::BTreeMap, fmt, net::Ipv4Addr};

use serde::{Deserialize, Serialize};
use skiff_common::{IPPROTO_TCP, IPPROTO_UDP};

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_SECS: u32 = 10_800;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredServices {
    /// This node's addresses: NodePort frontends are served on each.
    #[serde(default)]
    pub node_addresses: Vec<Ipv4Addr>,
    /// Allowed node ports, inclusive.
    #[serde(default)]
    pub node_port_range: NodePortRange,
    #[serde(default)]
    pub services: Vec<Service>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePortRange {
    pub first: u16,
    pub last: u16,
}

impl Default for NodePortRange {
    fn default() -> Self {
        NodePortRange {
            first: 30000,
            last: 32767,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    /// `None` for a headless service (no frontend; DNS only).
    #[serde(default)]
    pub cluster_ip: Option<Ipv4Addr>,
    #[serde(default, rename = "type")]
    pub service_type: ServiceType,
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub external_traffic_policy: TrafficPolicy,
    /// Required with `externalTrafficPolicy: Local` to publish local endpoint counts.
    #[serde(default)]
    pub health_check_node_port: Option<u16>,
    #[serde(default)]
    pub session_affinity: SessionAffinity,
    /// `sessionAffinityConfig.clientIP.timeoutSeconds`; default 10800.
    #[serde(default)]
    pub session_affinity_timeout_seconds: Option<u32>,
    /// Backend selection for new flows.
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

fn default_namespace() -> String {
    "default".to_string()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficPolicy {
    /// Any ready endpoint; external clients are masqueraded to the node.
    #[default]
    Cluster,
    /// Only this node's endpoints; the client's address is preserved.
    Local,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIP,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadBalancing {
    #[default]
    Random,
    Maglev,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
    pub port: u16,
    /// A number, or the name of a container port resolved per endpoint. Defaults to `port`.
    #[serde(default)]
    pub target_port: Option<TargetPort>,
    #[serde(default)]
    pub node_port: Option<u16>,
}

impl ServicePort {
    /// The target port, defaulting to the service port as Kubernetes does.
    pub fn target(&self) -> TargetPort {
        self.target_port
            .clone()
            .unwrap_or(TargetPort::Number(self.port))
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::TCP => IPPROTO_TCP,
            Protocol::UDP => IPPROTO_UDP,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetPort::Number(n) => write!(f, "{n}"),
            TargetPort::Name(name) => write!(f, "{name:?}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// The endpoint runs on this node.
    #[serde(default)]
    pub local: bool,
    /// EndpointSlice `conditions.ready`.
    #[serde(default = "yes")]
    pub ready: bool,
    /// EndpointSlice `conditions.terminating`: keeps its flows, takes no new ones.
    #[serde(default)]
    pub terminating: bool,
    /// The pod's named container ports, for named target ports: name -> number.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
}

fn yes() -> bool {
    true
}

impl Endpoint {
    /// Takes new flows.
    pub fn serving(&self) -> bool {
        self.ready && !self.terminating
    }

    /// The endpoint's port for `target`, `None` when a named port is not on this pod (the
    /// endpoint then does not serve that service port, as in Kubernetes).
    pub fn resolve(&self, target: &TargetPort) -> Option<u16> {
        match target {
            TargetPort::Number(n) => Some(*n),
            TargetPort::Name(name) => self.ports.get(name).copied(),
        }
    }
}

/// A desired-state error: which field, what value, what was expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("service {service}: {field} = {value}: {expected}")]
pub struct InvalidService {
    pub service: String,
    pub field: String,
    pub value: String,
    pub expected: String,
}

impl Service {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn affinity_timeout_secs(&self) -> u32 {
        self.session_affinity_timeout_seconds
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECS)
    }
}

impl DesiredServices {
    /// Checks what the reconciler relies on; the whole state is rejected on the first error,
    /// so a bad edit never half-applies.
    pub fn validate(&self) -> Result<(), InvalidService> {
        let range = self.node_port_range;
        if range.first > range.last {
            return Err(InvalidService {
                service: "-".into(),
                field: "nodePortRange".into(),
                value: format!("{}-{}", range.first, range.last),
                expected: "first <= last".into(),
            });
        }
        let mut seen = BTreeMap::new();
        for service in &self.services {
            let invalid = |field: String, value: String, expected: &str| InvalidService {
                service: service.full_name(),
                field,
                value,
                expected: expected.to_string(),
            };
            if service.ports.is_empty() {
                return Err(invalid("ports".into(), "[]".into(), "at least one port"));
            }
            if service.session_affinity_timeout_seconds == Some(0)
                || service
                    .session_affinity_timeout_seconds
                    .is_some_and(|t| t > 86_400)
            {
                return Err(invalid(
                    "sessionAffinityTimeoutSeconds".into(),
                    format!("{:?}", service.session_affinity_timeout_seconds),
                    "1..=86400 seconds",
                ));
            }
            for (i, port) in service.ports.iter().enumerate() {
                if port.port == 0 {
                    return Err(invalid(format!("ports[{i}].port"), "0".into(), "1..=65535"));
                }
                if let Some(TargetPort::Number(0)) = port.target_port {
                    return Err(invalid(
                        format!("ports[{i}].targetPort"),
                        "0".into(),
                        "1..=65535 or a container port name",
                    ));
                }
                match (service.service_type, port.node_port) {
                    (ServiceType::NodePort, None) => {
                        return Err(invalid(
                            format!("ports[{i}].nodePort"),
                            "none".into(),
                            "a node port for a NodePort service",
                        ))
                    }
                    (ServiceType::NodePort, Some(np)) if np < range.first || np > range.last => {
                        return Err(invalid(
                            format!("ports[{i}].nodePort"),
                            np.to_string(),
                            &format!("within the node port range {}-{}", range.first, range.last),
                        ))
                    }
                    (ServiceType::ClusterIP, Some(np)) => {
                        return Err(invalid(
                            format!("ports[{i}].nodePort"),
                            np.to_string(),
                            "no node port on a ClusterIP service (use type NodePort)",
                        ))
                    }
                    _ => {}
                }
                let mut frontends = Vec::new();
                if let Some(ip) = service.cluster_ip {
                    frontends.push((ip, port.port, port.protocol));
                }
                if let Some(np) = port.node_port {
                    frontends.push((Ipv4Addr::UNSPECIFIED, np, port.protocol));
                }
                for frontend in frontends {
                    if let Some(other) = seen.insert(frontend, service.full_name()) {
                        return Err(invalid(
                            format!("ports[{i}]"),
                            format!("{}:{}/{:?}", frontend.0, frontend.1, frontend.2),
                            &format!("an address and port not already used by {other}"),
                        ));
                    }
                }
            }
            if let Some(hc) = service.health_check_node_port {
                if service.external_traffic_policy != TrafficPolicy::Local {
                    return Err(invalid(
                        "healthCheckNodePort".into(),
                        hc.to_string(),
                        "only with externalTrafficPolicy: Local",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: serde_json::Value) -> Result<DesiredServices, String> {
        let desired: DesiredServices = serde_json::from_value(value).map_err(|e| e.to_string())?;
        desired.validate().map_err(|e| e.to_string())?;
        Ok(desired)
    }

    #[test]
    fn defaults_follow_kubernetes() {
        let d = parse(serde_json::json!({"services": [
            {"name": "a", "clusterIp": "10.96.0.1", "ports": [{"port": 80}],
             "endpoints": [{"ip": "10.244.1.2"}]}
        ]}))
        .unwrap();
        let s = &d.services[0];
        assert_eq!(s.namespace, "default");
        assert_eq!(s.ports[0].protocol, Protocol::TCP);
        assert_eq!(s.ports[0].target(), TargetPort::Number(80));
        assert_eq!(s.affinity_timeout_secs(), 10_800);
        assert!(s.endpoints[0].serving());
        assert_eq!(
            d.node_port_range,
            NodePortRange {
                first: 30000,
                last: 32767
            }
        );
    }

    #[test]
    fn named_target_ports_resolve_per_endpoint() {
        let e: Endpoint = serde_json::from_value(
            serde_json::json!({"ip": "10.244.1.2", "ports": {"http": 8080}}),
        )
        .unwrap();
        assert_eq!(e.resolve(&TargetPort::Name("http".into())), Some(8080));
        assert_eq!(e.resolve(&TargetPort::Name("grpc".into())), None);
    }

    #[test]
    fn errors_name_the_field_the_value_and_what_was_expected() {
        for (service, field, value) in [
            (
                serde_json::json!({"name": "a", "clusterIp": "10.96.0.1", "type": "NodePort",
              "ports": [{"port": 80, "nodePort": 80}]}),
                "ports[0].nodePort",
                "80",
            ),
            (
                serde_json::json!({"name": "a", "clusterIp": "10.96.0.1", "type": "NodePort",
              "ports": [{"port": 80}]}),
                "ports[0].nodePort",
                "none",
            ),
            (
                serde_json::json!({"name": "a", "clusterIp": "10.96.0.1", "ports": []}),
                "ports",
                "[]",
            ),
            (
                serde_json::json!({"name": "a", "clusterIp": "10.96.0.1", "ports": [{"port": 80}],
              "sessionAffinityTimeoutSeconds": 0}),
                "sessionAffinityTimeoutSeconds",
                "Some(0)",
            ),
            (
                serde_json::json!({"name": "a", "clusterIp": "10.96.0.1", "ports": [{"port": 80}],
              "healthCheckNodePort": 31000}),
                "healthCheckNodePort",
                "31000",
            ),
        ] {
            let error = parse(serde_json::json!({"services": [service]})).unwrap_err();
            assert!(error.contains(field) && error.contains(value), "{error}");
            assert!(error.starts_with("service default/a:"), "{error}");
        }
        let error = parse(serde_json::json!({"services": [
            {"name": "a", "clusterIp": "10.96.0.1", "ports": [{"port": 80}]},
            {"name": "b", "clusterIp": "10.96.0.1", "ports": [{"port": 80}]}
        ]}))
        .unwrap_err();
        assert!(error.contains("already used by default/a"), "{error}");
        let error = parse(serde_json::json!({"services": [
            {"name": "a", "clusterIp": "10.96.0.1", "ports": [{"port": 80, "protocol": "SCTP"}]}
        ]}))
        .unwrap_err();
        assert!(error.contains("SCTP"), "{error}");
    }
}
