//! The cluster behind `cargo xtask up`: a named lab (`skiff-lab-up`) that outlives the
//! command, the host's loopback forwarded into it, a `skiff` config for the host shell, and
//! the demo application deployed.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    forward::Route, Binaries, Cluster, ClusterError, Options, Result, Runtime, Store, API_PORT,
    NODE_API_PORT,
};

/// The lab name of the `up` cluster.
pub const LAB_NAME: &str = "up";
/// Where the host reaches the API.
pub const HOST_API: &str = "127.0.0.1:6443";
/// Where the host reaches the demo's front end (the NodePort on the first node).
pub const HOST_FRONT: &str = "127.0.0.1:30080";
/// Node `nI`'s daemon API is forwarded to `127.0.0.1:(HOST_NODE_API_BASE + I - 1)`, so the
/// CLI's default `--node 127.0.0.1:9465` reaches n1.
pub const HOST_NODE_API_BASE: u16 = 9465;
const FRONT_NODE_PORT: u16 = 30080;

pub struct UpOptions {
    pub nodes: usize,
    pub runtime: Runtime,
    pub store: Store,
    pub binaries: Binaries,
    /// The cluster's state folder (logs, data, configs).
    pub state_dir: PathBuf,
    /// The demo manifests to apply.
    pub demo_dir: PathBuf,
    /// Where the host's `skiff` looks for its config (`~/.config/skiff/config`).
    pub user_config: Option<PathBuf>,
}

/// What `up` made, for the hints.
pub struct UpReport {
    pub host_config: PathBuf,
    pub user_config_written: Option<PathBuf>,
    pub demo_answer: String,
    pub nodes: Vec<(String, u16)>,
    pub elapsed: Duration,
}

/// Takes down what an earlier `up` left, then brings a new cluster up and leaves it running.
pub fn up(options: UpOptions, progress: &mut dyn FnMut(&str)) -> Result<UpReport> {
    let started = Instant::now();
    if skiff_lab::named_exists(LAB_NAME) || options.state_dir.exists() {
        progress("an earlier cluster is up: taking it down first");
        down(&options.state_dir, options.user_config.as_deref())?;
    }
    let mut cluster_options = Options::new(options.binaries.clone(), options.state_dir.clone());
    cluster_options.nodes = options.nodes;
    cluster_options.runtime = options.runtime;
    cluster_options.store = options.store;
    cluster_options.lab_name = Some(LAB_NAME.into());
    cluster_options.node_grace_seconds = 10;
    let mut cluster = Cluster::start(cluster_options, progress)?;

    progress(&format!(
        "forwarding {HOST_API} (API), {HOST_FRONT} (demo front end) and the node APIs from the host into the lab"
    ));
    let mut routes = vec![
        Route {
            listen: HOST_API.parse().expect("constant"),
            target: (cluster.control_address(), API_PORT).into(),
        },
        Route {
            listen: HOST_FRONT.parse().expect("constant"),
            target: (cluster.nodes[0].address, FRONT_NODE_PORT).into(),
        },
    ];
    let mut nodes = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let port = HOST_NODE_API_BASE + i as u16;
        routes.push(Route {
            listen: ([127, 0, 0, 1], port).into(),
            target: (node.address, NODE_API_PORT).into(),
        });
        nodes.push((node.name.clone(), port));
    }
    start_forwarder(&mut cluster, &routes)?;

    let host_config = options.state_dir.join("host.conf");
    let admin: Value = read_json(&cluster.admin_conf)?;
    let mut host = admin.clone();
    host["server"] = Value::String(format!("https://{HOST_API}"));
    let host_text = serde_json::to_string_pretty(&host).expect("JSON");
    std::fs::write(&host_config, &host_text).map_err(ClusterError::io(&host_config))?;
    let user_config_written = match &options.user_config {
        Some(path) => write_user_config(path, &host_text)?,
        None => None,
    };

    progress("deploying the demo application (examples/demo)");
    let applied = Command::new(&options.binaries.cli)
        .arg("--config")
        .arg(&host_config)
        .args(["apply", "-f"])
        .arg(&options.demo_dir)
        .output()
        .map_err(ClusterError::io(&options.binaries.cli))?;
    if !applied.status.success() {
        return Err(ClusterError::Command {
            command: format!("skiff apply -f {}", options.demo_dir.display()),
            status: applied.status.to_string(),
            output: String::from_utf8_lossy(&applied.stderr).into_owned(),
        });
    }
    wait_for_demo(&cluster, progress)?;
    let demo_answer = ask_front()?;
    cluster.detach()?;
    Ok(UpReport {
        host_config,
        user_config_written,
        demo_answer,
        nodes,
        elapsed: started.elapsed(),
    })
}

/// Removes the `up` cluster (a no-op when there is none), and the user's config if `up`
/// wrote it.
pub fn down(state_dir: &Path, user_config: Option<&Path>) -> Result<()> {
    let ours = std::fs::read_to_string(state_dir.join("host.conf")).ok();
    if let (Some(path), Some(ours)) = (user_config, ours) {
        if std::fs::read_to_string(path).is_ok_and(|text| text == ours) {
            std::fs::remove_file(path).map_err(ClusterError::io(path))?;
            let before = backup_path(path);
            if before.exists() {
                std::fs::rename(&before, path).map_err(ClusterError::io(&before))?;
            }
        }
    }
    crate::remove(LAB_NAME, state_dir)
}

fn backup_path(path: &Path) -> PathBuf {
    path.with_extension("before-skiff-up")
}

/// Writes the host config where `skiff` looks by default, keeping a different config that is
/// already there (restored by `down`).
fn write_user_config(path: &Path, text: &str) -> Result<Option<PathBuf>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(ClusterError::io(parent))?;
    }
    if let Ok(existing) = std::fs::read_to_string(path) {
        if existing != text {
            let backup = backup_path(path);
            std::fs::rename(path, &backup).map_err(ClusterError::io(path))?;
        }
    }
    std::fs::write(path, text).map_err(ClusterError::io(path))?;
    Ok(Some(path.to_path_buf()))
}

fn start_forwarder(cluster: &mut Cluster, routes: &[Route]) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let state = cluster.options.state_dir.clone();
    let (out, log) = (state.join("forward.out"), state.join("forward.log"));
    let create = |path: &Path| std::fs::File::create(path).map_err(ClusterError::io(path));
    let mut command = Command::new(&cluster.options.binaries.local);
    command
        .arg("forward")
        .arg("--netns")
        .arg(cluster.external_netns())
        .args(routes.iter().map(|r| format!("{}={}", r.listen, r.target)))
        .stdin(Stdio::null())
        .stdout(create(&out)?)
        .stderr(create(&log)?)
        .process_group(0);
    let pid = cluster.lab.spawn_on_host("forward", command)?.id();
    let forwarder = crate::Process {
        name: "skiff-local forward".into(),
        pid,
        log,
    };
    crate::wait_for(
        Duration::from_secs(10),
        "the forwarder to listen",
        &forwarder,
        || {
            std::fs::read_to_string(&out)
                .ok()?
                .contains("forwarding")
                .then_some(())
        },
    )
}

fn wait_for_demo(cluster: &Cluster, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let timeout = Duration::from_secs(90);
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let pods = cluster.admin.get("/api/v1/namespaces/demo/pods")?;
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let ready = items
            .iter()
            .filter(|p| crate::has_condition(p, "Ready"))
            .count();
        let line = format!("demo: {ready} of {} pods ready", items.len());
        if line != last && !items.is_empty() {
            progress(&line);
            last = line;
        }
        if !items.is_empty() && ready == items.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ClusterError::Timeout {
                what: "the demo's pods becoming Ready".into(),
                seconds: timeout.as_secs(),
                detail: "\nsee `skiff get pods -n demo` and `skiff describe pod NAME -n demo`"
                    .into(),
            });
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One request to the front end through the host's loopback, as the user's `curl` would;
/// the new endpoints may take a moment to reach the data planes.
fn ask_front() -> Result<String> {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect(HOST_FRONT)?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            stream.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })();
        match attempt {
            Ok(answer) if answer.starts_with("HTTP/1.1 200") => {
                let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").trim();
                return Ok(body.to_string());
            }
            other if Instant::now() > deadline => {
                return Err(ClusterError::Timeout {
                    what: format!("the demo answering on {HOST_FRONT}"),
                    seconds: 15,
                    detail: format!("\nlast answer: {other:?}"),
                })
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(ClusterError::io(path))?;
    serde_json::from_str(&text)
        .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))
}
