//! A node daemon joined to a real control plane across the lab network: it registers and
//! heartbeats, reports usage, and keeps its kernel data plane in step with the cluster's
//! Services, EndpointSlices and NetworkPolicies; when the control plane dies, the data plane
//! keeps forwarding.
//!
//! The pods are lab pods (namespaces with `skiff-probe serve`), and the test reports their
//! status as a node's pod manager will.

mod support;

use std::time::Duration;

use serde_json::json;
use skiff_lab::{Lab, NodeId, PodId};
use support::{
    connect_command,
    control::{self, eventually, ControlPlane},
    parse, pin_dir,
};

/// Starts `skiff-node run` on `node`, joined with `config`; the pods are lab pods, so the
/// daemon runs none itself.
fn start_daemon(lab: &mut Lab, node: NodeId, name: &str, pods: &[PodId], config: &std::path::Path) {
    let n = lab.node(node);
    let mut args: Vec<String> = vec![
        "run".into(),
        "--runtime".into(),
        "none".into(),
        "--pin-dir".into(),
        pin_dir(lab, node).display().to_string(),
        "--cgroup".into(),
        n.cgroup.display().to_string(),
        "--uplink".into(),
        n.uplink.into(),
        "--control-plane".into(),
        config.display().to_string(),
        "--node-name".into(),
        name.into(),
        "--heartbeat-seconds".into(),
        "1".into(),
    ];
    for pod in pods {
        let p = lab.pod(*pod);
        args.extend(["--pod".into(), format!("{}={}", p.host_interface, p.ip)]);
    }
    control::start_daemon(lab, node, &args, None);
}

fn reaches(lab: &Lab, from: PodId, target: &str) -> Option<String> {
    let result = parse(
        lab.run_in_pod(from, connect_command(target, "tcp", &[]))
            .unwrap(),
    );
    (result["ok"] == true).then(|| result.to_string())
}

#[test]
fn a_joined_node_follows_the_cluster_and_outlives_the_control_plane() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let control_node = lab.add_node("cp").expect("node");
    let node = lab.add_node("n2").expect("node");
    let far = lab.add_node("n3").expect("node");
    let web = lab.add_pod(node, "web").expect("pod");
    let client = lab.add_pod(node, "client").expect("pod");
    let remote = lab.add_pod(far, "remote").expect("pod");
    support::serve(&mut lab, web, "web", &["--tcp", "8080"]);
    support::serve(&mut lab, remote, "remote", &["--tcp", "8080"]);

    // The control plane, on its own node of the lab network.
    let cp = ControlPlane::start(&mut lab, control_node);
    let (admin, node_conf, control_pid) = (&cp.admin, cp.node_conf.clone(), cp.pid);
    // Nodes may be declared before they join; the lab's pod CIDRs are where its pods are.
    for (name, id) in [("n2", node), ("n3", far)] {
        let declared = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDR": format!("{}/24", lab.node(id).pod_cidr)}});
        let (code, body) = admin.call(reqwest::Method::POST, "/api/v1/nodes", Some(&declared));
        assert_eq!(code, 201, "{body}");
    }
    let remote_target = format!("{}:8080", lab.pod(remote).ip);
    assert!(
        reaches(&lab, client, &remote_target).is_none(),
        "no route to n3's pods before the daemons"
    );
    start_daemon(&mut lab, node, "n2", &[web, client], &node_conf);
    start_daemon(&mut lab, far, "n3", &[remote], &node_conf);

    // Registered, Ready, with its address and a pod CIDR; usage arrives.
    let node_address = lab.node(node).address.to_string();
    eventually(Duration::from_secs(15), "n2 Ready", || {
        let n = admin.call(reqwest::Method::GET, "/api/v1/nodes/n2", None).1;
        let ready = n["status"]["conditions"][0]["status"] == "True";
        let ip = n["status"]["addresses"][0]["address"] == node_address.as_str();
        (ready && ip && n["spec"]["podCIDR"].is_string()).then_some(())
    });
    eventually(Duration::from_secs(10), "usage samples", || {
        let samples = admin.get("/api/v1/metrics");
        (samples.as_array()?.len() == 2 && samples[0]["memoryBytes"].as_u64()? > 0).then_some(())
    });

    // Each daemon routes the other node's pod CIDR via that node: pod to pod across nodes.
    let answer = eventually(Duration::from_secs(10), "a pod on n3 from n2", || {
        reaches(&lab, client, &remote_target)
    });
    assert!(answer.contains("remote"), "{answer}");

    // A Service in front of the web pod, from the cluster to the kernel.
    let pod = |name: &str, app: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": "n2", "containers": [{"name": "main", "image": "skiff-probe",
                "ports": [{"name": "http", "containerPort": 8080}]}]}})
    };
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
    admin.apply(&[pod("web", "web"), pod("client", "client"), service]);
    for (name, id) in [("web", web), ("client", client)] {
        let mut object = admin.get(&format!("/api/v1/namespaces/default/pods/{name}"));
        object["status"] = json!({"phase": "Running", "podIP": lab.pod(id).ip.to_string(),
            "conditions": [{"type": "Ready", "status": "True"}]});
        let (code, body) = admin.call(
            reqwest::Method::PUT,
            &format!("/api/v1/namespaces/default/pods/{name}/status"),
            Some(&object),
        );
        assert_eq!(code, 200, "{body}");
    }
    let cluster_ip = admin.get("/api/v1/namespaces/default/services/web")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let target = format!("{cluster_ip}:80");
    let answer = eventually(Duration::from_secs(10), "the ClusterIP to answer", || {
        reaches(&lab, client, &target)
    });
    assert!(answer.contains("web"), "{answer}");

    // A NetworkPolicy from the cluster closes it.
    let deny = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-web"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}});
    admin.apply(&[deny]);
    eventually(Duration::from_secs(5), "the policy to deny", || {
        reaches(&lab, client, &target).is_none().then_some(())
    });
    let (code, _) = admin.call(
        reqwest::Method::DELETE,
        "/api/v1/namespaces/default/networkpolicies/deny-web",
        None,
    );
    assert_eq!(code, 200);
    eventually(Duration::from_secs(5), "the policy to go", || {
        reaches(&lab, client, &target)
    });

    // A node that leaves takes its route with it.
    let (code, _) = admin.call(reqwest::Method::DELETE, "/api/v1/nodes/n3", None);
    assert_eq!(code, 200);
    eventually(Duration::from_secs(10), "the route to n3 to go", || {
        reaches(&lab, client, &remote_target)
            .is_none()
            .then_some(())
    });

    // The control plane dies; the data plane keeps forwarding what it was given.
    // SAFETY: plain kill(2) of a child this test started.
    assert_eq!(unsafe { libc::kill(control_pid as i32, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        reaches(&lab, client, &target).is_some(),
        "forwarding stopped with the control plane"
    );
}
