//! `v1` Namespace and Pod, and the pieces other kinds reuse (containers, conditions).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::{
    meta::{IntOrString, ObjectMeta},
    quantity::{Quantity, ResourceList},
    validate::is_dns_label,
    FieldError,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Namespace {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
}

impl Namespace {
    /// The labels Kubernetes gives every namespace: its own, plus
    /// `kubernetes.io/metadata.name: <name>` (which policies commonly select on).
    pub fn effective_labels(&self) -> crate::Labels {
        let mut labels = self.metadata.labels.clone();
        labels.insert(
            "kubernetes.io/metadata.name".into(),
            self.metadata.name.clone(),
        );
        labels
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pod {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// Set by the scheduler (or by the user, which skips scheduling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// Which resolver the pod's containers get (default ClusterFirst).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<DnsPolicy>,
    /// Whether containers get the `NAME_SERVICE_HOST`-style variables of the services in
    /// their namespace (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_service_links: Option<bool>,
}

/// `spec.dnsPolicy`, as on Kubernetes (`None` with `dnsConfig` is not supported).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DnsPolicy {
    /// The cluster DNS, with the namespace's search path; names outside the cluster domain
    /// go to the node's upstream resolvers.
    #[default]
    ClusterFirst,
    /// Accepted for manifests written for host-network pods; the same as ClusterFirst.
    ClusterFirstWithHostNet,
    /// The node's own resolver configuration.
    Default,
}

impl PodSpec {
    /// The pod resolves through the cluster DNS.
    pub fn uses_cluster_dns(&self) -> bool {
        self.dns_policy.unwrap_or_default() != DnsPolicy::Default
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Accepted so manifests apply unchanged; there is no registry to pull from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: ResourceList,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: ResourceList,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.limits.is_empty()
    }

    /// What the scheduler reserves: the request, or the limit when only a limit is given (as
    /// Kubernetes defaults requests from limits).
    pub fn reserved_millicores(&self) -> u64 {
        self.requests
            .get("cpu")
            .or(self.limits.get("cpu"))
            .and_then(Quantity::millicores)
            .unwrap_or(0)
    }

    pub fn reserved_bytes(&self) -> u64 {
        self.requests
            .get("memory")
            .or(self.limits.get("memory"))
            .and_then(Quantity::bytes)
            .unwrap_or(0)
    }
}

/// A liveness or readiness check: exactly one of `exec`, `httpGet`, `tcpSocket`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAction {
    pub command: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub port: IntOrString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSocketAction {
    pub port: IntOrString,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<TolerationOperator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TolerationOperator {
    Exists,
    Equal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl Toleration {
    /// Kubernetes' rule: an empty key with `Exists` tolerates everything; an empty effect
    /// matches every effect.
    pub fn tolerates(&self, taint: &crate::node::Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match self.operator.unwrap_or(TolerationOperator::Equal) {
            TolerationOperator::Exists => self.key.as_ref().is_none_or(|k| *k == taint.key),
            TolerationOperator::Equal => {
                self.key.as_deref() == Some(taint.key.as_str())
                    && self.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
        }
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    pub fn from_number(number: u8) -> Option<Protocol> {
        [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
            .into_iter()
            .find(|p| p.number() == number)
    }

    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Protocol, FieldError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(FieldError::new("protocol", s, "tcp, udp or sctp")),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PodPhase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
    /// Why the pod is in its phase, e.g. `Unschedulable`, `NodeLost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// A status condition (`Ready`, `PodScheduled`, node `Ready`, deployment `Available`...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown", as strings (Kubernetes' shape).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<String>,
}

impl Condition {
    pub fn new(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> Condition {
        Condition {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.map(Into::into),
            message,
            ..Condition::default()
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Whether `conditions` hold `type_` with status True.
pub fn condition_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.is_true())
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerStatus {
    pub name: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<serde_json::Value>,
    /// `<runtime>://<id>`, as Kubernetes writes it.
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
}

impl Pod {
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.status.as_ref().and_then(|s| s.pod_ip)
    }

    pub fn phase(&self) -> PodPhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }

    /// Ready as endpoints and rollouts count it: the node reports condition Ready=True.
    pub fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| condition_true(&s.conditions, "Ready"))
    }

    pub fn is_terminating(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    /// Finished for good: it will not run again (Succeeded or Failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.phase(), PodPhase::Succeeded | PodPhase::Failed)
    }

    pub fn reserved_millicores(&self) -> u64 {
        self.spec
            .containers
            .iter()
            .map(|c| c.resources.reserved_millicores())
            .sum()
    }

    pub fn reserved_bytes(&self) -> u64 {
        self.spec
            .containers
            .iter()
            .map(|c| c.resources.reserved_bytes())
            .sum()
    }

    /// The container port with this name, for `targetPort: http` and named policy ports.
    pub fn named_port(&self, name: &str) -> Option<&ContainerPort> {
        self.spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|p| p.name.as_deref() == Some(name))
    }
}

impl PodSpec {
    /// Kubernetes' pod rules, with `path` the prefix (`spec` for a Pod,
    /// `spec.template.spec` in a Deployment).
    pub fn validate(&self, path: &str, errors: &mut Vec<FieldError>) {
        if self.containers.is_empty() {
            errors.push(FieldError::new(
                format!("{path}.containers"),
                "[]",
                "at least one container",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut port_names = std::collections::BTreeSet::new();
        for (i, c) in self.containers.iter().enumerate() {
            let at = format!("{path}.containers[{i}]");
            if !is_dns_label(&c.name) {
                errors.push(FieldError::new(
                    format!("{at}.name"),
                    format!("{:?}", c.name),
                    "a DNS label (lower-case letters, digits and '-')",
                ));
            } else if !names.insert(c.name.as_str()) {
                errors.push(FieldError::new(
                    format!("{at}.name"),
                    format!("{:?}", c.name),
                    "a name no other container of the pod has",
                ));
            }
            if c.image.as_deref().is_none_or(str::is_empty) && c.command.is_empty() {
                errors.push(FieldError::new(
                    format!("{at}.image"),
                    "nothing",
                    "an image or a command to run",
                ));
            }
            for (j, port) in c.ports.iter().enumerate() {
                if port.container_port == 0 {
                    errors.push(FieldError::new(
                        format!("{at}.ports[{j}].containerPort"),
                        0,
                        "a port between 1 and 65535",
                    ));
                }
                if let Some(name) = &port.name {
                    if name.len() > 15 || !is_dns_label(name) {
                        errors.push(FieldError::new(
                            format!("{at}.ports[{j}].name"),
                            format!("{name:?}"),
                            "at most 15 lower-case letters, digits and '-'",
                        ));
                    } else if !port_names.insert(name.clone()) {
                        errors.push(FieldError::new(
                            format!("{at}.ports[{j}].name"),
                            format!("{name:?}"),
                            "a port name unique within the pod",
                        ));
                    }
                }
            }
            for (kind, list) in [
                ("requests", &c.resources.requests),
                ("limits", &c.resources.limits),
            ] {
                for (resource, q) in list {
                    let ok = match resource.as_str() {
                        "cpu" => q.millicores().is_some(),
                        "memory" => q.bytes().is_some(),
                        _ => {
                            errors.push(FieldError::new(
                                format!("{at}.resources.{kind}"),
                                format!("{resource:?}"),
                                "cpu or memory",
                            ));
                            continue;
                        }
                    };
                    if !ok {
                        errors.push(FieldError::new(
                            format!("{at}.resources.{kind}.{resource}"),
                            format!("{q:?}", q = q.0),
                            if resource == "cpu" {
                                "a CPU quantity such as 250m or 0.5"
                            } else {
                                "a memory quantity such as 128Mi or 1G"
                            },
                        ));
                    }
                }
            }
            for (name, probe) in [
                ("livenessProbe", &c.liveness_probe),
                ("readinessProbe", &c.readiness_probe),
            ] {
                if let Some(p) = probe {
                    let handlers = usize::from(p.exec.is_some())
                        + usize::from(p.http_get.is_some())
                        + usize::from(p.tcp_socket.is_some());
                    if handlers != 1 {
                        errors.push(FieldError::new(
                            format!("{at}.{name}"),
                            format!("{handlers} handlers"),
                            "exactly one of exec, httpGet, tcpSocket",
                        ));
                    }
                }
            }
        }
        if let Some(g) = self.termination_grace_period_seconds {
            if g < 0 {
                errors.push(FieldError::new(
                    format!("{path}.terminationGracePeriodSeconds"),
                    g,
                    "0 or more seconds",
                ));
            }
        }
    }
}
