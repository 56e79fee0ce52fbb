//! The lab harness itself: isolation, routing between nodes, cleanup (also on panic) and
//! parallel labs that do not collide.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use skiff_lab::{Lab, Netns};

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn routes(netns: &Netns) -> String {
    let out = Command::new("ip")
        .args(["-n", netns.name(), "route", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names and paths a lab made, to check after it is gone.
fn footprint(lab: &Lab) -> (Vec<String>, Vec<std::path::PathBuf>) {
    let mut names = vec![lab.lab_netns().name().to_string()];
    names.extend(lab.nodes().map(|(_, n)| n.netns.name().to_string()));
    (
        names,
        vec![lab.cgroup().to_path_buf(), lab.bpffs().to_path_buf()],
    )
}

fn assert_gone((names, paths): &(Vec<String>, Vec<std::path::PathBuf>)) {
    for name in names {
        assert!(!netns_exists(name), "namespace {name} left behind");
    }
    for path in paths {
        assert!(!path.exists(), "{} left behind", path.display());
    }
}

#[test]
fn pods_on_two_nodes_talk_only_through_routes_and_nothing_leaves_the_lab() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let n1 = lab.add_node("n1").unwrap();
    let n2 = lab.add_node("n2").unwrap();
    let a = lab.add_pod(n1, "a").unwrap();
    let b = lab.add_pod(n2, "b").unwrap();

    // No namespace of the lab has a default route: nothing can leave it.
    assert!(!routes(lab.lab_netns()).contains("default"));
    for (_, node) in lab.nodes() {
        assert!(!routes(&node.netns).contains("default"), "{}", node.name);
    }
    assert!(!routes(&lab.pod(a).netns).contains("default"));

    let ping = |lab: &Lab| {
        let mut ping = Command::new("ping");
        ping.args(["-c", "1", "-W", "1", &lab.pod(b).ip.to_string()]);
        lab.run_in_pod(a, ping).unwrap().status.success()
    };
    assert!(
        !ping(&lab),
        "pods on different nodes must not reach each other without routes"
    );
    lab.route_pod_cidrs().unwrap();
    assert!(ping(&lab), "routed pods reach each other across the bridge");

    // A process started in a pod lands in that pod's cgroup and network namespace.
    let mut sleeper = Command::new("sleep");
    sleeper.arg("30").stdout(Stdio::null());
    let pid = lab.spawn_in_pod(a, sleeper).unwrap().id();
    let procs = std::fs::read_to_string(lab.pod(a).cgroup.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "pid {pid} in {procs}"
    );
    let netns_of = |pid: String| {
        std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| {
            use std::os::unix::fs::MetadataExt as _;
            m.ino()
        })
    };
    let pod_netns = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(lab.pod(a).netns.path()).unwrap().ino()
    };
    assert_eq!(netns_of(pid.to_string()).unwrap(), pod_netns);

    let made = footprint(&lab);
    drop(lab);
    assert_gone(&made);
}

#[test]
fn a_panicking_test_still_cleans_up() {
    if !skiff_lab::privileged() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let mut lab = Lab::new().unwrap();
        let node = lab.add_node("n1").unwrap();
        lab.add_pod(node, "a").unwrap();
        tx.send(footprint(&lab)).unwrap();
        panic!("the test fails here");
    });
    assert!(result.is_err());
    assert_gone(&rx.recv().unwrap());
}

#[test]
fn labs_in_parallel_do_not_collide() {
    if !skiff_lab::privileged() {
        return;
    }
    let probe = skiff_lab::probe_binary().unwrap();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let probe = probe.clone();
                scope.spawn(move || {
                    // Same node and pod names, same addresses, in every lab.
                    let mut lab = Lab::new().unwrap();
                    let node = lab.add_node("n1").unwrap();
                    let a = lab.add_pod(node, "a").unwrap();
                    let b = lab.add_pod(node, "b").unwrap();
                    let mut server = Command::new(&probe);
                    server
                        .args(["serve", "--tcp", "8080", "--name", lab.id()])
                        .stdout(Stdio::piped());
                    let child = lab.spawn_in_pod(b, server).unwrap();
                    let mut line = String::new();
                    BufReader::new(child.stdout.as_mut().unwrap())
                        .read_line(&mut line)
                        .unwrap();
                    let mut client = Command::new(&probe);
                    client.args(["connect", &format!("{}:8080", lab.pod(b).ip)]);
                    let out = lab.run_in_pod(a, client).unwrap();
                    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                    // Each lab's client reached its own lab's server.
                    assert!(stdout.contains(lab.id()), "{stdout}");
                    footprint(&lab)
                })
            })
            .collect();
        for worker in workers {
            assert_gone(&worker.join().unwrap());
        }
    });
}

#[test]
fn a_new_lab_sweeps_what_a_killed_run_left_behind() {
    if !skiff_lab::privileged() {
        return;
    }
    // A process id that exists nowhere stands for a test killed before its drop ran.
    let dead_pid = (100_000..)
        .find(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .unwrap();
    let stale = format!("{}-{dead_pid}-0-lab", skiff_lab::NAME_PREFIX);
    let status = Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap();
    assert!(status.success());
    let lab = Lab::new().unwrap();
    assert!(
        !netns_exists(&stale),
        "stale namespace {stale} was not swept"
    );
    drop(lab);
}
