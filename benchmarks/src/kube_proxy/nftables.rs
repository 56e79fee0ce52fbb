//! kube-proxy's nftables mode as an `nft -f` script.
//!
//! Everything lives in `table ip kube-proxy`:
//! - the `service-ips` verdict map (`ipv4_addr . inet_proto . inet_service : verdict`) holds
//!   one element per service port, `CLUSTERIP . tcp . PORT : goto service-...`, looked up by
//!   the `services` chain with `ip daddr . meta l4proto . th dport vmap @service-ips`: one
//!   hash lookup instead of iptables' linear walk;
//! - `nat-prerouting` and `nat-output` (priority `dstnat`, -100) jump to `services`;
//!   `nat-postrouting` (priority `srcnat`) jumps to `masquerading`, which masquerades packets
//!   carrying the `0x4000` mark (and clears it) that `mark-for-masquerade` sets;
//! - `service-HASH-NAMESPACE/NAME/PROTO/PORTNAME` marks traffic from outside the cluster CIDR
//!   for masquerade, then picks an endpoint with
//!   `numgen random mod N vmap { 0 : goto endpoint-..., ... }`;
//! - `endpoint-HASH-NAMESPACE/NAME/PROTO/PORTNAME__IP/PORT` marks hairpin traffic and
//!   DNATs with `meta l4proto tcp dnat to IP:PORT`;
//! - the filter-hook chains (priority -110, and -90 after DNAT on output) with the
//!   `cluster-ips` set, the `no-endpoint-services` map and `reject-chain` reject traffic to
//!   services without endpoints and to unused ports of ClusterIPs; the NodePort, firewall
//!   and no-endpoint-nodeport maps exist and stay empty.
//!
//! Chain hashes are kube-proxy's: the first 8 characters of base32(SHA-256) of the rest of
//! the name (`ns1/svc1/tcp/p80` gives `service-ULMVA6XW-ns1/svc1/tcp/p80`). `/` and `_`
//! are valid in unquoted nft identifiers.
//!
//! The script starts with `add table` + `delete table`, so one `nft -f` transaction replaces
//! whatever an earlier load left.
//!
//! Measured here (kernel 6.18, nft 1.0.6): a full load grows faster than linearly with the
//! number of services, almost all of it kernel time spent on the per-service
//! `numgen ... vmap { ... }` rules (each one an anonymous map); without them 10,000
//! services load in about a second, with them in 15 to 30 s. kube-proxy's own full sync
//! writes the same rules, so this is part of what the benchmark measures.

use std::{fmt::Write, net::SocketAddrV4};

use super::{hash::name_hash, Ipv4Cidr, Service, MASQUERADE_MARK};

/// The table kube-proxy's nftables mode owns.
pub const TABLE: &str = "kube-proxy";

/// Length of the hash in `service-` and `endpoint-` chain names.
pub const HASH_LEN: usize = 8;

/// `NAMESPACE/NAME/PROTO/PORTNAME`.
fn service_base(service: &Service) -> String {
    format!(
        "{}/{}/{}/{}",
        service.namespace, service.name, service.protocol, service.port_name
    )
}

/// The service port's chain: `service-HASH-NAMESPACE/NAME/PROTO/PORTNAME`.
pub fn service_chain(service: &Service) -> String {
    let base = service_base(service);
    format!("service-{}-{base}", name_hash(&base, HASH_LEN))
}

/// An endpoint's chain: `endpoint-HASH-NAMESPACE/NAME/PROTO/PORTNAME__IP/PORT`.
pub fn endpoint_chain(service: &Service, endpoint: &SocketAddrV4) -> String {
    let base = format!(
        "{}__{}/{}",
        service_base(service),
        endpoint.ip(),
        endpoint.port()
    );
    format!("endpoint-{}-{base}", name_hash(&base, HASH_LEN))
}

/// The `nft -f` script for `services`, with `cluster_cidr` the pod range whose sources need
/// no masquerade.
pub fn script(services: &[Service], cluster_cidr: Ipv4Cidr) -> String {
    let endpoints: usize = services.iter().map(|s| s.endpoints.len()).sum();
    let mut out = String::with_capacity(8192 + services.len() * 700 + endpoints * 500);
    let t = format!("ip {TABLE}");
    let mark = format!("{MASQUERADE_MARK:#x}");

    // Replace whatever an earlier load left, in the same transaction.
    let _ = writeln!(out, "add table {t}");
    let _ = writeln!(out, "delete table {t}");
    let _ = writeln!(
        out,
        "add table {t} {{ comment \"rules for kube-proxy\" ; }}"
    );

    // Sets and maps.
    let addr_proto_port = "ipv4_addr . inet_proto . inet_service : verdict";
    let proto_port = "inet_proto . inet_service : verdict";
    for (kind, name, key, comment) in [
        ("set", "cluster-ips", "ipv4_addr", "Active ClusterIPs"),
        (
            "set",
            "nodeport-ips",
            "ipv4_addr",
            "IPs that accept NodePort traffic",
        ),
        (
            "map",
            "firewall-ips",
            addr_proto_port,
            "destinations that are subject to LoadBalancerSourceRanges",
        ),
        (
            "map",
            "no-endpoint-services",
            addr_proto_port,
            "vmap to drop or reject packets to services with no endpoints",
        ),
        (
            "map",
            "no-endpoint-nodeports",
            proto_port,
            "vmap to drop or reject packets to service nodeports with no endpoints",
        ),
        (
            "map",
            "service-ips",
            addr_proto_port,
            "ClusterIP, ExternalIP and LoadBalancer IP traffic",
        ),
        ("map", "service-nodeports", proto_port, "NodePort traffic"),
    ] {
        let _ = writeln!(
            out,
            "add {kind} {t} {name} {{ type {key} ; comment \"{comment}\" ; }}"
        );
    }

    // Helper chains.
    let _ = writeln!(out, "add chain {t} mark-for-masquerade");
    let _ = writeln!(
        out,
        "add rule {t} mark-for-masquerade meta mark set meta mark or {mark}"
    );
    let _ = writeln!(out, "add chain {t} masquerading");
    let _ = writeln!(
        out,
        "add rule {t} masquerading meta mark and {mark} == 0 return"
    );
    let _ = writeln!(
        out,
        "add rule {t} masquerading meta mark set meta mark xor {mark}"
    );
    let _ = writeln!(out, "add rule {t} masquerading masquerade fully-random");
    let _ = writeln!(
        out,
        "add chain {t} reject-chain {{ comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }}"
    );
    let _ = writeln!(out, "add rule {t} reject-chain reject");
    let _ = writeln!(out, "add chain {t} cluster-ips-check");
    let _ = writeln!(
        out,
        "add rule {t} cluster-ips-check ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\""
    );
    let _ = writeln!(out, "add chain {t} firewall-check");
    let _ = writeln!(
        out,
        "add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips"
    );
    let _ = writeln!(out, "add chain {t} service-endpoints-check");
    let _ = writeln!(
        out,
        "add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services"
    );
    let _ = writeln!(out, "add chain {t} nodeport-endpoints-check");
    let _ = writeln!(
        out,
        "add rule {t} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"
    );
    let _ = writeln!(out, "add chain {t} services");
    let _ = writeln!(
        out,
        "add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips"
    );
    let _ = writeln!(
        out,
        "add rule {t} services fib daddr type local ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"
    );

    // Base chains (hooks).
    let base_chains: [(&str, &str, &str, &str, &[&str]); 8] = [
        (
            "filter-prerouting",
            "filter",
            "prerouting",
            "-110",
            &["ct state new jump firewall-check"],
        ),
        (
            "filter-input",
            "filter",
            "input",
            "-110",
            &[
                "ct state new jump nodeport-endpoints-check",
                "ct state new jump service-endpoints-check",
            ],
        ),
        (
            "filter-forward",
            "filter",
            "forward",
            "-110",
            &[
                "ct state new jump service-endpoints-check",
                "ct state new jump cluster-ips-check",
            ],
        ),
        (
            "filter-output",
            "filter",
            "output",
            "-110",
            &[
                "ct state new jump service-endpoints-check",
                "ct state new jump firewall-check",
            ],
        ),
        (
            "filter-output-post-dnat",
            "filter",
            "output",
            "-90",
            &["ct state new jump cluster-ips-check"],
        ),
        (
            "nat-prerouting",
            "nat",
            "prerouting",
            "dstnat",
            &["jump services"],
        ),
        // `dstnat` names -100 only on prerouting for nft before 1.0.7 or so.
        ("nat-output", "nat", "output", "-100", &["jump services"]),
        (
            "nat-postrouting",
            "nat",
            "postrouting",
            "srcnat",
            &["jump masquerading"],
        ),
    ];
    for (name, kind, hook, priority, rules) in base_chains {
        let _ = writeln!(
            out,
            "add chain {t} {name} {{ type {kind} hook {hook} priority {priority} ; }}"
        );
        for rule in rules {
            let _ = writeln!(out, "add rule {t} {name} {rule}");
        }
    }

    // Per service port: endpoint chains first (the service chain's vmap refers to them),
    // then the service chain and its map elements.
    for service in services {
        let ip = service.cluster_ip;
        let proto = service.protocol;
        let port = service.port;
        let _ = writeln!(out, "add element {t} cluster-ips {{ {ip} }}");
        if service.endpoints.is_empty() {
            let _ = writeln!(
                out,
                "add element {t} no-endpoint-services {{ {ip} . {proto} . {port} comment \"{}\" : goto reject-chain }}",
                service.port_name_string()
            );
            continue;
        }
        let mut vmap = String::new();
        for (index, endpoint) in service.endpoints.iter().enumerate() {
            let chain = endpoint_chain(service, endpoint);
            let _ = writeln!(out, "add chain {t} {chain}");
            let _ = writeln!(
                out,
                "add rule {t} {chain} ip saddr {} jump mark-for-masquerade",
                endpoint.ip()
            );
            let _ = writeln!(
                out,
                "add rule {t} {chain} meta l4proto {proto} dnat to {endpoint}"
            );
            if index > 0 {
                vmap.push_str(" , ");
            }
            let _ = write!(vmap, "{index} : goto {chain}");
        }
        let chain = service_chain(service);
        let _ = writeln!(out, "add chain {t} {chain}");
        let _ = writeln!(
            out,
            "add rule {t} {chain} ip daddr {ip} {proto} dport {port} ip saddr != {cluster_cidr} jump mark-for-masquerade"
        );
        let _ = writeln!(
            out,
            "add rule {t} {chain} numgen random mod {} vmap {{ {vmap} }}",
            service.endpoints.len()
        );
        let _ = writeln!(
            out,
            "add element {t} service-ips {{ {ip} . {proto} . {port} : goto {chain} }}"
        );
    }
    out
}
