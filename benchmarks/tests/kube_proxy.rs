//! The kube-proxy rule structures: their shape (unprivileged), and that they load into a lab
//! node's namespace and carry service traffic there, without touching the machine's own
//! tables (privileged).

use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddrV4},
    process::{Command, Stdio},
    time::Instant,
};

use skiff_benchmarks::kube_proxy::{
    self, filler_services, iptables, nftables, IptablesBackend, Ipv4Cidr, LoadError, Protocol,
    Service,
};
use skiff_lab::{Lab, NodeId, PodId};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// A service without endpoints: kube-proxy rejects connections to it.
const IDLE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);

fn ep(a: u8, b: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 244, a, b), port)
}

/// Two services with three endpoints each.
fn two_by_three() -> Vec<Service> {
    vec![
        Service::tcp(
            "default",
            "web",
            "http",
            Ipv4Addr::new(10, 96, 0, 20),
            80,
            vec![ep(1, 2, 8080), ep(1, 3, 8080), ep(2, 2, 8080)],
        ),
        Service {
            protocol: Protocol::Udp,
            ..Service::tcp(
                "kube-system",
                "kube-dns",
                "dns",
                CLUSTER_IP,
                53,
                vec![ep(1, 4, 53), ep(2, 3, 53), ep(2, 4, 53)],
            )
        },
    ]
}

fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn table<'a>(input: &'a str, name: &str) -> &'a str {
    let start = input
        .find(&format!("*{name}\n"))
        .unwrap_or_else(|| panic!("no *{name} table"));
    let rest = &input[start..];
    &rest[..rest.find("COMMIT\n").expect("COMMIT") + "COMMIT\n".len()]
}

#[test]
fn chain_names_are_kube_proxys_hashes() {
    // Chain names every kube-proxy cluster shows for these service ports.
    let kubernetes = Service::tcp("default", "kubernetes", "https", CLUSTER_IP, 443, vec![]);
    assert_eq!(
        iptables::svc_chain(&kubernetes),
        "KUBE-SVC-NPX46M4PTMTKRN6Y"
    );
    let dns_tcp = Service::tcp("kube-system", "kube-dns", "dns-tcp", CLUSTER_IP, 53, vec![]);
    assert_eq!(iptables::svc_chain(&dns_tcp), "KUBE-SVC-ERIFXISQEP7F7OF4");
    let dns = Service {
        protocol: Protocol::Udp,
        ..Service::tcp("kube-system", "kube-dns", "dns", CLUSTER_IP, 53, vec![])
    };
    assert_eq!(iptables::svc_chain(&dns), "KUBE-SVC-TCOU7JCQXEZGVUNU");

    // And the nftables proxier's naming scheme.
    let svc1 = Service::tcp(
        "ns1",
        "svc1",
        "p80",
        Ipv4Addr::new(172, 30, 0, 41),
        80,
        vec![],
    );
    assert_eq!(
        nftables::service_chain(&svc1),
        "service-ULMVA6XW-ns1/svc1/tcp/p80"
    );
    assert_eq!(
        nftables::endpoint_chain(&svc1, &SocketAddrV4::new(Ipv4Addr::new(10, 180, 0, 1), 80)),
        "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    );
}

#[test]
fn chain_names_are_stable_16_character_hashes() {
    let services = two_by_three();
    let mut names = Vec::new();
    for service in &services {
        names.push(iptables::svc_chain(service));
        for endpoint in &service.endpoints {
            names.push(iptables::sep_chain(service, endpoint));
        }
    }
    for name in &names {
        let hash = name
            .strip_prefix("KUBE-SVC-")
            .or_else(|| name.strip_prefix("KUBE-SEP-"))
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(hash.len(), 16, "{name}");
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
            "{name} is not base32"
        );
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "names collide: {names:?}");
    // Stable: the same input gives the same names, and the protocol is part of the hash.
    assert_eq!(iptables::svc_chain(&two_by_three()[0]), names[0]);
    let udp_web = Service {
        protocol: Protocol::Udp,
        ..services[0].clone()
    };
    assert_ne!(iptables::svc_chain(&udp_web), names[0]);
}

#[test]
fn iptables_input_has_kube_proxys_structure() {
    let services = two_by_three();
    let input = iptables::restore_input(&services, Ipv4Cidr::lab_cluster());
    let nat = table(&input, "nat");
    let filter = table(&input, "filter");

    // Chains: the fixed ones, one KUBE-SVC per service port and one KUBE-SEP per endpoint.
    for chain in [
        "KUBE-SERVICES",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
        "KUBE-NODEPORTS",
    ] {
        assert!(nat.contains(&format!("\n:{chain} - [0:0]\n")), "{chain}");
    }
    assert_eq!(lines_starting(nat, ":KUBE-SVC-").len(), 2);
    assert_eq!(lines_starting(nat, ":KUBE-SEP-").len(), 6);
    for chain in [
        "KUBE-SERVICES",
        "KUBE-FORWARD",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FIREWALL",
        "KUBE-NODEPORTS",
    ] {
        assert!(filter.contains(&format!("\n:{chain} - [0:0]\n")), "{chain}");
    }

    // Jumps from the built-in chains.
    for line in [
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    ] {
        assert!(nat.lines().any(|l| l == line), "missing: {line}");
    }
    assert!(nat
        .lines()
        .any(|l| l.starts_with("-A KUBE-POSTROUTING") && l.contains("-j MASQUERADE")));
    for line in [
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT",
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ] {
        assert!(filter.lines().any(|l| l == line), "missing: {line}");
    }

    // KUBE-SERVICES: one rule per service port, the NodePort jump last.
    let web = &services[0];
    let web_svc = iptables::svc_chain(web);
    let kube_services = lines_starting(nat, "-A KUBE-SERVICES ");
    assert_eq!(kube_services.len(), 3, "{kube_services:#?}");
    assert_eq!(
        kube_services[0],
        format!(
            "-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment \"default/web:http cluster IP\" \
             -m tcp --dport 80 -j {web_svc}"
        )
    );
    assert!(kube_services[1].contains("-p udp") && kube_services[1].contains("--dport 53"));
    assert!(kube_services[2].contains("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"));

    // KUBE-SVC: masquerade from outside the cluster, then 1/3, 1/2, the rest.
    let svc_rules = lines_starting(nat, &format!("-A {web_svc} "));
    assert_eq!(svc_rules.len(), 4, "{svc_rules:#?}");
    assert!(svc_rules[0].contains("! -s 10.244.0.0/16 -d 10.96.0.20/32"));
    assert!(svc_rules[0].ends_with("-j KUBE-MARK-MASQ"));
    let seps: Vec<_> = web
        .endpoints
        .iter()
        .map(|e| iptables::sep_chain(web, e))
        .collect();
    assert_eq!(
        svc_rules[1],
        format!(
            "-A {web_svc} -m comment --comment \"default/web:http -> 10.244.1.2:8080\" \
             -m statistic --mode random --probability 0.3333333333 -j {}",
            seps[0]
        )
    );
    assert!(svc_rules[2].contains("--probability 0.5000000000 -j "));
    assert!(svc_rules[2].ends_with(&seps[1]));
    assert!(!svc_rules[3].contains("statistic"));
    assert!(svc_rules[3].ends_with(&format!("-j {}", seps[2])));

    // KUBE-SEP: hairpin masquerade, then DNAT.
    let sep_rules = lines_starting(nat, &format!("-A {} ", seps[0]));
    assert_eq!(
        sep_rules,
        [
            format!(
                "-A {} -s 10.244.1.2/32 -m comment --comment \"default/web:http\" -j KUBE-MARK-MASQ",
                seps[0]
            ),
            format!(
                "-A {} -p tcp -m comment --comment \"default/web:http\" -m tcp -j DNAT --to-destination 10.244.1.2:8080",
                seps[0]
            ),
        ]
    );
    let dns_sep = iptables::sep_chain(&services[1], &services[1].endpoints[0]);
    assert!(nat.contains(&format!(
        "-A {dns_sep} -p udp -m comment --comment \"kube-system/kube-dns:dns\" -m udp -j DNAT --to-destination 10.244.1.4:53"
    )));
}

#[test]
fn probabilities_are_printed_like_kube_proxy() {
    assert_eq!(iptables::probability(0, 3), "0.3333333333");
    assert_eq!(iptables::probability(1, 3), "0.5000000000");
    assert_eq!(iptables::probability(0, 2), "0.5000000000");
    assert_eq!(iptables::probability(0, 7), "0.1428571429");
    assert_eq!(iptables::probability(5, 7), "0.5000000000");
}

#[test]
fn services_without_endpoints_reject() {
    let empty = Service::tcp("default", "idle", "", CLUSTER_IP, 80, vec![]);
    let input = iptables::restore_input(std::slice::from_ref(&empty), Ipv4Cidr::lab_cluster());
    assert!(table(&input, "filter").contains(
        "-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"default/idle has no endpoints\" \
         -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"
    ));
    assert!(lines_starting(table(&input, "nat"), ":KUBE-SVC-").is_empty());

    let script = nftables::script(&[empty], Ipv4Cidr::lab_cluster());
    assert!(script.contains(
        "add element ip kube-proxy no-endpoint-services { 10.96.0.10 . tcp . 80 comment \"default/idle\" : goto reject-chain }"
    ));
    assert!(!script.contains("-default/idle/tcp/"), "{script}");
}

#[test]
fn nft_script_has_kube_proxys_structure() {
    let services = two_by_three();
    let script = nftables::script(&services, Ipv4Cidr::lab_cluster());
    let lines: Vec<&str> = script.lines().collect();
    // Replaces an earlier load.
    assert_eq!(lines[0], "add table ip kube-proxy");
    assert_eq!(lines[1], "delete table ip kube-proxy");
    assert!(script.contains(
        "add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ;"
    ));
    for line in [
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips",
        "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority dstnat ; }",
        "add rule ip kube-proxy nat-prerouting jump services",
        "add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }",
        "add rule ip kube-proxy nat-output jump services",
        "add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority srcnat ; }",
        "add rule ip kube-proxy nat-postrouting jump masquerading",
        "add rule ip kube-proxy mark-for-masquerade meta mark set meta mark or 0x4000",
        "add rule ip kube-proxy masquerading masquerade fully-random",
    ] {
        assert!(lines.contains(&line), "missing: {line}");
    }

    let web = &services[0];
    let chain = nftables::service_chain(web);
    assert!(chain.starts_with("service-") && chain.ends_with("-default/web/tcp/http"));
    assert_eq!(
        chain.len(),
        "service-".len() + 8 + "-default/web/tcp/http".len()
    );
    assert!(lines.contains(
        &format!(
            "add element ip kube-proxy service-ips {{ 10.96.0.20 . tcp . 80 : goto {chain} }}"
        )
        .as_str()
    ));
    assert!(lines.contains(
        &format!(
            "add rule ip kube-proxy {chain} ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
        )
        .as_str()
    ));
    // One vmap entry per endpoint, numbered from 0.
    let numgen = lines
        .iter()
        .find(|l| l.starts_with(&format!("add rule ip kube-proxy {chain} numgen")))
        .expect("numgen rule");
    assert!(numgen.contains("numgen random mod 3 vmap {"), "{numgen}");
    assert_eq!(numgen.matches(" : goto endpoint-").count(), 3, "{numgen}");
    for (index, endpoint) in web.endpoints.iter().enumerate() {
        let endpoint_chain = nftables::endpoint_chain(web, endpoint);
        assert!(numgen.contains(&format!("{index} : goto {endpoint_chain}")));
        for rule in [
            format!("ip saddr {} jump mark-for-masquerade", endpoint.ip()),
            format!("meta l4proto tcp dnat to {endpoint}"),
        ] {
            let line = format!("add rule ip kube-proxy {endpoint_chain} {rule}");
            assert!(lines.contains(&line.as_str()), "missing: {line}");
        }
    }
    let udp_chain = nftables::service_chain(&services[1]);
    assert!(udp_chain.ends_with("-kube-system/kube-dns/udp/dns"));
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("add element ip kube-proxy service-ips "))
            .count(),
        2
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("add chain ip kube-proxy endpoint-"))
            .count(),
        6
    );
}

#[test]
fn filler_services_are_distinct_and_in_range() {
    let services = filler_services(1000, 2);
    assert_eq!(services.len(), 1000);
    assert_eq!(services[0].cluster_ip, Ipv4Addr::new(10, 100, 0, 1));
    let mut ips: Vec<_> = services.iter().map(|s| s.cluster_ip).collect();
    ips.dedup();
    assert_eq!(ips.len(), 1000);
    assert!(services.iter().all(|s| s.endpoints.len() == 2
        && s.endpoints[0] != s.endpoints[1]
        && s.cluster_ip != CLUSTER_IP));
}

#[test]
fn loading_without_a_namespace_is_refused() {
    let err = kube_proxy::load_nft("", "").unwrap_err();
    assert!(matches!(err, LoadError::NoNamespace { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------
// Privileged: in a lab.

/// The machine's own netfilter state, with counters and timestamps left out: it must be the
/// same after a test as before.
fn host_tables() -> String {
    let mut out = String::new();
    for (program, args) in [
        ("iptables-nft-save", &[][..]),
        ("iptables-legacy-save", &[][..]),
        ("nft", &["list", "ruleset"][..]),
    ] {
        match Command::new(program).args(args).output() {
            Ok(o) => {
                out.push_str(&format!("== {program}\n"));
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    if line.starts_with('#') {
                        continue;
                    }
                    // Chain counters `[packets:bytes]` move with the machine's traffic.
                    let line = match line.rfind(" [") {
                        Some(i) if line.starts_with(':') => &line[..i],
                        _ => line,
                    };
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Err(e) => out.push_str(&format!("== {program}: {e}\n")),
        }
    }
    out
}

struct ServiceLab {
    lab: Lab,
    node: NodeId,
    client: PodId,
    server: PodId,
}

/// A node with a client pod and a server pod running `skiff-probe serve --http 8080`.
fn service_lab() -> anyhow::Result<ServiceLab> {
    let probe = skiff_lab::probe_binary()?;
    let mut lab = Lab::new()?;
    let node = lab.add_node("n1")?;
    let client = lab.add_pod(node, "client")?;
    let server = lab.add_pod(node, "server")?;
    // A real node routes service addresses (by its default route), so that packets to a
    // ClusterIP kube-proxy does not DNAT reach the FORWARD hook and its rejects. The lab
    // node has no default route: send the service range to the lab bridge, which leads
    // nowhere.
    let mut route = Command::new("ip");
    route.args(["route", "add", "10.96.0.0/12", "dev", lab.node(node).uplink]);
    let out = lab.run_on_node(node, route)?;
    anyhow::ensure!(out.status.success(), "ip route: {out:?}");
    let mut serve = Command::new(&probe);
    serve
        .args(["serve", "--http", "8080", "--name", "server"])
        .stdout(Stdio::piped());
    let child = lab.spawn_in_pod(server, serve)?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("piped")).read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "serving", "server did not start: {line:?}");
    Ok(ServiceLab {
        lab,
        node,
        client,
        server,
    })
}

/// The services the lab checks: one without endpoints (`10.96.0.11:80`), and the real one,
/// `10.96.0.10:80` -> the server pod's 8080, after all the others (the last rule of
/// `KUBE-SERVICES`).
fn lab_services(lab: &ServiceLab) -> [Service; 2] {
    [
        Service::tcp("default", "idle", "http", IDLE_IP, 80, vec![]),
        Service::tcp(
            "default",
            "web",
            "http",
            CLUSTER_IP,
            80,
            vec![SocketAddrV4::new(lab.lab.pod(lab.server).ip, 8080)],
        ),
    ]
}

/// `filler` filler services (two endpoints each), then [`lab_services`].
fn services_for(lab: &ServiceLab, filler: usize) -> Vec<Service> {
    let mut services = filler_services(filler, 2);
    services.extend(lab_services(lab));
    services
}

/// `skiff-probe connect --proto http` from `pod` to `ip:80`: its JSON result.
fn probe_connect(lab: &ServiceLab, pod: PodId, ip: Ipv4Addr) -> anyhow::Result<serde_json::Value> {
    let mut connect = Command::new(skiff_lab::probe_binary()?);
    connect.args(["connect", "--proto", "http", &format!("{ip}:80")]);
    let out = lab.lab.run_in_pod(pod, connect)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .map_err(|e| anyhow::anyhow!("connect printed {stdout:?}: {e}"))
}

/// Connects from `pod` to the real service; returns (pod, client) as the server reported
/// them.
fn connect(lab: &ServiceLab, pod: PodId) -> anyhow::Result<(String, String)> {
    let result = probe_connect(lab, pod, CLUSTER_IP)?;
    anyhow::ensure!(result["ok"] == true, "connect failed: {result}");
    let field = |name: &str| result[name].as_str().unwrap_or_default().to_string();
    Ok((field("pod"), field("client")))
}

/// The client reaches the server through the ClusterIP without SNAT; the server reaching
/// itself through it (hairpin) is masqueraded to the node's gateway address; the service
/// without endpoints refuses.
fn assert_service_works(lab: &ServiceLab) -> anyhow::Result<()> {
    let idle = probe_connect(lab, lab.client, IDLE_IP)?;
    assert_eq!(idle["ok"], false, "{idle}");
    let error = idle["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("refused"), "{idle}");
    let client_ip = lab.lab.pod(lab.client).ip;
    let (pod, client) = connect(lab, lab.client)?;
    assert_eq!(pod, "server");
    assert!(
        client.starts_with(&format!("{client_ip}:")),
        "client seen as {client}"
    );
    let gateway = lab.lab.node(lab.node).gateway;
    let (pod, client) = connect(lab, lab.server)?;
    assert_eq!(pod, "server");
    assert!(
        client.starts_with(&format!("{gateway}:")),
        "hairpin client seen as {client}, not masqueraded to {gateway}"
    );
    Ok(())
}

fn iptables_end_to_end(backend: IptablesBackend) -> anyhow::Result<()> {
    let before = host_tables();
    let lab = service_lab()?;
    let netns = lab.lab.node(lab.node).netns.name().to_string();
    let input = iptables::restore_input(&services_for(&lab, 50), Ipv4Cidr::lab_cluster());
    let took = kube_proxy::load_iptables_with(backend, &netns, &input)?;
    eprintln!("{}: 52 services loaded in {took:?}", backend.label());
    let nat = kube_proxy::save_iptables(backend, &netns, "nat")?;
    assert_eq!(lines_starting(&nat, "-A KUBE-SERVICES ").len(), 52, "{nat}");
    assert_service_works(&lab)?;
    // Loading again replaces the rules rather than adding to them.
    kube_proxy::load_iptables_with(backend, &netns, &input)?;
    let nat = kube_proxy::save_iptables(backend, &netns, "nat")?;
    assert_eq!(lines_starting(&nat, "-A KUBE-SERVICES ").len(), 52);
    assert_eq!(lines_starting(&nat, "-A PREROUTING ").len(), 1);
    assert_service_works(&lab)?;
    drop(lab);
    assert_eq!(before, host_tables(), "the machine's own tables changed");
    Ok(())
}

#[test]
fn iptables_nft_rules_carry_service_traffic_in_the_lab() -> anyhow::Result<()> {
    if !skiff_lab::privileged() {
        return Ok(());
    }
    iptables_end_to_end(IptablesBackend::System)
}

#[test]
fn iptables_legacy_rules_carry_service_traffic_in_the_lab() -> anyhow::Result<()> {
    if !skiff_lab::privileged() {
        return Ok(());
    }
    iptables_end_to_end(IptablesBackend::Legacy)
}

#[test]
fn nft_rules_carry_service_traffic_in_the_lab() -> anyhow::Result<()> {
    if !skiff_lab::privileged() {
        return Ok(());
    }
    let before = host_tables();
    let lab = service_lab()?;
    let netns = lab.lab.node(lab.node).netns.name().to_string();
    let script = nftables::script(&services_for(&lab, 50), Ipv4Cidr::lab_cluster());
    let took = kube_proxy::load_nft(&netns, &script)?;
    eprintln!("nftables: 52 services loaded in {took:?}");
    assert_service_works(&lab)?;
    // Loading again replaces the table.
    kube_proxy::load_nft(&netns, &script)?;
    let ruleset = kube_proxy::list_nft(&netns)?;
    assert_eq!(ruleset.matches("table ip kube-proxy").count(), 1);
    assert_eq!(ruleset.matches(": goto service-").count(), 51, "{ruleset}");
    assert_service_works(&lab)?;
    drop(lab);
    assert_eq!(before, host_tables(), "the machine's own tables changed");
    Ok(())
}

#[test]
fn a_load_error_names_the_command_namespace_and_stderr() -> anyhow::Result<()> {
    if !skiff_lab::privileged() {
        return Ok(());
    }
    let mut lab = Lab::new()?;
    let node = lab.add_node("n1")?;
    let netns = lab.node(node).netns.name().to_string();
    let err = kube_proxy::load_nft(&netns, "add rule ip no-such-table x accept\n").unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, LoadError::Failed { .. }), "{message}");
    assert!(message.contains("nft -f -"), "{message}");
    assert!(message.contains(&netns), "{message}");
    assert!(message.contains("no-such-table"), "{message}");
    Ok(())
}

/// Loads 10,000 filler services (two endpoints each) plus the lab's two, checks the
/// service behind them all still answers, and prints how long generating plus loading took
/// (the closure prints the load command's own time). No timing is asserted.
fn load_10k(mode: &str, load: impl FnOnce(&str, &[Service]) -> Result<(), LoadError>) {
    let lab = service_lab().expect("lab");
    let netns = lab.lab.node(lab.node).netns.name().to_string();
    let services = services_for(&lab, 10_000);
    let start = Instant::now();
    load(&netns, &services).expect("load");
    eprintln!(
        "{mode}: 10,002 services (20,001 endpoints) generated and loaded in {:.2?}",
        start.elapsed()
    );
    assert_service_works(&lab).expect("service through the last rule");
}

#[test]
fn ten_thousand_services_load_with_iptables_nft() {
    if !skiff_lab::privileged() {
        return;
    }
    load_10k("iptables-nft", |netns, services| {
        let input = iptables::restore_input(services, Ipv4Cidr::lab_cluster());
        let took = kube_proxy::load_iptables_with(IptablesBackend::Nft, netns, &input)?;
        eprintln!("iptables-nft-restore ran {took:.2?}");
        Ok(())
    });
}

#[test]
fn ten_thousand_services_load_with_iptables_legacy() {
    if !skiff_lab::privileged() {
        return;
    }
    load_10k("iptables-legacy", |netns, services| {
        let input = iptables::restore_input(services, Ipv4Cidr::lab_cluster());
        let took = kube_proxy::load_iptables_with(IptablesBackend::Legacy, netns, &input)?;
        eprintln!("iptables-legacy-restore ran {took:.2?}");
        Ok(())
    });
}

#[test]
fn ten_thousand_services_load_with_nftables() {
    if !skiff_lab::privileged() {
        return;
    }
    load_10k("nftables", |netns, services| {
        let script = nftables::script(services, Ipv4Cidr::lab_cluster());
        let took = kube_proxy::load_nft(netns, &script)?;
        eprintln!("nft -f ran {took:.2?}");
        Ok(())
    });
}
