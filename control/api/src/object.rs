//! Every kind the API serves, described once: its names, its scope, and how to reach its
//! metadata and validation generically (the server, the store keys and the CLI use this).

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    apps::{Deployment, ReplicaSet},
    autoscaling::HorizontalPodAutoscaler,
    core::{Namespace, Pod},
    meta::ObjectMeta,
    network_policy::NetworkPolicy,
    node::Node,
    service::{EndpointSlice, Service},
    validate, FieldError,
};

/// A kind of object, with the names Kubernetes gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Deployment,
    ReplicaSet,
    Service,
    EndpointSlice,
    NetworkPolicy,
    HorizontalPodAutoscaler,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::NetworkPolicy,
        Kind::HorizontalPodAutoscaler,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
        }
    }

    pub const fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Node | Kind::Pod | Kind::Service => "v1",
            Kind::Deployment | Kind::ReplicaSet => "apps/v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::NetworkPolicy => "networking.k8s.io/v1",
            Kind::HorizontalPodAutoscaler => "autoscaling/v2",
        }
    }

    /// The lower-case plural used in API paths and by `skiff get`.
    pub const fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Deployment => "deployments",
            Kind::ReplicaSet => "replicasets",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscalers",
        }
    }

    /// kubectl's short names.
    pub const fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Node => &["no"],
            Kind::Pod => &["po"],
            Kind::Deployment => &["deploy"],
            Kind::ReplicaSet => &["rs"],
            Kind::Service => &["svc"],
            Kind::EndpointSlice => &["eps", "endpoints", "ep"],
            Kind::NetworkPolicy => &["netpol"],
            Kind::HorizontalPodAutoscaler => &["hpa"],
        }
    }

    pub const fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node)
    }

    /// Whether the kind has a status that only its status writer changes (`PUT .../status`).
    pub const fn has_status(self) -> bool {
        !matches!(
            self,
            Kind::Namespace | Kind::EndpointSlice | Kind::NetworkPolicy
        )
    }

    /// Reads what a user types: plural, singular, short name or kind, any case.
    pub fn parse(text: &str) -> Option<Kind> {
        let t = text.to_ascii_lowercase();
        Kind::ALL.into_iter().find(|k| {
            t == k.plural()
                || t == k.name().to_ascii_lowercase()
                || k.short_names().contains(&t.as_str())
        })
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One object of any kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Namespace(Box<Namespace>),
    Node(Box<Node>),
    Pod(Box<Pod>),
    Deployment(Box<Deployment>),
    ReplicaSet(Box<ReplicaSet>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    NetworkPolicy(Box<NetworkPolicy>),
    HorizontalPodAutoscaler(Box<HorizontalPodAutoscaler>),
}

/// Calls `$body` with `$o` bound to the typed object, whatever its kind.
macro_rules! each_kind {
    ($object:expr, $o:ident => $body:expr) => {
        match $object {
            Object::Namespace($o) => $body,
            Object::Node($o) => $body,
            Object::Pod($o) => $body,
            Object::Deployment($o) => $body,
            Object::ReplicaSet($o) => $body,
            Object::Service($o) => $body,
            Object::EndpointSlice($o) => $body,
            Object::NetworkPolicy($o) => $body,
            Object::HorizontalPodAutoscaler($o) => $body,
        }
    };
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Node(_) => Kind::Node,
            Object::Pod(_) => Kind::Pod,
            Object::Deployment(_) => Kind::Deployment,
            Object::ReplicaSet(_) => Kind::ReplicaSet,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
            Object::HorizontalPodAutoscaler(_) => Kind::HorizontalPodAutoscaler,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        each_kind!(self, o => &o.metadata)
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each_kind!(self, o => &mut o.metadata)
    }

    /// Reads an object of a known kind from JSON, rejecting unknown fields.
    pub fn from_json(kind: Kind, value: serde_json::Value) -> Result<Object, serde_json::Error> {
        fn typed<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, serde_json::Error> {
            serde_json::from_value(v)
        }
        Ok(match kind {
            Kind::Namespace => Object::Namespace(typed(value)?),
            Kind::Node => Object::Node(typed(value)?),
            Kind::Pod => Object::Pod(typed(value)?),
            Kind::Deployment => Object::Deployment(typed(value)?),
            Kind::ReplicaSet => Object::ReplicaSet(typed(value)?),
            Kind::Service => Object::Service(typed(value)?),
            Kind::EndpointSlice => Object::EndpointSlice(typed(value)?),
            Kind::NetworkPolicy => Object::NetworkPolicy(typed(value)?),
            Kind::HorizontalPodAutoscaler => Object::HorizontalPodAutoscaler(typed(value)?),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("API objects always serialize")
    }

    /// `namespace/name` for namespaced kinds, `name` otherwise.
    pub fn key_name(&self) -> String {
        let meta = self.metadata();
        if self.kind().namespaced() {
            format!("{}/{}", meta.namespace(), meta.name)
        } else {
            meta.name.clone()
        }
    }

    /// Every rule the kind has: names, apiVersion/kind fields, and the kind's own.
    pub fn validate(&self) -> Vec<FieldError> {
        let kind = self.kind();
        let mut errors = Vec::new();
        let (api_version, kind_field) = each_kind!(self, o => (&o.api_version, &o.kind));
        if api_version != kind.api_version() {
            errors.push(FieldError::new(
                "apiVersion",
                format!("{api_version:?}"),
                format!("{:?} for {kind}", kind.api_version()),
            ));
        }
        if kind_field != kind.name() {
            errors.push(FieldError::new(
                "kind",
                format!("{kind_field:?}"),
                format!("{kind:?}"),
            ));
        }
        validate::metadata(self.metadata(), kind.name(), kind.namespaced(), &mut errors);
        match self {
            Object::Pod(p) => p.spec.validate("spec", &mut errors),
            Object::Deployment(d) => d.validate(&mut errors),
            Object::ReplicaSet(r) => r.validate(&mut errors),
            Object::Service(s) => s.validate(&mut errors),
            Object::NetworkPolicy(p) => errors.extend(p.validate()),
            Object::Node(n) => n.validate(&mut errors),
            Object::HorizontalPodAutoscaler(h) => h.validate(&mut errors),
            Object::Namespace(_) | Object::EndpointSlice(_) => {}
        }
        errors
    }
}

/// A list in Kubernetes' shape (`kind: List`, `items`), as `-o json|yaml` prints it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct List {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ListMeta,
    pub items: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    /// The store revision the list is consistent at: watch from here to miss nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// One change seen by a watch, in Kubernetes' shape.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    #[serde(rename = "type")]
    pub type_: String,
    pub object: serde_json::Value,
}

/// The error body every failed API call returns (Kubernetes' `Status`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub api_version: String,
    pub kind: String,
    pub status: String,
    pub message: String,
    /// Machine-readable: NotFound, AlreadyExists, Conflict, Invalid, Unauthorized,
    /// Forbidden, Expired (watch too old: relist), BadRequest.
    pub reason: String,
    pub code: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl Status {
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Status {
        Status {
            api_version: "v1".into(),
            kind: "Status".into(),
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            code,
            details: Vec::new(),
        }
    }
}
