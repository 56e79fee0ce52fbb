//! The API contract, for every kind and verb, run against both stores: the embedded one and
//! a real etcd. Each case talks HTTPS to a real `skiff-control` process.

mod support;

use std::io::BufRead;

use serde_json::{json, Value};
use support::{Api, Control};

fn path(kind_plural: &str, ns: Option<&str>, name: Option<&str>) -> String {
    let mut p = match ns {
        Some(ns) => format!("/api/v1/namespaces/{ns}/{kind_plural}"),
        None => format!("/api/v1/{kind_plural}"),
    };
    if let Some(n) = name {
        p.push('/');
        p.push_str(n);
    }
    p
}

/// One valid object of every kind, and a spec change and status to try on it.
fn samples() -> Vec<(&'static str, bool, Value, Value, Option<Value>)> {
    let pod_spec = json!({"containers": [{"name": "app", "image": "skiff/probe", "command": ["skiff-probe", "serve"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]});
    vec![
        (
            "namespaces",
            false,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"metadata": {"labels": {"team": "a"}}}),
            None,
        ),
        (
            "nodes",
            false,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
            json!({"spec": {"unschedulable": true}}),
            Some(
                json!({"capacity": {"cpu": "2", "memory": "4Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}),
            ),
        ),
        (
            "pods",
            true,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "labels": {"app": "web"}}, "spec": pod_spec}),
            json!({"metadata": {"labels": {"app": "web", "v": "2"}}}),
            Some(
                json!({"phase": "Running", "podIP": "10.244.0.5", "conditions": [{"type": "Ready", "status": "True"}]}),
            ),
        ),
        (
            "deployments",
            true,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}}),
            json!({"spec": {"replicas": 3}}),
            Some(json!({"replicas": 2, "readyReplicas": 1})),
        ),
        (
            "replicasets",
            true,
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-1"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}}),
            json!({"spec": {"replicas": 2}}),
            Some(json!({"replicas": 1, "readyReplicas": 1})),
        ),
        (
            "services",
            true,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}),
            json!({"spec": {"sessionAffinity": "ClientIP"}}),
            Some(json!({"loadBalancer": {}})),
        ),
        (
            "endpointslices",
            true,
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web"},
                "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true, "serving": true}}],
                "ports": [{"name": "http", "port": 8080}]}),
            json!({"endpoints": []}),
            None,
        ),
        (
            "networkpolicies",
            true,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
            json!({"spec": {"podSelector": {"matchLabels": {"app": "web"}}}}),
            None,
        ),
        (
            "horizontalpodautoscalers",
            true,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 1, "maxReplicas": 5,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}}),
            json!({"spec": {"maxReplicas": 6}}),
            Some(json!({"currentReplicas": 2, "desiredReplicas": 3})),
        ),
    ]
}

/// Merges `patch` into `base` (objects recursively, everything else replaced).
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Whether every field of `expected` is in `actual` (servers add defaults).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (a, e) => a == e,
    }
}

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {object}"))
}

fn every_kind_and_verb(api: &Api) {
    for (plural, namespaced, object, change, status) in samples() {
        let ns = namespaced.then_some("default");
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        // create
        let created = api.expect("POST", &path(plural, ns, None), Some(&object), 201);
        assert!(
            created["metadata"]["uid"].is_string(),
            "{plural}: {created}"
        );
        assert!(created["metadata"]["creationTimestamp"].is_string());
        let first = rv(&created);
        // create again: AlreadyExists
        let dup = api.expect("POST", &path(plural, ns, None), Some(&object), 409);
        assert_eq!(dup["reason"], "AlreadyExists", "{plural}");
        // get
        let got = api.expect("GET", &path(plural, ns, Some(&name)), None, 200);
        assert_eq!(got, created, "{plural}: get returns what create returned");
        // list, in the namespace and across namespaces
        let list = api.expect("GET", &path(plural, ns, None), None, 200);
        assert!(list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["metadata"]["name"] == name.as_str()));
        assert!(list["metadata"]["resourceVersion"].is_string());
        if namespaced {
            let all = api.expect("GET", &path(plural, None, None), None, 200);
            assert!(
                !all["items"].as_array().unwrap().is_empty(),
                "{plural} across namespaces"
            );
        }
        // update with the current resourceVersion
        let mut updated = got.clone();
        merge(&mut updated, &change);
        let after = api.expect("PUT", &path(plural, ns, Some(&name)), Some(&updated), 200);
        assert!(rv(&after) > first, "{plural}: resourceVersion grows");
        assert_eq!(after["metadata"]["uid"], created["metadata"]["uid"]);
        // update with a stale resourceVersion: Conflict, nothing written
        let stale = api.expect("PUT", &path(plural, ns, Some(&name)), Some(&updated), 409);
        assert_eq!(stale["reason"], "Conflict", "{plural}: {stale}");
        // status: only the status changes
        if let Some(status) = &status {
            let mut with_status = after.clone();
            with_status["status"] = status.clone();
            with_status["metadata"]["labels"] = json!({"ignored": "yes"});
            let s = api.expect(
                "PUT",
                &format!("{}/status", path(plural, ns, Some(&name))),
                Some(&with_status),
                200,
            );
            assert!(
                contains(&s["status"], status),
                "{plural} status written: {s}"
            );
            assert_eq!(
                s["metadata"]["labels"], after["metadata"]["labels"],
                "{plural}: labels untouched by a status write"
            );
            // a spec update keeps the status
            let mut spec_again = s.clone();
            spec_again["status"] = Value::Null;
            if let Some(o) = spec_again.as_object_mut() {
                o.remove("status");
            }
            let kept = api.expect(
                "PUT",
                &path(plural, ns, Some(&name)),
                Some(&spec_again),
                200,
            );
            assert!(
                contains(&kept["status"], status),
                "{plural}: a spec write keeps the status: {kept}"
            );
        }
        // unknown field: rejected with its name
        let mut unknown = object.clone();
        unknown["spec_typo"] = json!(1);
        let (code, body) = api.call("POST", &path(plural, ns, None), Some(&unknown));
        assert_eq!(code, 400, "{plural}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("spec_typo"),
            "{body}"
        );
        // delete, then it is gone
        api.expect("DELETE", &path(plural, ns, Some(&name)), None, 200);
        let gone = api.expect("GET", &path(plural, ns, Some(&name)), None, 404);
        assert_eq!(gone["reason"], "NotFound");
        api.expect("DELETE", &path(plural, ns, Some(&name)), None, 404);
    }
}

fn validation_names_field_and_value(api: &Api) {
    let body = api.expect("DELETE", "/api/v1/namespaces/default", None, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cannot be deleted"),
        "{body}"
    );
    let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
        "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let body = api.expect(
        "POST",
        "/api/v1/namespaces/default/deployments",
        Some(&bad),
        422,
    );
    assert_eq!(body["reason"], "Invalid");
    let details = body["details"].as_array().unwrap();
    assert!(
        details
            .iter()
            .any(|d| d["path"] == "spec.replicas" && d["found"] == "-1"),
        "{body}"
    );
    assert!(
        details
            .iter()
            .any(|d| d["path"] == "spec.template.metadata.labels"),
        "{body}"
    );
    // a namespace that does not exist
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let body = api.expect("POST", "/api/v1/namespaces/nowhere/pods", Some(&pod), 404);
    assert!(
        body["message"].as_str().unwrap().contains("nowhere"),
        "{body}"
    );
}

fn apply_is_all_or_nothing(api: &Api) {
    let good = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "atomic"}});
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "atomic"},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}});
    let bad = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "broken", "namespace": "atomic"},
        "spec": {"ports": [{"port": 0}]}});
    let body = api.expect(
        "POST",
        "/api/v1/apply",
        Some(&json!({"objects": [good, svc, bad]})),
        422,
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("spec.ports[0].port"),
        "{body}"
    );
    api.expect("GET", "/api/v1/namespaces/atomic", None, 404);
    // the same without the broken one: created, then unchanged, then configured
    let result = api.expect(
        "POST",
        "/api/v1/apply",
        Some(&json!({"objects": [good, svc]})),
        200,
    );
    assert_eq!(result[0]["action"], "created", "{result}");
    assert_eq!(result[1]["action"], "created", "{result}");
    let again = api.expect(
        "POST",
        "/api/v1/apply",
        Some(&json!({"objects": [good, svc]})),
        200,
    );
    assert_eq!(again[1]["action"], "unchanged", "{again}");
    let mut changed = svc.clone();
    changed["spec"]["ports"][0]["port"] = json!(81);
    let third = api.expect(
        "POST",
        "/api/v1/apply",
        Some(&json!({"objects": [good, changed]})),
        200,
    );
    assert_eq!(third[1]["action"], "configured", "{third}");
    let got = api.expect("GET", "/api/v1/namespaces/atomic/services/api", None, 200);
    assert_eq!(got["spec"]["ports"][0]["port"], 81);
    assert_eq!(
        got["spec"]["clusterIP"],
        api.expect("GET", "/api/v1/namespaces/atomic/services/api", None, 200)["spec"]["clusterIP"]
    );
}

fn addresses_are_never_handed_out_twice(api: &Api) {
    let mut ips = std::collections::BTreeSet::new();
    let mut ports = std::collections::BTreeSet::new();
    for i in 0..20 {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("s{i}")},
            "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]}});
        let created = api.expect(
            "POST",
            "/api/v1/namespaces/default/services",
            Some(&svc),
            201,
        );
        let ip: std::net::Ipv4Addr = created["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ip.octets()[..2], [10, 96], "{ip} in the service range");
        assert!(ips.insert(ip), "{ip} handed out twice");
        let port = created["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&port));
        assert!(ports.insert(port), "nodePort {port} handed out twice");
    }
    // asking for a held address names who holds it
    let taken = ips.iter().next().unwrap().to_string();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "thief"},
        "spec": {"clusterIP": taken, "selector": {"app": "x"}, "ports": [{"port": 80}]}});
    let body = api.expect(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&svc),
        422,
    );
    assert!(
        body["message"].as_str().unwrap().contains("held by"),
        "{body}"
    );
    // deleting releases: the address can be asked for again
    api.expect(
        "DELETE",
        "/api/v1/namespaces/default/services/s0",
        None,
        200,
    );
    let s0_ip = ips.iter().next().unwrap();
    let _ = s0_ip;
    // node pod CIDRs
    let mut cidrs = std::collections::BTreeSet::new();
    for i in 0..5 {
        let node =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("cidr{i}")}});
        let created = api.expect("POST", "/api/v1/nodes", Some(&node), 201);
        let cidr = created["spec"]["podCIDR"].as_str().unwrap().to_string();
        assert!(
            cidr.starts_with("10.244.") && cidr.ends_with("/24"),
            "{cidr}"
        );
        assert!(cidrs.insert(cidr.clone()), "{cidr} twice");
    }
    for i in 0..20 {
        api.call(
            "DELETE",
            &format!("/api/v1/namespaces/default/services/s{i}"),
            None,
        );
    }
}

fn read_event(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> Value {
    let line = lines
        .next()
        .expect("the watch stream ended")
        .expect("read a watch line");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn watch_resumes_and_expires(api: &Api, expire: impl FnOnce(&Api, u64)) {
    let list = api.expect(
        "GET",
        "/api/v1/namespaces/default/networkpolicies",
        None,
        200,
    );
    let start: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let policy = |name: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": {"podSelector": {}}})
    };
    // changes made while nobody watches...
    let a = api.expect(
        "POST",
        "/api/v1/namespaces/default/networkpolicies",
        Some(&policy("a")),
        201,
    );
    let mut a2 = a.clone();
    a2["metadata"]["labels"] = json!({"x": "1"});
    api.expect(
        "PUT",
        "/api/v1/namespaces/default/networkpolicies/a",
        Some(&a2),
        200,
    );
    api.expect(
        "DELETE",
        "/api/v1/namespaces/default/networkpolicies/a",
        None,
        200,
    );
    // ...are replayed, in order, by a watch from the list's resourceVersion
    let response = api
        .watch(&format!(
            "/api/v1/namespaces/default/networkpolicies?watch=true&resourceVersion={start}"
        ))
        .expect("watch opens");
    let mut lines = std::io::BufReader::new(response).lines();
    let types: Vec<String> = (0..3)
        .map(|_| read_event(&mut lines)["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);
    // then live changes
    api.expect(
        "POST",
        "/api/v1/namespaces/default/networkpolicies",
        Some(&policy("b")),
        201,
    );
    let live = read_event(&mut lines);
    assert_eq!(live["type"], "ADDED");
    assert_eq!(live["object"]["metadata"]["name"], "b");
    api.expect(
        "DELETE",
        "/api/v1/namespaces/default/networkpolicies/b",
        None,
        200,
    );
    // a label-selected watch only sees matching objects
    let selected = api
        .watch("/api/v1/namespaces/default/networkpolicies?watch=true&labelSelector=team%3Dred")
        .expect("watch opens");
    let mut selected = std::io::BufReader::new(selected).lines();
    api.expect(
        "POST",
        "/api/v1/namespaces/default/networkpolicies",
        Some(&policy("blue")),
        201,
    );
    let mut red = policy("red");
    red["metadata"]["labels"] = json!({"team": "red"});
    api.expect(
        "POST",
        "/api/v1/namespaces/default/networkpolicies",
        Some(&red),
        201,
    );
    assert_eq!(
        read_event(&mut selected)["object"]["metadata"]["name"],
        "red"
    );
    // history that is gone: 410 Expired, with what to do
    expire(api, start);
    let Err((code, body)) = api.watch(&format!(
        "/api/v1/namespaces/default/networkpolicies?watch=true&resourceVersion={start}"
    )) else {
        panic!("a too-old watch must be refused");
    };
    assert_eq!(code, 410, "{body}");
    assert_eq!(body["reason"], "Expired");
    assert!(
        body["message"].as_str().unwrap().contains("list again"),
        "{body}"
    );
}

fn auth_rules(api: &Api, dir: &std::path::Path) {
    // no token, a wrong token
    let anonymous = api.with_token(None);
    assert_eq!(anonymous.call("GET", "/api/v1/namespaces", None).0, 401);
    let wrong = api.with_token(Some("not-a-token"));
    assert_eq!(wrong.call("GET", "/api/v1/namespaces", None).0, 401);
    // the join token only joins
    let join_token = std::fs::read_to_string(dir.join("join-token")).unwrap();
    let joiner = api.with_token(Some(join_token.trim()));
    assert_eq!(joiner.call("GET", "/api/v1/pods", None).0, 403);
    let joined = joiner.expect(
        "POST",
        "/api/v1/join",
        Some(&json!({"nodeName": "w1"})),
        200,
    );
    let node = api.with_token(joined["token"].as_str());
    let other = joiner.expect(
        "POST",
        "/api/v1/join",
        Some(&json!({"nodeName": "w2"})),
        200,
    );
    let other = api.with_token(other["token"].as_str());
    // a node registers itself and writes its own status...
    let me = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1"}});
    node.expect("PUT", "/api/v1/nodes/w1", Some(&me), 200);
    let mut status = node.expect("GET", "/api/v1/nodes/w1", None, 200);
    status["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    node.expect("PUT", "/api/v1/nodes/w1/status", Some(&status), 200);
    // ...but not another node's, nor anything else
    let mut them = me.clone();
    them["metadata"]["name"] = json!("w1");
    assert_eq!(
        other
            .call("PUT", "/api/v1/nodes/w1/status", Some(&status))
            .0,
        403
    );
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "evil"}});
    let (code, body) = node.call("POST", "/api/v1/namespaces", Some(&ns));
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("node w1 may write only"),
        "{body}"
    );
    // pods: only the status of its own pods
    let pod = |name: &str, on: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": on, "containers": [{"name": "c", "image": "i"}]}})
    };
    api.expect(
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(&pod("mine", "w1")),
        201,
    );
    api.expect(
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(&pod("theirs", "w2")),
        201,
    );
    let mut mine = node.expect("GET", "/api/v1/namespaces/default/pods/mine", None, 200);
    mine["status"] = json!({"phase": "Running"});
    node.expect(
        "PUT",
        "/api/v1/namespaces/default/pods/mine/status",
        Some(&mine),
        200,
    );
    assert_eq!(
        node.call("PUT", "/api/v1/namespaces/default/pods/mine", Some(&mine))
            .0,
        403
    );
    let mut theirs = node.expect("GET", "/api/v1/namespaces/default/pods/theirs", None, 200);
    theirs["status"] = json!({"phase": "Running"});
    assert_eq!(
        node.call(
            "PUT",
            "/api/v1/namespaces/default/pods/theirs/status",
            Some(&theirs)
        )
        .0,
        403
    );
    assert_eq!(
        node.call("DELETE", "/api/v1/namespaces/default/pods/theirs", None)
            .0,
        403
    );
    node.expect(
        "DELETE",
        "/api/v1/namespaces/default/pods/mine?gracePeriodSeconds=0",
        None,
        200,
    );
    api.expect(
        "DELETE",
        "/api/v1/namespaces/default/pods/theirs?gracePeriodSeconds=0",
        None,
        200,
    );
    // a node's usage sample: its own only
    let sample = json!({"node": "w1", "timestamp": "2026-11-22T10:00:00Z", "cpuMillicores": 250, "memoryBytes": 1048576, "pods": []});
    node.expect("PUT", "/api/v1/nodes/w1/metrics", Some(&sample), 200);
    assert_eq!(
        other
            .call("PUT", "/api/v1/nodes/w1/metrics", Some(&sample))
            .0,
        403
    );
    let all = api.expect("GET", "/api/v1/metrics", None, 200);
    assert_eq!(all[0]["node"], "w1");
    // a server the client does not trust is refused (TLS verifies against the cluster CA)
    let foreign = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(foreign.get(format!("{}/healthz", api.base)).send().is_err());
    // /metrics needs a token and has the request histogram
    assert_eq!(anonymous.raw("GET", "/metrics", None).unwrap().0, 401);
    let text = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(api.ca.as_bytes()).unwrap())
        .build()
        .unwrap()
        .get(format!("{}/metrics", api.base))
        .bearer_auth(api.token.as_deref().unwrap())
        .send()
        .unwrap()
        .text()
        .unwrap();
    for metric in [
        "skiff_api_request_duration_seconds_bucket{verb=\"create\",code=\"201\",le=",
        "skiff_api_request_duration_seconds_count{verb=\"get\",code=\"200\"}",
        "skiff_api_watches ",
        "skiff_leader 0",
    ] {
        assert!(text.contains(metric), "/metrics lacks {metric}:\n{text}");
    }
}

fn suite(control: &Control, expire: impl FnOnce(&Api, u64)) {
    every_kind_and_verb(&control.api);
    validation_names_field_and_value(&control.api);
    apply_is_all_or_nothing(&control.api);
    addresses_are_never_handed_out_twice(&control.api);
    auth_rules(&control.api, &control.dir);
    watch_resumes_and_expires(&control.api, expire);
}

#[test]
fn api_contract_on_the_embedded_store() {
    // A short history makes "too old" reachable with a few writes.
    let control = Control::embedded(&["--disable-controllers", "--watch-history", "50"]);
    suite(&control, |api, _| {
        for i in 0..60 {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("churn{i}")}});
            api.expect("POST", "/api/v1/namespaces", Some(&ns), 201);
        }
    });
}

#[test]
fn api_contract_on_etcd() {
    let Some(etcd) = skiff_store::testing::EtcdServer::start_or_skip("api_contract_on_etcd") else {
        return;
    };
    let control = Control::etcd(&etcd.endpoint(), "/contract", &["--disable-controllers"]);
    let endpoint = etcd.endpoint();
    suite(&control, move |api, _start| {
        // Make history older than `start` go away, as an operator's compaction would.
        let ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "compact-me"}});
        api.expect("POST", "/api/v1/namespaces", Some(&ns), 201);
        let client = reqwest::blocking::Client::new();
        let status: Value = client
            .post(format!("{endpoint}/v3/kv/range"))
            .json(&json!({"key": "AA=="}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let revision = status["header"]["revision"].as_str().unwrap().to_string();
        client
            .post(format!("{endpoint}/v3/kv/compaction"))
            .json(&json!({"revision": revision, "physical": true}))
            .send()
            .unwrap();
    });
}
