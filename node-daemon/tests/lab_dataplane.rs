//! The data plane on real traffic in the lab: node-daemon code loads and attaches the
//! programs inside a node namespace, probes send real packets between pod namespaces, and the
//! counters read back from the maps must equal what was sent.

mod support;

use std::process::Command;

use aya::programs::{SchedClassifier, TcAttachType};
use skiff_common::DropReason;
use skiff_lab::{packet::Ipv4Packet, Lab, PodId};
use skiff_node::dataplane::{AttachMode, DataPlane};

/// A lab with one node and two pods, `a` and `b`, both registered and attached.
struct Setup {
    lab: Lab,
    a: PodId,
    b: PodId,
    dataplane: DataPlane,
}

fn setup(mode: AttachMode) -> Setup {
    let mut lab = Lab::new().expect("lab");
    let node = lab.add_node("n1").expect("node");
    let a = lab.add_pod(node, "a").expect("pod a");
    let b = lab.add_pod(node, "b").expect("pod b");
    let mut dataplane = DataPlane::load(mode).expect("load data plane");
    for pod in [a, b] {
        let pod = lab.pod(pod);
        dataplane
            .endpoints()
            .unwrap()
            .upsert(pod.host_ifindex, pod.ip)
            .unwrap();
        let interface = pod.host_interface.clone();
        lab.node(node)
            .netns
            .run(|| dataplane.attach_pod_interface(&interface))
            .expect("attach TC programs");
    }
    Setup {
        lab,
        a,
        b,
        dataplane,
    }
}

fn counters_match_traffic(mode: AttachMode) {
    let Setup {
        mut lab,
        a,
        b,
        mut dataplane,
    } = setup(mode);
    let node_ns = lab.node(lab.pod(a).node).netns.name().to_string();

    // The programs are attached the way the mode says.
    let interface = lab.pod(a).host_interface.clone();
    let qdiscs = Command::new("tc")
        .args(["-n", &node_ns, "qdisc", "show", "dev", &interface])
        .output()
        .unwrap();
    let has_clsact = String::from_utf8_lossy(&qdiscs.stdout).contains("clsact");
    let tcx_programs = lab.node(lab.pod(a).node).netns.run(|| {
        SchedClassifier::query_tcx(&interface, TcAttachType::Ingress)
            .map(|(_, programs)| {
                programs
                    .iter()
                    .filter_map(|p| p.name_as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    });
    match mode {
        AttachMode::Tcx => {
            assert_eq!(tcx_programs, ["from_pod"], "TCX ingress programs");
            assert!(!has_clsact, "TCX mode must not add a clsact qdisc");
        }
        AttachMode::Clsact => {
            assert!(has_clsact, "clsact mode adds the qdisc");
            assert!(tcx_programs.is_empty(), "clsact mode must not use TCX");
        }
    }

    let b_addr = format!("{}:9000", lab.pod(b).ip);
    support::serve(&mut lab, b, "b", &["--udp", "9000"]);
    const DATAGRAMS: u64 = 50;
    const PAYLOAD: u64 = 100;
    let result = support::parse(
        lab.run_in_pod(
            a,
            support::connect_command(&b_addr, "udp", &["--count", "50", "--size", "100"]),
        )
        .unwrap(),
    );
    assert_eq!(result["ok"], true, "{result}");

    let frame_len = 14 + 20 + 8 + PAYLOAD;
    let traffic_a = dataplane
        .endpoints()
        .unwrap()
        .traffic(lab.pod(a).host_ifindex)
        .unwrap();
    let traffic_b = dataplane
        .endpoints()
        .unwrap()
        .traffic(lab.pod(b).host_ifindex)
        .unwrap();
    assert_eq!(traffic_a.from_pod_packets, DATAGRAMS, "{traffic_a:?}");
    assert_eq!(
        traffic_a.from_pod_bytes,
        DATAGRAMS * frame_len,
        "{traffic_a:?}"
    );
    assert_eq!(traffic_b.to_pod_packets, DATAGRAMS, "{traffic_b:?}");
    assert_eq!(
        traffic_b.to_pod_bytes,
        DATAGRAMS * frame_len,
        "{traffic_b:?}"
    );
    // Every datagram was answered: b sent as many replies as a received.
    assert_eq!(traffic_b.from_pod_packets, DATAGRAMS, "{traffic_b:?}");
    assert_eq!(traffic_a.to_pod_packets, DATAGRAMS, "{traffic_a:?}");
    assert_eq!(traffic_a.to_pod_bytes, traffic_b.from_pod_bytes);
    assert!(
        dataplane
            .drop_counts()
            .unwrap()
            .iter()
            .all(|(_, n)| *n == 0),
        "nothing dropped: {:?}",
        dataplane.drop_counts().unwrap()
    );
}

#[test]
fn counters_match_traffic_on_tcx() {
    if !skiff_lab::privileged() {
        return;
    }
    counters_match_traffic(AttachMode::Tcx);
}

#[test]
fn counters_match_traffic_on_clsact() {
    if !skiff_lab::privileged() {
        return;
    }
    counters_match_traffic(AttachMode::Clsact);
}

#[test]
fn spoofed_source_is_dropped_on_real_traffic() {
    if !skiff_lab::privileged() {
        return;
    }
    let Setup {
        mut lab,
        a,
        b,
        dataplane,
    } = setup(AttachMode::detect());
    let b_addr = format!("{}:9000", lab.pod(b).ip);
    support::serve(&mut lab, b, "b", &["--udp", "9000"]);
    let (a_ns, gateway) = {
        let pod = lab.pod(a);
        (pod.netns.name().to_string(), lab.node(pod.node).gateway)
    };
    let honest = support::parse(
        lab.run_in_pod(a, support::connect_command(&b_addr, "udp", &[]))
            .unwrap(),
    );
    assert_eq!(honest["ok"], true, "{honest}");

    // Give pod a a second address and make it the source of its traffic.
    let ip = |args: &[&str]| {
        let status = Command::new("ip")
            .args(["-n", &a_ns])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip {args:?}");
    };
    ip(&["addr", "add", "10.244.1.99/32", "dev", "eth0"]);
    ip(&[
        "route",
        "replace",
        "10.0.0.0/8",
        "via",
        &gateway.to_string(),
        "dev",
        "eth0",
        "src",
        "10.244.1.99",
    ]);
    let spoofed = support::parse(
        lab.run_in_pod(a, support::connect_command(&b_addr, "udp", &[]))
            .unwrap(),
    );
    assert_eq!(
        spoofed["ok"], false,
        "a spoofed datagram must not get through: {spoofed}"
    );
    let spoof_drops = drops(&dataplane, DropReason::SpoofedSource);
    assert!(spoof_drops >= 1, "spoofed_source drops: {spoof_drops}");
}

fn drops(dataplane: &DataPlane, reason: DropReason) -> u64 {
    dataplane
        .drop_counts()
        .unwrap()
        .into_iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, count)| count)
}

/// Sends raw Ethernet frames out of `eth0` in the calling thread's namespace.
fn send_raw_frames(frames: &[Vec<u8>]) {
    // SAFETY: plain socket calls on a local descriptor with a fully initialised sockaddr_ll.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = libc::if_nametoindex(c"eth0".as_ptr()) as i32;
        addr.sll_halen = 6;
        for frame in frames {
            let sent = libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(
                sent,
                frame.len() as isize,
                "{}",
                std::io::Error::last_os_error()
            );
        }
        libc::close(fd);
    }
}

#[test]
fn truncated_and_malformed_frames_from_a_pod_are_dropped() {
    if !skiff_lab::privileged() {
        return;
    }
    let Setup {
        lab,
        a,
        b,
        dataplane,
    } = setup(AttachMode::detect());
    let pod_a = lab.pod(a);
    let valid = Ipv4Packet::udp(pod_a.ip, 40000, lab.pod(b).ip, 9).build();
    let mut frames = Vec::new();
    for cut in [14, 15, 20, 33] {
        frames.push(valid[..cut].to_vec()); // IPv4 ethertype, IP header cut short
    }
    let mut bad_ihl = valid.clone();
    bad_ihl[14] = 0x4f; // IHL of 60 bytes in a 42-byte frame
    frames.push(bad_ihl);
    send_raw_frames_in(&lab, a, &frames);
    let malformed = drops(&dataplane, DropReason::MalformedPacket);
    assert_eq!(malformed, frames.len() as u64);
}

fn send_raw_frames_in(lab: &Lab, pod: PodId, frames: &[Vec<u8>]) {
    lab.pod(pod).netns.run(|| send_raw_frames(frames));
}
