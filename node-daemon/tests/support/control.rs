//! A real control plane (`skiff-control`) on a lab node, and an admin client for it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::{json, Value};
use skiff_lab::{Lab, NodeId};

use super::pin_dir;

const DAEMON: &str = env!("CARGO_BIN_EXE_skiff-node");

/// A binary of a sibling crate, in the same target folder as skiff-node.
pub fn sibling_binary(name: &str) -> PathBuf {
    let mut path = PathBuf::from(DAEMON);
    path.set_file_name(name);
    assert!(
        path.exists(),
        "{} missing: build it with `cargo build --workspace` (cargo xtask test does)",
        path.display()
    );
    path
}

/// `skiff-control` on `node`: its data folder, pid, an admin client, and a join config for
/// nodes (`node_conf`).
pub struct ControlPlane {
    pub data: tempfile::TempDir,
    pub pid: u32,
    pub admin: Admin,
    pub admin_conf: Value,
    pub node_conf: PathBuf,
}

impl ControlPlane {
    pub fn start(lab: &mut Lab, node: NodeId) -> ControlPlane {
        let data = tempfile::tempdir().unwrap();
        let address = lab.node(node).address;
        let mut command = Command::new(sibling_binary("skiff-control"));
        command
            .args(["--data-dir", &data.path().display().to_string()])
            .args(["--listen", &format!("{address}:6443")])
            .args(["--node-grace-seconds", "5"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        let pid = lab
            .spawn_on_node(node, command)
            .expect("start skiff-control")
            .id();
        let admin_conf: Value = eventually(Duration::from_secs(20), "admin.conf", || {
            serde_json::from_str(&std::fs::read_to_string(data.path().join("admin.conf")).ok()?)
                .ok()
        });
        let admin = Admin::new(lab, node, &admin_conf);
        eventually(Duration::from_secs(10), "the API", || {
            (admin
                .call(reqwest::Method::GET, "/api/v1/namespaces", None)
                .0
                == 200)
                .then_some(())
        });
        let join_token = std::fs::read_to_string(data.path().join("join-token")).unwrap();
        let node_conf = data.path().join("node.conf");
        std::fs::write(
            &node_conf,
            json!({"server": admin_conf["server"], "certificateAuthorityData": admin_conf["certificateAuthorityData"],
                "token": join_token.trim()})
            .to_string(),
        )
        .unwrap();
        ControlPlane {
            data,
            pid,
            admin,
            admin_conf,
            node_conf,
        }
    }

    pub fn admin_conf_path(&self) -> PathBuf {
        self.data.path().join("admin.conf")
    }
}

/// Starts `skiff-node ARGS` on `node` and waits for it to print "ready"; its log goes to
/// `log` when given. Returns the daemon's pid.
pub fn start_daemon(lab: &mut Lab, node: NodeId, args: &[String], log: Option<&Path>) -> u32 {
    use std::io::BufRead as _;
    let mut command = Command::new(DAEMON);
    command
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped());
    match log {
        Some(path) => command.stderr(std::fs::File::create(path).unwrap()),
        None => command.stderr(Stdio::null()),
    };
    let child = lab.spawn_on_node(node, command).expect("start skiff-node");
    let pid = child.id();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "skiff-node did not start: {args:?}");
    pid
}

/// An admin client that runs inside the control plane's node namespace.
pub struct Admin {
    base: String,
    client: reqwest::blocking::Client,
}

impl Admin {
    pub fn new(lab: &Lab, node: NodeId, admin_conf: &Value) -> Admin {
        // Threads inherit the namespace of the thread that creates them: building the
        // client inside the node puts its connections there.
        let ca = admin_conf["certificateAuthorityData"]
            .as_str()
            .unwrap()
            .to_string();
        let token = admin_conf["token"].as_str().unwrap().to_string();
        let client = lab.node(node).netns.run(|| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
            reqwest::blocking::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
                .default_headers(headers)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap()
        });
        Admin {
            base: admin_conf["server"].as_str().unwrap().to_string(),
            client,
        }
    }

    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            request = request.json(b);
        }
        match request.send() {
            Ok(r) => {
                let code = r.status().as_u16();
                (code, r.json().unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// A call whose answer is text (logs), with its status code.
    pub fn call_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, String) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            request = request.json(b);
        }
        match request.send() {
            Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    pub fn get(&self, path: &str) -> Value {
        let (code, body) = self.call(reqwest::Method::GET, path, None);
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    }

    pub fn apply(&self, objects: &[Value]) {
        let (code, body) = self.call(
            reqwest::Method::POST,
            "/api/v1/apply",
            Some(&json!({"objects": objects})),
        );
        assert_eq!(code, 200, "apply: {body}");
    }
}

pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One node's daemon: its state folder (records, containers, netns files) and arguments.
pub struct NodeDaemon {
    pub node: NodeId,
    pub name: &'static str,
    pub state: PathBuf,
    pub pid: u32,
    /// `--runtime` and, for docker, the engine's socket.
    pub runtime: (&'static str, Option<PathBuf>),
    /// More `skiff-node run` arguments.
    pub extra: Vec<String>,
}

impl NodeDaemon {
    pub fn args(&self, lab: &Lab, node_conf: &Path) -> Vec<String> {
        let n = lab.node(self.node);
        let probe = skiff_lab::probe_binary().expect("skiff-probe");
        let socket = self.runtime.1.as_ref().map(|s| s.display().to_string());
        let mut args: Vec<String> = [
            "run",
            "--runtime",
            self.runtime.0,
            "--state-dir",
            &self.state.display().to_string(),
            "--pod-netns-dir",
            &self.state.join("netns").display().to_string(),
            "--pod-cgroup",
            &n.cgroup.join("pods").display().to_string(),
            "--probe-binary",
            &probe.display().to_string(),
            "--pin-dir",
            &pin_dir(lab, self.node).display().to_string(),
            "--uplink",
            n.uplink,
            "--control-plane",
            &node_conf.display().to_string(),
            "--node-name",
            self.name,
            "--heartbeat-seconds",
            "1",
            "--api",
            &format!("{}:10250", n.address),
            // The lab has no way out: names outside the cluster are refused at once.
            "--dns-upstream",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(socket) = socket {
            args.extend(["--docker-socket".into(), socket]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    pub fn start(&mut self, lab: &mut Lab, node_conf: &Path) {
        let args = self.args(lab, node_conf);
        let log = self.state.with_extension("log");
        self.pid = start_daemon(lab, self.node, &args, Some(&log));
    }

    pub fn kill(&self) {
        // SAFETY: plain kill(2) of a child this test started.
        assert_eq!(unsafe { libc::kill(self.pid as i32, libc::SIGKILL) }, 0);
        let mut status = 0;
        // SAFETY: reaps that child.
        unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
    }
}

/// Unmounts the pod network namespaces a failed test may leave in its state folders.
pub struct NetnsGuard(pub Vec<PathBuf>);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for dir in &self.0 {
            for entry in std::fs::read_dir(dir.join("netns"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

pub fn pod_path(name: &str) -> String {
    format!("/api/v1/namespaces/default/pods/{name}")
}

pub fn pod_status(admin: &Admin, name: &str) -> Value {
    admin.call(Method::GET, &pod_path(name), None).1
}

pub fn container_status(admin: &Admin, name: &str) -> Value {
    pod_status(admin, name)["status"]["containerStatuses"][0].clone()
}

pub fn is_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

pub fn exec(admin: &Admin, pod: &str, command: &[&str]) -> Value {
    let (code, body) = admin.call(
        Method::POST,
        &format!("{}/exec", pod_path(pod)),
        Some(&json!({"command": command, "timeoutSeconds": 10})),
    );
    assert_eq!(code, 200, "exec in {pod}: {body}");
    body
}
