//! Bounds-checked access to packet headers for TC programs.

use aya_ebpf::programs::TcContext;

pub const ETH_HDR_LEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const IPV4_MIN_HDR_LEN: usize = 20;

/// Returns a pointer to `len` bytes at `offset`, or `None` when the packet is shorter.
/// The explicit comparison against `data_end` is what lets the verifier accept the access.
#[inline(always)]
pub fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    let len = core::mem::size_of::<T>();
    if start + offset + len > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// The fields of an IPv4 header the data plane reads.
pub struct Ipv4Header {
    /// Source address, network byte order.
    pub saddr: u32,
}

#[repr(C)]
struct RawIpv4 {
    version_ihl: u8,
    tos: u8,
    total_len: u16,
    id: u16,
    frag_off: u16,
    ttl: u8,
    protocol: u8,
    check: u16,
    saddr: u32,
    daddr: u32,
}

/// The frame's EtherType in host byte order, or `None` for a frame shorter than Ethernet.
#[inline(always)]
pub fn ethertype(ctx: &TcContext) -> Option<u16> {
    let raw: *const u16 = ptr_at(ctx, 12)?;
    // SAFETY: bounds checked by ptr_at.
    Some(u16::from_be(unsafe { raw.read_unaligned() }))
}

/// Parses the IPv4 header after the Ethernet header. `None` means malformed: shorter than a
/// minimal header, a version other than 4, or an IHL below 5 or beyond the packet.
#[inline(always)]
pub fn ipv4(ctx: &TcContext) -> Option<Ipv4Header> {
    let raw: *const RawIpv4 = ptr_at(ctx, ETH_HDR_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let raw = unsafe { raw.read_unaligned() };
    if raw.version_ihl >> 4 != 4 {
        return None;
    }
    let header_len = ((raw.version_ihl & 0x0f) as usize) * 4;
    if header_len < IPV4_MIN_HDR_LEN || ctx.data() + ETH_HDR_LEN + header_len > ctx.data_end() {
        return None;
    }
    Some(Ipv4Header { saddr: raw.saddr })
}
