//! The cluster as policy sees it: namespaces with their labels, pods with labels, address and
//! named ports, and NetworkPolicies. Built from Kubernetes-shaped objects (a manifest file
//! today, the control plane's watch later).

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::Ipv4Addr,
};

use skiff_api::{Labels, NetworkPolicy, Object, Protocol};

use super::PolicyError;

/// A pod by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for PodName {
    type Err = String;

    fn from_str(s: &str) -> Result<PodName, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok(PodName {
                namespace: ns.into(),
                name: name.into(),
            }),
            _ => Err(format!("{s:?}: expected NAMESPACE/POD")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRecord {
    pub name: PodName,
    pub labels: Labels,
    pub ip: Ipv4Addr,
    /// Named container ports: (name, protocol) -> number.
    pub named_ports: BTreeMap<(String, Protocol), u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterState {
    /// Effective labels (with `kubernetes.io/metadata.name`) by namespace.
    pub namespaces: BTreeMap<String, Labels>,
    /// Pods that have an address, by name.
    pub pods: BTreeMap<PodName, PodRecord>,
    /// Policies by (namespace, name).
    pub policies: BTreeMap<PodName, NetworkPolicy>,
}

impl ClusterState {
    /// Builds the state, rejecting duplicates (two objects of one kind and name, two pods with
    /// one address). Pods without an address take no part in policy yet.
    pub fn from_objects(objects: Vec<Object>) -> Result<ClusterState, PolicyError> {
        let mut state = ClusterState::default();
        let mut ips: HashMap<Ipv4Addr, PodName> = HashMap::new();
        for object in objects {
            match object {
                Object::Namespace(ns) => {
                    let name = ns.metadata.name.clone();
                    if state
                        .namespaces
                        .insert(name.clone(), ns.effective_labels())
                        .is_some()
                    {
                        return Err(PolicyError::Duplicate("Namespace", name));
                    }
                }
                Object::Pod(pod) => {
                    let name = PodName {
                        namespace: pod.metadata.namespace().to_string(),
                        name: pod.metadata.name.clone(),
                    };
                    let Some(ip) = pod.ip() else { continue };
                    if let Some(other) = ips.insert(ip, name.clone()) {
                        return Err(PolicyError::DuplicateAddress(ip, other, name));
                    }
                    let named_ports = pod
                        .spec
                        .containers
                        .iter()
                        .flat_map(|c| &c.ports)
                        .filter_map(|p| Some(((p.name.clone()?, p.protocol), p.container_port)))
                        .collect();
                    let record = PodRecord {
                        name: name.clone(),
                        labels: pod.metadata.labels.clone(),
                        ip,
                        named_ports,
                    };
                    if state.pods.insert(name.clone(), record).is_some() {
                        return Err(PolicyError::Duplicate("Pod", name.to_string()));
                    }
                }
                Object::NetworkPolicy(policy) => {
                    let name = PodName {
                        namespace: policy.metadata.namespace().to_string(),
                        name: policy.metadata.name.clone(),
                    };
                    if state.policies.insert(name.clone(), *policy).is_some() {
                        return Err(PolicyError::Duplicate("NetworkPolicy", name.to_string()));
                    }
                }
                // Services, workloads and nodes play no part in policy.
                _ => {}
            }
        }
        // Namespaces only named by pods or policies still have Kubernetes' automatic label.
        let implied: Vec<String> = state
            .pods
            .keys()
            .chain(state.policies.keys())
            .map(|n| n.namespace.clone())
            .collect();
        for ns in implied {
            state
                .namespaces
                .entry(ns.clone())
                .or_insert_with(|| Labels::from([("kubernetes.io/metadata.name".to_string(), ns)]));
        }
        Ok(state)
    }
}
