//! kube-proxy's iptables mode as `iptables-restore` input.
//!
//! The `*nat` table carries the service logic:
//! - `PREROUTING` and `OUTPUT` jump to `KUBE-SERVICES` ("kubernetes service portals"),
//!   `POSTROUTING` to `KUBE-POSTROUTING`, which masquerades packets carrying the `0x4000`
//!   mark (and clears it) that `KUBE-MARK-MASQ` sets;
//! - `KUBE-SERVICES` holds one rule per service port, matching its ClusterIP, protocol and
//!   port and jumping to `KUBE-SVC-<hash>`; its last rule sends local destinations to
//!   `KUBE-NODEPORTS`. The kernel walks this chain linearly: the cost Skiff removes;
//! - `KUBE-SVC-<hash>` marks traffic from outside the cluster CIDR for masquerade, then picks
//!   endpoint `i` of `n` with `statistic --mode random --probability 1/(n-i)` (the last one
//!   unconditionally) and jumps to its `KUBE-SEP-<hash>`;
//! - `KUBE-SEP-<hash>` marks hairpin traffic (the endpoint talking to itself through the
//!   service) and DNATs to the endpoint.
//!
//! The `*filter` table holds the chains kube-proxy creates there: `KUBE-FORWARD` (accept
//! marked and established traffic, drop conntrack-invalid packets), `KUBE-SERVICES`
//! (rejects for services without endpoints) and the NodePort, external-service and
//! firewall chains, empty here.
//!
//! Hashes are kube-proxy's: the first 16 characters of base32(SHA-256) of
//! `NAMESPACE/NAME:PORTNAME` + protocol (`tcp`), with `IP:PORT` of the endpoint appended for
//! a `KUBE-SEP` chain; so `default/kubernetes:https` is `KUBE-SVC-NPX46M4PTMTKRN6Y` as on
//! every cluster.
//!
//! kube-proxy itself creates the chains and the jumps from the built-in chains with single
//! `iptables` calls and then runs `iptables-restore --noflush`; here one input holds all of
//! it and replaces each table whole, so loading it again is a clean re-sync. Only matches
//! this kernel has are used: `comment`, `conntrack`, `mark`, `statistic`, `addrtype`,
//! `tcp`/`udp`, and the `MARK`, `MASQUERADE`, `DNAT`, `REJECT` targets.

use std::{fmt::Write, net::SocketAddrV4};

use super::{hash::name_hash, Ipv4Cidr, Service, MASQUERADE_MARK};

/// Length of the hash in `KUBE-SVC-` and `KUBE-SEP-` chain names.
pub const HASH_LEN: usize = 16;

/// The service port's chain: `KUBE-SVC-` + hash of `NAMESPACE/NAME:PORT` + protocol.
pub fn svc_chain(service: &Service) -> String {
    let input = format!("{}{}", service.port_name_string(), service.protocol);
    format!("KUBE-SVC-{}", name_hash(&input, HASH_LEN))
}

/// An endpoint's chain: `KUBE-SEP-` + hash of `NAMESPACE/NAME:PORT` + protocol + `IP:PORT`.
pub fn sep_chain(service: &Service, endpoint: &SocketAddrV4) -> String {
    let input = format!(
        "{}{}{}",
        service.port_name_string(),
        service.protocol,
        endpoint
    );
    format!("KUBE-SEP-{}", name_hash(&input, HASH_LEN))
}

/// The probability kube-proxy gives endpoint `index` of `count` (all but the last), printed
/// as kube-proxy prints it: ten decimal places.
pub fn probability(index: usize, count: usize) -> String {
    format!("{:.10}", 1.0 / (count - index) as f64)
}

/// `iptables-restore` input for `services`, with `cluster_cidr` the pod range whose
/// sources need no masquerade. Contains a `*filter` and a `*nat` table.
pub fn restore_input(services: &[Service], cluster_cidr: Ipv4Cidr) -> String {
    // About 600 bytes per service and 450 per endpoint.
    let endpoints: usize = services.iter().map(|s| s.endpoints.len()).sum();
    let mut out = String::with_capacity(4096 + services.len() * 600 + endpoints * 450);
    write_filter(&mut out, services);
    write_nat(&mut out, services, cluster_cidr);
    out
}

fn write_filter(out: &mut String, services: &[Service]) {
    out.push_str("*filter\n");
    for builtin in ["INPUT", "FORWARD", "OUTPUT"] {
        let _ = writeln!(out, ":{builtin} ACCEPT [0:0]");
    }
    for chain in [
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FIREWALL",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SERVICES",
    ] {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    const NEW: &str = "-m conntrack --ctstate NEW";
    let lb_firewall =
        "-m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL";
    let portals = "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES";
    let external = "-m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES";
    let _ = writeln!(out, "-A INPUT {NEW} {lb_firewall}");
    let _ = writeln!(
        out,
        "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS"
    );
    let _ = writeln!(out, "-A INPUT {NEW} {external}");
    let _ = writeln!(out, "-A FORWARD {NEW} {lb_firewall}");
    let _ = writeln!(
        out,
        "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD"
    );
    let _ = writeln!(out, "-A FORWARD {NEW} {portals}");
    let _ = writeln!(out, "-A FORWARD {NEW} {external}");
    let _ = writeln!(out, "-A OUTPUT {NEW} {lb_firewall}");
    let _ = writeln!(out, "-A OUTPUT {NEW} {portals}");
    let _ = writeln!(
        out,
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP"
    );
    let _ = writeln!(
        out,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" \
         -m mark --mark {MASQUERADE_MARK:#x}/{MASQUERADE_MARK:#x} -j ACCEPT"
    );
    let _ = writeln!(
        out,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" \
         -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
    for service in services.iter().filter(|s| s.endpoints.is_empty()) {
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -d {ip}/32 -p {proto} -m comment --comment \"{name} has no endpoints\" \
             -m {proto} --dport {port} -j REJECT --reject-with icmp-port-unreachable",
            ip = service.cluster_ip,
            proto = service.protocol,
            name = service.port_name_string(),
            port = service.port,
        );
    }
    out.push_str("COMMIT\n");
}

fn write_nat(out: &mut String, services: &[Service], cluster_cidr: Ipv4Cidr) {
    out.push_str("*nat\n");
    for builtin in ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"] {
        let _ = writeln!(out, ":{builtin} ACCEPT [0:0]");
    }
    for chain in [
        "KUBE-MARK-MASQ",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-SERVICES",
    ] {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let active = services.iter().filter(|s| !s.endpoints.is_empty());
    for service in active.clone() {
        let _ = writeln!(out, ":{} - [0:0]", svc_chain(service));
        for endpoint in &service.endpoints {
            let _ = writeln!(out, ":{} - [0:0]", sep_chain(service, endpoint));
        }
    }
    let portals = "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES";
    let _ = writeln!(out, "-A PREROUTING {portals}");
    let _ = writeln!(out, "-A OUTPUT {portals}");
    let _ = writeln!(
        out,
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"
    );
    let mark = format!("{MASQUERADE_MARK:#x}/{MASQUERADE_MARK:#x}");
    let _ = writeln!(out, "-A KUBE-MARK-MASQ -j MARK --set-xmark {mark}");
    let _ = writeln!(out, "-A KUBE-POSTROUTING -m mark ! --mark {mark} -j RETURN");
    let _ = writeln!(
        out,
        "-A KUBE-POSTROUTING -j MARK --set-xmark {MASQUERADE_MARK:#x}/0x0"
    );
    let _ = writeln!(
        out,
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" \
         -j MASQUERADE --random-fully"
    );

    for service in active {
        let name = service.port_name_string();
        let svc = svc_chain(service);
        let proto = service.protocol;
        let ip = service.cluster_ip;
        let port = service.port;
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -d {ip}/32 -p {proto} -m comment --comment \"{name} cluster IP\" \
             -m {proto} --dport {port} -j {svc}"
        );
        let _ = writeln!(
            out,
            "-A {svc} ! -s {cluster_cidr} -d {ip}/32 -p {proto} -m comment --comment \"{name} cluster IP\" \
             -m {proto} --dport {port} -j KUBE-MARK-MASQ"
        );
        let count = service.endpoints.len();
        for (index, endpoint) in service.endpoints.iter().enumerate() {
            let sep = sep_chain(service, endpoint);
            let _ = write!(
                out,
                "-A {svc} -m comment --comment \"{name} -> {endpoint}\""
            );
            if index + 1 < count {
                let _ = write!(
                    out,
                    " -m statistic --mode random --probability {}",
                    probability(index, count)
                );
            }
            let _ = writeln!(out, " -j {sep}");
        }
        for endpoint in &service.endpoints {
            let sep = sep_chain(service, endpoint);
            let _ = writeln!(
                out,
                "-A {sep} -s {}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ",
                endpoint.ip()
            );
            let _ = writeln!(
                out,
                "-A {sep} -p {proto} -m comment --comment \"{name}\" -m {proto} \
                 -j DNAT --to-destination {endpoint}"
            );
        }
    }
    let _ = writeln!(
        out,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" \
         -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    );
    out.push_str("COMMIT\n");
}
