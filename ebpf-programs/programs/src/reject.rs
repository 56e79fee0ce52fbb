//! Refusing a TCP connection on the per-packet path: the SYN to a service without a usable
//! backend is turned, in place, into the RST+ACK a closed port would send, and bounced back
//! out of the interface it came from. The client's `connect()` fails at once with
//! ECONNREFUSED instead of timing out, as on the socket path.

use aya_ebpf::{
    bindings::TC_ACT_REDIRECT,
    helpers::{bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};

use skiff_common::IPPROTO_TCP;

use crate::packet::{ptr_at, Ipv4Header, ETH_HDR_LEN, TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN};

/// Ethernet + a 20-byte IPv4 header + a 20-byte TCP header.
const RST_FRAME_LEN: u32 = (ETH_HDR_LEN + 40) as u32;

#[repr(C)]
struct Headers {
    ip: [u8; 20],
    tcp: [u8; 20],
}

#[repr(C)]
struct RawTcp {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    doff_flags: u16,
}

/// Rewrites a TCP SYN into the matching RST+ACK and redirects it to `ifindex`'s egress.
/// `None` when the packet is not a plain SYN with a 20-byte IPv4 header (the caller drops it).
#[inline(always)]
pub fn refuse_tcp(ctx: &TcContext, ip: &Ipv4Header, ifindex: u32) -> Option<i32> {
    if ip.header_len != 20 {
        return None;
    }
    let eth: *const [u8; 12] = ptr_at(ctx, 0)?;
    let total_len: *const u16 = ptr_at(ctx, ETH_HDR_LEN + 2)?;
    let tcp: *const RawTcp = ptr_at(ctx, ETH_HDR_LEN + 20)?;
    // SAFETY: bounds checked by ptr_at; copied out before the packet is resized.
    let (eth, total_len, tcp) = unsafe {
        (
            eth.read_unaligned(),
            u16::from_be(total_len.read_unaligned()) as u32,
            tcp.read_unaligned(),
        )
    };
    let flags = (u16::from_be(tcp.doff_flags) & 0xff) as u8;
    if flags & TCP_FLAG_SYN == 0 || flags & TCP_FLAG_ACK != 0 {
        return None;
    }
    let tcp_header_len = ((u16::from_be(tcp.doff_flags) >> 12) as u32) * 4;
    let payload = total_len.saturating_sub(20 + tcp_header_len);
    // The RST acknowledges the SYN and any data it carried.
    let ack = u32::from_be(tcp.seq).wrapping_add(1).wrapping_add(payload);

    let mut h = Headers {
        ip: [0; 20],
        tcp: [0; 20],
    };
    h.ip[0] = 0x45;
    h.ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    h.ip[6] = 0x40; // don't fragment
    h.ip[8] = 64; // ttl
    h.ip[9] = IPPROTO_TCP;
    h.ip[12..16].copy_from_slice(&ip.daddr.to_ne_bytes());
    h.ip[16..20].copy_from_slice(&ip.saddr.to_ne_bytes());
    let ip_check = checksum_fold(sum_words(&h.ip, 0));
    h.ip[10..12].copy_from_slice(&ip_check.to_be_bytes());

    h.tcp[0..2].copy_from_slice(&tcp.dport.to_ne_bytes());
    h.tcp[2..4].copy_from_slice(&tcp.sport.to_ne_bytes());
    h.tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    h.tcp[12] = 5 << 4;
    h.tcp[13] = TCP_FLAG_RST | TCP_FLAG_ACK;
    // Pseudo header: addresses, protocol and TCP length, then the TCP header itself.
    let mut pseudo = [0u8; 12];
    pseudo[0..8].copy_from_slice(&h.ip[12..20]);
    pseudo[9] = IPPROTO_TCP;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let tcp_check = checksum_fold(sum_words(&h.tcp, sum_words(&pseudo, 0)));
    h.tcp[16..18].copy_from_slice(&tcp_check.to_be_bytes());

    // SAFETY: helper call on this program's own skb.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb as *mut _, RST_FRAME_LEN, 0) } != 0 {
        return None;
    }
    // Back to the sender: the MAC addresses swap.
    let mut macs = [0u8; 12];
    macs[0..6].copy_from_slice(&eth[6..12]);
    macs[6..12].copy_from_slice(&eth[0..6]);
    ctx.store(0, &macs, 0).ok()?;
    ctx.store(ETH_HDR_LEN, &h, 0).ok()?;
    // SAFETY: plain helper call; the verdict it returns is TC_ACT_REDIRECT on success.
    let verdict = unsafe { bpf_redirect(ifindex, 0) } as i32;
    (verdict == TC_ACT_REDIRECT as i32).then_some(verdict)
}

#[inline(always)]
fn sum_words<const N: usize>(bytes: &[u8; N], initial: u32) -> u32 {
    let mut sum = initial;
    let mut i = 0;
    while i + 1 < N {
        sum += ((bytes[i] as u32) << 8) | bytes[i + 1] as u32;
        i += 2;
    }
    sum
}

#[inline(always)]
fn checksum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
