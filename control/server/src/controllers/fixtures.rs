//! Builders for the API objects the unit tests of the controllers and the scheduler feed
//! them: small, plain objects that each test adjusts where it needs more.

use skiff_api::{
    apps::{
        DeploymentSpec, DeploymentStrategy, PodTemplateSpec, ReplicaSetSpec, RollingUpdate,
        StrategyType, TemplateMeta,
    },
    core::Resources,
    meta::{IntOrString, LabelSelector, ObjectMeta, OwnerReference},
    node::{NodeSpec, NodeStatus},
    quantity::{Quantity, ResourceList},
    Condition, Container, Deployment, Labels, Node, Pod, PodPhase, PodSpec, PodStatus, ReplicaSet,
};

/// `app=web`: the labels of the pod templates below, and what their selectors match.
pub(crate) fn web_labels() -> Labels {
    [("app".to_string(), "web".to_string())].into()
}

/// `name: value` pairs as resource quantities, leaving out the empty values.
fn quantities(pairs: &[(&str, &str)]) -> ResourceList {
    pairs
        .iter()
        .filter(|(_, q)| !q.is_empty())
        .map(|(r, q)| (r.to_string(), Quantity(q.to_string())))
        .collect()
}

/// The one container `app`, running `image` and requesting `requests` (empty values left
/// out).
pub(crate) fn container(image: Option<&str>, requests: &[(&str, &str)]) -> Container {
    Container {
        name: "app".into(),
        image: image.map(Into::into),
        resources: Resources {
            requests: quantities(requests),
            ..Resources::default()
        },
        ..Container::default()
    }
}

/// A selector for [`web_labels`].
pub(crate) fn web_selector() -> LabelSelector {
    LabelSelector {
        match_labels: web_labels(),
        ..LabelSelector::default()
    }
}

/// A template labelled [`web_labels`] with the one container `app` running `image`.
pub(crate) fn web_template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: TemplateMeta {
            labels: web_labels(),
            ..TemplateMeta::default()
        },
        spec: PodSpec {
            containers: vec![container(Some(image), &[])],
            ..PodSpec::default()
        },
    }
}

/// Deployment `shop/web` of `replicas` pods running `image` (no uid, generation or
/// strategy).
pub(crate) fn deployment(replicas: i32, image: &str) -> Deployment {
    Deployment {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        metadata: ObjectMeta {
            name: "web".into(),
            namespace: Some("shop".into()),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: web_selector(),
            template: web_template(image),
            strategy: None,
            revision_history_limit: None,
            min_ready_seconds: None,
            paused: None,
        },
        status: None,
    }
}

/// `d` with a RollingUpdate strategy of `surge` and `unavailable` pods.
pub(crate) fn rolling(mut d: Deployment, surge: i64, unavailable: i64) -> Deployment {
    d.spec.strategy = Some(DeploymentStrategy {
        type_: Some(StrategyType::RollingUpdate),
        rolling_update: Some(RollingUpdate {
            max_surge: Some(IntOrString::Int(surge)),
            max_unavailable: Some(IntOrString::Int(unavailable)),
        }),
    });
    d
}

/// ReplicaSet `shop/{name}` of `replicas` pods running `image` (no uid or generation).
pub(crate) fn replica_set(name: &str, replicas: i32, image: &str) -> ReplicaSet {
    ReplicaSet {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        metadata: ObjectMeta {
            name: name.into(),
            namespace: Some("shop".into()),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas,
            selector: web_selector(),
            template: web_template(image),
        },
        status: None,
    }
}

/// Pod `name` (no namespace) with the one container `app` requesting `requests` (empty
/// values left out), controlled by ReplicaSet `owner` with uid `owner_uid` unless `owner`
/// is empty. No status.
pub(crate) fn pod(name: &str, owner: &str, owner_uid: &str, requests: &[(&str, &str)]) -> Pod {
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: ObjectMeta {
            name: name.into(),
            owner_references: (!owner.is_empty())
                .then(|| OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: owner.into(),
                    uid: owner_uid.into(),
                    controller: Some(true),
                })
                .into_iter()
                .collect(),
            ..ObjectMeta::default()
        },
        spec: PodSpec {
            containers: vec![container(None, requests)],
            ..PodSpec::default()
        },
        status: None,
    }
}

/// A pod status in `phase` (if any) with a Ready condition of `ready`.
pub(crate) fn pod_status(phase: Option<PodPhase>, ready: bool) -> PodStatus {
    PodStatus {
        phase,
        conditions: vec![Condition::new("Ready", ready, None, None)],
        ..PodStatus::default()
    }
}

/// Node `name` with `cpu` and `memory` allocatable (empty values left out) and a Ready
/// condition of `ready`.
pub(crate) fn node(name: &str, cpu: &str, memory: &str, ready: bool) -> Node {
    Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: ObjectMeta {
            name: name.into(),
            ..ObjectMeta::default()
        },
        spec: NodeSpec::default(),
        status: Some(NodeStatus {
            allocatable: quantities(&[("cpu", cpu), ("memory", memory)]),
            conditions: vec![Condition::new("Ready", ready, None, None)],
            ..NodeStatus::default()
        }),
    }
}

/// `node` as its daemon reports it: the Ready condition from the kubelet
/// (`KubeletReady`), last heard at `heartbeat` and in its state `since`.
pub(crate) fn reported(mut node: Node, heartbeat: &str, since: Option<&str>) -> Node {
    let ready = &mut node.status.as_mut().unwrap().conditions[0];
    ready.reason = Some("KubeletReady".into());
    ready.last_heartbeat_time = Some(heartbeat.into());
    ready.last_transition_time = since.map(Into::into);
    node
}
