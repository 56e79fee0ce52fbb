//! NetworkPolicy for the node: Kubernetes' semantics compiled into the kernel's lookup maps.
//!
//! - [`cluster`]: the cluster as policy sees it (namespaces, pods, policies);
//! - [`compile`]: identities, CIDR identities and per-identity `POLICY` entries, plus the
//!   user-space twin of the kernel's verdict ([`Compiled::judge`]);
//! - [`reconciler`]: the one writer of the policy maps;
//! - [`explain`]: `skiff policy explain` answers from the compiled state;
//! - [`flows`]: the verdict stream of `skiff observe`.
//!
//! Semantics and debugging are documented for policy authors in `docs/network-policy.md`.
pub mod cluster;
pub mod compile;
pub mod explain;
pub mod flows;
mod ids;

pub use ids::fnv1a;
pub mod reconciler;

pub use cluster::{ClusterState, PodName};
pub use compile::{compile, Compiled};
pub use explain::{explain, Explanation};
pub use reconciler::{PolicyReconciler, PolicyStats};

use std::net::Ipv4Addr;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Manifest(#[from] skiff_api::ManifestError),
    #[error("two {0} objects named {1}")]
    Duplicate(&'static str, String),
    #[error("pods {1} and {2} both have address {0}")]
    DuplicateAddress(Ipv4Addr, cluster::PodName, cluster::PodName),
}

/// Parses a manifest (Namespaces, Pods, NetworkPolicies) into a cluster state.
pub fn cluster_from_manifest(text: &str) -> Result<ClusterState, PolicyError> {
    ClusterState::from_objects(skiff_api::parse_manifests(text)?)
}
