//! TC programs on a pod's host-side veth, and on the node's uplink.
//!
//! Packets on veths that are not in `ENDPOINTS` pass untouched: the pod programs only judge
//! traffic of pods the node daemon registered. For registered pods, `from_pod` checks the
//! source address, translates service traffic and then applies egress policy to the real
//! destination; `to_pod` restores replies from
//! the node's own stack to service flows and applies ingress policy. `from_network` only touches packets for
//! NodePort frontends and replies of flows the data plane translated.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use skiff_common::{DropReason, EndpointInfo, TrafficCounters};

use crate::{
    maps::{count_drop, ENDPOINTS, POD_TRAFFIC},
    nat::{self, Action, Ingress},
    packet::{ethertype, ipv4, read_flow, ETH_P_ARP, ETH_P_IP},
    policy::{self, Check},
};
use skiff_common::{POLICY_EGRESS, POLICY_INGRESS};

enum Direction {
    FromPod,
    ToPod,
}

/// Ingress of the host-side veth: everything the pod sends.
#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    let ifindex = ifindex(&ctx);
    // SAFETY: the value is only copied out.
    let Some(endpoint) = (unsafe { ENDPOINTS.get(&ifindex) }).copied() else {
        return TC_ACT_OK;
    };
    match check_from_pod(&ctx, &endpoint, ifindex) {
        Ok(verdict) => verdict,
        Err(reason) => {
            count_drop(reason);
            TC_ACT_SHOT
        }
    }
}

/// Ingress of the node's uplink: NodePort clients and replies from remote backends.
#[classifier]
pub fn from_network(ctx: TcContext) -> i32 {
    if ethertype(&ctx) != Some(ETH_P_IP) {
        return TC_ACT_OK;
    }
    // Malformed packets are the node stack's business, not the data plane's.
    let Some(ip) = ipv4(&ctx) else {
        return TC_ACT_OK;
    };
    let Ok(flow) = read_flow(&ctx, &ip) else {
        return TC_ACT_OK;
    };
    match nat::translate(&ctx, &ip, &flow, Ingress::Network) {
        Ok(_) => TC_ACT_OK,
        Err(reason) => {
            count_drop(reason);
            TC_ACT_SHOT
        }
    }
}

/// Egress of the host-side veth: everything delivered to the pod.
#[classifier]
pub fn to_pod(ctx: TcContext) -> i32 {
    let ifindex = ifindex(&ctx);
    // SAFETY: the value is only copied out.
    let Some(endpoint) = (unsafe { ENDPOINTS.get(&ifindex) }).copied() else {
        return TC_ACT_OK;
    };
    match check_to_pod(&ctx, &endpoint, ifindex) {
        Ok(()) => TC_ACT_OK,
        Err(reason) => {
            count_drop(reason);
            TC_ACT_SHOT
        }
    }
}

/// Judges, counts and (for service traffic) translates one packet a pod sent; returns the TC
/// verdict for a packet not dropped.
#[inline(always)]
fn check_from_pod(
    ctx: &TcContext,
    endpoint: &EndpointInfo,
    ifindex: u32,
) -> Result<i32, DropReason> {
    match ethertype(ctx) {
        Some(ETH_P_IP) => {
            let ip = ipv4(ctx).ok_or(DropReason::MalformedPacket)?;
            let at = Check {
                ifindex,
                pod_addr: endpoint.ipv4,
                direction: POLICY_EGRESS,
            };
            let before = read_flow(ctx, &ip)?;
            if ip.saddr != endpoint.ipv4 {
                policy::report_drop(&at, &before, DropReason::SpoofedSource);
                return Err(DropReason::SpoofedSource);
            }
            count_traffic(ifindex, Direction::FromPod, ctx.len());
            // A reply of a connection the pod accepted only has its source restored.
            let reply = policy::is_reply(&before, POLICY_INGRESS);
            match nat::translate(ctx, &ip, &before, Ingress::Pod { ifindex })? {
                Action::Pass(after) => {
                    if !reply {
                        policy::check(&at, &after, (after != before).then_some(&before))?;
                    }
                    Ok(TC_ACT_OK)
                }
                Action::Refused(verdict) => {
                    // Not delivered: counted with the drops, though the client got an answer.
                    count_drop(DropReason::NoServiceBackend);
                    Ok(verdict)
                }
            }
        }
        Some(ETH_P_ARP) => Ok(TC_ACT_OK),
        Some(_) => Err(DropReason::UnsupportedProtocol),
        None => Err(DropReason::MalformedPacket),
    }
}

/// Counts one packet delivered to a pod and applies its ingress policy.
#[inline(always)]
fn check_to_pod(ctx: &TcContext, endpoint: &EndpointInfo, ifindex: u32) -> Result<(), DropReason> {
    if ethertype(ctx) != Some(ETH_P_IP) {
        return Ok(());
    }
    // A pod is never handed what the data plane cannot parse, policy or not.
    let ip = ipv4(ctx).ok_or(DropReason::MalformedPacket)?;
    count_traffic(ifindex, Direction::ToPod, ctx.len());
    let flow = read_flow(ctx, &ip)?;
    // Policy let the flow through as the pod's egress saw it: translated, before restoring.
    let reply = policy::is_reply(&flow, POLICY_EGRESS);
    let flow = nat::restore_reply(ctx, &ip, &flow);
    if reply {
        return Ok(());
    }
    let at = Check {
        ifindex,
        pod_addr: endpoint.ipv4,
        direction: POLICY_INGRESS,
    };
    policy::check(&at, &flow, None)
}

#[inline(always)]
fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: reading a context field the verifier allows for TC programs.
    unsafe { (*ctx.skb.skb).ifindex }
}

#[inline(always)]
fn count_traffic(ifindex: u32, direction: Direction, len: u32) {
    let counters = match POD_TRAFFIC.get_ptr_mut(ifindex) {
        Some(counters) => counters,
        None => {
            // The daemon creates the entry with the endpoint; this covers a race with it.
            let _ = POD_TRAFFIC.insert(ifindex, TrafficCounters::default(), 0);
            match POD_TRAFFIC.get_ptr_mut(ifindex) {
                Some(counters) => counters,
                None => return,
            }
        }
    };
    // SAFETY: per-CPU value, so this program instance is its only writer.
    let counters = unsafe { &mut *counters };
    match direction {
        Direction::FromPod => {
            counters.from_pod_packets += 1;
            counters.from_pod_bytes += len as u64;
        }
        Direction::ToPod => {
            counters.to_pod_packets += 1;
            counters.to_pod_bytes += len as u64;
        }
    }
}
