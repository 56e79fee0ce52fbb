//! `v1` Service and `discovery.k8s.io/v1` EndpointSlice.

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::{
    core::Protocol,
    meta::{IntOrString, ObjectMeta},
    validate::is_dns_label,
    FieldError,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
    /// Accepted (kubectl writes `status: {loadBalancer: {}}`) and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    /// Allocated by the control plane when left out; `None` makes the service headless.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<TrafficPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<TrafficPolicy>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAffinity {
    #[default]
    None,
    #[serde(rename = "ClientIP")]
    ClientIp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionAffinityConfig {
    #[serde(default, rename = "clientIP", skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIpConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientIpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
    pub port: u16,
    /// A number, or the name of a container port; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// Allocated from the node-port range when left out on a NodePort service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

/// `clusterIP: None`.
pub const HEADLESS: &str = "None";

impl Service {
    pub fn type_(&self) -> ServiceType {
        self.spec.type_.unwrap_or_default()
    }

    pub fn is_headless(&self) -> bool {
        self.spec.cluster_ip.as_deref() == Some(HEADLESS)
    }

    /// The allocated ClusterIP, once the control plane has set it.
    pub fn cluster_ip(&self) -> Option<Ipv4Addr> {
        self.spec.cluster_ip.as_deref()?.parse().ok()
    }

    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        if let Some(ip) = &self.spec.cluster_ip {
            if ip != HEADLESS && ip.parse::<Ipv4Addr>().is_err() {
                errors.push(FieldError::new(
                    "spec.clusterIP",
                    format!("{ip:?}"),
                    "an IPv4 address, \"None\" (headless) or nothing (allocated)",
                ));
            }
        }
        if self.is_headless() && self.type_() == ServiceType::NodePort {
            errors.push(FieldError::new(
                "spec.type",
                "NodePort",
                "ClusterIP for a headless service (clusterIP: None)",
            ));
        }
        if self.spec.ports.is_empty() && !self.is_headless() {
            errors.push(FieldError::new("spec.ports", "[]", "at least one port"));
        }
        let several = self.spec.ports.len() > 1;
        let mut names = std::collections::BTreeSet::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.spec.ports.iter().enumerate() {
            let at = format!("spec.ports[{i}]");
            match &p.name {
                None if several => errors.push(FieldError::new(
                    format!("{at}.name"),
                    "nothing",
                    "a name (required when a service has several ports)",
                )),
                Some(n) if !is_dns_label(n) => errors.push(FieldError::new(
                    format!("{at}.name"),
                    format!("{n:?}"),
                    "a DNS label (lower-case letters, digits and '-')",
                )),
                Some(n) if !names.insert(n.clone()) => errors.push(FieldError::new(
                    format!("{at}.name"),
                    format!("{n:?}"),
                    "a port name unique within the service",
                )),
                _ => {}
            }
            if p.port == 0 {
                errors.push(FieldError::new(
                    format!("{at}.port"),
                    0,
                    "a port between 1 and 65535",
                ));
            }
            if !seen.insert((p.port, p.protocol)) {
                errors.push(FieldError::new(
                    format!("{at}.port"),
                    p.port,
                    "a port/protocol pair unique within the service",
                ));
            }
            match &p.target_port {
                Some(IntOrString::Int(t)) if !(1..=65535).contains(t) => {
                    errors.push(FieldError::new(
                        format!("{at}.targetPort"),
                        t,
                        "a port between 1 and 65535 or a container port name",
                    ))
                }
                Some(IntOrString::String(n)) if n.len() > 15 || !is_dns_label(n) => {
                    errors.push(FieldError::new(
                        format!("{at}.targetPort"),
                        format!("{n:?}"),
                        "a port between 1 and 65535 or a container port name",
                    ))
                }
                _ => {}
            }
            if p.node_port.is_some() && self.type_() != ServiceType::NodePort {
                errors.push(FieldError::new(
                    format!("{at}.nodePort"),
                    p.node_port.unwrap_or_default(),
                    "no nodePort unless spec.type is NodePort",
                ));
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSlice {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default = "ipv4")]
    pub address_type: String,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

fn ipv4() -> String {
    "IPv4".into()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub addresses: Vec<Ipv4Addr>,
    pub conditions: EndpointConditions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<ObjectReference>,
}

/// As Kubernetes: `ready` = serving and not terminating; a terminating pod that still passes
/// its readiness probe is `serving` and `terminating` (kept for draining connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointConditions {
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub serving: bool,
    #[serde(default)]
    pub terminating: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
    /// The resolved target port. A named targetPort that resolves to different numbers on
    /// different pods gives one slice per number, as Kubernetes does.
    pub port: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
