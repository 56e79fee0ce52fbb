//! `skiff-control`: the control plane in one binary.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use skiff_api::{network_policy::Cidr, Kind, Object};
use skiff_control::{
    api::{router, AppState},
    auth::Auth,
    error::ApiError,
    metrics::Metrics,
    pki::{local_names, Credentials},
    registry::{AddressConfig, Registry},
    runners,
    serve::serve_tls,
};
use skiff_store::{EmbeddedOptions, EmbeddedStore, EtcdStore, Store};

#[derive(Parser)]
#[command(
    name = "skiff-control",
    version,
    about = "Skiff's control plane: API server, store, scheduler and controllers",
    long_about = "Skiff's control plane: API server, store, scheduler and controllers.\n\n\
        On first start it generates the cluster CA and tokens and writes, into --data-dir, \
        admin.conf (for `skiff --config`), ca.crt and join-token (for node daemons).\n\n\
        Examples:\n  skiff-control --data-dir /var/lib/skiff\n  \
        skiff-control --store etcd --etcd-endpoints http://10.0.0.5:2379 --data-dir /var/lib/skiff"
)]
struct Args {
    /// Where the embedded store and the generated admin.conf, ca.crt and join-token live.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "/var/lib/skiff-control")]
    data_dir: PathBuf,
    /// Address the HTTPS API listens on.
    #[arg(long, default_value = "0.0.0.0:6443")]
    listen: SocketAddr,
    /// Which store holds the cluster state.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_endpoints: Vec<String>,
    /// Key prefix inside etcd, so clusters can share one etcd.
    #[arg(long, default_value = "/skiff")]
    etcd_prefix: String,
    /// ClusterIPs are handed out from this range.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cidr: Cidr,
    /// The cluster DNS service's address (kube-system/kube-dns, which every node serves
    /// itself); default: the 10th address of --service-cidr, as kubeadm picks it.
    #[arg(long, value_name = "IP")]
    cluster_dns: Option<std::net::Ipv4Addr>,
    /// NodePorts are handed out from this range (inclusive).
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    node_port_range: (u16, u16),
    /// Each node gets a pod CIDR carved from this range.
    #[arg(long, default_value = "10.244.0.0/16")]
    pod_cidr: Cidr,
    /// Prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_size: u8,
    /// A node that misses heartbeats this long is NotReady and its pods move elsewhere.
    #[arg(long, default_value_t = 10)]
    node_grace_seconds: u64,
    /// Extra names or addresses for the serving certificate (the machine's own addresses,
    /// localhost and its hostname are always included).
    #[arg(long)]
    tls_san: Vec<String>,
    /// Past changes the embedded store keeps for watches that resume from an older
    /// resourceVersion; older ones get "410 Expired: list again".
    #[arg(long, default_value_t = 10_000)]
    watch_history: usize,
    /// Serve the API only: no scheduler and no controllers (API tests, or extra read
    /// replicas of an etcd-backed cluster).
    #[arg(long)]
    disable_controllers: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreKind {
    /// A crash-safe log in --data-dir (one control-plane machine).
    Embedded,
    /// etcd v3 (several control-plane machines; one leads the controllers).
    Etcd,
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?}: expected FIRST-LAST, e.g. 30000-32767"))?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?}: expected a port"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?}: expected a port"))?;
    if a == 0 || a > b {
        return Err(format!("{text:?}: expected 1 <= FIRST <= LAST"));
    }
    Ok((a, b))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if !(8..=30).contains(&args.node_cidr_size) || args.node_cidr_size < args.pod_cidr.len {
        anyhow::bail!(
            "--node-cidr-size {}: expected a prefix length between {} (the --pod-cidr's) and 30",
            args.node_cidr_size,
            args.pod_cidr.len
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating --data-dir {}", args.data_dir.display()))?;

    let store: Arc<dyn Store> = match args.store {
        StoreKind::Embedded => Arc::new(
            EmbeddedStore::open(
                &args.data_dir.join("store"),
                EmbeddedOptions {
                    history: args.watch_history,
                    ..EmbeddedOptions::default()
                },
            )
            .context("opening the embedded store")?,
        ),
        StoreKind::Etcd => Arc::new(
            EtcdStore::connect(&args.etcd_endpoints, &args.etcd_prefix)
                .context("connecting to etcd")?,
        ),
    };
    tracing::info!(store = %store.describe(), "store open");

    let credentials = Credentials::load_or_create(&store).await?;
    let names = local_names(&args.tls_san);
    let tls = credentials.server_config(&names)?;
    let registry = Arc::new(Registry::new(
        store.clone(),
        AddressConfig {
            service_cidr: args.service_cidr,
            node_ports: args.node_port_range.0..=args.node_port_range.1,
            cluster_pod_cidr: args.pod_cidr,
            node_pod_prefix: args.node_cidr_size,
        },
    ));
    let cluster_dns = args
        .cluster_dns
        .unwrap_or_else(|| std::net::Ipv4Addr::from(u32::from(args.service_cidr.addr) + 10));
    bootstrap(&registry, cluster_dns).await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    write_client_files(&args.data_dir, &credentials, local)?;

    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(AppState {
        registry: registry.clone(),
        auth: Auth::new(&credentials, store.clone()),
        metrics: metrics.clone(),
        nodes: skiff_control::node_proxy::NodeProxy::new(),
    });
    tracing::info!(
        address = %local,
        admin_config = %args.data_dir.join("admin.conf").display(),
        "serving the API over HTTPS"
    );
    if !args.disable_controllers {
        tokio::spawn(runners::lead(
            registry,
            metrics,
            Duration::from_secs(args.node_grace_seconds),
            format!("{}:{}", hostname(), std::process::id()),
        ));
    }
    let server = serve_tls(listener, tls, router(state));
    tokio::select! {
        _ = server => {}
        _ = shutdown() => tracing::info!("shutting down"),
    }
    Ok(())
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "skiff-control".into())
}

/// The `default` namespace exists from the start, as in Kubernetes.
/// The objects every cluster has: the `default` and `kube-system` namespaces and the cluster
/// DNS service (no selector: each node steers it to its own DNS server).
async fn bootstrap(registry: &Registry, cluster_dns: std::net::Ipv4Addr) -> anyhow::Result<()> {
    for name in ["default", "kube-system"] {
        let namespace = Object::from_json(
            Kind::Namespace,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )?;
        match registry.create(namespace).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("creating the {name} namespace")),
        }
    }
    let dns = Object::from_json(
        Kind::Service,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns"}},
            "spec": {"clusterIP": cluster_dns.to_string(), "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}
        }),
    )?;
    match registry.create(dns).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
        // The cluster still works by address; say why names do not.
        Err(e) => tracing::warn!(
            "cannot create the cluster DNS service kube-system/kube-dns at {cluster_dns} (--cluster-dns): {e}; pods will not resolve cluster names"
        ),
    }
    Ok(())
}

/// admin.conf for the CLI, ca.crt and join-token for nodes; readable by the owner only.
fn write_client_files(
    dir: &std::path::Path,
    credentials: &Credentials,
    local: SocketAddr,
) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    let config = serde_json::json!({
        "server": format!("https://{host}:{}", local.port()),
        "certificateAuthorityData": credentials.ca_cert_pem,
        "token": credentials.admin_token,
    });
    let files = [
        ("admin.conf", serde_json::to_string_pretty(&config)? + "\n"),
        ("ca.crt", credentials.ca_cert_pem.clone()),
        ("join-token", format!("{}\n", credentials.join_token)),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
