//! A pod's network: its own network namespace, a veth pair to the node, an address from
//! the node's pod CIDR and only the routes it needs, all through rtnetlink.
//!
//! The layout is the lab's and Kubernetes' host-gateway one: the node holds the same
//! gateway address on every pod veth and a /32 route to each pod; the pod has its address
//! as a /32 on `eth0`, a link route to the gateway and routes for the cluster ranges via it.
//! No default route: traffic to anything else has nowhere to go, by design.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use futures_util::TryStreamExt as _;
use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
};
use rtnetlink::{
    packet_route::route::RouteScope, Handle, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use skiff_api::network_policy::Cidr;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("pod {pod}: {step}: {source}")]
    Io {
        pod: String,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("pod {pod}: {step}: {source}")]
    Netlink {
        pod: String,
        step: &'static str,
        source: rtnetlink::Error,
    },
    #[error("pod {pod}: interface {name} not found")]
    MissingLink { pod: String, name: String },
}

/// How this node wires pods.
#[derive(Clone, Debug)]
pub struct PodNetwork {
    /// The address the node holds on every pod veth; pods route through it.
    pub gateway: Ipv4Addr,
    /// What pods reach through the gateway (cluster pod and service ranges, node network).
    pub routed: Vec<Cidr>,
    /// Where network namespaces are bind-mounted (one file per pod).
    pub netns_dir: PathBuf,
}

/// One pod's network, as created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    pub pod: String,
    /// The pod's network namespace (a bind-mounted nsfs file): containers join it.
    pub netns: PathBuf,
    /// The node-side veth, where the data plane attaches the pod's programs.
    pub host_interface: String,
    pub ip: Ipv4Addr,
}

/// Interface names are at most 15 bytes: a stable hash of the pod keeps them unique.
fn interface_names(pod: &str) -> (String, String) {
    let hash = crate::policy::fnv1a(pod.as_bytes()) as u32;
    (format!("sk{hash:08x}"), format!("sp{hash:08x}"))
}

impl PodNetwork {
    /// Creates the pod's namespace (or takes `existing`, one a runtime made) and wires it.
    /// Run it in the node's network namespace.
    pub fn create(
        &self,
        pod: &str,
        ip: Ipv4Addr,
        existing: Option<&Path>,
    ) -> Result<Sandbox, NetworkError> {
        let (host, peer) = interface_names(pod);
        let netns = self.netns_dir.join(format!("{host}.net"));
        let io = |step: &'static str| {
            let pod = pod.to_string();
            move |source| NetworkError::Io { pod, step, source }
        };
        std::fs::create_dir_all(&self.netns_dir).map_err(io("creating the netns folder"))?;
        new_netns(&netns, existing).map_err(io("creating the network namespace"))?;
        let file = std::fs::File::open(&netns).map_err(io("opening the network namespace"))?;
        let gateway = self.gateway;
        let fd = file.as_raw_fd();
        let (host_c, peer_c, pod_c) = (host.clone(), peer.clone(), pod.to_string());
        in_netns(None, move |handle| async move {
            let nl = |step: &'static str| {
                let pod = pod_c.clone();
                move |source| NetworkError::Netlink { pod, step, source }
            };
            handle
                .link()
                .add(LinkVeth::new(&host_c, &peer_c).build())
                .execute()
                .await
                .map_err(nl("adding the veth pair"))?;
            let peer_index = link_index(&handle, &peer_c, &pod_c).await?;
            handle
                .link()
                .set(
                    LinkUnspec::new_with_index(peer_index)
                        .setns_by_fd(fd)
                        .build(),
                )
                .execute()
                .await
                .map_err(nl("moving the veth into the pod"))?;
            let host_index = link_index(&handle, &host_c, &pod_c).await?;
            handle
                .address()
                .add(host_index, IpAddr::V4(gateway), 32)
                .execute()
                .await
                .map_err(nl("addressing the node side"))?;
            handle
                .link()
                .set(LinkUnspec::new_with_index(host_index).up().build())
                .execute()
                .await
                .map_err(nl("bringing the node side up"))?;
            handle
                .route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(ip, 32)
                        .output_interface(host_index)
                        .scope(RouteScope::Link)
                        .build(),
                )
                .replace()
                .execute()
                .await
                .map_err(nl("routing the pod address"))?;
            Ok(())
        })?;
        let routed = self.routed.clone();
        let pod_c = pod.to_string();
        in_netns(Some(&netns), move |handle| async move {
            let nl = |step: &'static str| {
                let pod = pod_c.clone();
                move |source| NetworkError::Netlink { pod, step, source }
            };
            let lo = link_index(&handle, "lo", &pod_c).await?;
            handle
                .link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .map_err(nl("bringing lo up"))?;
            let eth = link_index(&handle, &peer, &pod_c).await?;
            handle
                .link()
                .set(LinkUnspec::new_with_index(eth).name("eth0".into()).build())
                .execute()
                .await
                .map_err(nl("naming eth0"))?;
            handle
                .address()
                .add(eth, IpAddr::V4(ip), 32)
                .execute()
                .await
                .map_err(nl("addressing eth0"))?;
            handle
                .link()
                .set(LinkUnspec::new_with_index(eth).up().build())
                .execute()
                .await
                .map_err(nl("bringing eth0 up"))?;
            handle
                .route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(gateway, 32)
                        .output_interface(eth)
                        .scope(RouteScope::Link)
                        .build(),
                )
                .execute()
                .await
                .map_err(nl("routing the gateway"))?;
            for cidr in routed {
                handle
                    .route()
                    .add(
                        RouteMessageBuilder::<Ipv4Addr>::new()
                            .destination_prefix(cidr.addr, cidr.len)
                            .gateway(gateway)
                            .output_interface(eth)
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(nl("routing the cluster ranges"))?;
            }
            Ok(())
        })?;
        Ok(Sandbox {
            pod: pod.to_string(),
            netns,
            host_interface: host,
            ip,
        })
    }

    /// Removes the pod's veth (its peer goes with it) and namespace. Missing parts are
    /// fine: removal is retried after crashes.
    pub fn remove(&self, sandbox: &Sandbox) -> Result<(), NetworkError> {
        let (host, pod) = (sandbox.host_interface.clone(), sandbox.pod.clone());
        in_netns(None, move |handle| async move {
            let mut links = handle.link().get().match_name(host.clone()).execute();
            if let Ok(Some(link)) = links.try_next().await {
                handle
                    .link()
                    .del(link.header.index)
                    .execute()
                    .await
                    .map_err(|source| NetworkError::Netlink {
                        pod,
                        step: "deleting the veth",
                        source,
                    })?;
            }
            Ok(())
        })?;
        let _ = umount2(&sandbox.netns, MntFlags::MNT_DETACH);
        match std::fs::remove_file(&sandbox.netns) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(NetworkError::Io {
                pod: sandbox.pod.clone(),
                step: "removing the network namespace",
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

async fn link_index(handle: &Handle, name: &str, pod: &str) -> Result<u32, NetworkError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        _ => Err(NetworkError::MissingLink {
            pod: pod.to_string(),
            name: name.to_string(),
        }),
    }
}

/// A new network namespace (or `existing`) kept alive by a bind mount on `path`. A thread
/// of its own enters it, so the daemon's threads stay where they are.
fn new_netns(path: &Path, existing: Option<&Path>) -> std::io::Result<()> {
    let path = path.to_path_buf();
    let existing = existing.map(Path::to_path_buf);
    std::thread::spawn(move || -> std::io::Result<()> {
        std::fs::File::create(&path)?;
        match &existing {
            Some(ns) => setns(std::fs::File::open(ns)?, CloneFlags::CLONE_NEWNET)?,
            None => unshare(CloneFlags::CLONE_NEWNET)?,
        }
        // Pods are IPv4-only; left on, IPv6 sends neighbour discovery at link-up that the
        // data plane rightly drops. Set before eth0 exists so it inherits the default.
        for key in ["default", "all"] {
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{key}/disable_ipv6"), "1")?;
        }
        mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
}

/// Runs `work` with a netlink handle in `netns` (or the caller's namespace), on a thread of
/// its own so no other thread changes namespace.
fn in_netns<F, Fut>(netns: Option<&Path>, work: F) -> Result<(), NetworkError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), NetworkError>>,
{
    let netns = netns.map(Path::to_path_buf);
    std::thread::spawn(move || {
        let io = |step: &'static str| {
            move |source| NetworkError::Io {
                pod: String::new(),
                step,
                source,
            }
        };
        if let Some(path) = &netns {
            let file = std::fs::File::open(path).map_err(io("opening the pod namespace"))?;
            setns(file, CloneFlags::CLONE_NEWNET)
                .map_err(|e| io("entering the pod namespace")(e.into()))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("starting a runtime"))?;
        runtime.block_on(async move {
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(io("opening netlink"))?;
            tokio::spawn(connection);
            work(handle).await
        })
    })
    .join()
    .unwrap_or_else(|_| {
        Err(NetworkError::Io {
            pod: String::new(),
            step: "netlink thread",
            source: std::io::Error::other("panicked"),
        })
    })
}
