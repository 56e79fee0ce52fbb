//! The endpoints controller: owns the EndpointSlices of every Service that has a selector
//! (those carrying a controller owner reference to their Service; slices a user wrote for a
//! selector-less Service are not its business).
//!
//! Node daemons program their load balancers from these slices, so the output is the whole
//! desired set, in a stable order: the runner replaces what differs and deletes the rest,
//! and an unchanged cluster yields byte-identical slices (no write, no watch event, no map
//! churn on the nodes).

use std::collections::BTreeMap;

use skiff_api::{
    meta::{IntOrString, ObjectMeta},
    service::{
        Endpoint, EndpointConditions, EndpointPort, ObjectReference, ServicePort,
        SERVICE_NAME_LABEL,
    },
    EndpointSlice, Pod, Protocol, Service,
};

use super::controller_reference;

/// The slices `service` should have, given `pods` (those of its namespace; others are
/// ignored). None for a Service without selector. Otherwise at least one, named after the
/// Service, even when no pod matches: an empty slice tells the nodes there is no backend.
///
/// Pods are included once they have an IP and a node and until they finish; terminating
/// ones stay as `serving`/`terminating` so connections can drain. A named `targetPort` is
/// resolved per pod, so pods may disagree on the number (or lack the port): endpoints are
/// grouped by their resolved port list, one slice per group (`{service}`, then
/// `{service}-1`, `{service}-2`...).
pub fn desired_slices(service: &Service, pods: &[Pod]) -> Vec<EndpointSlice> {
    let selector = &service.spec.selector;
    if selector.is_empty() {
        return Vec::new();
    }
    let namespace = service.metadata.namespace();
    // Keyed by the resolved ports in the Service's port order.
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods {
        let matches = pod.metadata.namespace() == namespace
            && selector
                .iter()
                .all(|(k, v)| pod.metadata.labels.get(k) == Some(v));
        let (Some(ip), Some(node)) = (pod.ip(), &pod.spec.node_name) else {
            continue;
        };
        if !matches || pod.is_finished() {
            continue;
        }
        let ports = service
            .spec
            .ports
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.protocol, target_port(p, pod)?)))
            .collect();
        let terminating = pod.is_terminating();
        groups.entry(ports).or_default().push(Endpoint {
            addresses: vec![ip],
            conditions: EndpointConditions {
                ready: pod.is_ready() && !terminating,
                serving: pod.is_ready(),
                terminating,
            },
            node_name: Some(node.clone()),
            target_ref: Some(ObjectReference {
                kind: "Pod".into(),
                name: pod.metadata.name.clone(),
                namespace: Some(namespace.to_string()),
                uid: pod.metadata.uid.clone(),
            }),
        });
    }
    if groups.is_empty() {
        groups.insert(Vec::new(), Vec::new());
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, (ports, mut endpoints))| {
            endpoints.sort_by(|a, b| {
                let name = |e: &Endpoint| e.target_ref.as_ref().map(|r| r.name.clone());
                (&a.addresses, name(a)).cmp(&(&b.addresses, name(b)))
            });
            let name = match i {
                0 => service.metadata.name.clone(),
                n => format!("{}-{n}", service.metadata.name),
            };
            EndpointSlice {
                api_version: "discovery.k8s.io/v1".into(),
                kind: "EndpointSlice".into(),
                metadata: ObjectMeta {
                    name,
                    namespace: Some(namespace.to_string()),
                    labels: [(
                        SERVICE_NAME_LABEL.to_string(),
                        service.metadata.name.clone(),
                    )]
                    .into(),
                    owner_references: vec![controller_reference(
                        "v1",
                        "Service",
                        &service.metadata,
                    )],
                    ..ObjectMeta::default()
                },
                address_type: "IPv4".into(),
                endpoints,
                ports: ports
                    .into_iter()
                    .map(|(name, protocol, port)| EndpointPort {
                        name,
                        protocol,
                        port,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// A Service port's name and protocol with the number it resolved to on a pod.
type ResolvedPort = (Option<String>, Protocol, u16);

/// The pod's port for a Service port: the number given, the pod's container port of that
/// name and protocol, or the Service port itself. `None` when the pod has no such port.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<u16> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|n| *n != 0),
        Some(IntOrString::String(name)) => pod
            .named_port(name)
            .filter(|p| p.protocol == port.protocol)
            .map(|p| p.container_port),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use skiff_api::{service::ServiceSpec, ContainerPort, PodStatus};

    use super::*;
    use crate::controllers::fixtures::{self, pod_status, web_labels};

    fn service(ports: Vec<ServicePort>) -> Service {
        Service {
            api_version: "v1".into(),
            kind: "Service".into(),
            metadata: ObjectMeta {
                name: "web".into(),
                namespace: Some("shop".into()),
                uid: Some("svc-uid".into()),
                ..ObjectMeta::default()
            },
            spec: ServiceSpec {
                ports,
                selector: web_labels(),
                ..ServiceSpec::default()
            },
            status: None,
        }
    }

    fn port(name: &str, port: u16, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            protocol: Protocol::Tcp,
            port,
            target_port: target,
            node_port: None,
        }
    }

    /// Pod `shop/{name}` labelled `app=web` on `node-a` at `ip`, its container naming
    /// `http_port` `http`.
    fn pod(name: &str, ip: [u8; 4], ready: bool, http_port: Option<u16>) -> Pod {
        let mut p = fixtures::pod(name, "", "", &[]);
        p.metadata.namespace = Some("shop".into());
        p.metadata.labels = web_labels();
        p.metadata.uid = Some(format!("uid-{name}"));
        p.spec.containers[0].ports = http_port
            .map(|p| ContainerPort {
                name: Some("http".into()),
                container_port: p,
                protocol: Protocol::Tcp,
            })
            .into_iter()
            .collect();
        p.spec.node_name = Some("node-a".into());
        p.status = Some(PodStatus {
            pod_ip: Some(Ipv4Addr::from(ip)),
            ..pod_status(None, ready)
        });
        p
    }

    fn addresses(slice: &EndpointSlice) -> Vec<String> {
        slice
            .endpoints
            .iter()
            .map(|e| e.addresses[0].to_string())
            .collect()
    }

    #[test]
    fn one_sorted_slice_for_uniform_pods() {
        let svc = service(vec![port("http", 80, Some(IntOrString::Int(8080)))]);
        let pods = [
            pod("b", [10, 244, 0, 9], true, None),
            pod("a", [10, 244, 0, 10], false, None),
        ];
        let slices = desired_slices(&svc, &pods);
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        assert_eq!(s.metadata.name, "web");
        assert_eq!(s.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(s.metadata.labels.get(SERVICE_NAME_LABEL).unwrap(), "web");
        assert_eq!(s.metadata.controller().unwrap().uid, "svc-uid");
        // Numeric order: .9 before .10.
        assert_eq!(addresses(s), ["10.244.0.9", "10.244.0.10"]);
        assert_eq!(
            s.ports,
            [EndpointPort {
                name: Some("http".into()),
                protocol: Protocol::Tcp,
                port: 8080
            }]
        );
        assert!(s.endpoints[0].conditions.ready && !s.endpoints[1].conditions.ready);
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("node-a"));
        assert_eq!(s.endpoints[0].target_ref.as_ref().unwrap().name, "b");
        // Stable: the same input gives the same output, whatever the pod order.
        let reversed: Vec<Pod> = pods.iter().rev().cloned().collect();
        assert_eq!(desired_slices(&svc, &reversed), slices);
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let svc = service(vec![
            port("http", 80, Some(IntOrString::String("http".into()))),
            port("admin", 9000, None),
        ]);
        let pods = [
            pod("a", [10, 0, 0, 1], true, Some(8080)),
            pod("b", [10, 0, 0, 2], true, Some(8080)),
            pod("c", [10, 0, 0, 3], true, Some(9090)),
            pod("d", [10, 0, 0, 4], true, None),
        ];
        let slices = desired_slices(&svc, &pods);
        type Summary = (String, Vec<(Option<String>, u16)>, Vec<String>);
        let summary: Vec<Summary> = slices
            .iter()
            .map(|s| {
                (
                    s.metadata.name.clone(),
                    s.ports.iter().map(|p| (p.name.clone(), p.port)).collect(),
                    addresses(s),
                )
            })
            .collect();
        let admin = (Some("admin".to_string()), 9000);
        let http = |n| (Some("http".to_string()), n);
        assert_eq!(
            summary,
            [
                ("web".into(), vec![admin.clone()], vec!["10.0.0.4".into()]),
                (
                    "web-1".into(),
                    vec![http(8080), admin.clone()],
                    vec!["10.0.0.1".into(), "10.0.0.2".into()]
                ),
                (
                    "web-2".into(),
                    vec![http(9090), admin],
                    vec!["10.0.0.3".into()]
                ),
            ]
        );
    }

    #[test]
    fn terminating_pods_drain_and_others_are_left_out() {
        let svc = service(vec![port("http", 80, None)]);
        let mut leaving = pod("leaving", [10, 0, 0, 1], true, None);
        leaving.metadata.deletion_timestamp = Some("2026-11-22T10:00:00Z".into());
        let mut no_ip = pod("no-ip", [10, 0, 0, 2], true, None);
        no_ip.status.as_mut().unwrap().pod_ip = None;
        let mut unscheduled = pod("unscheduled", [10, 0, 0, 3], true, None);
        unscheduled.spec.node_name = None;
        let mut done = pod("done", [10, 0, 0, 4], false, None);
        done.status.as_mut().unwrap().phase = Some(skiff_api::PodPhase::Failed);
        let mut elsewhere = pod("elsewhere", [10, 0, 0, 5], true, None);
        elsewhere.metadata.namespace = Some("other".into());
        let mut unlabelled = pod("unlabelled", [10, 0, 0, 6], true, None);
        unlabelled.metadata.labels.clear();
        let slices = desired_slices(
            &svc,
            &[leaving, no_ip, unscheduled, done, elsewhere, unlabelled],
        );
        assert_eq!(slices.len(), 1);
        assert_eq!(addresses(&slices[0]), ["10.0.0.1"]);
        assert_eq!(
            slices[0].endpoints[0].conditions,
            EndpointConditions {
                ready: false,
                serving: true,
                terminating: true
            }
        );
    }

    #[test]
    fn no_pods_gives_one_empty_slice_and_no_selector_gives_none() {
        let svc = service(vec![port("http", 80, None)]);
        let slices = desired_slices(&svc, &[]);
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].metadata.name, "web");
        assert!(slices[0].endpoints.is_empty());

        let mut manual = svc.clone();
        manual.spec.selector.clear();
        let pods = [pod("a", [10, 0, 0, 1], true, None)];
        assert!(desired_slices(&manual, &pods).is_empty());
    }
}
