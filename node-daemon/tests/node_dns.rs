//! Cluster DNS served by each node daemon, asked by real resolvers (`dig`, glibc through
//! `getent`) from pods of the embedded runtime on two lab nodes joined to a real control
//! plane: every record kind, the pods' resolv.conf and search path, NXDOMAIN, REFUSED at once
//! for outside names, TCP fallback for a large answer, freshness on both nodes after create,
//! change and delete, service environment variables, and a query stream across a node
//! daemon killed with -9 and restarted.

mod support;

use std::{
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use reqwest::Method;
use serde_json::{json, Value};
use skiff_lab::{Lab, NodeId};
use support::control::{
    eventually, exec, is_ready, pod_status, Admin, ControlPlane, NetnsGuard, NodeDaemon,
};

const DOMAIN: &str = "svc.cluster.local";

/// `dig ARGS` from inside `pod`: its output.
fn dig(admin: &Admin, pod: &str, args: &[&str]) -> String {
    let mut command = vec!["dig", "+tries=1", "+time=2"];
    command.extend(args);
    let out = exec(admin, pod, &command);
    out["stdout"].as_str().unwrap_or("").to_string()
}

/// `dig +short NAME` asked of the DNS server of `node` from the node itself.
fn ask_node(lab: &Lab, node: NodeId, name: &str) -> String {
    let server = format!("@{}", lab.node(node).address);
    let out = lab.node(node).netns.run(|| {
        Command::new("dig")
            .args([&server, "+short", "+tries=1", "+time=1", name])
            .output()
            .expect("dig")
    });
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until both nodes answer `name` with `expected`; returns how long that took.
fn fresh_on_every_node(lab: &Lab, nodes: &[NodeId], name: &str, expected: &str) -> Duration {
    let started = Instant::now();
    for node in nodes {
        eventually(
            Duration::from_secs(5),
            &format!("{name} -> {expected:?}"),
            || (ask_node(lab, *node, name) == expected).then_some(()),
        );
    }
    started.elapsed()
}

fn cluster_ip(admin: &Admin, namespace: &str, name: &str) -> String {
    admin.get(&format!("/api/v1/namespaces/{namespace}/services/{name}"))["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string()
}

fn slice(name: &str, service: &str, addresses: &[Ipv4Addr]) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": addresses.iter().map(|a| json!({"addresses": [a.to_string()],
            "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]})
}

#[test]
fn pods_resolve_cluster_names_through_their_node() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let cp_node = lab.add_node("cp").expect("node");
    let n1 = lab.add_node("n1").expect("node");
    let n2 = lab.add_node("n2").expect("node");
    let cp = ControlPlane::start(&mut lab, cp_node);
    let admin = &cp.admin;
    for (name, id) in [("n1", n1), ("n2", n2)] {
        let declared = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDR": format!("{}/24", lab.node(id).pod_cidr)}});
        let (code, body) = admin.call(Method::POST, "/api/v1/nodes", Some(&declared));
        assert_eq!(code, 201, "{body}");
    }
    let state = tempfile::tempdir().unwrap();
    let mut daemons = [(n1, "n1"), (n2, "n2")].map(|(node, name)| NodeDaemon {
        node,
        name,
        state: state.path().join(name),
        pid: 0,
        runtime: ("embedded", None),
        extra: Vec::new(),
    });
    let _netns = NetnsGuard(daemons.iter().map(|d| d.state.clone()).collect());
    for d in &mut daemons {
        d.start(&mut lab, &cp.node_conf);
    }

    // The control plane made the cluster DNS service at the 10th service address.
    let dns_ip = cluster_ip(admin, "kube-system", "kube-dns");
    assert_eq!(dns_ip, "10.96.0.10");

    let probe_pod = |name: &str, node: &str, app: &str, command: Option<&str>| {
        let mut container = json!({"name": "main", "image": "skiff-probe",
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [{"name": "API_SERVICE_PORT", "value": "overridden"}]});
        if let Some(script) = command {
            container["command"] = json!(["sh", "-c", script]);
        } else {
            container["readinessProbe"] = json!({"tcpSocket": {"port": 9000}, "periodSeconds": 1});
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [container]}})
    };
    admin.apply(&[
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
            "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api-pods"},
            "spec": {"clusterIP": "None", "selector": {"app": "api"}, "ports": [{"name": "http", "port": 8080}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cart", "namespace": "shop"},
            "spec": {"ports": [{"port": 7000}]}}),
        probe_pod("api", "n1", "api", None),
    ]);
    let api_ip = cluster_ip(admin, "default", "api");
    let cart_ip = cluster_ip(admin, "shop", "cart");
    let api_pod = eventually(Duration::from_secs(20), "api Ready", || {
        let p = pod_status(admin, "api");
        is_ready(&p).then_some(p)
    });
    let api_pod_ip = api_pod["status"]["podIP"].as_str().unwrap().to_string();

    // The client starts after the services, so it has their variables; it resolves `api`
    // by its short name in a loop (glibc, a new connected UDP socket per query), logging
    // each query's start time.
    let stream = "while true; do s=$(date +%s.%N); \
        if getent hosts api >/dev/null; then echo \"$s ok\"; else echo \"$s fail\"; fi; \
        sleep 0.05; done";
    admin.apply(&[probe_pod("client", "n2", "client", Some(stream))]);
    eventually(Duration::from_secs(20), "client Running", || {
        (pod_status(admin, "client")["status"]["phase"] == "Running").then_some(())
    });

    // resolv.conf exactly as the kubelet writes it, in the pod's mount namespace only.
    let resolv = exec(admin, "client", &["cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv["stdout"],
        format!("nameserver {dns_ip}\nsearch default.{DOMAIN} {DOMAIN} cluster.local\noptions ndots:5\n"),
        "{resolv}"
    );
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(
        !host_resolv.contains(&dns_ip),
        "the node's resolv.conf was changed"
    );

    // Service environment variables; the container's own env wins.
    let env = exec(admin, "client", &["sh", "-c", "echo $API_SERVICE_HOST $API_SERVICE_PORT $API_SERVICE_PORT_HTTP $API_PORT $KUBERNETES_X$CART_SERVICE_HOST"]);
    assert_eq!(
        env["stdout"],
        format!("{api_ip} overridden 80 tcp://{api_ip}:80\n"),
        "only services of the pod's namespace, with Kubernetes' names: {env}"
    );

    // Every record kind, from a pod on each node (n1's pods ask n1, n2's ask n2).
    for pod in ["client", "api"] {
        assert_eq!(
            dig(admin, pod, &["+short", &format!("api.default.{DOMAIN}")]).trim(),
            api_ip
        );
        assert_eq!(
            dig(admin, pod, &["+short", "+search", "cart.shop"]).trim(),
            cart_ip
        );
        assert_eq!(
            dig(
                admin,
                pod,
                &["+short", &format!("api-pods.default.{DOMAIN}")]
            )
            .trim(),
            api_pod_ip
        );
        let dashed = api_pod_ip.replace('.', "-");
        assert_eq!(
            dig(
                admin,
                pod,
                &["+short", &format!("{dashed}.default.pod.cluster.local")]
            )
            .trim(),
            api_pod_ip
        );
        assert_eq!(
            dig(
                admin,
                pod,
                &["+short", &format!("{dashed}.api-pods.default.{DOMAIN}")]
            )
            .trim(),
            api_pod_ip
        );
        assert_eq!(
            dig(
                admin,
                pod,
                &["+short", "SRV", &format!("_http._tcp.api.default.{DOMAIN}")]
            )
            .trim(),
            format!("0 100 80 api.default.{DOMAIN}.")
        );
        assert_eq!(
            dig(
                admin,
                pod,
                &[
                    "+short",
                    "SRV",
                    &format!("_http._tcp.api-pods.default.{DOMAIN}")
                ]
            )
            .trim(),
            format!("0 100 8080 {dashed}.api-pods.default.{DOMAIN}.")
        );
        // Over TCP as well.
        assert_eq!(
            dig(
                admin,
                pod,
                &["+short", "+tcp", &format!("api.default.{DOMAIN}")]
            )
            .trim(),
            api_ip
        );
        let missing = dig(admin, pod, &[&format!("nope.default.{DOMAIN}")]);
        assert!(missing.contains("status: NXDOMAIN"), "{missing}");
        assert!(
            missing.contains("SOA"),
            "negative answers carry the SOA: {missing}"
        );
        let wrong_ns = dig(admin, pod, &[&format!("{dashed}.shop.pod.cluster.local")]);
        assert!(wrong_ns.contains("status: NXDOMAIN"), "{wrong_ns}");
        // No upstream in the lab: refused at once, nothing leaves the node.
        let asked = Instant::now();
        let outside = dig(admin, pod, &["example.com"]);
        assert!(outside.contains("status: REFUSED"), "{outside}");
        assert!(asked.elapsed() < Duration::from_secs(2), "{outside}");
    }
    // glibc's search path: the short name, another namespace's, and the full one.
    for name in ["api", "cart.shop", &format!("api.default.{DOMAIN}")] {
        let out = exec(admin, "client", &["getent", "hosts", name]);
        let expected = if name == "cart.shop" {
            &cart_ip
        } else {
            &api_ip
        };
        assert!(
            out["stdout"]
                .as_str()
                .unwrap_or("")
                .starts_with(expected.as_str()),
            "getent hosts {name}: {out}"
        );
    }

    // A headless service with 60 endpoints: too big for 512 bytes, so the UDP answer is
    // truncated and both resolvers retry over TCP.
    let many: Vec<Ipv4Addr> = (1..=60).map(|i| Ipv4Addr::new(10, 250, 0, i)).collect();
    admin.apply(&[
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "big"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
        slice("big-1", "big", &many),
    ]);
    let mut last = String::new();
    let served = (0..50).any(|_| {
        last = ask_node(&lab, n2, &format!("big.default.{DOMAIN}"));
        std::thread::sleep(Duration::from_millis(100));
        last.lines().count() == 60
    });
    assert!(
        served,
        "big's 60 endpoints: {last:?}; api from the node: {:?}; slices: {}",
        ask_node(&lab, n2, &format!("api.default.{DOMAIN}")),
        admin.get("/api/v1/namespaces/default/endpointslices")
    );
    let big = dig(
        admin,
        "client",
        &["+noedns", &format!("big.default.{DOMAIN}")],
    );
    assert!(big.contains("Truncated, retrying in TCP mode"), "{big}");
    assert!(big.contains("ANSWER: 60"), "{big}");
    let glibc = exec(admin, "client", &["getent", "ahostsv4", "big"]);
    let addresses: std::collections::BTreeSet<&str> = glibc["stdout"]
        .as_str()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(addresses.len(), 60, "glibc over TCP: {glibc}");

    // Freshness: create, change, delete, each answered on both nodes within 1 s.
    let nodes = [n1, n2];
    let name = format!("fresh.default.{DOMAIN}");
    admin.apply(&[
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fresh"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
        slice("fresh-1", "fresh", &[Ipv4Addr::new(10, 250, 1, 1)]),
    ]);
    let created = fresh_on_every_node(&lab, &nodes, &name, "10.250.1.1");
    admin.apply(&[slice("fresh-1", "fresh", &[Ipv4Addr::new(10, 250, 1, 2)])]);
    let changed = fresh_on_every_node(&lab, &nodes, &name, "10.250.1.2");
    let (code, body) = admin.call(
        Method::DELETE,
        "/api/v1/namespaces/default/services/fresh",
        None,
    );
    assert_eq!(code, 200, "{body}");
    let deleted = fresh_on_every_node(&lab, &nodes, &name, "");
    for (what, took) in [
        ("created", created),
        ("changed", changed),
        ("deleted", deleted),
    ] {
        println!("{what}: answered on both nodes after {took:?}");
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    }

    // Kill -9 n2's daemon under the query stream, restart it: queries fail only while it
    // is down (a query in flight then waits for glibc's retry), and every query started
    // after it is back succeeds: the restarted server holds queries until its first view.
    let killed_at = now();
    daemons[1].kill();
    std::thread::sleep(Duration::from_secs(2));
    daemons[1].start(&mut lab, &cp.node_conf);
    let back_at = now();
    let queries = |admin: &Admin| -> (String, Vec<(f64, bool)>) {
        let (code, text) = admin.call_text(
            Method::GET,
            "/api/v1/namespaces/default/pods/client/log",
            None,
        );
        // Right after the restart the node has not joined yet (503): nothing to read.
        if code != 200 {
            return (text, Vec::new());
        }
        let parsed = text
            .lines()
            .filter_map(|l| {
                let (at, result) = l.split_once(' ')?;
                Some((at.parse().ok()?, result == "ok"))
            })
            .collect();
        (text, parsed)
    };
    eventually(
        Duration::from_secs(15),
        "queries answered after the restart",
        || {
            (queries(admin)
                .1
                .iter()
                .filter(|(at, ok)| *at > back_at && *ok)
                .count()
                > 5)
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let (text, queries) = queries(admin);
    let before = queries.iter().filter(|(at, _)| *at < killed_at).count();
    let after: Vec<&(f64, bool)> = queries.iter().filter(|(at, _)| *at > back_at).collect();
    assert!(
        before > 5 && after.len() > 5,
        "a stream on both sides: {text}"
    );
    assert!(
        queries
            .iter()
            .filter(|(at, _)| *at < killed_at)
            .all(|(_, ok)| *ok),
        "no failure before the kill: {text}"
    );
    assert!(
        after.iter().all(|(_, ok)| *ok),
        "every query after the restart succeeds at once: {text}"
    );
    println!(
        "query stream: {} before the kill, {} after the restart, all answered",
        before,
        after.len()
    );
    for d in &daemons {
        d.kill();
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
