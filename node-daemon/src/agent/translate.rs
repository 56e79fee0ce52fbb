//! Services and EndpointSlices from the API, as the data plane's desired state.

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, SocketAddrV4},
};

use crate::dns::zone::{DNS_NAMESPACE, DNS_SERVICE};

use skiff_api::{
    service::{self as api, SERVICE_NAME_LABEL},
    EndpointSlice,
};

use crate::service_lb::desired::{
    self, DesiredServices, Endpoint, LoadBalancing, ServicePort, TargetPort,
};

/// The data plane's view of `services` and their `slices`, for the node named `node`.
///
/// EndpointSlices carry target ports already resolved per pod; each service port becomes a
/// named target (`svc:<port name>`) that every endpoint maps to its resolved number, so a
/// pod lacking a named port simply does not serve that service port.
///
/// `local_dns`, the node's own DNS server, is the one endpoint of `kube-system/kube-dns` on
/// this node whatever the API says, so pods' lookups never leave the node.
pub fn desired_services(
    services: &[api::Service],
    slices: &[EndpointSlice],
    node: &str,
    node_addresses: &[Ipv4Addr],
    local_dns: Option<SocketAddrV4>,
) -> DesiredServices {
    let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        if let Some(service) = slice.metadata.labels.get(SERVICE_NAME_LABEL) {
            by_service
                .entry((slice.metadata.namespace().to_string(), service.clone()))
                .or_default()
                .push(slice);
        }
    }
    let mut out = DesiredServices {
        node_addresses: node_addresses.to_vec(),
        ..DesiredServices::default()
    };
    for svc in services {
        let Some(cluster_ip) = svc.cluster_ip() else {
            // Headless: no frontend, nothing for the data plane.
            continue;
        };
        let ns = svc.metadata.namespace().to_string();
        let key = (ns.clone(), svc.metadata.name.clone());
        let ports: Vec<ServicePort> = svc
            .spec
            .ports
            .iter()
            .map(|p| ServicePort {
                name: p.name.clone(),
                protocol: match p.protocol {
                    skiff_api::Protocol::Udp => desired::Protocol::UDP,
                    _ => desired::Protocol::TCP,
                },
                port: p.port,
                target_port: Some(TargetPort::Name(target_name(p.name.as_deref()))),
                node_port: p.node_port,
            })
            .collect();
        let mut endpoints: BTreeMap<Ipv4Addr, Endpoint> = BTreeMap::new();
        for slice in by_service.get(&key).into_iter().flatten() {
            for e in &slice.endpoints {
                for ip in &e.addresses {
                    let endpoint = endpoints.entry(*ip).or_insert_with(|| Endpoint {
                        ip: *ip,
                        local: e.node_name.as_deref() == Some(node),
                        ready: e.conditions.ready || e.conditions.serving,
                        terminating: e.conditions.terminating,
                        ports: BTreeMap::new(),
                    });
                    for port in &slice.ports {
                        endpoint
                            .ports
                            .insert(target_name(port.name.as_deref()), port.port);
                    }
                }
            }
        }
        if let (Some(dns), true) = (
            local_dns,
            ns == DNS_NAMESPACE && svc.metadata.name == DNS_SERVICE,
        ) {
            let local = Endpoint {
                ip: *dns.ip(),
                local: true,
                ready: true,
                terminating: false,
                ports: ports
                    .iter()
                    .map(|p| (target_name(p.name.as_deref()), dns.port()))
                    .collect(),
            };
            endpoints = BTreeMap::from([(local.ip, local)]);
        }
        out.services.push(desired::Service {
            namespace: ns,
            name: svc.metadata.name.clone(),
            cluster_ip: Some(cluster_ip),
            service_type: match svc.type_() {
                api::ServiceType::NodePort => desired::ServiceType::NodePort,
                api::ServiceType::ClusterIP => desired::ServiceType::ClusterIP,
            },
            ports,
            external_traffic_policy: match svc.spec.external_traffic_policy {
                Some(api::TrafficPolicy::Local) => desired::TrafficPolicy::Local,
                _ => desired::TrafficPolicy::Cluster,
            },
            health_check_node_port: None,
            session_affinity: match svc.spec.session_affinity {
                Some(api::SessionAffinity::ClientIp) => desired::SessionAffinity::ClientIP,
                _ => desired::SessionAffinity::None,
            },
            session_affinity_timeout_seconds: svc
                .spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds),
            load_balancing: LoadBalancing::default(),
            endpoints: endpoints.into_values().collect(),
        });
    }
    out
}

fn target_name(port_name: Option<&str>) -> String {
    format!("svc:{}", port_name.unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> api::Service {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn slices_become_endpoints_with_resolved_ports() {
        let svc = service(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
             spec: {clusterIP: 10.96.0.7, type: NodePort, ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]}\n",
        );
        let slice: EndpointSlice = serde_yaml::from_str(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {name: web, namespace: shop, labels: {kubernetes.io/service-name: web}}\n\
             endpoints:\n- {addresses: [10.244.1.5], nodeName: n1, conditions: {ready: true, serving: true}}\n\
             - {addresses: [10.244.2.5], nodeName: n2, conditions: {ready: false, serving: true, terminating: true}}\n\
             ports: [{name: http, port: 8080}]\n",
        )
        .unwrap();
        let desired = desired_services(
            &[svc],
            &[slice],
            "n1",
            &["192.168.1.1".parse().unwrap()],
            Some("192.168.1.1:53".parse().unwrap()),
        );
        let s = &desired.services[0];
        assert_eq!(s.cluster_ip, Some("10.96.0.7".parse().unwrap()));
        assert_eq!(s.service_type, desired::ServiceType::NodePort);
        assert_eq!(s.ports[0].node_port, Some(30080));
        let resolved: Vec<_> = s
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.ip.to_string(),
                    e.local,
                    e.serving(),
                    e.resolve(&s.ports[0].target()),
                )
            })
            .collect();
        assert_eq!(
            resolved,
            [
                ("10.244.1.5".into(), true, true, Some(8080)),
                ("10.244.2.5".into(), false, false, Some(8080))
            ]
        );
        desired.validate().unwrap();
    }

    #[test]
    fn the_cluster_dns_service_is_served_by_this_node() {
        let svc = service(
            "apiVersion: v1\nkind: Service\nmetadata: {name: kube-dns, namespace: kube-system}\n\
             spec: {clusterIP: 10.96.0.10, ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]}\n",
        );
        let node = "192.168.1.1:5353".parse().unwrap();
        let desired = desired_services(&[svc], &[], "n1", &[], Some(node));
        let s = &desired.services[0];
        assert_eq!(s.endpoints.len(), 1);
        let e = &s.endpoints[0];
        assert_eq!((e.ip, e.local, e.serving()), (*node.ip(), true, true));
        for port in &s.ports {
            assert_eq!(e.resolve(&port.target()), Some(5353));
        }
        desired.validate().unwrap();
    }
}
