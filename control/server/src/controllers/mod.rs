//! The controllers, as pure functions: observed objects (and `now`) in, the writes that move
//! the cluster towards what its objects ask for out.
//!
//! Each controller is the only writer of what it owns (noted at the top of its module), so
//! the runners that call these functions never fight over a field. No function here does
//! I/O or keeps state between calls (except the autoscaler's recommendation history, which
//! its runner holds and passes in), and each is idempotent: fed its own output back, it plans
//! nothing more. That is what lets a runner call it after every watch event, retry after a
//! conflicting write, and restart at any moment.
//!
//! - [`replicaset`]: pods of a ReplicaSet (create, delete) and its status;
//! - [`deployment`]: ReplicaSets of a Deployment (rollouts, history, rollback) and its status;
//! - [`endpoints`]: the EndpointSlices of a Service;
//! - [`node_lifecycle`]: the Ready condition and unreachable taint of silent nodes, and the
//!   eviction of their pods;
//! - [`autoscaler`]: a Deployment's replica count under a HorizontalPodAutoscaler;
//! - [`addresses`]: ClusterIPs, NodePorts and node pod CIDRs, never handed out twice;

pub mod addresses;
pub mod autoscaler;
pub mod deployment;
pub mod endpoints;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod node_lifecycle;
pub mod replicaset;
#[cfg(test)]
mod simulation;

use skiff_api::{
    meta::{ObjectMeta, OwnerReference},
    Pod,
};

/// The reference a controller puts on what it creates, marking itself as the controller.
fn controller_reference(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
    }
}

/// Whether `owner` (of `kind`) controls the object with metadata `meta`. The uid is compared
/// when both sides have one, so a ReplicaSet recreated under the same name does not adopt
/// the pods of its predecessor.
fn is_controlled_by(meta: &ObjectMeta, kind: &str, owner: &ObjectMeta) -> bool {
    meta.controller().is_some_and(|r| {
        r.kind == kind
            && r.name == owner.name
            && (r.uid.is_empty() || owner.uid.as_deref().is_none_or(|uid| uid == r.uid))
    })
}

/// A pod that counts as a replica: neither finished nor on its way out.
fn is_active(pod: &Pod) -> bool {
    !pod.is_finished() && !pod.is_terminating()
}

/// Kubernetes' alphabet for generated name parts: no vowels (no words by accident) and no
/// look-alike characters.
const NAME_ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";

/// `len` characters of [`NAME_ALPHABET`] from `value`, valid in names and label values.
fn encode_for_names(mut value: u64, len: usize) -> String {
    (0..len)
        .map(|_| {
            let c = NAME_ALPHABET[(value % 27) as usize];
            value /= 27;
            char::from(c)
        })
        .collect()
}
