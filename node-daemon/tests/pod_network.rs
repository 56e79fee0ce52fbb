//! Pod networks made through rtnetlink inside a lab node: the pod gets its namespace, veth,
//! address and routes; the node reaches it, it reaches other pods through the gateway, and
//! removal leaves nothing behind.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

use nix::sched::{setns, CloneFlags};
use skiff_lab::Lab;
use skiff_node::pods::network::{PodNetwork, Sandbox};

/// Serves one connection inside the pod's namespace, answering `hello from <pod>`.
fn serve_once(sandbox: &Sandbox) -> std::thread::JoinHandle<()> {
    let (netns, ip, pod) = (sandbox.netns.clone(), sandbox.ip, sandbox.pod.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        setns(
            std::fs::File::open(&netns).unwrap(),
            CloneFlags::CLONE_NEWNET,
        )
        .unwrap();
        let listener = TcpListener::bind((ip, 8080)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .write_all(format!("hello from {pod}").as_bytes())
            .unwrap();
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    handle
}

fn fetch(from_netns: Option<&Path>, ip: Ipv4Addr) -> std::io::Result<String> {
    let from = from_netns.map(Path::to_path_buf);
    std::thread::spawn(move || {
        if let Some(ns) = from {
            setns(std::fs::File::open(ns)?, CloneFlags::CLONE_NEWNET)?;
        }
        let mut stream = TcpStream::connect_timeout(&(ip, 8080).into(), Duration::from_secs(2))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })
    .join()
    .unwrap()
}

#[test]
fn pods_get_a_namespace_a_veth_an_address_and_routes() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let node = lab.add_node("n1").expect("node");
    let netns_dir = std::env::temp_dir().join(format!("{}-netns", lab.id()));
    let n = lab.node(node);
    let network = PodNetwork {
        gateway: n.gateway,
        routed: vec!["10.0.0.0/8".parse().unwrap()],
        netns_dir: netns_dir.clone(),
    };
    let base = n.pod_cidr.octets();
    let ip = |host| Ipv4Addr::new(base[0], base[1], base[2], host);
    let (a, b) = n.netns.run(|| {
        (
            network.create("shop/a", ip(40), None).unwrap(),
            network.create("shop/b", ip(41), None).unwrap(),
        )
    });
    assert!(a.host_interface.len() <= 15 && a.host_interface != b.host_interface);

    // The node reaches the pod on its address.
    let server = serve_once(&a);
    let answer = n.netns.run(|| fetch(None, a.ip));
    assert_eq!(answer.unwrap(), "hello from shop/a");
    server.join().unwrap();

    // Pod to pod through the node's gateway.
    let server = serve_once(&b);
    assert_eq!(fetch(Some(&a.netns), b.ip).unwrap(), "hello from shop/b");
    server.join().unwrap();

    // Nothing outside the routed ranges: no default route in a pod.
    let stray = fetch(Some(&a.netns), Ipv4Addr::new(192, 0, 2, 1));
    assert!(
        stray.is_err(),
        "a pod reached an address outside its routes"
    );

    // Removal leaves no veth and no namespace file; removing twice is fine.
    n.netns.run(|| {
        network.remove(&a).unwrap();
        network.remove(&a).unwrap();
        network.remove(&b).unwrap();
    });
    assert!(!a.netns.exists() && !b.netns.exists());
    let gone = n
        .netns
        .run(|| nix::net::if_::if_nametoindex(a.host_interface.as_str()).is_err());
    assert!(gone, "the node-side veth is still there");
    let _ = std::fs::remove_dir(&netns_dir);
}
