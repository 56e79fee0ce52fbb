//! Skiff's API object types: Kubernetes-shaped, shared by the control plane, the node daemon
//! and the `skiff` CLI (no server code here).
//!
//! - [`meta`]: object metadata, label selectors (with their matching rules), IntOrString;
//! - [`core`]: `v1` Namespace and Pod, containers, probes, conditions;
//! - [`apps`]: `apps/v1` Deployment and ReplicaSet;
//! - [`service`]: `v1` Service and `discovery.k8s.io/v1` EndpointSlice;
//! - [`node`]: `v1` Node and the usage metrics nodes report;
//! - [`autoscaling`]: `autoscaling/v2` HorizontalPodAutoscaler;
//! - [`network_policy`]: `networking.k8s.io/v1` NetworkPolicy, validated;
//! - [`object`]: every kind described once ([`Kind`]), any object ([`Object`]), and the
//!   wire shapes of lists, watch events and errors;
//! - [`time`]: RFC 3339 timestamps as the API stores them;
//! - [`manifest`]: reading multi-document YAML into typed objects, with errors that name the
//!   document, line and field.
pub mod apps;
pub mod autoscaling;
pub mod core;
pub mod manifest;
pub mod meta;
pub mod network_policy;
pub mod node;
pub mod object;
pub mod quantity;
pub mod service;
pub mod time;
pub mod validate;

pub use crate::core::{
    Condition, Container, ContainerPort, Namespace, Pod, PodPhase, PodSpec, PodStatus, Protocol,
};
pub use apps::{Deployment, ReplicaSet};
pub use autoscaling::HorizontalPodAutoscaler;
pub use manifest::{parse_manifests, ManifestError};
pub use meta::{IntOrString, LabelSelector, Labels, ObjectMeta, Requirement, SelectorOperator};
pub use network_policy::{
    Cidr, IpBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
    NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, PolicyType, PortRef,
};
pub use node::{Node, NodeMetrics, PodMetrics};
pub use object::{Kind, List, Object, Status, WatchEvent};
pub use service::{EndpointSlice, Service};

/// A field that failed validation: its path, the value found and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{path}: {found}: expected {expected}")]
pub struct FieldError {
    pub path: String,
    pub found: String,
    pub expected: String,
}
impl FieldError {
    pub fn new(
        path: impl Into<String>,
        found: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            found: found.to_string(),
            expected: expected.into(),
        }
    }
}
