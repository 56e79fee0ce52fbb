//! BPF_PROG_TEST_RUN fixtures for the per-pod TC programs: packet in -> expected verdict,
//! packet out and counters. The programs run in the kernel on each packet; nothing is
//! attached and no traffic is sent.
//!
//! BPF_PROG_TEST_RUN itself refuses IPv4-typed frames shorter than a full IP header, so those
//! truncated frames are sent for real from a pod in `lab_dataplane.rs` instead.

use std::net::Ipv4Addr;

use skiff_common::DropReason;
use skiff_lab::packet::{arp_request, ipv6_frame, Ipv4Packet, ETH_HDR_LEN};
use skiff_node::dataplane::{AttachMode, DataPlane, EndpointTraffic, TcProgram};

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
/// BPF_PROG_TEST_RUN runs skb programs on loopback unless told otherwise.
const LOOPBACK: u32 = 1;

const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);

#[derive(Debug)]
struct Fixture {
    name: &'static str,
    program: TcProgram,
    /// Whether loopback is registered as the pod's veth for this row.
    registered: bool,
    packet: Vec<u8>,
    verdict: i32,
    /// The drop reason counted, for dropped packets.
    drop: Option<DropReason>,
    /// Whether the packet is added to the pod's traffic counters.
    counted: bool,
}

fn udp_from(src: Ipv4Addr) -> Vec<u8> {
    Ipv4Packet::udp(src, 40000, PEER_IP, 53)
        .with_payload(b"query")
        .build()
}

/// Sets the IPv4 version/IHL byte of a frame.
fn with_version_ihl(mut frame: Vec<u8>, byte: u8) -> Vec<u8> {
    frame[ETH_HDR_LEN] = byte;
    frame
}

fn fixtures() -> Vec<Fixture> {
    use TcProgram::*;
    let row = |name, program, packet, verdict, drop, counted| Fixture {
        name,
        program,
        registered: true,
        packet,
        verdict,
        drop,
        counted,
    };
    let mut short_for_options = udp_from(POD_IP);
    short_for_options.truncate(ETH_HDR_LEN + 24);
    vec![
        row(
            "udp from the pod's own address",
            FromPod,
            udp_from(POD_IP),
            TC_ACT_OK,
            None,
            true,
        ),
        row(
            "tcp syn from the pod's own address",
            FromPod,
            Ipv4Packet::tcp_syn(POD_IP, 40001, Ipv4Addr::new(10, 96, 0, 10), 80).build(),
            TC_ACT_OK,
            None,
            true,
        ),
        row(
            "arp passes uncounted",
            FromPod,
            arp_request(POD_IP, PEER_IP),
            TC_ACT_OK,
            None,
            false,
        ),
        row(
            "spoofed source",
            FromPod,
            udp_from(Ipv4Addr::new(10, 244, 1, 99)),
            TC_ACT_SHOT,
            Some(DropReason::SpoofedSource),
            false,
        ),
        row(
            "another pod's address is spoofing too",
            FromPod,
            udp_from(PEER_IP),
            TC_ACT_SHOT,
            Some(DropReason::SpoofedSource),
            false,
        ),
        row(
            "ipv6 from a pod",
            FromPod,
            ipv6_frame(),
            TC_ACT_SHOT,
            Some(DropReason::UnsupportedProtocol),
            false,
        ),
        row(
            "version 6 in an ipv4 frame",
            FromPod,
            with_version_ihl(udp_from(POD_IP), 0x65),
            TC_ACT_SHOT,
            Some(DropReason::MalformedPacket),
            false,
        ),
        row(
            "ihl below five words",
            FromPod,
            with_version_ihl(udp_from(POD_IP), 0x44),
            TC_ACT_SHOT,
            Some(DropReason::MalformedPacket),
            false,
        ),
        row(
            "ihl beyond the packet",
            FromPod,
            with_version_ihl(short_for_options, 0x4f),
            TC_ACT_SHOT,
            Some(DropReason::MalformedPacket),
            false,
        ),
        Fixture {
            name: "unregistered interface is not judged",
            program: FromPod,
            registered: false,
            packet: udp_from(Ipv4Addr::new(10, 244, 1, 99)),
            verdict: TC_ACT_OK,
            drop: None,
            counted: false,
        },
        row(
            "udp to the pod",
            ToPod,
            udp_from(PEER_IP),
            TC_ACT_OK,
            None,
            true,
        ),
        row(
            "arp to the pod passes uncounted",
            ToPod,
            arp_request(PEER_IP, POD_IP),
            TC_ACT_OK,
            None,
            false,
        ),
    ]
}

fn drops(dataplane: &DataPlane) -> Vec<(DropReason, u64)> {
    dataplane.drop_counts().expect("drop counters")
}

fn traffic(dataplane: &mut DataPlane) -> EndpointTraffic {
    dataplane
        .endpoints()
        .unwrap()
        .traffic(LOOPBACK)
        .unwrap_or_default()
}

#[test]
fn tc_programs_match_every_fixture() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut dataplane = DataPlane::load(AttachMode::detect()).expect("load data plane");
    let mut failures = Vec::new();
    for fixture in fixtures() {
        if fixture.registered {
            dataplane
                .endpoints()
                .unwrap()
                .upsert(LOOPBACK, POD_IP)
                .unwrap();
        } else {
            dataplane.endpoints().unwrap().remove(LOOPBACK).unwrap();
        }
        let drops_before = drops(&dataplane);
        let traffic_before = traffic(&mut dataplane);

        let outcome = dataplane
            .test_run(fixture.program, &fixture.packet, LOOPBACK, 1)
            .unwrap_or_else(|e| panic!("{}: test run failed: {e}", fixture.name));

        let drops_after = drops(&dataplane);
        let traffic_after = traffic(&mut dataplane);
        let mut problems = Vec::new();
        if outcome.verdict != fixture.verdict {
            problems.push(format!(
                "verdict {} (expected {})",
                outcome.verdict, fixture.verdict
            ));
        }
        if fixture.verdict == TC_ACT_OK && outcome.packet_out != fixture.packet {
            problems.push("a passed packet was modified".to_string());
        }
        for ((reason, before), (_, after)) in drops_before.iter().zip(&drops_after) {
            let expected = u64::from(fixture.drop == Some(*reason));
            if after - before != expected {
                problems.push(format!(
                    "drop counter {} moved by {}",
                    reason.label(),
                    after - before
                ));
            }
        }
        let len = fixture.packet.len() as u64;
        let (packets, bytes) = match fixture.program {
            TcProgram::FromPod => (
                traffic_after.from_pod_packets - traffic_before.from_pod_packets,
                traffic_after.from_pod_bytes - traffic_before.from_pod_bytes,
            ),
            TcProgram::ToPod => (
                traffic_after.to_pod_packets - traffic_before.to_pod_packets,
                traffic_after.to_pod_bytes - traffic_before.to_pod_bytes,
            ),
            TcProgram::FromNetwork => (0, 0),
        };
        let expected = if fixture.counted { (1, len) } else { (0, 0) };
        if (packets, bytes) != expected {
            problems.push(format!(
                "counted {packets} packets / {bytes} bytes, expected {expected:?}"
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", fixture.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "fixtures failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn repeated_runs_count_every_packet() {
    if !skiff_lab::privileged() {
        return;
    }
    let mut dataplane = DataPlane::load(AttachMode::detect()).expect("load data plane");
    dataplane
        .endpoints()
        .unwrap()
        .upsert(LOOPBACK, POD_IP)
        .unwrap();
    let packet = udp_from(POD_IP);
    let outcome = dataplane
        .test_run(TcProgram::FromPod, &packet, LOOPBACK, 1000)
        .unwrap();
    assert_eq!(outcome.verdict, TC_ACT_OK);
    let traffic = traffic(&mut dataplane);
    assert_eq!(traffic.from_pod_packets, 1000);
    assert_eq!(traffic.from_pod_bytes, 1000 * packet.len() as u64);
}
