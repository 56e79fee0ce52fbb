//! Bounds-checked access to packet headers for TC programs.

use aya_ebpf::programs::TcContext;
use skiff_common::{CtKey, DropReason, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};

pub const ETH_HDR_LEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const IPV4_MIN_HDR_LEN: usize = 20;

/// Offsets inside the IPv4 header of the fields NAT rewrites.
pub const IPV4_CHECK_OFF: usize = 10;
pub const IPV4_SADDR_OFF: usize = 12;
pub const IPV4_DADDR_OFF: usize = 16;
/// Offsets of the checksum inside the TCP and UDP headers.
pub const TCP_CHECK_OFF: usize = 16;
pub const UDP_CHECK_OFF: usize = 6;

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
    /// Addresses in network byte order.
    pub saddr: u32,
    pub daddr: u32,
    pub protocol: u8,
    /// Header length in bytes (IHL * 4).
    pub header_len: usize,
    /// Part of a fragmented datagram (more-fragments set or a non-zero offset).
    pub fragmented: bool,
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
    // Flags and offset: MF is 0x2000, the offset the low 13 bits (host order).
    let frag = u16::from_be(raw.frag_off);
    Some(Ipv4Header {
        saddr: raw.saddr,
        daddr: raw.daddr,
        protocol: raw.protocol,
        header_len,
        fragmented: frag & 0x3fff != 0,
    })
}

/// Source and destination ports (network byte order) of a TCP or UDP packet whose IPv4
/// header is `ip`; `None` when the transport header is cut off.
#[inline(always)]
pub fn ports(ctx: &TcContext, ip: &Ipv4Header) -> Option<(u16, u16)> {
    let offset = ETH_HDR_LEN + ip.header_len;
    // Re-bound the variable offset so the verifier can track it (IHL <= 15 words).
    if offset > ETH_HDR_LEN + 60 {
        return None;
    }
    let raw: *const [u16; 2] = ptr_at(ctx, offset)?;
    // SAFETY: bounds checked by ptr_at.
    let raw = unsafe { raw.read_unaligned() };
    Some((raw[0], raw[1]))
}

pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_RST: u8 = 0x04;
pub const TCP_FLAG_ACK: u8 = 0x10;

/// The TCP flags byte of a TCP packet whose IPv4 header is `ip`; `None` when cut off.
#[inline(always)]
pub fn tcp_flags(ctx: &TcContext, ip: &Ipv4Header) -> Option<u8> {
    let offset = ETH_HDR_LEN + ip.header_len + 13;
    if offset > ETH_HDR_LEN + 60 + 13 {
        return None;
    }
    let raw: *const u8 = ptr_at(ctx, offset)?;
    // SAFETY: bounds checked by ptr_at.
    Some(unsafe { raw.read() })
}

/// A packet's 5-tuple (network byte order).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl Flow {
    /// The conntrack key of this flow, tagged with `direction`.
    #[inline(always)]
    pub fn key(&self, direction: u8) -> CtKey {
        CtKey {
            saddr: self.saddr,
            daddr: self.daddr,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            direction,
            _pad0: [0; 2],
        }
    }

    /// The flow of the answers to this one.
    #[inline(always)]
    pub fn reversed(&self) -> Flow {
        Flow {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

/// Reads the flow of the packet whose IPv4 header is `ip`. Ports are 0 for protocols without
/// ports and for fragments (only the first fragment carries them): to policy, only rules that
/// allow every port match those. `Err`: a TCP, UDP or SCTP header cut off.
#[inline(always)]
pub fn read_flow(ctx: &TcContext, ip: &Ipv4Header) -> Result<Flow, DropReason> {
    let has_ports = matches!(ip.protocol, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP);
    let (sport, dport) = if has_ports && !ip.fragmented {
        ports(ctx, ip).ok_or(DropReason::MalformedPacket)?
    } else {
        (0, 0)
    };
    Ok(Flow {
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport,
        dport,
        proto: ip.protocol,
    })
}
