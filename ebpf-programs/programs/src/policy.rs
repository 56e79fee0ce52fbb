//! NetworkPolicy enforcement on a pod's host-side veth: egress in `from_pod` (after service
//! translation, so the real destination is judged), ingress in `to_pod`.
//!
//! A packet first asks "am I a reply of a flow already let through?" (the reversed tuple in
//! `POLICY_CT`): replies always pass. Otherwise the flow's own entry, if judged under the
//! current policy revision, lets it pass; if not, the compiled policy is looked up (see
//! `skiff_common::policy`) and the verdict recorded, counted and reported.

use aya_ebpf::maps::lpm_trie::Key;
use skiff_common::{
    identity, prefix, settings, AddressIdentity, DropReason, FlowEvent, PolicyCounters,
    PolicyCtValue, PolicyKey, NO_DROP_REASON, POLICY_CT_SELF, POLICY_EGRESS, POLICY_ENTRY_ALLOW,
    POLICY_INGRESS, VERDICT_ALLOWED, VERDICT_DENIED,
};

use crate::{
    maps::{setting, FLOW_EVENTS, IPCACHE, POLICY, POLICY_COUNTERS, POLICY_CT},
    packet::Flow,
};

/// Whether the packet answers a flow a local pod opened (`POLICY_EGRESS`) or accepted
/// (`POLICY_INGRESS`) and a policy check let through.
#[inline(always)]
pub fn is_reply(flow: &Flow, opened_at: u8) -> bool {
    // SAFETY: only checks presence.
    unsafe { POLICY_CT.get(&flow.reversed().key(opened_at)) }.is_some()
}

/// Where the packet is judged.
pub struct Check {
    /// The local pod's host-side veth and address.
    pub ifindex: u32,
    pub pod_addr: u32,
    pub direction: u8,
}

/// Judges a packet that is not a reply. `before`: the flow as the pod sent it when service
/// translation changed it, so replies that still carry the service address are recognised.
#[inline(always)]
pub fn check(at: &Check, flow: &Flow, before: Option<&Flow>) -> Result<(), DropReason> {
    let revision = setting(settings::POLICY_REVISION) as u32;
    let key = flow.key(at.direction);
    // SAFETY: the value is copied out at once.
    let known = unsafe { POLICY_CT.get(&key) }.copied();
    if let Some(entry) = known {
        if entry.revision == revision || entry.flags & POLICY_CT_SELF != 0 {
            return Ok(());
        }
    }
    // A pod reaching itself through a service: its own traffic, never judged.
    let hairpin = at.direction == POLICY_EGRESS && flow.daddr == at.pod_addr;
    let verdict = if hairpin {
        Verdict::not_selected()
    } else {
        judge(at, flow)
    };
    if verdict.allowed {
        let value = PolicyCtValue {
            revision,
            rule: verdict.rule,
            flags: if hairpin { POLICY_CT_SELF } else { 0 },
        };
        // Best effort on a full table: LRU eviction makes room.
        let _ = POLICY_CT.insert(&key, &value, 0);
        if hairpin {
            // The same packet reaches the pod's ingress next, carrying the service address.
            let _ = POLICY_CT.insert(&flow.key(POLICY_INGRESS), &value, 0);
        }
        if let Some(before) = before {
            let _ = POLICY_CT.insert(&before.key(at.direction), &value, 0);
        }
        if verdict.rule != 0 {
            count(verdict.rule, true);
        }
        if known.is_none() {
            report(at, flow, &verdict, NO_DROP_REASON);
        }
        Ok(())
    } else {
        if known.is_some() {
            let _ = POLICY_CT.remove(&key);
        }
        count(verdict.rule, false);
        let reason = if at.direction == POLICY_INGRESS {
            DropReason::PolicyDeniedIngress
        } else {
            DropReason::PolicyDeniedEgress
        };
        report(at, flow, &verdict, reason.index() as u8);
        Err(reason)
    }
}

struct Verdict {
    allowed: bool,
    /// Packed rule reference: the allowing rule or the selection that denied.
    rule: u32,
    subject: u32,
    peer: u32,
}

impl Verdict {
    #[inline(always)]
    fn not_selected() -> Verdict {
        Verdict {
            allowed: true,
            rule: 0,
            subject: 0,
            peer: 0,
        }
    }
}

/// The compiled policy's answer for a new (or re-judged) flow.
#[inline(always)]
fn judge(at: &Check, flow: &Flow) -> Verdict {
    let Some(subject) = address_identity(at.pod_addr) else {
        // A pod the policy reconciler does not know (yet) is selected by nothing.
        return Verdict::not_selected();
    };
    let peer_addr = if at.direction == POLICY_INGRESS {
        flow.saddr
    } else {
        flow.daddr
    };
    let peer = address_identity(peer_addr).unwrap_or(AddressIdentity {
        identity: identity::WORLD,
        cidr_identity: 0,
    });
    let mut verdict = Verdict {
        allowed: true,
        rule: 0,
        subject: subject.identity,
        peer: peer.identity,
    };
    if peer.identity == identity::HOST {
        // The pod's own node (probes, node-local services) is always allowed.
        return verdict;
    }
    let mut key = Key::new(
        prefix::PORT,
        PolicyKey {
            subject: subject.identity,
            direction: at.direction,
            _pad0: [0; 3],
            peer: peer.identity,
            proto: flow.proto,
            _pad1: 0,
            dport: flow.dport,
        },
    );
    // Peer identity, CIDR identity, any peer: the first allow wins; a selection marker found
    // on the way makes it a default deny. At most three lookups, whatever the policy count.
    let mut selected_by = None;
    let mut i = 0;
    while i < 3 {
        let peer_id = match i {
            0 => peer.identity,
            1 => peer.cidr_identity,
            _ => identity::ANY,
        };
        i += 1;
        if i == 2 && peer_id == identity::ANY {
            continue;
        }
        key.data.peer = peer_id;
        if let Some(entry) = POLICY.get(&key).copied() {
            if entry.kind == POLICY_ENTRY_ALLOW {
                verdict.rule = entry.rule;
                return verdict;
            }
            selected_by = Some(entry.rule);
        }
    }
    if let Some(rule) = selected_by {
        verdict.allowed = false;
        verdict.rule = rule;
    }
    verdict
}

#[inline(always)]
fn address_identity(addr: u32) -> Option<AddressIdentity> {
    IPCACHE.get(Key::new(32, addr)).copied()
}

#[inline(always)]
fn count(rule: u32, allowed: bool) {
    let counters = match POLICY_COUNTERS.get_ptr_mut(&rule) {
        Some(counters) => counters,
        None => {
            let _ = POLICY_COUNTERS.insert(&rule, &PolicyCounters::default(), 0);
            match POLICY_COUNTERS.get_ptr_mut(&rule) {
                Some(counters) => counters,
                None => return,
            }
        }
    };
    // SAFETY: per-CPU value, so this program instance is its only writer.
    let counters = unsafe { &mut *counters };
    if allowed {
        counters.allowed += 1;
    } else {
        counters.denied += 1;
    }
}

/// Reports a packet dropped before any policy check (e.g. a spoofed source).
#[inline(always)]
pub fn report_drop(at: &Check, flow: &Flow, reason: DropReason) {
    let verdict = Verdict {
        allowed: false,
        ..Verdict::not_selected()
    };
    report(at, flow, &verdict, reason.index() as u8);
}

#[inline(always)]
fn report(at: &Check, flow: &Flow, verdict: &Verdict, drop_reason: u8) {
    let event = FlowEvent {
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        proto: flow.proto,
        verdict: if verdict.allowed {
            VERDICT_ALLOWED
        } else {
            VERDICT_DENIED
        },
        direction: at.direction,
        drop_reason,
        ifindex: at.ifindex,
        subject_identity: verdict.subject,
        peer_identity: verdict.peer,
        rule: verdict.rule,
    };
    // A full ring drops the event, never the packet.
    let _ = FLOW_EVENTS.output::<FlowEvent>(&event, 0);
}
