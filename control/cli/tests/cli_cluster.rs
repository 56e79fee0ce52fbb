//! The cluster commands against a real `skiff-control` (embedded store, HTTPS, no nodes):
//! what a user types and reads, end to end. Needs no root.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use skiff_api::{Kind, NodeMetrics, Object, PodMetrics};

const MANIFESTS: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - {name: http, containerPort: 8080}
        resources:
          requests: {cpu: 100m, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-ingress
  namespace: shop
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: frontend}}}]
    ports: [{port: http}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: shop
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
";

/// A running `skiff-control` in a temporary data dir; killed when dropped.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skiff-control`, built beside `skiff` (`cargo xtask test` builds every binary first; a
/// lone `cargo test -p skiff-cli` builds it here).
fn control_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_skiff")).with_file_name("skiff-control");
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "skiff-control"])
            .status()
            .expect("running cargo build -p skiff-control");
        assert!(status.success(), "cargo build -p skiff-control failed");
    }
    path
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        // Port 0 would hide the port from admin.conf's reader until it is written; a port
        // that was free a moment ago is simpler.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(control_binary())
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting skiff-control");
        let config = dir.path().join("admin.conf");
        let mut server = Server { child, dir, config };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.config.is_file() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("skiff-control exited ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no admin.conf:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        let client = skiff_client::Client::from_config(&self.config).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        while let Err(e) = runtime.block_on(client.healthz()) {
            assert!(Instant::now() < deadline, "/healthz: {e}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `skiff ARGS`, which must succeed, and returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "skiff {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `skiff ARGS`, which must exit 1, and returns its standard error.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "skiff {args:?} did not fail:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// Retries `check` until it holds: controllers act a moment after a write.
    fn eventually(&self, what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(Instant::now() < deadline, "never: {what}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn cluster_commands_against_a_real_control_plane() {
    let server = Server::start();
    let files = tempfile::tempdir().unwrap();
    let shop = files.path().join("shop.yaml");
    std::fs::write(&shop, MANIFESTS).unwrap();
    let shop = shop.to_str().unwrap();

    assert_eq!(
        server.ok(&["apply", "-f", shop]),
        "namespace/shop created\n\
         deployment.apps/web created\n\
         service/web created\n\
         networkpolicy.networking.k8s.io/web-ingress created\n\
         horizontalpodautoscaler.autoscaling/web created\n"
    );
    let again = server.ok(&["apply", "-f", shop]);
    assert_eq!(again.matches(" unchanged\n").count(), 5, "{again}");

    // Kubernetes' list shape, so kubectl scripts keep working.
    let services = server.json(&["get", "services", "-n", "shop"]);
    assert_eq!(services["kind"], "List");
    let service = &services["items"][0];
    let ip: Ipv4Addr = service["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ip.octets()[..2], [10, 96], "{ip} is outside 10.96.0.0/16");
    assert_eq!(service["spec"]["ports"][0]["nodePort"], 30080);
    let table = server.ok(&["get", "svc", "-n", "shop"]);
    assert!(
        table.contains(&format!("web    NodePort   {ip}")),
        "{table}"
    );
    assert!(table.contains("80:30080/TCP"), "{table}");

    let deployments = server.ok(&["get", "deployments", "-n", "shop"]);
    let mut lines = deployments.lines();
    assert_eq!(
        lines.next(),
        Some("NAME   READY   UP-TO-DATE   AVAILABLE   AGE")
    );
    assert!(
        lines.next().unwrap().starts_with("web    0/2 "),
        "{deployments}"
    );

    // The deployment controller makes pods; with no node, they wait to be scheduled.
    let pods_of = |selector: &str| {
        server.json(&["get", "pods", "-n", "shop", "-l", selector])["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    server.eventually("two pods", || pods_of("app=web").len() == 2);
    assert!(pods_of("app=web,tier in (db)").is_empty());
    let pod = pods_of("app=web")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    server.eventually("the scheduler says why the pod waits", || {
        server
            .ok(&["describe", "pod", &pod, "-n", "shop"])
            .contains("PodScheduled   False    Unschedulable   0/0 nodes are available")
    });
    let described = server.ok(&["describe", "deployment", "web", "-n", "shop"]);
    for expected in [
        "Name:                   web\n",
        "Selector:               app=web\n",
        "Replicas:               2 desired | 2 updated | 2 total | 0 available | 2 unavailable\n",
        "ReplicaSets:\n",
    ] {
        assert!(
            described.contains(expected),
            "{expected:?} in:\n{described}"
        );
    }
    let described = server.ok(&["describe", "svc/web", "-n", "shop"]);
    assert!(
        described.contains("NodePort:                 http  30080/TCP"),
        "{described}"
    );

    assert_eq!(
        server.ok(&[
            "scale",
            "deployment",
            "web",
            "--replicas",
            "3",
            "-n",
            "shop"
        ]),
        "deployment.apps/web scaled\n"
    );
    let web = server.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(
        web["kind"], "Deployment",
        "one name asked: the object itself"
    );
    assert_eq!(web["spec"]["replicas"], 3);

    assert_eq!(
        server.ok(&["rollout", "restart", "deploy/web", "-n", "shop"]),
        "deployment.apps/web restarted\n"
    );
    let web = server.json(&["get", "deploy", "web", "-n", "shop"]);
    let restarted =
        &web["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
    assert!(
        restarted.as_str().is_some_and(|t| t.ends_with('Z')),
        "{web}"
    );
    server.eventually("a second revision", || {
        server
            .ok(&["rollout", "history", "deployment", "web", "-n", "shop"])
            .lines()
            .any(|l| l.starts_with("2 "))
    });

    // A broken manifest next to a good one: nothing at all is applied.
    let broken = files.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("a.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n",
    )
    .unwrap();
    std::fs::write(
        broken.join("b.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other2\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: other\n\
         spec:\n  ports:\n  - port: 80\n    targetPortt: 8080\n",
    )
    .unwrap();
    let error = server.fails(&["apply", "-f", broken.to_str().unwrap()]);
    assert!(
        error.contains("b.yaml: document 2 (line 14): ") && error.contains("targetPortt"),
        "{error}"
    );
    assert!(error.contains("nothing was applied"), "{error}");
    let missing = server.fails(&["get", "namespace", "other"]);
    assert_eq!(missing, "error: Namespace \"other\" not found\n");

    let deleted = server.ok(&["delete", "-f", shop]);
    assert_eq!(
        deleted,
        "horizontalpodautoscaler.autoscaling \"web\" deleted\n\
         networkpolicy.networking.k8s.io \"web-ingress\" deleted\n\
         service \"web\" deleted\n\
         deployment.apps \"web\" deleted\n\
         namespace \"shop\" deleted\n"
    );
    server.eventually("the namespace and all in it are gone", || {
        server.run(&["get", "namespace", "shop"]).status.code() == Some(1)
    });
    let out = server.run(&["get", "pods", "-n", "shop"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "No resources found in shop namespace.\n"
    );
}

#[test]
fn a_missing_config_says_where_to_find_one() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["get", "pods"])
        .env("HOME", home.path())
        .env_remove("SKIFF_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(
        error.starts_with("error: no config at ")
            && error
                .contains(".config/skiff/config: pass --config /var/lib/skiff-control/admin.conf"),
        "{error}"
    );
}

/// A node daemon's side through `skiff-client` (join, register, heartbeat status, usage),
/// then what `skiff` shows of it.
#[test]
fn nodes_join_report_usage_and_show_in_top() {
    let server = Server::start();
    let admin = skiff_client::Config::load(&server.config).unwrap();
    let join_token = std::fs::read_to_string(server.dir.path().join("join-token")).unwrap();
    let joiner = skiff_client::Client::new(&skiff_client::Config {
        token: join_token,
        ..admin.clone()
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let node_config = skiff_client::Config {
        token: runtime.block_on(joiner.join("n1")).unwrap(),
        ..admin
    };
    let node = skiff_client::Client::new(&node_config).unwrap();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let n1 = Object::from_json(
        Kind::Node,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi"},
                "allocatable": {"cpu": "4", "memory": "8Gi"},
                "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "lastHeartbeatTime": now}]
            }
        }),
    )
    .unwrap();
    let mut registration = n1.clone();
    if let Object::Node(n) = &mut registration {
        n.status = None;
    }
    runtime.block_on(async {
        // First contact creates the Node; then the node reports its status.
        node.update(&registration).await.unwrap();
        let (_, revision) = node.list(Kind::Node, None, None).await.unwrap();
        let mut watch = node
            .watch(Kind::Node, None, None, Some(&revision))
            .await
            .unwrap();
        node.update_status(&n1).await.unwrap();
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.type_, "MODIFIED");
        assert_eq!(
            event.object["status"]["addresses"][0]["address"],
            "10.0.0.5"
        );
        node.put_node_metrics(&NodeMetrics {
            node: "n1".into(),
            timestamp: now.clone(),
            cpu_millicores: 1000,
            memory_bytes: 2 << 30,
            pods: vec![PodMetrics {
                namespace: "default".into(),
                name: "web-1".into(),
                cpu_millicores: 250,
                memory_bytes: 64 << 20,
            }],
        })
        .await
        .unwrap();
    });

    let nodes = server.ok(&["get", "nodes", "-o", "wide"]);
    let row = nodes.lines().nth(1).unwrap();
    assert!(row.starts_with("n1     Ready "), "{nodes}");
    assert!(
        row.contains("10.0.0.5") && row.contains("10.244."),
        "{nodes}"
    );
    let described = server.ok(&["describe", "node", "n1"]);
    for expected in [
        "InternalIP:  10.0.0.5\n",
        "Allocatable:\n  cpu:     4\n",
        "Non-terminated Pods:",
    ] {
        assert!(
            described.contains(expected),
            "{expected:?} in:\n{described}"
        );
    }
    assert_eq!(
        server.ok(&["top", "nodes"]),
        "NAME   CPU(cores)   CPU%   MEMORY(bytes)   MEMORY%\n\
         n1     1000m        25%    2048Mi          25%\n"
    );
    assert_eq!(
        server.ok(&["top", "pods"]),
        "NAME    CPU(cores)   MEMORY(bytes)\nweb-1   250m         64Mi\n"
    );

    // A node token reads, but may not change what users own; the CLI says which token to use.
    let node_conf = server.dir.path().join("node.conf");
    std::fs::write(&node_conf, serde_json::to_string(&node_config).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--config")
        .arg(&node_conf)
        .args(["delete", "namespace", "default"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(
        error.starts_with("error: node n1 may write only") && error.contains("use the admin token"),
        "{error}"
    );
}

/// A stand-in node daemon for `logs` and `exec`: plain HTTP on 127.0.0.1 that accepts only
/// the SHA-256 of `token` as bearer. A followed log sends `first\n`, then waits for
/// `release` before `second\n`.
fn fake_daemon(token: &str, release: std::sync::mpsc::Receiver<()>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let digest: String = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let release = std::sync::Mutex::new(release);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                head.push(line.trim().to_string());
            }
            let target = head[0].split_whitespace().nth(1).unwrap().to_string();
            let authorized = head
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&format!("authorization: Bearer {digest}")));
            let mut answer = |code: u16, body: &str| {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            };
            if !authorized {
                answer(401, "bad token\n");
            } else if target.contains("container=nope") {
                answer(404, "container \"nope\" not found in pod default/web\n");
            } else if target.starts_with("/pods/default/web/log?follow=true") {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nfirst\n"
                );
                let _ = stream.flush();
                let _ = release
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
                let _ = stream.write_all(b"second\n");
            } else if target.starts_with("/pods/default/web/log") {
                answer(200, "one\ntwo\n");
            } else if target.starts_with("/pods/default/web/exec") {
                // The command, decoded enough for the test: ["true"] succeeds.
                let code = if target.contains("%5B%22true%22%5D") {
                    0
                } else {
                    3
                };
                answer(
                    200,
                    &serde_json::json!({"stdout": "hello\n", "stderr": "warn\n", "exitCode": code})
                        .to_string(),
                );
            } else {
                answer(404, &format!("no route {target}\n"));
            }
        }
    });
    port
}

#[test]
fn logs_and_exec_go_through_the_control_plane_to_the_node() {
    let server = Server::start();
    let admin = skiff_client::Config::load(&server.config).unwrap();
    let join_token = std::fs::read_to_string(server.dir.path().join("join-token")).unwrap();
    let joiner = skiff_client::Client::new(&skiff_client::Config {
        token: join_token,
        ..admin.clone()
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = runtime.block_on(joiner.join("n1")).unwrap();
    let (release, released) = std::sync::mpsc::channel();
    let port = fake_daemon(&token, released);
    let node = skiff_client::Client::new(&skiff_client::Config {
        token: token.clone(),
        ..admin
    })
    .unwrap();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let registration = Object::from_json(
        Kind::Node,
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
    )
    .unwrap();
    runtime.block_on(async {
        let Object::Node(mut n1) = node.update(&registration).await.unwrap() else {
            panic!("not a node")
        };
        n1.status = Some(
            serde_json::from_value(serde_json::json!({
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now}],
            }))
            .unwrap(),
        );
        node.update_status(&Object::Node(n1)).await.unwrap();
    });
    let files = tempfile::tempdir().unwrap();
    let manifest = files.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: n1\n  containers:\n  - name: app\n    image: skiff/probe\n",
    )
    .unwrap();
    server.ok(&["apply", "-f", manifest.to_str().unwrap()]);

    assert_eq!(server.ok(&["logs", "web"]), "one\ntwo\n");
    let error = server.fails(&["logs", "web", "-c", "nope"]);
    assert_eq!(
        error,
        format!("error: node n1 (daemon at 127.0.0.1:{port}): container \"nope\" not found in pod default/web\n")
    );
    assert_eq!(
        server.fails(&["logs", "nothere"]),
        "error: Pod \"nothere\" not found\n"
    );

    // -f prints each chunk as it comes: "first" is out while the node holds "second".
    let mut follow = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--config")
        .arg(&server.config)
        .args(["logs", "web", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "first\n");
    release.send(()).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "second\n");
    assert!(follow.wait().unwrap().success());

    // exec: the command's streams on skiff's, and its exit code as skiff's.
    let out = server.run(&["exec", "web", "--", "sh", "-c", "echo hello; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "warn\n");
    let out = server.run(&["exec", "web", "-c", "app", "--timeout", "5s", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    // A bad flag is a usage error (clap's exit code 2), caught before anything is sent.
    let out = server.run(&["exec", "web", "--timeout", "11m", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("expected a duration from 1s to 10m"),
        "{error}"
    );
}
