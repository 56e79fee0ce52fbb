//! Skiff's API object types: Kubernetes-shaped, shared by the control plane, the node daemon
//! and the `skiff` CLI (no server code here).
//!
//! - [`meta`]: object metadata and label selectors (with their matching rules);
//! - [`core`]: `v1` Namespace and Pod;
//! - [`network_policy`]: `networking.k8s.io/v1` NetworkPolicy, validated;
//! - [`manifest`]: reading multi-document YAML into typed objects, with errors that name the
//!   document, line and field.
pub mod core;
pub mod manifest;
pub mod meta;
pub mod network_policy;

pub use crate::core::{Container, ContainerPort, Namespace, Pod, PodSpec, PodStatus, Protocol};
pub use manifest::{parse_manifests, ManifestError, Object};
pub use meta::{LabelSelector, Labels, ObjectMeta, Requirement, SelectorOperator};
pub use network_policy::{
    Cidr, IpBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
    NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, PolicyType, PortRef,
};

/// A field that failed validation: its path, the value found and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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
