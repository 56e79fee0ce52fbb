//! A small packet builder for BPF_PROG_TEST_RUN fixtures: Ethernet frames carrying IPv4 with
//! TCP or UDP (checksums filled in), ARP and IPv6, plus a parser to check what a program
//! left in a packet.

use std::net::Ipv4Addr;

pub const ETH_HDR_LEN: usize = 14;
pub const IPV4_HDR_LEN: usize = 20;
pub const UDP_HDR_LEN: usize = 8;
pub const TCP_HDR_LEN: usize = 20;

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Transport layer of an [`Ipv4Packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp { sport: u16, dport: u16, flags: u8 },
    Udp { sport: u16, dport: u16 },
}

pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// An Ethernet + IPv4 + TCP/UDP frame to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

impl Ipv4Packet {
    pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Self {
        Ipv4Packet {
            src,
            dst,
            ttl: 64,
            transport: Transport::Udp { sport, dport },
            payload: Vec::new(),
        }
    }

    pub fn tcp_syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Self {
        Ipv4Packet {
            src,
            dst,
            ttl: 64,
            transport: Transport::Tcp {
                sport,
                dport,
                flags: TCP_SYN,
            },
            payload: Vec::new(),
        }
    }

    pub fn with_payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// The whole frame, checksums included.
    pub fn build(&self) -> Vec<u8> {
        let (proto, l4) = match self.transport {
            Transport::Udp { sport, dport } => {
                let len = (UDP_HDR_LEN + self.payload.len()) as u16;
                let mut l4 = Vec::with_capacity(len as usize);
                l4.extend_from_slice(&sport.to_be_bytes());
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&len.to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
                l4.extend_from_slice(&self.payload);
                (17u8, l4)
            }
            Transport::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut l4 = Vec::with_capacity(TCP_HDR_LEN + self.payload.len());
                l4.extend_from_slice(&sport.to_be_bytes());
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&1u32.to_be_bytes()); // sequence
                l4.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
                l4.push(((TCP_HDR_LEN / 4) as u8) << 4);
                l4.push(flags);
                l4.extend_from_slice(&64240u16.to_be_bytes()); // window
                l4.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                l4.extend_from_slice(&self.payload);
                (6u8, l4)
            }
        };
        let mut l4 = l4;
        let checksum_at = if proto == 17 { 6 } else { 16 };
        let sum = transport_checksum(self.src, self.dst, proto, &l4);
        l4[checksum_at..checksum_at + 2].copy_from_slice(&sum.to_be_bytes());

        let total_len = (IPV4_HDR_LEN + l4.len()) as u16;
        let mut ip = Vec::with_capacity(IPV4_HDR_LEN);
        ip.push(0x45);
        ip.push(0);
        ip.extend_from_slice(&total_len.to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0x40, 0]); // id 1, don't fragment
        ip.push(self.ttl);
        ip.push(proto);
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());

        let mut frame = ethernet(0x0800);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&l4);
        frame
    }
}

fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(128);
    frame.extend_from_slice(&DST_MAC);
    frame.extend_from_slice(&SRC_MAC);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// An ARP request "who has `target`? tell `sender`".
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = ethernet(0x0806);
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&SRC_MAC);
    frame.extend_from_slice(&sender.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame
}

/// A minimal IPv6 frame (header only, no next header payload).
pub fn ipv6_frame() -> Vec<u8> {
    let mut frame = ethernet(0x86dd);
    frame.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 59, 64]);
    frame.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    frame.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    frame
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum_words(data, 0))
}

fn sum_words(data: &[u8], mut sum: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn transport_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let pseudo = pseudo_header(src, dst, proto, segment.len());
    let sum = finish(sum_words(segment, sum_words(&pseudo, 0)));
    // A computed UDP checksum of 0 is sent as all ones (0 means "no checksum").
    if sum == 0 && proto == 17 {
        0xffff
    } else {
        sum
    }
}

/// The addressing of an IPv4 TCP/UDP frame, as read back from a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// Whether the IPv4 header checksum and the TCP/UDP checksum verify.
    pub checksums_ok: bool,
}

/// Reads an Ethernet + IPv4 + TCP/UDP frame; `None` for anything else or a truncated frame.
pub fn parse_ipv4(frame: &[u8]) -> Option<Ipv4Flow> {
    if frame.len() < ETH_HDR_LEN + IPV4_HDR_LEN || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_HDR_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ihl < IPV4_HDR_LEN || total > ip.len() || total < ihl + 4 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let proto = ip[9];
    let l4 = &ip[ihl..total];
    let checksums_ok = checksum(&ip[..ihl]) == 0
        && finish(sum_words(
            l4,
            sum_words(&pseudo_header(src, dst, proto, l4.len()), 0),
        )) == 0;
    Some(Ipv4Flow {
        src,
        dst,
        proto,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        checksums_ok,
    })
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.push(0);
    pseudo.push(proto);
    pseudo.extend_from_slice(&(len as u16).to_be_bytes());
    pseudo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_parse_back_with_valid_checksums() {
        let a = Ipv4Addr::new(10, 244, 1, 2);
        let b = Ipv4Addr::new(10, 96, 0, 10);
        for packet in [
            Ipv4Packet::udp(a, 40000, b, 53).with_payload(b"odd"),
            Ipv4Packet::tcp_syn(a, 40001, b, 80),
        ] {
            let frame = packet.build();
            let flow = parse_ipv4(&frame).expect("parses");
            assert_eq!((flow.src, flow.dst), (a, b));
            assert!(flow.checksums_ok, "{packet:?}");
        }
    }

    #[test]
    fn a_flipped_byte_breaks_the_checksum() {
        let mut frame = Ipv4Packet::udp(Ipv4Addr::LOCALHOST, 1, Ipv4Addr::LOCALHOST, 2).build();
        let last = frame.len() - 1;
        frame[last] ^= 0xff;
        assert!(!parse_ipv4(&frame).unwrap().checksums_ok);
    }

    #[test]
    fn known_header_checksum() {
        // The classic example header from RFC 1071 discussions (checksum 0xb861).
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
    }
}
