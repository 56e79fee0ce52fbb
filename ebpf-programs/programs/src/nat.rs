//! Per-packet service NAT with connection tracking, for packets that still carry a service
//! address when they reach the node: clients the socket hooks do not cover (a container
//! outside the pod cgroup) and NodePort clients outside the cluster.
//!
//! Runs on ingress only (a pod's host-side veth, the node's uplink), before routing, so a
//! rewritten destination is routed like any other packet. Replies are restored on the ingress
//! where they enter the node: the backend pod's veth (local backend) or the uplink (remote).
//! A backend that is the node itself (the node-local DNS server) replies from the node's own
//! stack, so its replies are restored on the client pod's veth egress (`restore_reply`).

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_NOEXIST},
    programs::TcContext,
};
use skiff_common::{
    CtValue, DropReason, ServiceValue, CT_FLAG_SNAT, CT_FORWARD, CT_REPLY, IPPROTO_TCP,
    IPPROTO_UDP, SVC_FLAG_MASQUERADE, SVC_FLAG_NODE_PORT,
};

use crate::{
    lb::{backend, mix_hash, select_backend, service_header, Frontend},
    maps::CONNTRACK,
    packet::{
        tcp_flags, Flow, Ipv4Header, ETH_HDR_LEN, IPV4_CHECK_OFF, IPV4_DADDR_OFF, IPV4_SADDR_OFF,
        TCP_CHECK_OFF, TCP_FLAG_ACK, TCP_FLAG_SYN, UDP_CHECK_OFF,
    },
    reject::refuse_tcp,
};

/// Where the packet entered the node.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// A local pod's host-side veth (its ifindex): ClusterIP and NodePort frontends are
    /// translated.
    Pod { ifindex: u32 },
    /// The node's uplink: only NodePort frontends are served to the outside.
    Network,
}

/// What the caller does with a packet `translate` let through.
pub enum Action {
    /// Continue, with the flow the packet now carries (translated or untouched).
    Pass(Flow),
    /// The packet became a refusal sent back to the pod; return this TC verdict.
    Refused(i32),
}

/// Masquerade tries this many source ports before giving up on a flow.
const SNAT_PORT_ATTEMPTS: u32 = 8;
const SNAT_PORT_FIRST: u32 = 32768;
const SNAT_PORT_COUNT: u32 = 28232;

/// The flow a packet carries after `rewrite` to `value`.
#[inline(always)]
fn flow_after(value: &CtValue, proto: u8) -> Flow {
    Flow {
        saddr: value.saddr,
        daddr: value.daddr,
        sport: value.sport,
        dport: value.dport,
        proto,
    }
}

/// Translates the packet, whose flow the caller read (`read_flow`), if it belongs to a service
/// flow. `Err` asks the caller to drop it. Packets that are not TCP/UDP, fragments, and
/// packets for no service pass untouched.
#[inline(always)]
pub fn translate(
    ctx: &TcContext,
    ip: &Ipv4Header,
    flow: &Flow,
    ingress: Ingress,
) -> Result<Action, DropReason> {
    let tuple = *flow;
    // Only the first fragment carries ports; a datagram cannot be translated piecemeal.
    if (tuple.proto != IPPROTO_TCP && tuple.proto != IPPROTO_UDP) || ip.fragmented {
        return Ok(Action::Pass(tuple));
    }
    // SAFETY: the value is copied out at once.
    if let Some(reply) = unsafe { CONNTRACK.get(&tuple.key(CT_REPLY)) }.copied() {
        rewrite(ctx, ip, &tuple, &reply);
        return Ok(Action::Pass(flow_after(&reply, tuple.proto)));
    }
    let frontend = Frontend {
        addr: tuple.daddr,
        port: tuple.dport,
        proto: tuple.proto,
    };
    let Some(header) = service_header(&frontend) else {
        if ingress != Ingress::Network && opens_flow(ctx, ip) {
            forget_stale_reply(&tuple);
        }
        return Ok(Action::Pass(tuple));
    };
    if ingress == Ingress::Network && header.flags & SVC_FLAG_NODE_PORT == 0 {
        return Ok(Action::Pass(tuple));
    }
    // SAFETY: the value is copied out at once.
    if let Some(forward) = unsafe { CONNTRACK.get(&tuple.key(CT_FORWARD)) }.copied() {
        // A flow keeps its backend while it exists (draining included); a removed one is
        // replaced, so UDP flows move instead of black-holing.
        if backend(forward.backend_id).is_some() {
            rewrite(ctx, ip, &tuple, &forward);
            return Ok(Action::Pass(flow_after(&forward, tuple.proto)));
        }
    }
    let forward = match new_flow(&tuple, &frontend, &header, ingress) {
        Ok(forward) => forward,
        // A pod's TCP connection to a service without backends is refused, not timed out.
        // (NodePort clients of a node without Local endpoints get silence, on purpose.)
        Err(DropReason::NoServiceBackend) => {
            return match ingress {
                Ingress::Pod { ifindex } if ip.protocol == IPPROTO_TCP => {
                    refuse_tcp(ctx, ip, ifindex)
                        .map(Action::Refused)
                        .ok_or(DropReason::NoServiceBackend)
                }
                _ => Err(DropReason::NoServiceBackend),
            }
        }
        Err(e) => return Err(e),
    };
    rewrite(ctx, ip, &tuple, &forward);
    Ok(Action::Pass(flow_after(&forward, tuple.proto)))
}

/// Restores the reply of a translated flow on its way into a client pod, when nothing did
/// earlier: the backend is the node's own stack, whose replies enter no ingress program.
/// Replies restored at an ingress no longer match a reply entry, so none is restored twice.
#[inline(always)]
pub fn restore_reply(ctx: &TcContext, ip: &Ipv4Header, flow: &Flow) -> Flow {
    if (flow.proto != IPPROTO_TCP && flow.proto != IPPROTO_UDP) || ip.fragmented {
        return *flow;
    }
    // SAFETY: the value is copied out at once.
    match unsafe { CONNTRACK.get(&flow.key(CT_REPLY)) }.copied() {
        Some(reply) => {
            rewrite(ctx, ip, flow, &reply);
            flow_after(&reply, flow.proto)
        }
        None => *flow,
    }
}

/// A packet that may start a new flow: a TCP SYN (without ACK), or any UDP datagram.
#[inline(always)]
fn opens_flow(ctx: &TcContext, ip: &Ipv4Header) -> bool {
    if ip.protocol == IPPROTO_UDP {
        return true;
    }
    tcp_flags(ctx, ip).is_some_and(|f| f & TCP_FLAG_SYN != 0 && f & TCP_FLAG_ACK == 0)
}

/// Conntrack entries outlive their connections (LRU eviction is the only expiry). When a pod
/// opens a direct flow whose replies would match the reply entry of an old translated flow on
/// the same ports, that entry would rewrite the new flow's replies to come from the service;
/// the new flow shows the entry is stale, so it goes.
#[inline(always)]
fn forget_stale_reply(tuple: &Flow) {
    let reply = tuple.reversed().key(CT_REPLY);
    // SAFETY: only checks presence.
    if unsafe { CONNTRACK.get(&reply) }.is_some() {
        let _ = CONNTRACK.remove(&reply);
    }
}

/// Picks a backend, decides the source translation and records both conntrack entries.
#[inline(always)]
fn new_flow(
    tuple: &Flow,
    frontend: &Frontend,
    header: &ServiceValue,
    ingress: Ingress,
) -> Result<CtValue, DropReason> {
    let hash = mix_hash(
        tuple.saddr,
        tuple.daddr,
        ((tuple.sport as u32) << 16) | tuple.dport as u32,
    ) ^ tuple.proto as u32;
    let (backend_id, chosen) = select_backend(frontend, header, tuple.saddr as u64, hash)
        .ok_or(DropReason::NoServiceBackend)?;
    let mut forward = CtValue {
        saddr: tuple.saddr,
        daddr: chosen.ipv4,
        sport: tuple.sport,
        dport: chosen.port,
        backend_id,
        frontend_id: header.frontend_id,
        flags: 0,
        _pad0: [0; 3],
    };
    let reply = CtValue {
        saddr: tuple.daddr,
        daddr: tuple.saddr,
        sport: tuple.dport,
        dport: tuple.sport,
        backend_id,
        frontend_id: header.frontend_id,
        flags: 0,
        _pad0: [0; 3],
    };
    let masquerade = ingress == Ingress::Network && header.flags & SVC_FLAG_MASQUERADE != 0;
    let from_pod = matches!(ingress, Ingress::Pod { .. });
    // Hairpin: a pod reaching itself. Its own address as source would be dropped by the pod
    // as martian, so the flow comes from the service address, and the reply (sent to the
    // service address) is routed back through the veth where it is restored.
    let hairpin = from_pod && chosen.ipv4 == tuple.saddr;
    if masquerade || hairpin {
        // The address the client reached: the node address (NodePort) or the VIP (hairpin).
        forward.saddr = tuple.daddr;
        forward.flags = CT_FLAG_SNAT;
        forward.sport = claim_snat_port(&forward, &reply, tuple.proto, hash, masquerade)?;
    } else {
        let reply_key = flow_after(&forward, tuple.proto).reversed().key(CT_REPLY);
        // Best effort on a full table: LRU eviction makes room.
        let _ = CONNTRACK.insert(&reply_key, &reply, 0);
    }
    let _ = CONNTRACK.insert(&tuple.key(CT_FORWARD), &forward, 0);
    Ok(forward)
}

/// Finds a source port on the translated address whose reply tuple is free, records the reply
/// entry on it and returns it. Tries the client's own port first (hairpin always uses it: its
/// address is unique per pod), then hashed ports in the ephemeral range.
#[inline(always)]
fn claim_snat_port(
    forward: &CtValue,
    reply: &CtValue,
    proto: u8,
    hash: u32,
    search: bool,
) -> Result<u16, DropReason> {
    let mut candidate = *forward;
    // Hairpin overwrites: its tuple is unique to the pod, so an old entry is its own.
    let (attempts, flags) = if search {
        (SNAT_PORT_ATTEMPTS, BPF_NOEXIST as u64)
    } else {
        (1, 0)
    };
    let mut i = 0;
    while i < attempts {
        if i > 0 {
            let port = SNAT_PORT_FIRST + mix_hash(hash, i, 0) % SNAT_PORT_COUNT;
            candidate.sport = (port as u16).to_be();
        }
        if CONNTRACK
            .insert(
                &flow_after(&candidate, proto).reversed().key(CT_REPLY),
                reply,
                flags,
            )
            .is_ok()
        {
            return Ok(candidate.sport);
        }
        i += 1;
    }
    Err(DropReason::NatPortsExhausted)
}

/// Rewrites addresses and ports from `tuple` to `to`, keeping both checksums right.
#[inline(always)]
fn rewrite(ctx: &TcContext, ip: &Ipv4Header, tuple: &Flow, to: &CtValue) {
    let l4 = ETH_HDR_LEN + ip.header_len;
    let (check_off, mangled) = if tuple.proto == IPPROTO_TCP {
        (l4 + TCP_CHECK_OFF, 0)
    } else {
        // A UDP checksum of 0 means "none" and must stay 0.
        (l4 + UDP_CHECK_OFF, BPF_F_MARK_MANGLED_0 as u64)
    };
    let addr = |offset: usize, from: u32, to: u32| {
        if from != to {
            let flags = BPF_F_PSEUDO_HDR as u64 | mangled | 4;
            let _ = ctx.l4_csum_replace(check_off, from as u64, to as u64, flags);
            let _ = ctx.l3_csum_replace(ETH_HDR_LEN + IPV4_CHECK_OFF, from as u64, to as u64, 4);
            let _ = ctx.store(ETH_HDR_LEN + offset, &to, 0);
        }
    };
    addr(IPV4_SADDR_OFF, tuple.saddr, to.saddr);
    addr(IPV4_DADDR_OFF, tuple.daddr, to.daddr);
    let port = |offset: usize, from: u16, to: u16| {
        if from != to {
            let _ = ctx.l4_csum_replace(check_off, from as u64, to as u64, mangled | 2);
            let _ = ctx.store(l4 + offset, &to, 0);
        }
    };
    port(0, tuple.sport, to.sport);
    port(2, tuple.dport, to.dport);
}
