//! BPF_PROG_TEST_RUN fixtures for the per-packet service path: DNAT, reverse NAT, NodePort
//! with and without masquerade, refusal, malformed and fragmented packets, connection
//! tracking, and the Maglev disruption bound. The services are programmed through the same
//! reconciler the node daemon uses; nothing is attached and no traffic is sent.

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde_json::json;
use skiff_common::DropReason;
use skiff_lab::packet::{parse_ipv4, Ipv4Flow, Ipv4Packet, ETH_HDR_LEN, IPV4_HDR_LEN};
use skiff_node::{
    dataplane::{AttachMode, DataPlane, TcProgram},
    service_lb::{DesiredServices, ServiceReconciler},
};

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_REDIRECT: i32 = 7;
const LOOPBACK: u32 = 1;

const CLIENT_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const LOCAL_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
const REMOTE_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);
const DNS_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 6);
const NODE: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 200);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 53);
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 99);

fn desired() -> DesiredServices {
    serde_json::from_value(json!({
        "nodeAddresses": [NODE],
        "services": [
            {"name": "web", "clusterIp": VIP, "ports": [{"port": 80, "targetPort": 8080}],
             "endpoints": [{"ip": REMOTE_BACKEND}]},
            {"name": "dns", "clusterIp": DNS_VIP,
             "ports": [{"port": 53, "protocol": "UDP", "targetPort": 5353}],
             "endpoints": [{"ip": DNS_BACKEND}]},
            {"name": "empty", "clusterIp": EMPTY_VIP,
             "ports": [{"port": 80}, {"name": "udp", "port": 80, "protocol": "UDP"}]},
            {"name": "cluster", "clusterIp": "10.96.0.20", "type": "NodePort",
             "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}],
             "endpoints": [{"ip": REMOTE_BACKEND}]},
            {"name": "local", "clusterIp": "10.96.0.21", "type": "NodePort",
             "externalTrafficPolicy": "Local",
             "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30081}],
             "endpoints": [{"ip": LOCAL_BACKEND, "local": true}]},
            {"name": "elsewhere", "clusterIp": "10.96.0.22", "type": "NodePort",
             "externalTrafficPolicy": "Local",
             "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30082}],
             "endpoints": [{"ip": REMOTE_BACKEND}]}
        ]
    }))
    .unwrap()
}

struct Plane {
    dataplane: DataPlane,
    /// Owns the service maps; kept so the test reads like the daemon (one writer).
    _reconciler: ServiceReconciler,
}

fn plane(desired: &DesiredServices) -> Plane {
    let mut dataplane = DataPlane::load(AttachMode::detect()).expect("load data plane");
    let mut reconciler = ServiceReconciler::new(dataplane.take_service_maps().unwrap()).unwrap();
    reconciler.reconcile(desired).expect("reconcile");
    Plane {
        dataplane,
        _reconciler: reconciler,
    }
}

impl Plane {
    /// Registers loopback (the test-run interface) as the veth of a pod with `ip`.
    fn pod_is(&mut self, ip: Ipv4Addr) {
        self.dataplane
            .endpoints()
            .unwrap()
            .upsert(LOOPBACK, ip)
            .unwrap();
    }

    fn run(&mut self, program: TcProgram, frame: &[u8]) -> (i32, Vec<u8>) {
        let outcome = self
            .dataplane
            .test_run(program, frame, LOOPBACK, 1)
            .expect("test run");
        (outcome.verdict, outcome.packet_out)
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.dataplane
            .drop_counts()
            .unwrap()
            .into_iter()
            .find(|(r, _)| *r == reason)
            .unwrap()
            .1
    }
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    Ipv4Packet::tcp_syn(src, sport, dst, dport)
        .with_payload(b"hello")
        .build()
}

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    Ipv4Packet::udp(src, sport, dst, dport)
        .with_payload(b"query")
        .build()
}

/// The flow a translated frame carries, checked to have valid checksums.
fn flow(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let Ipv4Flow {
        src,
        dst,
        sport,
        dport,
        checksums_ok,
        ..
    } = parse_ipv4(frame).expect("an IPv4 TCP/UDP frame");
    assert!(checksums_ok, "checksums broken by the rewrite: {frame:?}");
    (src, sport, dst, dport)
}

#[test]
fn per_packet_nat_fixtures() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut p = plane(&desired());
    p.pod_is(CLIENT_POD);
    use TcProgram::*;

    // ClusterIP DNAT of a pod's packet, and reverse NAT of the reply entering from the uplink.
    let (verdict, out) = p.run(FromPod, &tcp(CLIENT_POD, 40000, VIP, 80));
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(
        flow(&out),
        (CLIENT_POD, 40000, REMOTE_BACKEND, 8080),
        "DNAT"
    );
    let (verdict, out) = p.run(FromNetwork, &tcp(REMOTE_BACKEND, 8080, CLIENT_POD, 40000));
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(flow(&out), (VIP, 80, CLIENT_POD, 40000), "reverse NAT");
    // Later the pod opens a direct connection on the same ports: the old flow's reply entry
    // must not rewrite the new flow's replies.
    let direct = tcp(CLIENT_POD, 40000, REMOTE_BACKEND, 8080);
    assert_eq!(p.run(FromPod, &direct), (TC_ACT_OK, direct));
    let reply = tcp(REMOTE_BACKEND, 8080, CLIENT_POD, 40000);
    assert_eq!(
        p.run(FromNetwork, &reply),
        (TC_ACT_OK, reply),
        "stale reply entry"
    );

    // UDP both ways; a UDP checksum of 0 ("none") stays 0.
    let (_, out) = p.run(FromPod, &udp(CLIENT_POD, 40001, DNS_VIP, 53));
    assert_eq!(flow(&out), (CLIENT_POD, 40001, DNS_BACKEND, 5353));
    let (_, out) = p.run(FromNetwork, &udp(DNS_BACKEND, 5353, CLIENT_POD, 40001));
    assert_eq!(flow(&out), (DNS_VIP, 53, CLIENT_POD, 40001));
    let mut no_checksum = udp(CLIENT_POD, 40002, DNS_VIP, 53);
    let udp_check = ETH_HDR_LEN + IPV4_HDR_LEN + 6;
    no_checksum[udp_check..udp_check + 2].copy_from_slice(&[0, 0]);
    let (_, out) = p.run(FromPod, &no_checksum);
    assert_eq!(
        &out[udp_check..udp_check + 2],
        &[0, 0],
        "no UDP checksum stays none"
    );
    assert_eq!(
        &out[ETH_HDR_LEN + 16..ETH_HDR_LEN + 20],
        &DNS_BACKEND.octets()
    );

    // NodePort, externalTrafficPolicy Cluster: DNAT plus masquerade to the node address,
    // keeping the client's port when free; the reply is restored to come from the node port.
    let (verdict, out) = p.run(FromNetwork, &tcp(OUTSIDE, 50000, NODE, 30080));
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(
        flow(&out),
        (NODE, 50000, REMOTE_BACKEND, 8080),
        "masquerade"
    );
    let (_, out) = p.run(FromNetwork, &tcp(REMOTE_BACKEND, 8080, NODE, 50000));
    assert_eq!(flow(&out), (NODE, 30080, OUTSIDE, 50000), "un-masquerade");
    // A second client on the same port gets another source port, not a clash.
    let other = Ipv4Addr::new(10, 200, 0, 201);
    let (_, out) = p.run(FromNetwork, &tcp(other, 50000, NODE, 30080));
    let (src, sport, _, _) = flow(&out);
    assert_eq!(src, NODE);
    assert_ne!(sport, 50000, "masquerade ports of two clients collide");
    let (_, out) = p.run(FromNetwork, &tcp(REMOTE_BACKEND, 8080, NODE, sport));
    assert_eq!(flow(&out), (NODE, 30080, other, 50000));

    // NodePort Local: no masquerade; the local backend's reply (from its veth) is restored.
    let (_, out) = p.run(FromNetwork, &tcp(OUTSIDE, 50001, NODE, 30081));
    assert_eq!(
        flow(&out),
        (OUTSIDE, 50001, LOCAL_BACKEND, 8080),
        "source preserved"
    );
    p.pod_is(LOCAL_BACKEND);
    let (_, out) = p.run(FromPod, &tcp(LOCAL_BACKEND, 8080, OUTSIDE, 50001));
    assert_eq!(flow(&out), (NODE, 30081, OUTSIDE, 50001));
    p.pod_is(CLIENT_POD);

    // Refusals are drops on the per-packet path, counted by reason.
    let before = p.drops(DropReason::NoServiceBackend);
    let (verdict, _) = p.run(FromNetwork, &tcp(OUTSIDE, 50002, NODE, 30082));
    assert_eq!(
        verdict, TC_ACT_SHOT,
        "Local with no local endpoint is silent"
    );
    // A pod's TCP SYN to a service without endpoints comes back as RST+ACK from the service
    // address (connect() fails with ECONNREFUSED); its UDP is dropped.
    let syn = tcp(CLIENT_POD, 40003, EMPTY_VIP, 80);
    let (verdict, out) = p.run(FromPod, &syn);
    assert_eq!(
        verdict, TC_ACT_REDIRECT,
        "a refusal is bounced back to the pod"
    );
    assert_eq!(
        flow(&out),
        (EMPTY_VIP, 80, CLIENT_POD, 40003),
        "the RST's addressing"
    );
    let tcp_at = ETH_HDR_LEN + IPV4_HDR_LEN;
    assert_eq!(out.len(), tcp_at + 20, "options and payload are cut");
    assert_eq!(out[tcp_at + 13], 0x14, "RST+ACK");
    let syn_seq = u32::from_be_bytes(syn[tcp_at + 4..tcp_at + 8].try_into().unwrap());
    let ack = u32::from_be_bytes(out[tcp_at + 8..tcp_at + 12].try_into().unwrap());
    assert_eq!(
        ack,
        syn_seq.wrapping_add(1 + 5),
        "acknowledges the SYN and its 5 bytes"
    );
    assert_eq!(
        (&out[0..6], &out[6..12]),
        (&syn[6..12], &syn[0..6]),
        "MACs swapped"
    );
    let (verdict, _) = p.run(FromPod, &udp(CLIENT_POD, 40003, EMPTY_VIP, 80));
    assert_eq!(verdict, TC_ACT_SHOT, "UDP to a service without endpoints");
    assert_eq!(p.drops(DropReason::NoServiceBackend), before + 3);

    // Untouched: ClusterIPs from outside, non-service traffic, fragments.
    for (program, frame, why) in [
        (
            FromNetwork,
            tcp(OUTSIDE, 50003, VIP, 80),
            "ClusterIP from outside",
        ),
        (
            FromPod,
            tcp(CLIENT_POD, 40004, REMOTE_BACKEND, 8080),
            "pod to pod",
        ),
        (
            FromNetwork,
            tcp(OUTSIDE, 50004, NODE, 22),
            "node's own port",
        ),
    ] {
        let (verdict, out) = p.run(program, &frame);
        assert_eq!((verdict, &out), (TC_ACT_OK, &frame), "{why}");
    }
    let mut fragment = udp(CLIENT_POD, 40005, DNS_VIP, 53);
    fragment[ETH_HDR_LEN + 6] = 0x20; // more fragments
    fix_ip_checksum(&mut fragment);
    let (verdict, out) = p.run(FromPod, &fragment);
    assert_eq!(
        (verdict, &out),
        (TC_ACT_OK, &fragment),
        "fragments pass untouched"
    );

    // Malformed: an IPv4 TCP header cut off before the ports. From a pod: dropped as
    // malformed; from the network: the node's stack decides.
    let mut cut = tcp(CLIENT_POD, 40006, VIP, 80);
    cut.truncate(ETH_HDR_LEN + IPV4_HDR_LEN + 2);
    let total = (IPV4_HDR_LEN + 2) as u16;
    cut[ETH_HDR_LEN + 2..ETH_HDR_LEN + 4].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut cut);
    let before = p.drops(DropReason::MalformedPacket);
    let (verdict, _) = p.run(FromPod, &cut);
    assert_eq!(verdict, TC_ACT_SHOT);
    assert_eq!(p.drops(DropReason::MalformedPacket), before + 1);
    let (verdict, out) = p.run(FromNetwork, &cut);
    assert_eq!((verdict, &out), (TC_ACT_OK, &cut));
}

fn fix_ip_checksum(frame: &mut [u8]) {
    let header = ETH_HDR_LEN..ETH_HDR_LEN + IPV4_HDR_LEN;
    frame[ETH_HDR_LEN + 10..ETH_HDR_LEN + 12].copy_from_slice(&[0, 0]);
    let sum = skiff_lab::packet::checksum(&frame[header]);
    frame[ETH_HDR_LEN + 10..ETH_HDR_LEN + 12].copy_from_slice(&sum.to_be_bytes());
}

fn web_with(backends: &[Ipv4Addr], load_balancing: &str) -> DesiredServices {
    let endpoints: Vec<_> = backends.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({"services": [{
        "name": "web", "clusterIp": VIP, "loadBalancing": load_balancing,
        "ports": [{"port": 80, "targetPort": 8080}], "endpoints": endpoints,
    }]}))
    .unwrap()
}

/// Where each of `flows` client ports lands (the backend address after DNAT).
fn placement(desired: &DesiredServices, flows: std::ops::Range<u16>) -> BTreeMap<u16, Ipv4Addr> {
    let mut p = plane(desired);
    p.pod_is(CLIENT_POD);
    flows
        .map(|sport| {
            let (_, out) = p.run(TcProgram::FromPod, &tcp(CLIENT_POD, sport, VIP, 80));
            (sport, flow(&out).2)
        })
        .collect()
}

#[test]
fn conntrack_keeps_a_flow_on_its_backend() {
    if !skiff_lab::privileged() {
        return;
    }
    let backends: Vec<Ipv4Addr> = (10..14).map(|i| Ipv4Addr::new(10, 244, 2, i)).collect();
    let mut p = plane(&web_with(&backends, "random"));
    p.pod_is(CLIENT_POD);
    let first = flow(
        &p.run(TcProgram::FromPod, &tcp(CLIENT_POD, 41000, VIP, 80))
            .1,
    )
    .2;
    for _ in 0..20 {
        let again = flow(
            &p.run(TcProgram::FromPod, &tcp(CLIENT_POD, 41000, VIP, 80))
                .1,
        )
        .2;
        assert_eq!(again, first, "a tracked flow changed backend");
    }
    let spread: std::collections::BTreeSet<Ipv4Addr> = (41001..41101)
        .map(|sport| {
            flow(
                &p.run(TcProgram::FromPod, &tcp(CLIENT_POD, sport, VIP, 80))
                    .1,
            )
            .2
        })
        .collect();
    assert_eq!(
        spread.len(),
        backends.len(),
        "new flows spread over every backend"
    );
}

#[test]
fn maglev_moves_only_the_flows_of_a_removed_backend() {
    if !skiff_lab::privileged() {
        return;
    }
    const FLOWS: std::ops::Range<u16> = 20000..22000;
    let backends: Vec<Ipv4Addr> = (10..20).map(|i| Ipv4Addr::new(10, 244, 2, i)).collect();
    let removed = backends[3];
    let fewer: Vec<Ipv4Addr> = backends.iter().copied().filter(|b| *b != removed).collect();

    let before = placement(&web_with(&backends, "maglev"), FLOWS);
    // The same flows, hashed again: Maglev is deterministic, not random.
    assert_eq!(before, placement(&web_with(&backends, "maglev"), FLOWS));
    let after = placement(&web_with(&fewer, "maglev"), FLOWS);

    let on_removed = before.values().filter(|b| **b == removed).count();
    let moved_others = FLOWS
        .filter(|sport| before[sport] != removed && before[sport] != after[sport])
        .count();
    let total = FLOWS.len();
    eprintln!(
        "maglev: {on_removed} of {total} flows were on the removed backend; \
         {moved_others} other flows moved"
    );
    assert!(
        (total / 20..=total / 5).contains(&on_removed),
        "about 1/10 of flows were on the removed backend, got {on_removed}"
    );
    assert!(after.values().all(|b| *b != removed));
    // Only ~1/N of flows move in total: at most 3% beyond the removed backend's own.
    assert!(
        moved_others * 100 <= total * 3,
        "{moved_others} of {total} flows on surviving backends moved"
    );
}

#[test]
fn reconciler_writes_only_what_changed() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut dataplane = DataPlane::load(AttachMode::detect()).expect("load data plane");
    let mut reconciler = ServiceReconciler::new(dataplane.take_service_maps().unwrap()).unwrap();
    let mut state = desired();
    let first = reconciler.reconcile(&state).unwrap();
    // 7 ClusterIP frontends (`empty` has two ports) + 3 NodePort frontends on the node address.
    assert_eq!(first.frontends_written, 10, "{first:?}");
    assert!(
        reconciler.reconcile(&state).unwrap().is_empty(),
        "same state, no writes"
    );

    // One more endpoint for `web`: one backend and one frontend written, nothing else.
    state.services[0]
        .endpoints
        .push(serde_json::from_value(json!({"ip": "10.244.2.9"})).unwrap());
    let stats = reconciler.reconcile(&state).unwrap();
    assert_eq!(
        (
            stats.backends_written,
            stats.frontends_written,
            stats.frontends_removed,
            stats.backends_removed
        ),
        (1, 1, 0, 0),
        "{stats:?}"
    );

    // Deleting a service removes its frontends and the backends nobody else uses.
    let dns = state.services.remove(1);
    let stats = reconciler.reconcile(&state).unwrap();
    assert_eq!(
        (
            stats.frontends_removed,
            stats.backends_removed,
            stats.frontends_written
        ),
        (1, 1, 0),
        "{stats:?} after deleting {}",
        dns.name
    );

    // A restart adopts what the kernel holds: a new reconciler on the same maps writes nothing.
    let snapshot = reconciler.maps().snapshot().unwrap();
    assert_eq!(snapshot.frontends.len(), reconciler.frontend_count());
    let web = snapshot
        .frontends
        .iter()
        .find(|(f, _)| f.addr == VIP)
        .map(|(_, e)| e.backend_ids.len());
    assert_eq!(web, Some(2), "web's two backends as the kernel holds them");

    // An invalid state is rejected whole, naming the field, and changes nothing.
    let mut bad = state.clone();
    bad.services[0].ports[0].node_port = Some(30000);
    let error = reconciler.reconcile(&bad).unwrap_err().to_string();
    assert!(
        error.contains("ports[0].nodePort") && error.contains("30000"),
        "{error}"
    );
    assert!(
        reconciler.reconcile(&state).unwrap().is_empty(),
        "nothing was half-applied"
    );
}

#[test]
fn reconciler_applies_large_updates_in_batches() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut dataplane = DataPlane::load(AttachMode::detect()).expect("load data plane");
    let mut reconciler = ServiceReconciler::new(dataplane.take_service_maps().unwrap()).unwrap();
    let services = |n: u32| -> DesiredServices {
        let services: Vec<_> = (0..n)
            .map(|i| {
                let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i);
                let endpoints: Vec<_> = (0..3)
                    .map(|e| json!({"ip": Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + i * 3 + e)}))
                    .collect();
                json!({"name": format!("s{i}"), "clusterIp": vip, "ports": [{"port": 80}],
                       "endpoints": endpoints, "loadBalancing": if i % 100 == 0 { "maglev" } else { "random" }})
            })
            .collect();
        serde_json::from_value(json!({ "services": services })).unwrap()
    };
    let desired = services(3000);
    let started = std::time::Instant::now();
    let stats = reconciler.reconcile(&desired).unwrap();
    // Informational only (speed is judged by the benchmarks, not by tests).
    eprintln!(
        "programmed 3000 services x 3 endpoints in {:?} ({:.1} us per service)",
        started.elapsed(),
        started.elapsed().as_secs_f64() * 1e6 / 3000.0
    );
    assert_eq!(
        (stats.frontends_written, stats.backends_written),
        (3000, 9000)
    );
    let snapshot = reconciler.maps().snapshot().unwrap();
    assert_eq!(snapshot.frontends.len(), 3000);
    assert_eq!(snapshot.backends.len(), 9000);
    assert!(snapshot
        .frontends
        .values()
        .all(|f| f.backend_ids.len() == 3));
    let maglev = snapshot
        .frontends
        .values()
        .filter(|f| f.header.flags & skiff_common::SVC_FLAG_MAGLEV != 0)
        .map(|f| reconciler.maps().maglev_table(f).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(maglev.len(), 30);
    assert!(maglev
        .iter()
        .all(|t| t.len() == skiff_common::MAGLEV_TABLE_SIZE as usize));

    // Shrinking removes exactly what went away, Maglev tables included.
    let stats = reconciler.reconcile(&services(1000)).unwrap();
    assert_eq!(
        (stats.frontends_removed, stats.backends_removed),
        (2000, 6000)
    );
    let snapshot = reconciler.maps().snapshot().unwrap();
    assert_eq!(
        (snapshot.frontends.len(), snapshot.backends.len()),
        (1000, 3000)
    );
    // The same state again writes nothing.
    assert!(reconciler.reconcile(&services(1000)).unwrap().is_empty());
}
