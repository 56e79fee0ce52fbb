//! The cluster's names at one moment, built from the watch cache: what the node's DNS
//! server answers, the resolver configuration pods get, and the service environment
//! variables containers start with.
//!
//! Records are built once per view (a few per service), so a query is one hash lookup.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::Ipv4Addr,
    str::FromStr,
};

use hickory_proto::rr::{
    rdata::{A, SOA, SRV},
    Name, RData, Record,
};
use skiff_api::{service::SERVICE_NAME_LABEL, EndpointSlice, Object, Pod, Protocol, Service};

/// Seconds clients may cache an answer: short, so changes show within the freshness
/// budget even for clients that cache, as CoreDNS's kubernetes plugin does by default.
pub const TTL: u32 = 5;

/// Where the cluster DNS service lives, as on Kubernetes.
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_SERVICE: &str = "kube-dns";

/// The default cluster domain.
pub const DEFAULT_DOMAIN: &str = "cluster.local";

/// What a name resolves to.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// The name exists; `answers` may be empty (it has no records of the asked type).
    Found {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// A cluster name that does not exist.
    NxDomain,
    /// Not a cluster name: forward it.
    Outside,
}

/// Records of one name.
#[derive(Debug, Default)]
struct Entry {
    a: Vec<Record>,
    srv: Vec<Record>,
    /// The A records of the SRV targets, for the additional section.
    srv_targets: Vec<Record>,
}

/// A service as containers see it in their environment.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EnvService {
    name: String,
    ip: Ipv4Addr,
    ports: Vec<(Option<String>, Protocol, u16)>,
}

/// A query type the zone knows how to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryType {
    A,
    Srv,
    Any,
    /// Any other type: the name's existence is still answered (NOERROR, no records).
    Other,
}

#[derive(Debug)]
pub struct Zone {
    /// Lower case, with the trailing dot: `cluster.local.`.
    domain: String,
    soa: Record,
    names: HashMap<String, Entry>,
    /// Names that exist only as parents of others (`shop.svc.cluster.local.`).
    parents: HashSet<String>,
    /// (namespace, IP) of every running pod, for `a-b-c-d.NS.pod.DOMAIN`.
    pods: HashSet<(String, Ipv4Addr)>,
    env: BTreeMap<String, Vec<EnvService>>,
    /// The ClusterIP of kube-system/kube-dns: pods' nameserver.
    dns_address: Option<Ipv4Addr>,
    /// Built from a complete view of the cluster (not the placeholder before the first).
    complete: bool,
}

/// The error for a cluster domain that is not a DNS name.
#[derive(Debug, thiserror::Error)]
#[error("cluster domain {domain:?}: {reason} (expected a DNS name such as cluster.local)")]
pub struct DomainError {
    pub domain: String,
    pub reason: String,
}

/// Checks a cluster domain and returns it lower case without a trailing dot.
pub fn parse_domain(domain: &str) -> Result<String, DomainError> {
    let trimmed = domain.trim_end_matches('.').to_ascii_lowercase();
    let error = |reason: &str| DomainError {
        domain: domain.to_string(),
        reason: reason.to_string(),
    };
    if trimmed.is_empty() {
        return Err(error("empty"));
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(error("every label needs 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(error("labels hold only letters, digits and '-'"));
        }
    }
    Name::from_str(&format!("{trimmed}.")).map_err(|e| error(&e.to_string()))?;
    Ok(trimmed)
}

fn name(fqdn: &str) -> Name {
    // Every name is made from validated labels (API object names, the checked domain).
    Name::from_str(fqdn).unwrap_or_else(|_| Name::root())
}

fn a_record(fqdn: &str, ip: Ipv4Addr) -> Record {
    Record::from_rdata(name(fqdn), TTL, RData::A(A(ip)))
}

fn srv_record(fqdn: &str, weight: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name(fqdn),
        TTL,
        RData::SRV(SRV::new(0, weight, port, name(target))),
    )
}

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "_tcp",
        Protocol::Udp => "_udp",
        Protocol::Sctp => "_sctp",
    }
}

/// `10.244.1.5` as a DNS label: `10-244-1-5`.
fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

impl Zone {
    /// An empty zone: every cluster name is NXDOMAIN until the first view.
    pub fn empty(domain: &str) -> Zone {
        Zone {
            complete: false,
            ..Zone::build(domain, &[])
        }
    }

    /// False for the placeholder a starting daemon holds before its first view: answering
    /// from it would deny names that exist.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The zone of these objects (the watch cache); other kinds are ignored.
    pub fn build(domain: &str, objects: &[Object]) -> Zone {
        let domain = format!("{}.", domain.trim_end_matches('.').to_ascii_lowercase());
        let soa = Record::from_rdata(
            name(&domain),
            TTL,
            RData::SOA(SOA::new(
                name(&format!("ns.dns.{domain}")),
                name(&format!("hostmaster.{domain}")),
                1,
                7200,
                1800,
                86400,
                TTL,
            )),
        );
        let mut zone = Zone {
            soa,
            names: HashMap::new(),
            parents: [
                domain.clone(),
                format!("svc.{domain}"),
                format!("pod.{domain}"),
            ]
            .into(),
            pods: HashSet::new(),
            env: BTreeMap::new(),
            dns_address: None,
            complete: true,
            domain,
        };
        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for o in objects {
            if let Object::EndpointSlice(s) = o {
                if let Some(service) = s.metadata.labels.get(SERVICE_NAME_LABEL) {
                    slices
                        .entry((s.metadata.namespace(), service.as_str()))
                        .or_default()
                        .push(s);
                }
            }
        }
        for o in objects {
            match o {
                Object::Service(s) => {
                    let key = (s.metadata.namespace(), s.metadata.name.as_str());
                    let slices = slices.get(&key).map(Vec::as_slice).unwrap_or_default();
                    zone.add_service(s, slices);
                }
                Object::Pod(p) => zone.add_pod(p),
                _ => {}
            }
        }
        zone
    }

    fn add_pod(&mut self, pod: &Pod) {
        if pod.is_finished() {
            return;
        }
        if let Some(ip) = pod.ip() {
            self.pods.insert((pod.metadata.namespace().to_string(), ip));
            self.parents
                .insert(format!("{}.pod.{}", pod.metadata.namespace(), self.domain));
        }
    }

    fn add_service(&mut self, svc: &Service, slices: &[&EndpointSlice]) {
        let ns = svc.metadata.namespace();
        let base = format!("{}.{ns}.svc.{}", svc.metadata.name, self.domain);
        self.parents.insert(format!("{ns}.svc.{}", self.domain));
        let mut entry = Entry::default();
        let mut srv: BTreeMap<String, Entry> = BTreeMap::new();
        if svc.is_headless() {
            // Ready endpoints only, each once, with a host name of its own under the service.
            let mut ready: BTreeSet<Ipv4Addr> = BTreeSet::new();
            for slice in slices {
                for e in slice.endpoints.iter().filter(|e| e.conditions.ready) {
                    ready.extend(e.addresses.iter().copied());
                }
            }
            for ip in &ready {
                entry.a.push(a_record(&base, *ip));
                let host = format!("{}.{base}", dashed(*ip));
                self.names.insert(
                    host.clone(),
                    Entry {
                        a: vec![a_record(&host, *ip)],
                        ..Entry::default()
                    },
                );
            }
            let weight = (100 / ready.len().max(1)) as u16;
            for slice in slices {
                for port in &slice.ports {
                    let Some(port_name) = &port.name else {
                        continue;
                    };
                    let owner = format!("_{port_name}.{}.{base}", protocol_label(port.protocol));
                    let records = srv.entry(owner.clone()).or_default();
                    for e in slice.endpoints.iter().filter(|e| e.conditions.ready) {
                        for ip in &e.addresses {
                            let target = format!("{}.{base}", dashed(*ip));
                            records
                                .srv
                                .push(srv_record(&owner, weight, port.port, &target));
                            records.srv_targets.push(a_record(&target, *ip));
                        }
                    }
                }
            }
        } else if let Some(ip) = svc.cluster_ip() {
            entry.a.push(a_record(&base, ip));
            for port in &svc.spec.ports {
                let Some(port_name) = &port.name else {
                    continue;
                };
                let owner = format!("_{port_name}.{}.{base}", protocol_label(port.protocol));
                let records = srv.entry(owner.clone()).or_default();
                records.srv.push(srv_record(&owner, 100, port.port, &base));
                records.srv_targets.push(a_record(&base, ip));
            }
            self.env
                .entry(ns.to_string())
                .or_default()
                .push(EnvService {
                    name: svc.metadata.name.clone(),
                    ip,
                    ports: svc
                        .spec
                        .ports
                        .iter()
                        .map(|p| (p.name.clone(), p.protocol, p.port))
                        .collect(),
                });
            if ns == DNS_NAMESPACE && svc.metadata.name == DNS_SERVICE {
                self.dns_address = Some(ip);
            }
        }
        for (owner, records) in srv {
            // `_PROTO.NAME...` exists as the parent of `_PORT._PROTO.NAME...`.
            if let Some((_, parent)) = owner.split_once('.') {
                self.parents.insert(parent.to_string());
            }
            self.names.insert(owner, records);
        }
        self.names.insert(base, entry);
    }

    /// The cluster domain, lower case, without the trailing dot.
    pub fn domain(&self) -> &str {
        self.domain.trim_end_matches('.')
    }

    /// The zone's SOA, for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The nameserver pods use: the cluster DNS service's ClusterIP.
    pub fn dns_address(&self) -> Option<Ipv4Addr> {
        self.dns_address
    }

    /// Answers `qname` (lower case, fully qualified with the trailing dot).
    pub fn lookup(&self, qname: &str, qtype: QueryType) -> Lookup {
        if !(qname == self.domain || qname.ends_with(&format!(".{}", self.domain))) {
            return Lookup::Outside;
        }
        if let Some(entry) = self.names.get(qname) {
            let mut answers = Vec::new();
            let mut additionals = Vec::new();
            if matches!(qtype, QueryType::A | QueryType::Any) {
                answers.extend(entry.a.iter().cloned());
            }
            if matches!(qtype, QueryType::Srv | QueryType::Any) {
                answers.extend(entry.srv.iter().cloned());
                additionals.extend(entry.srv_targets.iter().cloned());
            }
            return Lookup::Found {
                answers,
                additionals,
            };
        }
        if let Some(ip) = self.pod_address(qname) {
            let answers = if matches!(qtype, QueryType::A | QueryType::Any) {
                vec![a_record(qname, ip)]
            } else {
                Vec::new()
            };
            return Lookup::Found {
                answers,
                additionals: Vec::new(),
            };
        }
        if self.parents.contains(qname) {
            return Lookup::Found {
                answers: Vec::new(),
                additionals: Vec::new(),
            };
        }
        Lookup::NxDomain
    }

    /// `a-b-c-d.NS.pod.DOMAIN.` is a name when a running pod in NS has that address.
    fn pod_address(&self, qname: &str) -> Option<Ipv4Addr> {
        let rest = qname.strip_suffix(&format!(".pod.{}", self.domain))?;
        let (host, ns) = rest.split_once('.')?;
        let ip: Ipv4Addr = host.replace('-', ".").parse().ok()?;
        self.pods.contains(&(ns.to_string(), ip)).then_some(ip)
    }

    /// The variables Kubernetes gives a container for each service of its namespace that
    /// has a ClusterIP: `NAME_SERVICE_HOST`, `NAME_SERVICE_PORT`, `NAME_SERVICE_PORT_<PORT>`
    /// and the Docker-link style `NAME_PORT*`.
    pub fn service_env(&self, namespace: &str) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for svc in self.env.get(namespace).into_iter().flatten() {
            let prefix = env_name(&svc.name);
            let Some((_, first_proto, first_port)) = svc.ports.first() else {
                continue;
            };
            env.push((format!("{prefix}_SERVICE_HOST"), svc.ip.to_string()));
            env.push((format!("{prefix}_SERVICE_PORT"), first_port.to_string()));
            for (port_name, _, port) in &svc.ports {
                if let Some(port_name) = port_name {
                    env.push((
                        format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)),
                        port.to_string(),
                    ));
                }
            }
            let scheme = |p: &Protocol| protocol_label(*p).trim_start_matches('_');
            env.push((
                format!("{prefix}_PORT"),
                format!("{}://{}:{first_port}", scheme(first_proto), svc.ip),
            ));
            for (_, proto, port) in &svc.ports {
                let upper = scheme(proto).to_ascii_uppercase();
                let var = format!("{prefix}_PORT_{port}_{upper}");
                env.push((
                    var.clone(),
                    format!("{}://{}:{port}", scheme(proto), svc.ip),
                ));
                env.push((format!("{var}_PROTO"), scheme(proto).to_string()));
                env.push((format!("{var}_PORT"), port.to_string()));
                env.push((format!("{var}_ADDR"), svc.ip.to_string()));
            }
        }
        env
    }

    /// The resolver configuration of a pod in `namespace`, as the kubelet writes it for
    /// `dnsPolicy: ClusterFirst`; `None` while the cluster has no DNS service.
    pub fn pod_resolver(&self, namespace: &str) -> Option<ResolverConfig> {
        let domain = self.domain();
        Some(ResolverConfig {
            nameservers: vec![self.dns_address?],
            searches: vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_string(),
            ],
            options: vec!["ndots:5".into()],
        })
    }
}

/// `my-api` as an environment variable prefix: `MY_API`.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace(['-', '.'], "_")
}

/// A pod's /etc/resolv.conf.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolverConfig {
    pub nameservers: Vec<Ipv4Addr>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolverConfig {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for ns in &self.nameservers {
            text.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.searches.is_empty() {
            text.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(yaml: &str) -> Vec<Object> {
        skiff_api::manifest::parse_manifests(yaml).unwrap()
    }

    const CLUSTER: &str = "\
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec: {clusterIP: 10.96.0.10, ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]}
---
apiVersion: v1
kind: Service
metadata: {name: my-api, namespace: shop}
spec: {clusterIP: 10.96.0.7, ports: [{name: http, port: 80}, {name: stats, port: 9000, protocol: UDP}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: None, ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: shop, labels: {kubernetes.io/service-name: db}}
endpoints:
- {addresses: [10.244.1.5], conditions: {ready: true}}
- {addresses: [10.244.2.6], conditions: {ready: false}}
ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 10.244.1.9}
";

    fn addresses(lookup: Lookup) -> Vec<String> {
        match lookup {
            Lookup::Found { answers, .. } => answers
                .iter()
                .map(|r| match r.data() {
                    RData::A(a) => a.0.to_string(),
                    RData::SRV(s) => format!("{} {}", s.port(), s.target()),
                    other => format!("{other:?}"),
                })
                .collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn services_headless_srv_and_pods_resolve() {
        let zone = Zone::build("cluster.local", &objects(CLUSTER));
        let q = |n: &str, t| addresses(zone.lookup(n, t));
        assert_eq!(
            q("my-api.shop.svc.cluster.local.", QueryType::A),
            ["10.96.0.7"]
        );
        assert_eq!(
            q("db.shop.svc.cluster.local.", QueryType::A),
            ["10.244.1.5"]
        );
        assert_eq!(
            q("_pg._tcp.db.shop.svc.cluster.local.", QueryType::Srv),
            ["5432 10-244-1-5.db.shop.svc.cluster.local."]
        );
        assert_eq!(
            q("10-244-1-5.db.shop.svc.cluster.local.", QueryType::A),
            ["10.244.1.5"]
        );
        assert_eq!(
            q("_http._tcp.my-api.shop.svc.cluster.local.", QueryType::Srv),
            ["80 my-api.shop.svc.cluster.local."]
        );
        assert_eq!(
            q("10-244-1-9.shop.pod.cluster.local.", QueryType::A),
            ["10.244.1.9"]
        );
        // A pod name needs a pod with that address in that namespace.
        assert_eq!(
            q("10-244-1-9.other.pod.cluster.local.", QueryType::A),
            ["NxDomain"]
        );
        assert_eq!(
            q("nope.shop.svc.cluster.local.", QueryType::A),
            ["NxDomain"]
        );
        // Parents exist without records; other types of existing names are empty.
        assert!(q("shop.svc.cluster.local.", QueryType::A).is_empty());
        assert!(q("my-api.shop.svc.cluster.local.", QueryType::Other).is_empty());
        assert_eq!(q("example.com.", QueryType::A), ["Outside"]);
        assert_eq!(zone.dns_address(), Some("10.96.0.10".parse().unwrap()));
    }

    #[test]
    fn env_vars_follow_kubernetes_names() {
        let zone = Zone::build("cluster.local", &objects(CLUSTER));
        let env: BTreeMap<_, _> = zone.service_env("shop").into_iter().collect();
        assert_eq!(env["MY_API_SERVICE_HOST"], "10.96.0.7");
        assert_eq!(env["MY_API_SERVICE_PORT"], "80");
        assert_eq!(env["MY_API_SERVICE_PORT_HTTP"], "80");
        assert_eq!(env["MY_API_PORT"], "tcp://10.96.0.7:80");
        assert_eq!(env["MY_API_PORT_9000_UDP_PROTO"], "udp");
        // Headless services have no address to give.
        assert!(!env.keys().any(|k| k.starts_with("DB_")));
        assert!(zone
            .service_env("kube-system")
            .iter()
            .any(|(k, _)| k == "KUBE_DNS_SERVICE_HOST"));
    }

    #[test]
    fn pod_resolver_matches_the_kubelet() {
        let zone = Zone::build("cluster.local", &objects(CLUSTER));
        assert_eq!(
            zone.pod_resolver("shop").unwrap().render(),
            "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        assert_eq!(Zone::empty("cluster.local").pod_resolver("shop"), None);
    }

    #[test]
    fn cluster_domains_are_checked() {
        assert_eq!(parse_domain("Skiff.Internal.").unwrap(), "skiff.internal");
        let e = parse_domain("bad_domain").unwrap_err().to_string();
        assert!(e.contains("bad_domain") && e.contains("letters"), "{e}");
        assert!(parse_domain("").is_err());
    }
}
