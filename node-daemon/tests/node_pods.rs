//! Pods run by the node daemon itself, with the embedded runtime, on two lab nodes joined to
//! a real control plane: addresses, cross-node pod traffic, a Service whose endpoints follow
//! a readiness probe, exec and logs through the control plane, crash-loop back-off, a memory
//! hog killed by its limit, graceful termination timing, and a daemon killed with -9 whose
//! pods keep running and are adopted by the next run.

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use skiff_lab::{Lab, NodeId};
use support::control::{
    container_status, eventually, exec, is_ready, pod_path, pod_status, Admin, ControlPlane,
    NetnsGuard, NodeDaemon,
};

/// `skiff-probe connect` from inside `from`: the probe's JSON result.
fn connect(admin: &Admin, from: &str, target: &str) -> Value {
    let out = exec(
        admin,
        from,
        &[
            "skiff-probe",
            "connect",
            target,
            "--proto",
            "tcp",
            "--timeout-ms",
            "1000",
        ],
    );
    serde_json::from_str(out["stdout"].as_str().unwrap_or("").trim()).unwrap_or(Value::Null)
}

fn ready_endpoints(admin: &Admin, service: &str) -> Vec<String> {
    let slices = admin.get(&format!(
        "/api/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name={service}"
    ));
    let mut ips = Vec::new();
    for slice in slices["items"].as_array().into_iter().flatten() {
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            if endpoint["conditions"]["ready"] != false {
                ips.extend(
                    endpoint["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_string)),
                );
            }
        }
    }
    ips
}

/// `GET /metrics` of a node daemon's API, from inside the node.
fn node_metrics(lab: &Lab, node: NodeId) -> String {
    use std::io::{Read as _, Write as _};
    let address = lab.node(node).address;
    lab.node(node).netns.run(|| {
        let mut stream = std::net::TcpStream::connect((address, 10250)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    })
}

/// The value of the metric line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

fn delete(admin: &Admin, name: &str) {
    let (code, body) = admin.call(Method::DELETE, &pod_path(name), None);
    assert_eq!(code, 200, "delete {name}: {body}");
}

fn gone(admin: &Admin, name: &str) -> bool {
    admin.call(Method::GET, &pod_path(name), None).0 == 404
}

#[test]
fn the_daemon_runs_pods_probes_them_and_adopts_them_after_a_crash() {
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

    // web on n1 is ready while the marker file is absent; client on n2.
    let unready = state.path().join("web-unready");
    let probe_pod = |name: &str, node: &str, app: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5, "containers": [{
                "name": "main", "image": "skiff-probe",
                "ports": [{"name": "tcp", "containerPort": 9000}, {"name": "http", "containerPort": 8080}],
                "readinessProbe": {"exec": {"command": ["sh", "-c", format!("test ! -e {}", unready.display())]},
                    "periodSeconds": 1, "failureThreshold": 1},
                "livenessProbe": {"httpGet": {"port": "http", "path": "/healthz"}, "periodSeconds": 1}}]}})
    };
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "tcp"}]}});
    admin.apply(&[
        probe_pod("web", "n1", "web"),
        probe_pod("client", "n2", "client"),
        service,
    ]);

    let web = eventually(Duration::from_secs(20), "web Running and Ready", || {
        let p = pod_status(admin, "web");
        (p["status"]["phase"] == "Running" && is_ready(&p)).then_some(p)
    });
    let web_ip = web["status"]["podIP"].as_str().unwrap().to_string();
    let n1_cidr = lab.node(n1).pod_cidr.octets();
    assert!(
        web_ip.starts_with(&format!("{}.{}.{}.", n1_cidr[0], n1_cidr[1], n1_cidr[2])),
        "web's address {web_ip} is from n1's pod CIDR"
    );
    assert_eq!(web["status"]["hostIP"], lab.node(n1).address.to_string());
    let web_container = web["status"]["containerStatuses"][0]["containerID"].clone();
    assert!(
        web_container.as_str().unwrap().starts_with("embedded://"),
        "{web_container}"
    );
    eventually(Duration::from_secs(20), "client Ready", || {
        is_ready(&pod_status(admin, "client")).then_some(())
    });

    // Pod to pod across nodes, through the nodes' routes; and through the Service.
    let answer = eventually(Duration::from_secs(10), "client -> web", || {
        let r = connect(admin, "client", &format!("{web_ip}:9000"));
        (r["ok"] == true).then_some(r)
    });
    assert_eq!(answer["pod"], "web", "{answer}");
    assert!(answer["client"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}.", lab.node(n2).pod_cidr.octets()[0])));
    let cluster_ip = admin.get("/api/v1/namespaces/default/services/web")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(Duration::from_secs(10), "the Service to answer", || {
        (connect(admin, "client", &format!("{cluster_ip}:80"))["pod"] == "web").then_some(())
    });
    assert_eq!(ready_endpoints(admin, "web"), vec![web_ip.clone()]);

    // The data plane's metrics: program runs and the pod's traffic.
    let metrics = node_metrics(&lab, n1);
    for program in ["from_pod", "to_pod"] {
        let runs = metric(
            &metrics,
            &format!("skiff_program_runs_total{{program=\"{program}\"}}"),
        );
        assert!(runs.is_some_and(|r| r > 0.0), "{program} runs: {metrics}");
    }
    let sent = metric(
        &metrics,
        &format!("skiff_pod_sent_packets_total{{pod_ip=\"{web_ip}\""),
    );
    assert!(sent.is_some_and(|p| p > 0.0), "web's traffic: {metrics}");

    // Readiness drives endpoints: unready leaves the Service, ready again returns.
    std::fs::write(&unready, "").unwrap();
    eventually(
        Duration::from_secs(10),
        "web to leave the endpoints",
        || {
            (!is_ready(&pod_status(admin, "web")) && ready_endpoints(admin, "web").is_empty())
                .then_some(())
        },
    );
    std::fs::remove_file(&unready).unwrap();
    eventually(Duration::from_secs(10), "web back in the endpoints", || {
        (ready_endpoints(admin, "web") == vec![web_ip.clone()]).then_some(())
    });

    // Exec returns output and exit code; logs come through the control plane.
    let out = exec(
        admin,
        "web",
        &["sh", "-c", "echo out; echo err >&2; hostname; exit 7"],
    );
    assert_eq!(out["stdout"], "out\nweb\n", "{out}");
    assert_eq!(out["stderr"], "err\n");
    assert_eq!(out["exitCode"], 7);
    let (code, logs) = admin.call_text(Method::GET, &format!("{}/log", pod_path("web")), None);
    assert_eq!(code, 200, "{logs}");
    assert!(logs.contains("serving"), "{logs}");

    // A crashing container restarts with back-off; a memory hog is killed by its limit.
    let crashy = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crashy"},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox",
            "command": ["sh", "-c", "echo crashing; exit 3"]}]}});
    let hog = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hog"},
        "spec": {"nodeName": "n2", "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox",
            "command": ["sh", "-c", "x=$(head -c 200M /dev/zero | tr '\\0' a); echo survived"],
            "resources": {"limits": {"memory": "32Mi", "cpu": "500m"}}}]}});
    let slow = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow"},
        "spec": {"nodeName": "n2", "terminationGracePeriodSeconds": 2, "containers": [{"name": "main",
            "image": "busybox", "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]}]}});
    admin.apply(&[crashy, hog, slow]);
    let waiting = eventually(Duration::from_secs(15), "crashy to back off", || {
        let c = container_status(admin, "crashy");
        (c["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(c)
    });
    assert_eq!(
        waiting["lastState"]["terminated"]["exitCode"], 3,
        "{waiting}"
    );
    let restarted = eventually(
        Duration::from_secs(30),
        "crashy restarted after its back-off",
        || {
            let c = container_status(admin, "crashy");
            (c["restartCount"].as_u64()? >= 1).then_some(c)
        },
    );
    assert_eq!(
        restarted["lastState"]["terminated"]["exitCode"], 3,
        "{restarted}"
    );
    let (code, previous) = admin.call_text(
        Method::GET,
        &format!("{}/log?previous=true", pod_path("crashy")),
        None,
    );
    assert_eq!((code, previous.trim()), (200, "crashing"));
    // Following a container's log ends when the container does.
    let (code, followed) = admin.call_text(
        Method::GET,
        &format!("{}/log?follow=true", pod_path("crashy")),
        None,
    );
    assert_eq!((code, followed.trim()), (200, "crashing"));
    let hog_status = eventually(Duration::from_secs(20), "hog killed", || {
        let p = pod_status(admin, "hog");
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    let killed = &hog_status["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(killed["reason"], "OOMKilled", "{hog_status}");

    // Per-pod usage reaches the control plane.
    eventually(Duration::from_secs(10), "per-pod usage", || {
        let samples = admin.get("/api/v1/metrics");
        samples.as_array()?.iter().find(|s| s["node"] == "n1")?["pods"]
            .as_array()?
            .iter()
            .any(|p| p["name"] == "web" && p["memoryBytes"].as_u64().unwrap_or(0) > 0)
            .then_some(())
    });

    // kill -9 of n1's daemon: web keeps serving; the next run adopts it unrestarted.
    eventually(Duration::from_secs(20), "slow Running", || {
        (pod_status(admin, "slow")["status"]["phase"] == "Running").then_some(())
    });
    daemons[0].kill();
    assert_eq!(
        connect(admin, "client", &format!("{web_ip}:9000"))["pod"],
        "web"
    );
    daemons[0].start(&mut lab, &cp.node_conf);
    std::thread::sleep(Duration::from_secs(3));
    let adopted = pod_status(admin, "web");
    let c = &adopted["status"]["containerStatuses"][0];
    assert_eq!(c["containerID"], web_container, "{adopted}");
    assert_eq!(c["restartCount"], 0, "{adopted}");
    assert!(is_ready(&adopted), "{adopted}");
    let out = exec(
        admin,
        "web",
        &[
            "skiff-probe",
            "connect",
            &format!("{cluster_ip}:80"),
            "--proto",
            "tcp",
        ],
    );
    assert_eq!(out["exitCode"], 0, "the adopted pod serves: {out}");

    // Termination: SIGTERM first; a container that ignores it is killed after its grace.
    let started = Instant::now();
    delete(admin, "slow");
    eventually(Duration::from_secs(15), "slow gone", || {
        gone(admin, "slow").then_some(())
    });
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "slow took {took:?} with a 2 s grace period"
    );
    let started = Instant::now();
    delete(admin, "client");
    eventually(Duration::from_secs(10), "client gone", || {
        gone(admin, "client").then_some(())
    });
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "client ends at SIGTERM: {:?}",
        started.elapsed()
    );

    // Everything is removed from the nodes once the pods are deleted.
    for name in ["web", "crashy", "hog"] {
        delete(admin, name);
    }
    eventually(Duration::from_secs(20), "all pods gone", || {
        ["web", "crashy", "hog"]
            .iter()
            .all(|n| gone(admin, n))
            .then_some(())
    });
    for d in &daemons {
        let left = |sub: &str| std::fs::read_dir(d.state.join(sub)).map_or(0, |e| e.count());
        eventually(
            Duration::from_secs(5),
            "records and namespaces removed",
            || (left("pods") == 0 && left("netns") == 0 && left("containers") == 0).then_some(()),
        );
    }
}

/// The same daemon with the Docker runtime: pause container, wiring, image entrypoint,
/// readiness, exec with skiff-probe on the image's PATH, logs, and removal on delete.
#[test]
fn the_daemon_runs_pods_on_docker() {
    let Some(engine) = skiff_lab::DockerEngine::start_or_skip("docker pods") else {
        return;
    };
    let probe = skiff_lab::static_probe_binary();
    assert!(
        probe.is_file(),
        "{} missing: `cargo xtask build` makes it",
        probe.display()
    );
    let built = std::process::Command::new(env!("CARGO_BIN_EXE_skiff-node"))
        .args(["image", "build", "--probe", &probe.display().to_string()])
        .args(["--docker-socket", &engine.socket().display().to_string()])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let mut lab = Lab::new().expect("lab");
    let cp_node = lab.add_node("cp").expect("node");
    let n1 = lab.add_node("n1").expect("node");
    let cp = ControlPlane::start(&mut lab, cp_node);
    let admin = &cp.admin;
    let declared = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "spec": {"podCIDR": format!("{}/24", lab.node(n1).pod_cidr)}});
    assert_eq!(
        admin.call(Method::POST, "/api/v1/nodes", Some(&declared)).0,
        201
    );
    let state = tempfile::tempdir().unwrap();
    let mut daemon = NodeDaemon {
        node: n1,
        name: "n1",
        state: state.path().join("n1"),
        pid: 0,
        runtime: ("docker", Some(engine.socket())),
        extra: Vec::new(),
    };
    let _netns = NetnsGuard(vec![daemon.state.clone()]);
    daemon.start(&mut lab, &cp.node_conf);

    let pod = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5, "containers": [{
                "name": "main", "image": "skiff-probe",
                "readinessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1}}]}})
    };
    admin.apply(&[json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "probe", "port": 80, "targetPort": 9000}]}})]);
    let web_cluster_ip = admin.get("/api/v1/namespaces/default/services/web")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let mut web_pod = pod("web");
    web_pod["metadata"]["labels"] = json!({"app": "web"});
    admin.apply(&[web_pod, pod("client")]);
    let web = eventually(Duration::from_secs(30), "web Ready on Docker", || {
        let p = pod_status(admin, "web");
        is_ready(&p).then_some(p)
    });
    let web_ip = web["status"]["podIP"].as_str().unwrap().to_string();
    let id = web["status"]["containerStatuses"][0]["containerID"].clone();
    assert!(id.as_str().unwrap().starts_with("docker://"), "{id}");
    eventually(Duration::from_secs(30), "client Ready", || {
        is_ready(&pod_status(admin, "client")).then_some(())
    });
    let answer = connect(admin, "client", &format!("{web_ip}:9000"));
    assert_eq!(answer["pod"], "web", "{answer}");
    let out = exec(admin, "web", &["hostname"]);
    assert_eq!(out["stdout"], "web\n", "{out}");

    // Names through Docker's DNS settings: the resolv.conf Docker wrote, busybox's
    // nslookup answered by n1's DNS server through the kube-dns ClusterIP, and the env.
    let resolv = exec(admin, "client", &["cat", "/etc/resolv.conf"]);
    let text = resolv["stdout"].as_str().unwrap_or("");
    for line in [
        "nameserver 10.96.0.10",
        "search default.svc.cluster.local svc.cluster.local cluster.local",
        "options ndots:5",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in {resolv}");
    }
    let mut looked_up = Value::Null;
    let answered = (0..20).any(|_| {
        looked_up = exec(
            admin,
            "client",
            &["nslookup", "web.default.svc.cluster.local"],
        );
        std::thread::sleep(Duration::from_millis(200));
        looked_up["stdout"]
            .as_str()
            .is_some_and(|s| s.contains(&web_cluster_ip))
    });
    assert!(answered, "nslookup web: {looked_up}");
    assert!(
        looked_up["stdout"].as_str().unwrap().contains("10.96.0.10"),
        "{looked_up}"
    );
    let env = exec(
        admin,
        "client",
        &["sh", "-c", "echo $WEB_SERVICE_HOST:$WEB_SERVICE_PORT_PROBE"],
    );
    assert_eq!(env["stdout"], format!("{web_cluster_ip}:80\n"), "{env}");
    let (code, logs) = admin.call_text(Method::GET, &format!("{}/log", pod_path("web")), None);
    assert_eq!(code, 200);
    assert!(logs.contains("serving"), "{logs}");

    for name in ["web", "client"] {
        delete(admin, name);
    }
    eventually(Duration::from_secs(20), "pods gone", || {
        (gone(admin, "web") && gone(admin, "client")).then_some(())
    });
    eventually(Duration::from_secs(5), "records removed", || {
        (std::fs::read_dir(daemon.state.join("pods")).map_or(0, |e| e.count()) == 0).then_some(())
    });
    daemon.kill();
}
