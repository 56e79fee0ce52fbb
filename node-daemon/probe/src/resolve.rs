//! Name resolution without NSS: a static glibc binary cannot load NSS modules in a pod's
//! mount namespace, so the probe asks the nameservers of `/etc/resolv.conf` itself (A records
//! over UDP, the search list and `ndots` as the libc resolver applies them). That is what
//! lets the demo's tiers find each other as `api:8080` through cluster DNS.
//!
//! Answers are cached for their TTL, and a cached answer is served stale when no nameserver
//! answers (as RFC 8767 resolvers do): a long-running `serve --upstream` keeps working
//! while its node's DNS server restarts with the node daemon.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

const RESOLV_CONF: &str = "/etc/resolv.conf";
const TYPE_A: u16 = 1;

/// Name -> the last answer.
static CACHE: Mutex<Option<HashMap<String, Cached>>> = Mutex::new(None);

/// How long refreshing a cached name may take before the stale answer is used: well below
/// any client's timeout, so a missing nameserver costs a request this much, not a failure.
const REFRESH_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Clone)]
struct Cached {
    ip: Ipv4Addr,
    fresh_until: Instant,
    /// The search-list candidate that answered, asked alone on refresh.
    fqdn: String,
}
const CLASS_IN: u16 = 1;

/// `IP:PORT` as is, or `NAME:PORT` resolved through `/etc/resolv.conf`.
pub fn target(target: &str, timeout: Duration) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = target.parse() {
        return Ok(addr);
    }
    let Some((name, port)) = target.rsplit_once(':') else {
        bail!("{target:?}: expected IP:PORT or NAME:PORT, e.g. 10.96.0.10:80 or api:8080");
    };
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow::anyhow!("{target:?}: port {port:?} is not a number 0-65535"))?;
    if name.is_empty() || name.len() > 253 {
        bail!("{target:?}: expected IP:PORT or NAME:PORT");
    }
    if name == "localhost" {
        return Ok((Ipv4Addr::LOCALHOST, port).into());
    }
    let cached = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|cache| cache.get(name).cloned());
    let outcome = match &cached {
        Some(c) if Instant::now() < c.fresh_until => return Ok((c.ip, port).into()),
        Some(c) => lookup(name, Some(&c.fqdn), REFRESH_TIMEOUT.min(timeout)),
        None => lookup(name, None, timeout),
    };
    match outcome {
        Ok((ip, ttl, fqdn)) => {
            CACHE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(HashMap::new)
                .insert(
                    name.to_string(),
                    Cached {
                        ip,
                        fresh_until: Instant::now() + ttl,
                        fqdn,
                    },
                );
            Ok((ip, port).into())
        }
        // Serve stale: the last answer beats no answer while the nameserver is away.
        Err(e) => match cached {
            Some(c) => Ok((c.ip, port).into()),
            None => Err(e),
        },
    }
}

/// One name through the nameservers and the search list (or only `fqdn`, the candidate that
/// answered before): the address, its TTL and the candidate that answered.
fn lookup(
    name: &str,
    fqdn: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(Ipv4Addr, Duration, String)> {
    let text = std::fs::read_to_string(RESOLV_CONF)
        .with_context(|| format!("resolving {name:?}: reading {RESOLV_CONF}"))?;
    let conf = ResolvConf::parse(&text);
    if conf.nameservers.is_empty() {
        bail!("resolving {name:?}: {RESOLV_CONF} names no IPv4 nameserver");
    }
    let candidates = match fqdn {
        Some(fqdn) => vec![fqdn.to_string()],
        None => conf.candidates(name),
    };
    let mut last_error = None;
    for candidate in candidates {
        for server in &conf.nameservers {
            match query_a(*server, &candidate, timeout) {
                Ok(Some((ip, ttl))) => return Ok((ip, ttl, candidate)),
                Ok(None) => last_error = Some(format!("{candidate}: no such name")),
                Err(e) => last_error = Some(format!("{candidate} at {server}: {e:#}")),
            }
        }
    }
    bail!(
        "resolving {name:?}: {}",
        last_error.unwrap_or_else(|| "no candidate name".into())
    )
}

#[derive(Debug, Default, PartialEq)]
struct ResolvConf {
    nameservers: Vec<Ipv4Addr>,
    search: Vec<String>,
    ndots: usize,
}

impl ResolvConf {
    fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            ndots: 1,
            ..ResolvConf::default()
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.search = words.map(|w| w.trim_end_matches('.').to_string()).collect();
                }
                Some("options") => {
                    for option in words {
                        if let Some(n) = option.strip_prefix("ndots:").and_then(|n| n.parse().ok())
                        {
                            conf.ndots = n;
                        }
                    }
                }
                _ => {}
            }
        }
        conf
    }

    /// The names to try, in the libc resolver's order.
    fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(absolute) = name.strip_suffix('.') {
            return vec![absolute.to_string()];
        }
        let searched = self.search.iter().map(|domain| format!("{name}.{domain}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_string())).collect()
        }
    }
}

/// One A query: the first address of the answer with its TTL, `None` when the name does not
/// exist or has no A record.
fn query_a(
    server: Ipv4Addr,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Option<(Ipv4Addr, Duration)>> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("bind")?;
    socket.connect(SocketAddrV4::new(server, 53))?;
    socket.set_read_timeout(Some(timeout))?;
    // Unpredictable enough to tell our answer from a late one to an earlier query.
    let id = (std::process::id() as u16) ^ (socket.local_addr()?.port());
    socket.send(&encode_query(id, name)?).context("send")?;
    let mut buf = [0u8; 1500];
    loop {
        let n = socket.recv(&mut buf).context("no answer")?;
        if let Some(answer) = decode_answer(id, &buf[..n])? {
            return Ok(answer);
        }
    }
}

fn encode_query(id: u16, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut packet = Vec::with_capacity(18 + name.len());
    packet.extend(id.to_be_bytes());
    // Recursion desired; one question.
    packet.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            bail!("{name:?} is not a valid DNS name");
        }
        packet.push(label.len() as u8);
        packet.extend(label.as_bytes());
    }
    packet.push(0);
    packet.extend(TYPE_A.to_be_bytes());
    packet.extend(CLASS_IN.to_be_bytes());
    Ok(packet)
}

/// `Ok(None)` for a packet that answers another query (to be ignored); `Ok(Some(None))` for
/// NXDOMAIN or no A record.
#[allow(clippy::option_option)]
fn decode_answer(id: u16, packet: &[u8]) -> anyhow::Result<Option<Option<(Ipv4Addr, Duration)>>> {
    let word = |at: usize| -> anyhow::Result<u16> {
        packet
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .context("truncated DNS answer")
    };
    if packet.len() < 12 || word(0)? != id || packet[2] & 0x80 == 0 {
        return Ok(None);
    }
    match packet[3] & 0x0f {
        0 => {}
        3 => return Ok(Some(None)),
        rcode => bail!("DNS error code {rcode}"),
    }
    let (questions, answers) = (word(4)?, word(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(packet, at)? + 4;
    }
    for _ in 0..answers {
        at = skip_name(packet, at)?;
        let (kind, class, length) = (word(at)?, word(at + 2)?, usize::from(word(at + 8)?));
        let ttl = (u32::from(word(at + 4)?) << 16) | u32::from(word(at + 6)?);
        let data = packet
            .get(at + 10..at + 10 + length)
            .context("truncated DNS answer")?;
        if kind == TYPE_A && class == CLASS_IN && length == 4 {
            let ip = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
            return Ok(Some(Some((ip, Duration::from_secs(u64::from(ttl))))));
        }
        at += 10 + length;
    }
    Ok(Some(None))
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> anyhow::Result<usize> {
    loop {
        let length = *packet.get(at).context("truncated DNS name")?;
        match length {
            0 => return Ok(at + 1),
            // A compression pointer ends the name.
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_search_list_and_ndots_order_the_candidates() {
        let conf = ResolvConf::parse(
            "nameserver 10.96.0.10\nnameserver fd00::1\n\
             search demo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
        );
        assert_eq!(conf.nameservers, vec![Ipv4Addr::new(10, 96, 0, 10)]);
        assert_eq!(conf.ndots, 5);
        assert_eq!(
            conf.candidates("api"),
            [
                "api.demo.svc.cluster.local",
                "api.svc.cluster.local",
                "api.cluster.local",
                "api"
            ]
        );
        assert_eq!(
            conf.candidates("api.demo.svc.cluster.local."),
            ["api.demo.svc.cluster.local"]
        );
        let plain = ResolvConf::parse("nameserver 1.2.3.4\nsearch example.org\n");
        assert_eq!(plain.candidates("a.b"), ["a.b", "a.b.example.org"]);
    }

    #[test]
    fn answers_are_decoded_through_compressed_names_and_cnames() {
        let query = encode_query(0x1234, "api.demo").unwrap();
        let mut answer = query.clone();
        answer[2] = 0x81; // response, recursion desired
        answer[3] = 0x80;
        answer[7] = 2; // two answers: a CNAME, then the A record
        answer.extend([0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, 2, 0xc0, 12]);
        answer.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 96, 7, 8]);
        assert_eq!(
            decode_answer(0x1234, &answer).unwrap(),
            Some(Some((Ipv4Addr::new(10, 96, 7, 8), Duration::from_secs(30))))
        );
        assert_eq!(
            decode_answer(0x9999, &answer).unwrap(),
            None,
            "another query's answer"
        );
        let mut nxdomain = query;
        nxdomain[2] = 0x81;
        nxdomain[3] = 0x83;
        assert_eq!(decode_answer(0x1234, &nxdomain).unwrap(), Some(None));
        assert!(decode_answer(0x1234, &answer[..answer.len() - 2]).is_err());
    }

    #[test]
    fn bad_targets_name_what_was_expected() {
        let timeout = Duration::from_millis(10);
        assert_eq!(
            target("10.0.0.1:80", timeout).unwrap(),
            "10.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            target("localhost:9", timeout).unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        let e = target("api:http", timeout).unwrap_err().to_string();
        assert!(e.contains("port \"http\""), "{e}");
        let e = target("api", timeout).unwrap_err().to_string();
        assert!(e.contains("NAME:PORT"), "{e}");
    }
}
