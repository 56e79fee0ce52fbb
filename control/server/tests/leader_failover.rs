//! Three control planes on one etcd: all serve the API, exactly one leads the controllers,
//! and when the leader is killed another takes over within a few seconds.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{eventually, Api, Control};

fn leads(api: &Api) -> Option<bool> {
    let (code, _) = api.raw("GET", "/healthz", None).ok()?;
    if code != 200 {
        return None;
    }
    let text = reqwest_metrics(api)?;
    Some(text.lines().any(|l| l.trim() == "skiff_leader 1"))
}

fn reqwest_metrics(api: &Api) -> Option<String> {
    let client = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(api.ca.as_bytes()).ok()?)
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    client
        .get(format!("{}/metrics", api.base))
        .bearer_auth(api.token.as_deref()?)
        .send()
        .ok()?
        .text()
        .ok()
}

#[test]
fn killing_the_leader_hands_the_controllers_to_another_instance() {
    let Some(etcd) = skiff_store::testing::EtcdServer::start_or_skip("leader failover") else {
        return;
    };
    let mut instances: Vec<Control> = (0..3)
        .map(|_| Control::etcd(&etcd.endpoint(), "/failover", &[]))
        .collect();
    // Same CA and tokens everywhere: a client of one is a client of all.
    let admin = instances[0].api.clone();
    for i in &instances {
        let other = Api::new(&i.api.base, &admin.ca, admin.token.as_deref());
        other.expect("GET", "/api/v1/namespaces", None, 200);
    }
    let leader = eventually(Duration::from_secs(10), "one leader", || {
        let leading: Vec<usize> = (0..3)
            .filter(|&i| leads(&instances[i].api) == Some(true))
            .collect();
        (leading.len() == 1).then(|| leading[0])
    });
    // Controllers run on the leader: a Deployment gets its ReplicaSet.
    let deployment = |name: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    };
    let survivor = (leader + 1) % 3;
    let api = instances[survivor].api.clone();
    api.expect(
        "POST",
        "/api/v1/namespaces/default/deployments",
        Some(&deployment("before")),
        201,
    );
    eventually(
        Duration::from_secs(10),
        "a ReplicaSet from the first leader",
        || {
            let list = api.expect("GET", "/api/v1/namespaces/default/replicasets", None, 200);
            (!list["items"].as_array().unwrap().is_empty()).then_some(())
        },
    );

    let killed_at = Instant::now();
    instances[leader].kill();
    let new_leader = eventually(Duration::from_secs(15), "a new leader", || {
        let leading: Vec<usize> = (0..3)
            .filter(|&i| i != leader && leads(&instances[i].api) == Some(true))
            .collect();
        (leading.len() == 1).then(|| leading[0])
    });
    let took = killed_at.elapsed();
    println!("instance {new_leader} took over {took:?} after the leader was killed");
    assert!(took < Duration::from_secs(8), "takeover took {took:?}");
    // and its controllers work
    api.expect(
        "POST",
        "/api/v1/namespaces/default/deployments",
        Some(&deployment("after")),
        201,
    );
    eventually(
        Duration::from_secs(10),
        "a ReplicaSet from the new leader",
        || {
            let list = api.expect(
                "GET",
                "/api/v1/namespaces/default/replicasets?labelSelector=app%3Dafter",
                None,
                200,
            );
            (!list["items"].as_array().unwrap().is_empty()).then_some(())
        },
    );
    instances.clear();
}
