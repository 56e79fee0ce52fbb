//! `v1` Node, and the usage figures nodes report (`skiff top`, autoscaling).

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::{
    core::{condition_true, Condition, TaintEffect},
    meta::ObjectMeta,
    quantity::ResourceList,
    FieldError,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Allocated by the control plane from its pod network when the node registers.
    #[serde(default, rename = "podCIDR", skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: ResourceList,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: ResourceList,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// Where the node daemon serves its own API (logs, exec), as Kubernetes' kubelet port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_endpoints: Option<NodeDaemonEndpoints>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeDaemonEndpoints {
    pub kubelet_endpoint: DaemonEndpoint,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonEndpoint {
    #[serde(rename = "Port")]
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}

/// Kubernetes' taint for nodes that stopped answering; the node lifecycle controller sets it.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

impl Node {
    /// The node daemon's API address: the InternalIP and the advertised daemon port.
    pub fn daemon_address(&self) -> Option<std::net::SocketAddrV4> {
        let status = self.status.as_ref()?;
        let port = status.daemon_endpoints.as_ref()?.kubelet_endpoint.port;
        let ip = status
            .addresses
            .iter()
            .find(|a| a.type_ == "InternalIP")?
            .address
            .parse()
            .ok()?;
        Some(std::net::SocketAddrV4::new(ip, port))
    }

    pub fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| condition_true(&s.conditions, "Ready"))
    }

    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
    }

    /// Allocatable CPU (millicores) and memory (bytes); capacity when allocatable is unset.
    pub fn allocatable(&self) -> (u64, u64) {
        let Some(status) = &self.status else {
            return (0, 0);
        };
        let get = |name: &str| {
            status
                .allocatable
                .get(name)
                .or(status.capacity.get(name))
                .cloned()
        };
        (
            get("cpu").and_then(|q| q.millicores()).unwrap_or(0),
            get("memory").and_then(|q| q.bytes()).unwrap_or(0),
        )
    }

    /// The node's first InternalIP.
    pub fn internal_ip(&self) -> Option<Ipv4Addr> {
        self.status
            .as_ref()?
            .addresses
            .iter()
            .find(|a| a.type_ == "InternalIP")?
            .address
            .parse()
            .ok()
    }

    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        if let Some(cidr) = &self.spec.pod_cidr {
            if cidr.parse::<crate::network_policy::Cidr>().is_err() {
                errors.push(FieldError::new(
                    "spec.podCIDR",
                    format!("{cidr:?}"),
                    "an IPv4 CIDR such as 10.244.1.0/24",
                ));
            }
        }
        for (i, t) in self.spec.taints.iter().enumerate() {
            if !crate::validate::is_label_key(&t.key) {
                errors.push(FieldError::new(
                    format!("spec.taints[{i}].key"),
                    format!("{:?}", t.key),
                    "a label key",
                ));
            }
        }
        for (i, a) in self
            .status
            .iter()
            .flat_map(|s| s.addresses.iter())
            .enumerate()
        {
            if a.type_ == "InternalIP" && a.address.parse::<Ipv4Addr>().is_err() {
                errors.push(FieldError::new(
                    format!("status.addresses[{i}].address"),
                    format!("{:?}", a.address),
                    "an IPv4 address",
                ));
            }
        }
    }
}

/// What a node measured for itself and its pods (from cgroups), posted with its heartbeat and
/// read by `skiff top` and the autoscaler. Not a stored Kubernetes kind: the shape follows
/// `metrics.k8s.io` (cpu in millicores, memory in bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeMetrics {
    pub node: String,
    /// RFC 3339 time of the sample.
    pub timestamp: String,
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    #[serde(default)]
    pub pods: Vec<PodMetrics>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMetrics {
    pub namespace: String,
    pub name: String,
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
}
