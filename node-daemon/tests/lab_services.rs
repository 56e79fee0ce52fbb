//! Service load balancing on real traffic in the lab: a packet-flow table in the style of
//! kube-proxy's own tests (fixed services and endpoints; rows of client, destination and
//! protocol against the expected endpoint set, refusal, drop or masquerade), then the
//! behaviours kube-proxy users have been burnt by: affinity, UDP endpoint replacement,
//! hairpin, draining endpoints, and health-check node ports.

mod support;

use std::{collections::BTreeSet, time::Duration};

use serde_json::json;
use skiff_common::DropReason;
use skiff_node::service_lb::desired::Service;
use support::{connect_command, service, Client, Cluster, ProbePipes};

/// Two nodes: n1 runs `client`, `web1` and `dns1`; n2 runs `web2` and `dns2`.
fn two_nodes() -> Cluster {
    Cluster::new(&[&["client", "web1", "dns1"], &["web2", "dns2"]])
}

/// The flow table's services. web1 and web2 name their HTTP port differently on purpose:
/// the named target port resolves per endpoint.
fn flow_table_services(c: &Cluster) -> Vec<Service> {
    let web1 = c.endpoint("web1", &[("http", 8080)]);
    let web2 = c.endpoint("web2", &[("http", 8081)]);
    let mut node_web = service(
        "node-web",
        "10.96.0.20",
        json!([{"port": 80, "targetPort": "http", "nodePort": 30080}]),
        vec![web2.clone()],
    );
    node_web.service_type = skiff_node::service_lb::desired::ServiceType::NodePort;
    let mut local_web = service(
        "local-web",
        "10.96.0.21",
        json!([{"port": 80, "targetPort": "http", "nodePort": 30081}]),
        vec![web1.clone()],
    );
    local_web.service_type = skiff_node::service_lb::desired::ServiceType::NodePort;
    local_web.external_traffic_policy = skiff_node::service_lb::desired::TrafficPolicy::Local;
    local_web.health_check_node_port = Some(31999);
    vec![
        service(
            "web",
            "10.96.0.10",
            json!([
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "admin", "port": 81, "targetPort": 9000}
            ]),
            vec![web1.clone(), web2.clone()],
        ),
        service(
            "dns",
            "10.96.0.53",
            json!([{"port": 53, "protocol": "UDP", "targetPort": 5353}]),
            vec![c.endpoint("dns1", &[])],
        ),
        service("empty", "10.96.0.99", json!([{"port": 80}]), vec![]),
        service(
            "self",
            "10.96.0.30",
            json!([{"port": 80, "targetPort": 8080}]),
            vec![web1],
        ),
        node_web,
        local_web,
    ]
}

#[derive(Debug)]
enum Expect<'a> {
    /// Answered by one of these pods; the server saw the client as this address (None: the
    /// client's own address).
    Served(&'a [&'a str], Option<String>),
    /// connect()/sendto() failed at once with "connection refused".
    Refused,
    /// No answer (dropped).
    Dropped,
}

#[test]
fn packet_flow_table() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut c = two_nodes();
    let external = c.lab.add_external("outside").expect("external client");
    let services = flow_table_services(&c);
    c.apply(&services);
    c.serve("web1", &["--tcp", "8080", "--tcp", "9000"]);
    c.serve("web2", &["--tcp", "8081", "--tcp", "9000"]);
    c.serve("dns1", &["--udp", "5353"]);
    let (n1, n2) = (c.node_ip(0).to_string(), c.node_ip(1).to_string());
    let outside = c.lab.external(external).address.to_string();
    let web = &["web1", "web2"][..];

    use Client::*;
    use Expect::*;
    let rows: Vec<(Client, String, &str, Expect)> = vec![
        // ClusterIP, socket path: same node, other node's pods, node's own processes.
        (
            Pod("client"),
            "10.96.0.10:80".into(),
            "tcp",
            Served(web, None),
        ),
        (
            Pod("client"),
            "10.96.0.10:81".into(),
            "tcp",
            Served(web, None),
        ),
        (
            Pod("web2"),
            "10.96.0.10:80".into(),
            "tcp",
            Served(web, None),
        ),
        (Node(0), "10.96.0.10:80".into(), "tcp", Served(web, None)),
        (Node(1), "10.96.0.10:81".into(), "tcp", Served(web, None)),
        (
            Pod("client"),
            "10.96.0.53:53".into(),
            "udp",
            Served(&["dns1"], None),
        ),
        (
            Pod("web2"),
            "10.96.0.53:53".into(),
            "udp",
            Served(&["dns1"], None),
        ),
        (Pod("client"), "10.96.0.99:80".into(), "tcp", Refused),
        // Hairpin: web1 through a service whose only endpoint is web1.
        (
            Pod("web1"),
            "10.96.0.30:80".into(),
            "tcp",
            Served(&["web1"], None),
        ),
        // ClusterIP, per-packet path (a process outside the pod cgroup).
        (
            PodOutsideCgroup("client"),
            "10.96.0.10:80".into(),
            "tcp",
            Served(web, None),
        ),
        (
            PodOutsideCgroup("web2"),
            "10.96.0.10:81".into(),
            "tcp",
            Served(web, None),
        ),
        (
            PodOutsideCgroup("client"),
            "10.96.0.53:53".into(),
            "udp",
            Served(&["dns1"], None),
        ),
        (
            PodOutsideCgroup("client"),
            "10.96.0.99:80".into(),
            "tcp",
            Refused,
        ),
        (
            PodOutsideCgroup("web1"),
            "10.96.0.30:80".into(),
            "tcp",
            Served(&["web1"], Some("10.96.0.30".into())),
        ),
        // NodePort, externalTrafficPolicy Cluster: any node, masqueraded to the node reached.
        (
            External(external),
            format!("{n1}:30080"),
            "tcp",
            Served(&["web2"], Some(n1.clone())),
        ),
        (
            External(external),
            format!("{n2}:30080"),
            "tcp",
            Served(&["web2"], Some(n2.clone())),
        ),
        // NodePort, Local: the client's own address; a node without endpoints is silent.
        (
            External(external),
            format!("{n1}:30081"),
            "tcp",
            Served(&["web1"], Some(outside.clone())),
        ),
        (External(external), format!("{n2}:30081"), "tcp", Dropped),
        // ClusterIPs are not served to the outside, even when addressed to a node.
        (External(external), format!("{n1}:80"), "tcp", Refused),
    ];

    let mut failures = Vec::new();
    for (client, target, proto, expect) in &rows {
        let result = c.run(*client, connect_command(target, proto, &[]));
        let answer = result["answer"].as_str().unwrap_or_default();
        let (name, seen) = answer.split_once(' ').unwrap_or(("", ""));
        let seen_ip = seen.split(':').next().unwrap_or_default();
        let error = result["error"].as_str().unwrap_or_default();
        let ok = match expect {
            Served(pods, seen_as) => {
                // Who the server should see: the client's own address, except where a row
                // says otherwise, and the service address for a per-packet hairpin.
                let client_ips: Vec<String> = match (seen_as, client) {
                    (Some(ip), _) => vec![ip.clone()],
                    (None, Pod(p)) => vec![c.pod_ip(p).to_string()],
                    (None, PodOutsideCgroup(p)) if *p == name => {
                        vec![target.split(':').next().unwrap().to_string()]
                    }
                    (None, PodOutsideCgroup(p)) => vec![c.pod_ip(p).to_string()],
                    // A node's own process uses the address of the route it takes: the
                    // pod-facing gateway for a local backend, its uplink address otherwise.
                    (None, Node(i)) => {
                        let node = c.lab.node(c.nodes[*i]);
                        vec![node.address.to_string(), node.gateway.to_string()]
                    }
                    (None, External(_)) => vec![outside.clone()],
                };
                // The client sees the address it reached as its peer, on every path.
                result["ok"] == true
                    && pods.contains(&name)
                    && client_ips.iter().any(|ip| ip == seen_ip)
                    && result["peer"] == json!(target)
            }
            Refused => {
                result["ok"] == false
                    && error.contains("refused")
                    && result["elapsed_ms"].as_f64().unwrap() < 500.0
            }
            Dropped => result["ok"] == false && !error.contains("refused"),
        };
        if !ok {
            failures.push(format!(
                "{client:?} -> {target}/{proto}: expected {expect:?}, got {result}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "flow table rows failed:\n{}",
        failures.join("\n")
    );

    // Counted where they happened: n1 for the per-packet refusal, n2 for the Local drop.
    let no_backend = |i: usize| {
        c.planes[i]
            .drop_counts()
            .unwrap()
            .into_iter()
            .find(|(r, _)| *r == DropReason::NoServiceBackend)
            .unwrap()
            .1
    };
    assert!(
        no_backend(0) >= 1,
        "n1 counted the dropped ClusterIP packet"
    );
    assert!(no_backend(1) >= 1, "n2 counted the Local NodePort drop");

    // Random selection reaches every endpoint.
    let seen: BTreeSet<String> = (0..24)
        .filter_map(|_| c.reach(Pod("client"), "10.96.0.10:80", "tcp").ok())
        .map(|(name, _)| name)
        .collect();
    assert_eq!(seen, BTreeSet::from(["web1".into(), "web2".into()]));

    // Health-check node port: 200 with the local count where there is an endpoint, else 503.
    for (node, status, count) in [(&n1, "200", 1), (&n2, "503", 0)] {
        let body = http_get(&c, Client::External(external), &format!("{node}:31999"));
        assert!(
            body.starts_with(&format!("HTTP/1.1 {status}")),
            "{node}: {body}"
        );
        assert!(
            body.contains(&format!("\"localEndpoints\":{count}")),
            "{node}: {body}"
        );
    }
}

/// A raw HTTP GET through the probe's TCP session mode is not possible (it speaks lines), so
/// use bash's /dev/tcp: the request and the whole response.
fn http_get(c: &Cluster, client: Client, target: &str) -> String {
    let (host, port) = target.split_once(':').unwrap();
    let mut command = std::process::Command::new("bash");
    command.args([
        "-c",
        &format!("exec 3<>/dev/tcp/{host}/{port}; printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3; timeout 2 cat <&3"),
    ]);
    let output = match client {
        Client::External(id) => c.lab.run_in_external(id, command),
        _ => unreachable!("health checks are asked from outside"),
    }
    .expect("bash");
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[test]
fn session_affinity_holds_switches_and_times_out() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut c = two_nodes();
    c.serve("web1", &["--tcp", "8080"]);
    c.serve("web2", &["--tcp", "8080"]);
    let mut sticky = service(
        "sticky",
        "10.96.0.40",
        json!([{"port": 80, "targetPort": 8080}]),
        vec![c.endpoint("web1", &[]), c.endpoint("web2", &[])],
    );
    sticky.session_affinity = skiff_node::service_lb::desired::SessionAffinity::ClientIP;
    sticky.session_affinity_timeout_seconds = Some(1);
    c.apply(&[sticky.clone()]);

    for client in [Client::Pod("client"), Client::PodOutsideCgroup("client")] {
        // Holds: every connection of the client goes to one endpoint.
        let picks: Vec<String> = (0..10)
            .map(|_| c.reach(client, "10.96.0.40:80", "tcp").expect("reach").0)
            .collect();
        assert!(
            picks.iter().all(|p| *p == picks[0]),
            "{client:?}: {picks:?}"
        );
        let pinned = picks[0].clone();

        // Switches when the endpoint goes away (not ready), and holds on the new one.
        let mut without = sticky.clone();
        without.endpoints.retain(|e| e.ip != c.pod_ip(&pinned));
        c.apply(&[without]);
        let picks: Vec<String> = (0..5)
            .map(|_| c.reach(client, "10.96.0.40:80", "tcp").expect("reach").0)
            .collect();
        assert!(
            picks.iter().all(|p| *p != pinned),
            "{client:?} after removal: {picks:?}"
        );
        c.apply(&[sticky.clone()]);

        // Times out: once the timeout passes between connections, picks are random again.
        let mut seen = BTreeSet::new();
        for _ in 0..12 {
            std::thread::sleep(Duration::from_millis(1100));
            seen.insert(c.reach(client, "10.96.0.40:80", "tcp").expect("reach").0);
            if seen.len() == 2 {
                break;
            }
        }
        assert_eq!(
            seen.len(),
            2,
            "{client:?}: affinity never expired: {seen:?}"
        );
    }
}

/// A probe session in a pod: one flow, one exchange per `exchange()` call.
fn session(
    c: &mut Cluster,
    client: &str,
    outside_cgroup: bool,
    target: &str,
    proto: &str,
    extra: &[&str],
) -> ProbePipes {
    let mut args = vec!["session", target, "--proto", proto, "--timeout-ms", "1000"];
    args.extend_from_slice(extra);
    let pod = c.pod(client);
    ProbePipes::spawn(&mut c.lab, pod, outside_cgroup, &args)
}

#[test]
fn udp_flows_move_when_their_endpoint_is_replaced() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut c = two_nodes();
    c.serve("dns1", &["--udp", "5353"]);
    c.serve("dns2", &["--udp", "5353"]);
    let dns = |c: &Cluster, pod: &str| {
        service(
            "dns",
            "10.96.0.53",
            json!([{"port": 53, "protocol": "UDP", "targetPort": 5353}]),
            vec![c.endpoint(pod, &[])],
        )
    };
    c.apply(&[dns(&c, "dns1")]);
    // An unconnected socket (sendto per query, the sendmsg4 hook) and a per-packet client
    // (outside the cgroup: conntrack) keep one socket across the replacement.
    // Three DNS-style clients keep one socket across the replacement: an unconnected socket
    // (sendto per query: the sendmsg4 hook), a connected one (left to the per-packet path in
    // pods), and one outside the pod cgroup (per-packet path with conntrack).
    let mut clients = vec![
        (
            "unconnected",
            session(
                &mut c,
                "client",
                false,
                "10.96.0.53:53",
                "udp",
                &["--unconnected"],
            ),
        ),
        (
            "connected",
            session(&mut c, "client", false, "10.96.0.53:53", "udp", &[]),
        ),
        (
            "outside the cgroup",
            session(&mut c, "client", true, "10.96.0.53:53", "udp", &[]),
        ),
    ];
    for (kind, session) in &mut clients {
        let first = session.exchange();
        assert!(
            first["answer"]
                .as_str()
                .unwrap_or_default()
                .starts_with("dns1 "),
            "{kind}: {first}"
        );
        assert_eq!(
            first["peer"], "10.96.0.53:53",
            "{kind}: replies come from the VIP"
        );
    }
    c.apply(&[dns(&c, "dns2")]);
    for (kind, session) in &mut clients {
        let next = session.exchange();
        assert_eq!(
            next["ok"], true,
            "{kind}: the next query after the replacement: {next}"
        );
        assert!(
            next["answer"].as_str().unwrap().starts_with("dns2 "),
            "{kind}: {next}"
        );
        assert_eq!(next["peer"], "10.96.0.53:53", "{kind}");
    }
}

#[test]
fn draining_endpoints_keep_established_flows_and_take_no_new_ones() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut c = two_nodes();
    c.serve("web1", &["--tcp", "8080"]);
    c.serve("web2", &["--tcp", "8080"]);
    let web = |c: &Cluster, terminating: bool| {
        let mut web1 = c.endpoint("web1", &[]);
        web1.terminating = terminating;
        service(
            "web",
            "10.96.0.10",
            json!([{"port": 80, "targetPort": 8080}]),
            vec![web1, c.endpoint("web2", &[])],
        )
    };
    c.apply(&[web(&c, false)]);
    // Open connections until one lands on web1.
    let mut on_web1 = None;
    for _ in 0..30 {
        let mut session = session(&mut c, "client", false, "10.96.0.10:80", "tcp", &[]);
        let first = session.exchange();
        assert_eq!(first["ok"], true, "{first}");
        if first["answer"].as_str().unwrap().starts_with("web1 ") {
            on_web1 = Some(session);
            break;
        }
    }
    let mut on_web1 = on_web1.expect("a connection to web1 within 30 tries");
    c.apply(&[web(&c, true)]);
    for _ in 0..10 {
        let (name, _) = c
            .reach(Client::Pod("client"), "10.96.0.10:80", "tcp")
            .expect("reach");
        assert_eq!(
            name, "web2",
            "a terminating endpoint takes no new connection"
        );
    }
    let still = on_web1.exchange();
    assert_eq!(
        still["ok"], true,
        "the established connection survives: {still}"
    );
    assert!(still["answer"].as_str().unwrap().starts_with("web1 "));
}
