//! Cluster DNS, served by every node from the daemon's own watch cache.
//!
//! - [`zone`]: the cluster's names at one moment (services, headless endpoints, SRV
//!   records, pod names), the pods' resolver configuration and service environment
//!   variables. The agent builds a new zone on every change of its cache.
//! - [`server`]: the UDP and TCP listeners (hickory-server) answering from the current
//!   zone and forwarding other names to the node's upstream resolvers.
//!
//! Pods reach the server through the `kube-system/kube-dns` ClusterIP, which the node's
//! service load balancer steers to the local listener, so a lookup never leaves the node.

pub mod server;
pub mod zone;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::{Context as _, Result};
use hickory_server::ServerFuture;
pub use server::ZoneHandle;
pub use zone::{ResolverConfig, Zone};

/// How long a TCP client may stay idle before the server closes its connection.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Where and how the node serves DNS.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    pub listen: SocketAddr,
    pub domain: String,
    pub upstreams: Vec<SocketAddr>,
}

/// A zone handle holding the empty zone of `domain`.
pub fn new_zone(domain: &str) -> ZoneHandle {
    Arc::new(RwLock::new(Arc::new(Zone::empty(domain))))
}

/// Starts the server on a thread of its own (queries never wait behind the agent's work)
/// and returns once both sockets are bound, or with the bind error.
pub fn start(settings: &DnsSettings, zone: ZoneHandle) -> Result<()> {
    let udp = std::net::UdpSocket::bind(settings.listen)
        .with_context(|| format!("binding the DNS server to UDP {}", settings.listen))?;
    let tcp = std::net::TcpListener::bind(settings.listen)
        .with_context(|| format!("binding the DNS server to TCP {}", settings.listen))?;
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    let handler = server::ClusterDns {
        zone,
        upstreams: settings.upstreams.clone(),
    };
    std::thread::Builder::new()
        .name("dns".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the DNS server could not start a runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let serve = async {
                    let mut server = ServerFuture::new(handler);
                    server.register_socket(tokio::net::UdpSocket::from_std(udp)?);
                    server.register_listener(tokio::net::TcpListener::from_std(tcp)?, TCP_IDLE);
                    server.block_until_done().await.map_err(anyhow::Error::from)
                };
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "the DNS server stopped");
                }
            });
        })
        .context("starting the DNS thread")?;
    tracing::info!(listen = %settings.listen, domain = %settings.domain,
        upstreams = ?settings.upstreams, "serving cluster DNS");
    Ok(())
}

/// The error for a `--dns-upstream` value that is not `auto`, `none` or addresses.
#[derive(Debug, thiserror::Error)]
#[error("--dns-upstream {value:?}: {entry:?} is not an IP address or IP:port (expected auto, none, or a comma-separated list such as 192.0.2.53,198.51.100.53:5353)")]
pub struct UpstreamError {
    pub value: String,
    pub entry: String,
}

/// Parses `--dns-upstream`: `auto` reads the node's /etc/resolv.conf (loopback resolvers
/// are skipped: they would be this node's own stub, and a forwarding loop), `none` forwards
/// nothing, otherwise a comma-separated list of `IP` or `IP:port`.
pub fn parse_upstreams(value: &str, resolv_conf: &str) -> Result<Vec<SocketAddr>, UpstreamError> {
    match value.trim() {
        "auto" => Ok(resolv_conf
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next()? == "nameserver").then_some(())?;
                words.next()?.parse::<IpAddr>().ok()
            })
            .filter(|ip| !ip.is_loopback())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()),
        "none" | "" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(str::trim)
            .map(|entry| {
                entry
                    .parse::<SocketAddr>()
                    .or_else(|_| entry.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| UpstreamError {
                        value: value.to_string(),
                        entry: entry.to_string(),
                    })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_come_from_resolv_conf_or_the_flag() {
        let conf = "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch lan\n";
        assert_eq!(
            parse_upstreams("auto", conf).unwrap(),
            ["192.0.2.1:53".parse().unwrap()]
        );
        assert!(parse_upstreams("none", conf).unwrap().is_empty());
        assert_eq!(
            parse_upstreams("192.0.2.9, 192.0.2.8:5353", conf).unwrap(),
            [
                "192.0.2.9:53".parse::<SocketAddr>().unwrap(),
                "192.0.2.8:5353".parse().unwrap()
            ]
        );
        let e = parse_upstreams("192.0.2.9,dns.example", conf)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dns.example") && e.contains("expected"), "{e}");
    }
}
