//! The services and policies every benchmark installs, generated the same way for Skiff and
//! for the kube-proxy modes so they compare like for like.
//!
//! The measured service is `bench/target` at [`TARGET_VIP`]:80. The other services ("filler")
//! sit in 10.97.0.0/16, each with [`FILLER_ENDPOINTS`] endpoints in 10.245.0.0/16, addresses
//! nothing ever connects to: they are there to make the tables as big as a real cluster's.

use std::{fmt::Write as _, net::Ipv4Addr};

use serde_json::{json, Value};

use crate::kube_proxy::{self, Ipv4Cidr};

pub const TARGET_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const TARGET_PORT: u16 = 80;
pub const NODE_PORT: u16 = 30080;
pub const FILLER_ENDPOINTS: usize = 2;
/// The pods' addresses (kube-proxy's `--cluster-cidr`): traffic from outside it is masqueraded.
pub const CLUSTER_CIDR: Ipv4Cidr = Ipv4Cidr {
    address: Ipv4Addr::new(10, 244, 0, 0),
    prefix: 16,
};

/// The i-th filler service's ClusterIP: 10.97.0.0/16 holds 65,536.
pub fn filler_vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 97, (i >> 8) as u8, (i & 0xff) as u8)
}

/// The e-th endpoint of the i-th filler service, in 10.245.0.0/16 (no pod has it).
pub fn filler_endpoint(i: usize, e: usize) -> Ipv4Addr {
    let n = (i * FILLER_ENDPOINTS + e) % 65_000;
    Ipv4Addr::new(10, 245, (n >> 8) as u8, (n & 0xff) as u8)
}

/// A Skiff desired-services document (`skiff-node run --services`, docs/services.md): the
/// target with `endpoints` (pod address, target port) and `fillers` other services.
pub fn skiff_services(
    node: Ipv4Addr,
    endpoints: &[(Ipv4Addr, u16)],
    fillers: usize,
    endpoints_per_filler: usize,
) -> Value {
    let mut services = Vec::with_capacity(fillers + 1);
    services.push(json!({
        "namespace": "bench", "name": "target", "clusterIp": TARGET_VIP, "type": "NodePort",
        "ports": [{"port": TARGET_PORT, "targetPort": endpoints.first().map_or(8080, |e| e.1),
                   "nodePort": NODE_PORT}],
        "endpoints": endpoints.iter().map(|(ip, _)| json!({"ip": ip})).collect::<Vec<_>>(),
    }));
    for i in 0..fillers {
        services.push(json!({
            "namespace": "bench", "name": format!("filler-{i}"), "clusterIp": filler_vip(i),
            "ports": [{"port": 80, "targetPort": 8080}],
            "endpoints": (0..endpoints_per_filler)
                .map(|e| json!({"ip": filler_endpoint(i, e)}))
                .collect::<Vec<_>>(),
        }));
    }
    json!({"nodeAddresses": [node], "services": services})
}

/// The same services as kube-proxy sees them: one [`kube_proxy::Service`] per port, its
/// endpoints at the port's target port.
pub fn kube_proxy_services(doc: &Value) -> anyhow::Result<Vec<kube_proxy::Service>> {
    let desired: skiff_node::service_lb::DesiredServices = serde_json::from_value(doc.clone())?;
    let mut services = Vec::new();
    for service in &desired.services {
        let Some(cluster_ip) = service.cluster_ip else {
            continue;
        };
        for port in &service.ports {
            let target = match port.target() {
                skiff_node::service_lb::desired::TargetPort::Number(n) => n,
                named => anyhow::bail!("{}: named target port {named}", service.name),
            };
            services.push(kube_proxy::Service::tcp(
                &service.namespace,
                &service.name,
                port.name.as_deref().unwrap_or(""),
                cluster_ip,
                port.port,
                service
                    .endpoints
                    .iter()
                    .map(|e| std::net::SocketAddrV4::new(e.ip, target))
                    .collect(),
            ));
        }
    }
    Ok(services)
}

/// Pods and `policies` NetworkPolicies as the node daemon's `--cluster` manifest. Pods: 100
/// per namespace in 10 namespaces plus the subject pods given (in namespace `bench`, label
/// `app: target`). Every policy selects an app of its namespace and lets in a neighbour app on
/// TCP 80, a namespace of a team and a CIDR; one policy selects the subjects and admits
/// `app: client`, so the measured packets walk the policy path.
pub fn policy_manifest(policies: usize, subjects: &[Ipv4Addr], clients: &[Ipv4Addr]) -> String {
    const NAMESPACES: usize = 10;
    const PODS: usize = 100;
    let mut m = String::new();
    let _ = writeln!(
        m,
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: bench, labels: {{team: t0}}}}"
    );
    let pods = subjects
        .iter()
        .map(|ip| ("target", ip))
        .chain(clients.iter().map(|ip| ("client", ip)));
    for (n, (app, ip)) in pods.enumerate() {
        let _ = writeln!(
            m,
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {app}-{n}, namespace: bench, labels: {{app: {app}}}}}\n\
             spec: {{containers: [{{name: main, image: skiff-probe}}]}}\nstatus: {{podIP: {ip}}}"
        );
    }
    for ns in 0..NAMESPACES {
        let _ = writeln!(
            m,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{ns}, labels: {{team: t{}}}}}",
            ns % 3
        );
        for i in 0..PODS {
            let n = ns * PODS + i;
            let _ = writeln!(
                m,
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: ns{ns}, labels: {{app: a{}}}}}\n\
                 spec: {{containers: [{{name: main, image: skiff-probe}}]}}\nstatus: {{podIP: 10.246.{}.{}}}",
                i % 10,
                n / 250,
                n % 250 + 2
            );
        }
    }
    let _ = writeln!(
        m,
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: target, namespace: bench}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: target}}}}\n  ingress:\n\
         \x20 - from: [{{podSelector: {{matchLabels: {{app: client}}}}}}]"
    );
    for p in 1..policies {
        let ns = p % NAMESPACES;
        let app = (p / NAMESPACES) % 10;
        let _ = writeln!(
            m,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np{p}, namespace: ns{ns}}}\n\
             spec:\n  podSelector: {{matchLabels: {{app: a{app}}}}}\n  ingress:\n\
             \x20 - from: [{{podSelector: {{matchLabels: {{app: a{}}}}}}}]\n    ports: [{{port: 80}}]\n\
             \x20 - from: [{{namespaceSelector: {{matchLabels: {{team: t{}}}}}}}]\n\
             \x20 - from: [{{ipBlock: {{cidr: 192.168.{}.0/24}}}}]",
            (app + 1) % 10,
            p % 3,
            p % 250,
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_addresses_are_distinct_and_stay_out_of_the_target_range() {
        let vips: std::collections::BTreeSet<_> = (0..50_000).map(filler_vip).collect();
        assert_eq!(vips.len(), 50_000);
        assert!(!vips.contains(&TARGET_VIP));
    }

    #[test]
    fn the_services_document_has_the_target_first() {
        let doc = skiff_services(
            Ipv4Addr::new(10, 200, 0, 1),
            &[(Ipv4Addr::new(10, 244, 1, 3), 8080)],
            3,
            2,
        );
        let services = doc["services"].as_array().unwrap();
        assert_eq!(services.len(), 4);
        assert_eq!(services[0]["name"], "target");
        assert_eq!(services[3]["endpoints"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_manifest_has_the_policies_asked_for() {
        let m = policy_manifest(100, &[Ipv4Addr::new(10, 244, 1, 3)], &[]);
        assert_eq!(m.matches("kind: NetworkPolicy").count(), 100);
    }
}
