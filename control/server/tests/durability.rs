//! kill -9 at any moment loses no acknowledged write: writers create objects as fast as the
//! API acknowledges them while the control plane is killed and restarted again and again.

mod support;

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::json;
use support::Control;

#[test]
fn kill_dash_nine_loses_no_acknowledged_write() {
    let mut control = Control::embedded(&["--disable-controllers"]);
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let base = control.api.base.clone();
    let ca = control.api.ca.clone();
    let token = control.api.token.clone();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            let api = support::Api::new(&base, &ca, token.as_deref());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w{w}-{i}");
                    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                    match api.raw("POST", "/api/v1/namespaces", Some(&ns)) {
                        // Acknowledged now, or acknowledged before a crash ate the answer.
                        Ok((201, _)) | Ok((409, _)) => {
                            acknowledged.lock().unwrap().insert(name);
                            i += 1;
                        }
                        // The server is down or restarting: the same name again.
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();
    let mut kills = 0;
    for round in 0..6u64 {
        // Kill at varied moments while writes are in flight.
        std::thread::sleep(Duration::from_millis(150 + round * 70));
        let before = acknowledged.lock().unwrap().len();
        control.restart();
        kills += 1;
        assert!(
            before > 0 || round > 0,
            "writers got no write through before the first kill"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    // Once more, so the last acknowledged writes must come back from disk too.
    control.restart();
    let list = control.api.expect("GET", "/api/v1/namespaces", None, 200);
    let stored: BTreeSet<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let acknowledged = acknowledged.lock().unwrap();
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    println!(
        "{} acknowledged writes across {kills} kill -9 restarts; {} lost",
        acknowledged.len(),
        lost.len()
    );
    assert!(
        acknowledged.len() >= 50,
        "too few writes to mean anything: {}",
        acknowledged.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}

#[test]
fn addresses_stay_taken_across_restarts() {
    let mut control = Control::embedded(&["--disable-controllers"]);
    let service = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80}]}})
    };
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    let a = control.api.expect(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&service("a")),
        201,
    );
    let n1 = control
        .api
        .expect("POST", "/api/v1/nodes", Some(&node("n1")), 201);
    control.restart();
    let b = control.api.expect(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&service("b")),
        201,
    );
    let n2 = control
        .api
        .expect("POST", "/api/v1/nodes", Some(&node("n2")), 201);
    assert_ne!(a["spec"]["clusterIP"], b["spec"]["clusterIP"]);
    assert_ne!(
        a["spec"]["ports"][0]["nodePort"],
        b["spec"]["ports"][0]["nodePort"]
    );
    assert_ne!(n1["spec"]["podCIDR"], n2["spec"]["podCIDR"]);
}
