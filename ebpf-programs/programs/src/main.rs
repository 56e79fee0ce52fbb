//! Skiff's eBPF data plane: one object with every program and map.
//!
//! - `pod_tc`: TC programs on each pod's host-side veth (`from_pod` on ingress, `to_pod` on
//!   egress): per-pod counters, anti-spoofing, drop reasons.
//! - `policy`: NetworkPolicy verdicts for those programs, with their conntrack and events.
//! - `from_network`: TC program on the node's uplink ingress (NodePort, replies).
//! - `nat`: per-packet service NAT with connection tracking, used by `from_pod` and
//!   `from_network`; `lb`: backend selection shared with the socket hooks.
//! - `sock_lb`: cgroup `connect4`/`sendmsg4`/`recvmsg4`/`getpeername4` socket-level load
//!   balancing of service addresses.
//!
//! Map and program names, and every type stored in a map, come from `skiff-common`.
#![no_std]
#![no_main]

mod lb;
mod maps;
mod nat;
mod packet;
mod pod_tc;
mod policy;
mod reject;
mod sock_lb;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach a real panic; this is never executed.
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
