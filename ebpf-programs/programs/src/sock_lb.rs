//! Socket-level service load balancing on the pods' (and the node's) cgroup subtree.
//!
//! - `connect4`: TCP, and connected UDP of the node's own processes. The destination is
//!   rewritten to a backend before the socket connects, so established flows cost nothing per
//!   packet. Connected UDP sockets in pods keep the service address and are translated per
//!   packet, so they move to another backend when theirs goes away (a connected socket never
//!   passes a socket hook again).
//! - `sendmsg4`: unconnected UDP (`sendto`). The socket keeps its backend while it stays in
//!   `BACKENDS`; when it is removed the next datagram picks another (a DNS-style client
//!   recovers at its next query).
//! - `recvmsg4` / `getpeername4`: report the service address, not the backend, as the peer.
//!
//! A service with no active backend fails `connect()`/`sendto()` at once with ECONNREFUSED.

use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use skiff_common::{
    settings, SockNatKey, SockNatValue, IPPROTO_UDP, SOCK_NAT_FORWARD, SOCK_NAT_REVERSE,
};

use crate::{
    lb::{backend, mix_hash, select_backend, service_header, Frontend},
    maps::{setting, SOCK_NAT},
};

/// Let the syscall go on (with or without a rewrite).
const PROCEED: i32 = 1;
/// Fail the syscall with the errno set by `bpf_set_retval`.
const REJECT: i32 = 0;
const ECONNREFUSED: i32 = 111;

#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, false)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, true)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    report_service_address(&ctx);
    PROCEED
}

#[cgroup_sock_addr(getpeername4)]
pub fn sock_getpeername4(ctx: SockAddrContext) -> i32 {
    report_service_address(&ctx);
    PROCEED
}

#[inline(always)]
fn translate(ctx: &SockAddrContext, sticky: bool) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: fields the verifier allows sock_addr programs to read.
    let frontend = unsafe {
        Frontend {
            addr: (*sa).user_ip4,
            port: (*sa).user_port as u16,
            proto: (*sa).protocol as u8,
        }
    };
    let Some(header) = service_header(&frontend) else {
        return PROCEED;
    };
    // SAFETY: helpers allowed for sock_addr programs (kernel >= 5.7).
    let (cookie, netns) = unsafe {
        (
            bpf_get_socket_cookie(sa as *mut _),
            bpf_get_netns_cookie(sa as *mut _),
        )
    };
    let forward_key = SockNatKey {
        cookie,
        addr: frontend.addr,
        port: frontend.port,
        direction: SOCK_NAT_FORWARD,
        _pad0: 0,
    };
    if header.count == 0 {
        // SAFETY: plain helper call (kernel >= 5.18 for sock_addr programs).
        unsafe { bpf_set_retval(-ECONNREFUSED) };
        return REJECT;
    }
    if !sticky && frontend.proto == IPPROTO_UDP && !is_host_netns(netns) {
        return PROCEED;
    }
    // An unconnected UDP socket keeps its backend while that backend exists.
    let kept = if sticky {
        // SAFETY: the value is copied out at once.
        unsafe { SOCK_NAT.get(&forward_key) }
            .copied()
            .and_then(|entry| backend(entry.backend_id).map(|b| (entry.backend_id, b)))
    } else {
        None
    };
    let chosen = match kept {
        Some(chosen) => chosen,
        None => {
            let hash = mix_hash(cookie as u32, (cookie >> 32) as u32, netns as u32);
            match select_backend(&frontend, &header, netns, hash) {
                Some(chosen) => chosen,
                None => {
                    // SAFETY: plain helper call (kernel >= 5.18 for sock_addr programs).
                    unsafe { bpf_set_retval(-ECONNREFUSED) };
                    return REJECT;
                }
            }
        }
    };
    let (backend_id, backend) = chosen;
    let reverse_key = SockNatKey {
        cookie,
        addr: backend.ipv4,
        port: backend.port,
        direction: SOCK_NAT_REVERSE,
        _pad0: 0,
    };
    let reverse = SockNatValue {
        addr: frontend.addr,
        port: frontend.port,
        _pad0: [0; 2],
        backend_id,
        frontend_id: header.frontend_id,
    };
    // Best effort: the LRU map evicts the oldest entry rather than failing when full.
    let _ = SOCK_NAT.insert(&reverse_key, &reverse, 0);
    if sticky && kept.is_none() {
        let forward = SockNatValue {
            addr: backend.ipv4,
            port: backend.port,
            _pad0: [0; 2],
            backend_id,
            frontend_id: header.frontend_id,
        };
        let _ = SOCK_NAT.insert(&forward_key, &forward, 0);
    }
    // SAFETY: connect4/sendmsg4 programs may write the destination.
    unsafe {
        (*sa).user_ip4 = backend.ipv4;
        (*sa).user_port = backend.port as u32;
    }
    PROCEED
}

/// Whether `netns` is the node's own namespace; true when the daemon has not said which one is.
#[inline(always)]
fn is_host_netns(netns: u64) -> bool {
    match setting(settings::HOST_NETNS_COOKIE) {
        0 => true,
        host => host == netns,
    }
}

#[inline(always)]
fn report_service_address(ctx: &SockAddrContext) {
    let sa = ctx.sock_addr;
    // SAFETY: helper allowed for sock_addr programs; fields readable by these hooks.
    let key = unsafe {
        SockNatKey {
            cookie: bpf_get_socket_cookie(sa as *mut _),
            addr: (*sa).user_ip4,
            port: (*sa).user_port as u16,
            direction: SOCK_NAT_REVERSE,
            _pad0: 0,
        }
    };
    // SAFETY: the value is copied out at once.
    if let Some(entry) = unsafe { SOCK_NAT.get(&key) }.copied() {
        // SAFETY: recvmsg4/getpeername4 programs may write the reported address.
        unsafe {
            (*sa).user_ip4 = entry.addr;
            (*sa).user_port = entry.port as u32;
        }
    }
}
