//! The node's side of the control plane: it joins with the join token, registers its Node,
//! heartbeats (the Ready condition the node lifecycle controller watches), reports usage,
//! and keeps a watch cache of the objects the data plane needs (namespaces, pods, services,
//! endpoint slices, network policies), handing each new view to the daemon's reconcilers
//! and each new [`Zone`] straight to the node's DNS server.
//!
//! It runs on its own thread with a small async runtime; the daemon's main loop picks up
//! views from a channel, so a slow or absent control plane never blocks the data plane:
//! what was applied last stays applied.
//!
//! - [`translate`]: Services and EndpointSlices into the data plane's desired state;
//! - [`node_status`]: capacity and usage from /proc;
//! - [`routes`]: routes to the other nodes' pod CIDRs;
//! - [`pod_writer`]: the pod manager's status reports and final deletes, written back.

pub mod node_status;
pub mod pod_writer;
pub mod routes;
pub mod translate;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    sync::{mpsc, Arc, RwLock},
    time::{Duration, SystemTime},
};

use skiff_api::{
    core::Condition,
    node::{DaemonEndpoint, NodeAddress, NodeDaemonEndpoints, NodeStatus},
    quantity::Quantity,
    time::rfc3339,
    EndpointSlice, Kind, NodeMetrics, Object, Service,
};
use skiff_client::{Client, ClientError, Config};
use tokio::sync::{Mutex, Notify};

use crate::{
    dns::{Zone, ZoneHandle},
    pods::{manager::PodReport, PodDirectory},
    service_lb::DesiredServices,
};

/// How to reach the control plane and who this node is.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// A client config whose token is the cluster's join token.
    pub config: PathBuf,
    pub node_name: String,
    /// The node's InternalIP (other nodes and the control plane reach it there).
    pub node_ip: Option<Ipv4Addr>,
    /// This node's addresses, NodePort frontends are served on each.
    pub node_addresses: Vec<Ipv4Addr>,
    pub heartbeat: Duration,
    /// The port of the daemon's own API (logs, exec), advertised in the Node's status.
    pub daemon_port: Option<u16>,
    /// The cluster domain the zone is built for (`cluster.local`).
    pub cluster_domain: String,
    /// Where the agent puts the cluster's names on every change, for the DNS server and
    /// for pods starting (resolver, service environment variables).
    pub zone: ZoneHandle,
    /// The node's DNS server, the backend of `kube-system/kube-dns` on this node; `None`
    /// when the node serves no DNS.
    pub dns_listen: Option<SocketAddrV4>,
}

/// What the agent shares with the rest of the daemon.
pub struct Agent {
    /// Views of the cluster, the first once every watched kind has been listed.
    pub views: mpsc::Receiver<ClusterView>,
    /// Pod status reports and deletes for the control plane.
    pub reports: tokio::sync::mpsc::UnboundedSender<PodReport>,
    /// SHA-256 (hex) of this node's token once joined: the control plane presents it when
    /// it calls the node API.
    pub token_digest: Arc<RwLock<Option<String>>>,
}

/// The cluster as the data plane needs it, at one moment.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub services: DesiredServices,
    /// Namespaces, Pods and NetworkPolicies, for policy.
    pub policy_objects: Vec<Object>,
    /// The node's pod CIDR, once the control plane has allocated it.
    pub pod_cidr: Option<String>,
    /// The pods the scheduler assigned to this node.
    pub local_pods: Vec<skiff_api::Pod>,
}

/// The kinds the node watches.
const WATCHED: [Kind; 6] = [
    Kind::Node,
    Kind::Namespace,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::NetworkPolicy,
];

/// Starts the agent thread. `pods` (the node's running pods) feeds per-pod usage.
pub fn start(config: AgentConfig, pods: Option<PodDirectory>) -> anyhow::Result<Agent> {
    let client_config = Config::load(&config.config)?;
    // Fail now on a config that cannot work (bad CA), not in the background.
    Client::new(&client_config)?;
    let (tx, rx) = mpsc::channel();
    let (reports, report_rx) = tokio::sync::mpsc::unbounded_channel();
    let token_digest: Arc<RwLock<Option<String>>> = Arc::default();
    let digest_slot = token_digest.clone();
    std::thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the agent's runtime");
            runtime.block_on(run(config, client_config, tx, report_rx, digest_slot, pods));
        })?;
    Ok(Agent {
        views: rx,
        reports,
        token_digest,
    })
}

/// Lower-case hex SHA-256, as the control plane stores node tokens.
pub fn digest(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn run(
    config: AgentConfig,
    client_config: Config,
    views: mpsc::Sender<ClusterView>,
    reports: tokio::sync::mpsc::UnboundedReceiver<PodReport>,
    token_digest: Arc<RwLock<Option<String>>>,
    pods: Option<PodDirectory>,
) {
    let (client, token) = join(&config, client_config).await;
    *token_digest.write().unwrap_or_else(|e| e.into_inner()) = Some(digest(&token));
    let pod_cidr = register(&client, &config).await;
    tracing::info!(node = %config.node_name, pod_cidr = pod_cidr.as_deref().unwrap_or("-"), "registered with the control plane");
    tokio::spawn(heartbeat(client.clone(), config.clone(), pods));
    tokio::spawn(pod_writer::run(client.clone(), reports));
    let routes = match routes::Routes::new() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, "cannot manage pod routes: pods on other nodes are unreachable");
            None
        }
    };

    let cache: Arc<Mutex<BTreeMap<(Kind, String), Object>>> = Arc::default();
    let changed = Arc::new(Notify::new());
    let listed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for kind in WATCHED {
        tokio::spawn(watch_kind(
            client.clone(),
            kind,
            cache.clone(),
            changed.clone(),
            listed.clone(),
        ));
    }
    loop {
        changed.notified().await;
        // A burst of events (an apply) becomes one view.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if listed.load(std::sync::atomic::Ordering::Relaxed) < WATCHED.len() {
            continue;
        }
        let objects: Vec<Object> = cache.lock().await.values().cloned().collect();
        if let Some(routes) = &routes {
            let nodes: Vec<skiff_api::Node> = objects
                .iter()
                .filter_map(|o| match o {
                    Object::Node(n) => Some((**n).clone()),
                    _ => None,
                })
                .collect();
            match routes
                .reconcile(&routes::desired(&nodes, &config.node_name))
                .await
            {
                Ok((0, 0)) => {}
                Ok((added, removed)) => {
                    tracing::info!(added, removed, "pod routes to other nodes updated")
                }
                Err(e) => {
                    tracing::error!(error = %e, "updating pod routes failed; retrying on the next change")
                }
            }
        }
        let view = view_of(&objects, &config, pod_cidr.clone());
        if views.send(view).is_err() {
            return;
        }
    }
}

fn view_of(objects: &[Object], config: &AgentConfig, pod_cidr: Option<String>) -> ClusterView {
    let mut services: Vec<Service> = Vec::new();
    let mut slices: Vec<EndpointSlice> = Vec::new();
    let mut policy_objects = Vec::new();
    let mut local_pods = Vec::new();
    for o in objects {
        if let Object::Pod(p) = o {
            if p.spec.node_name.as_deref() == Some(config.node_name.as_str()) {
                local_pods.push((**p).clone());
            }
        }
        match o {
            Object::Service(s) => services.push((**s).clone()),
            Object::EndpointSlice(s) => slices.push((**s).clone()),
            Object::Namespace(_) | Object::NetworkPolicy(_) => policy_objects.push(o.clone()),
            Object::Pod(p) if p.ip().is_some() && !p.is_finished() => {
                policy_objects.push(o.clone())
            }
            _ => {}
        }
    }
    // Straight to the DNS server, not through the main loop: names are fresh at once.
    let zone = Arc::new(Zone::build(&config.cluster_domain, objects));
    *config.zone.write().unwrap_or_else(|e| e.into_inner()) = zone;
    ClusterView {
        services: translate::desired_services(
            &services,
            &slices,
            &config.node_name,
            &config.node_addresses,
            config.dns_listen,
        ),
        policy_objects,
        pod_cidr,
        local_pods,
    }
}

/// Retries until the control plane answers: a node may start before it.
async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(t) => return t,
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Trades the join token for this node's own token.
async fn join(config: &AgentConfig, client_config: Config) -> (Client, String) {
    let joiner = Client::new(&client_config).expect("checked in start");
    let token = retrying("joining the cluster", || joiner.join(&config.node_name)).await;
    let client = Client::new(&Config {
        token: token.clone(),
        ..client_config
    })
    .expect("checked in start");
    (client, token)
}

fn node_object(config: &AgentConfig) -> Object {
    Object::from_json(
        Kind::Node,
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": config.node_name, "labels": {"kubernetes.io/hostname": config.node_name}},
        }),
    )
    .expect("a valid Node")
}

/// Creates or refreshes this node's Node object; returns its pod CIDR.
async fn register(client: &Client, config: &AgentConfig) -> Option<String> {
    let registered = retrying("registering the node", || async {
        match client.get(Kind::Node, "", &config.node_name).await {
            Ok(existing) => Ok(existing),
            Err(ClientError::Api(status)) if status.code == 404 => {
                client.update(&node_object(config)).await
            }
            Err(e) => Err(e),
        }
    })
    .await;
    match registered {
        Object::Node(n) => n.spec.pod_cidr.clone(),
        _ => None,
    }
}

fn status(config: &AgentConfig) -> NodeStatus {
    let (cpu, memory) = node_status::capacity();
    let resources: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), Quantity::from_millicores(cpu)),
        ("memory".to_string(), Quantity::from_bytes(memory)),
    ]
    .into();
    let mut ready = Condition::new(
        "Ready",
        true,
        Some("SkiffNodeReady"),
        Some("skiff-node is running and its data plane is loaded".into()),
    );
    ready.last_heartbeat_time = Some(rfc3339(SystemTime::now()));
    NodeStatus {
        capacity: resources.clone(),
        allocatable: resources,
        conditions: vec![ready],
        addresses: config
            .node_ip
            .iter()
            .map(|ip| NodeAddress {
                type_: "InternalIP".into(),
                address: ip.to_string(),
            })
            .collect(),
        daemon_endpoints: config.daemon_port.map(|port| NodeDaemonEndpoints {
            kubelet_endpoint: DaemonEndpoint { port },
        }),
    }
}

/// Reports Ready and usage every `config.heartbeat`; a failed report is retried next beat.
async fn heartbeat(client: Client, config: AgentConfig, pods: Option<PodDirectory>) {
    let mut sampler = node_status::UsageSampler::new();
    let mut pod_cpu = node_status::PodCpu::default();
    loop {
        let beat = async {
            let mut node = client.get(Kind::Node, "", &config.node_name).await?;
            if let Object::Node(n) = &mut node {
                n.status = Some(status(&config));
            }
            client.update_status(&node).await?;
            let (cpu, memory) = sampler.sample();
            let pods = pods
                .as_ref()
                .map(|d| pod_cpu.sample(&d.pods()))
                .unwrap_or_default();
            client
                .put_node_metrics(&NodeMetrics {
                    node: config.node_name.clone(),
                    timestamp: rfc3339(SystemTime::now()),
                    cpu_millicores: cpu,
                    memory_bytes: memory,
                    pods,
                })
                .await
        };
        if let Err(e) = beat.await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        tokio::time::sleep(config.heartbeat).await;
    }
}

/// Lists `kind`, then follows its watch; relists when the watch ends or expires.
async fn watch_kind(
    client: Client,
    kind: Kind,
    cache: Arc<Mutex<BTreeMap<(Kind, String), Object>>>,
    changed: Arc<Notify>,
    listed: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut first = true;
    loop {
        let (objects, version) = retrying(&format!("listing {}", kind.plural()), || {
            client.list(kind, None, None)
        })
        .await;
        {
            let mut cache = cache.lock().await;
            cache.retain(|(k, _), _| *k != kind);
            for o in objects {
                cache.insert((kind, o.key_name()), o);
            }
        }
        if first {
            listed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            first = false;
        }
        changed.notify_one();
        let mut watch = match client.watch(kind, None, None, Some(&version)).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(kind = %kind, error = %e, "watch failed; listing again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // When the stream ends or expires, the outer loop lists again, so nothing is missed.
        while let Ok(Some(event)) = watch.next().await {
            let Ok(object) = Object::from_json(kind, event.object) else {
                continue;
            };
            let key = (kind, object.key_name());
            let mut cache = cache.lock().await;
            if event.type_ == "DELETED" {
                cache.remove(&key);
            } else {
                cache.insert(key, object);
            }
            drop(cache);
            changed.notify_one();
        }
    }
}
