//! The node's DNS server on loopback, asked by `dig`: names outside the cluster domain are
//! forwarded to an upstream resolver (a small one on loopback that this test runs), an
//! unanswering upstream gives SERVFAIL within the timeout instead of a hang, and a daemon that
//! has not seen the cluster yet holds queries instead of denying names that exist.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType},
    rr::{rdata::A, RData, Record},
};
use skiff_node::dns::{self, DnsSettings, Zone};

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An upstream answering every A query with 192.0.2.7; returns its address.
fn fake_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::new();
            answer
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_recursion_available(true)
                .add_queries(query.queries().to_vec());
            if let Some(q) = query.queries().first() {
                answer.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(A::new(192, 0, 2, 7)),
                ));
            }
            let _ = socket.send_to(&answer.to_vec().unwrap(), from);
        }
    });
    addr
}

fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args([
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
        ])
        .args(["+tries=1", "+time=5"])
        .args(args)
        .output()
        .expect("dig (bind9-dnsutils; cargo xtask setup installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start(upstreams: Vec<SocketAddr>, zone: Zone) -> (SocketAddr, dns::ZoneHandle) {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let handle = dns::new_zone("cluster.local");
    *handle.write().unwrap() = Arc::new(zone);
    let settings = DnsSettings {
        listen,
        domain: "cluster.local".into(),
        upstreams,
    };
    dns::start(&settings, handle.clone()).unwrap();
    (listen, handle)
}

#[test]
fn outside_names_are_forwarded_to_the_upstream() {
    let (server, _) = start(vec![fake_upstream()], Zone::build("cluster.local", &[]));
    let out = dig(server, &["example.com"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("192.0.2.7"), "{out}");
    // Cluster names are never forwarded.
    let out = dig(server, &["nope.default.svc.cluster.local"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
}

#[test]
fn a_silent_upstream_gives_servfail_not_a_hang() {
    // Bound but never read: queries to it go unanswered.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (server, _) = start(
        vec![silent.local_addr().unwrap()],
        Zone::build("cluster.local", &[]),
    );
    let asked = Instant::now();
    let out = dig(server, &["example.com"]);
    assert!(out.contains("status: SERVFAIL"), "{out}");
    assert!(asked.elapsed() < Duration::from_secs(4), "{out}");
}

#[test]
fn queries_wait_for_the_first_view() {
    let (server, handle) = start(Vec::new(), Zone::empty("cluster.local"));
    let objects = skiff_api::parse_manifests(
        "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: default}\n\
         spec: {clusterIP: 10.96.0.7, ports: [{port: 80}]}\n",
    )
    .unwrap();
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        *handle.write().unwrap() = Arc::new(Zone::build("cluster.local", &objects));
    });
    let out = dig(server, &["+short", "api.default.svc.cluster.local"]);
    later.join().unwrap();
    assert_eq!(out.trim(), "10.96.0.7");
}
