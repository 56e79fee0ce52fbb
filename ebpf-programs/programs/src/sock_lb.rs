//! Socket-level service load balancing: `connect()` to a service VIP:port is rewritten to a
//! backend before the socket is connected, so established flows cost nothing per packet.

use aya_ebpf::{helpers::bpf_get_prandom_u32, macros::cgroup_sock_addr, programs::SockAddrContext};
use skiff_common::ServiceKey;

use crate::maps::{BACKENDS, SERVICES};

/// Allow the syscall (with or without a rewrite). Returning 0 would fail it with EPERM.
const PROCEED: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: fields the verifier allows connect4 programs to read.
    let (vip, port, proto) = unsafe { ((*sa).user_ip4, (*sa).user_port as u16, (*sa).protocol) };
    let header_key = ServiceKey::new(vip, port, proto as u8, 0);
    // SAFETY: the value is only copied out.
    let Some(header) = (unsafe { SERVICES.get(&header_key) }).copied() else {
        return PROCEED;
    };
    if header.backend_count == 0 {
        return PROCEED;
    }
    // SAFETY: plain helper call.
    let pick = unsafe { bpf_get_prandom_u32() } % header.backend_count as u32;
    let slot_key = ServiceKey::new(vip, port, proto as u8, pick as u16 + 1);
    // SAFETY: values are only copied out.
    let Some(slot) = (unsafe { SERVICES.get(&slot_key) }).copied() else {
        return PROCEED;
    };
    let Some(backend) = (unsafe { BACKENDS.get(&slot.backend_id) }).copied() else {
        return PROCEED;
    };
    // SAFETY: connect4 programs may write the destination address and port.
    unsafe {
        (*sa).user_ip4 = backend.ipv4;
        (*sa).user_port = backend.port as u32;
    }
    PROCEED
}
