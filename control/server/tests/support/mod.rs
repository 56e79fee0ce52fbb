//! Starts real `skiff-control` processes and talks to them over HTTPS, as clients do.
#![allow(dead_code)]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub struct Control {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub port: u16,
    pub args: Vec<String>,
    pub api: Api,
    _tmp: Option<tempfile::TempDir>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Control {
    /// A control plane on the embedded store in a fresh directory.
    pub fn embedded(extra: &[&str]) -> Control {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut control = Control::start_in(&dir, extra);
        control._tmp = Some(tmp);
        control
    }

    /// A control plane on etcd (`endpoint`), keys under `prefix`.
    pub fn etcd(endpoint: &str, prefix: &str, extra: &[&str]) -> Control {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut args = vec![
            "--store",
            "etcd",
            "--etcd-endpoints",
            endpoint,
            "--etcd-prefix",
            prefix,
        ];
        args.extend_from_slice(extra);
        let mut control = Control::start_in(&dir, &args);
        control._tmp = Some(tmp);
        control
    }

    pub fn start_in(dir: &Path, extra: &[&str]) -> Control {
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            dir.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = spawn(&args);
        let api = wait_ready(dir, port);
        Control {
            child: Some(child),
            dir: dir.to_path_buf(),
            port,
            args,
            api,
            _tmp: None,
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same instance again (same data dir and port).
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn(&self.args));
        self.api = wait_ready(&self.dir, self.port);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_skiff-control"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start skiff-control")
}

fn wait_ready(dir: &Path, port: u16) -> Api {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("admin.conf")) {
            let config: Value = serde_json::from_str(&text).expect("admin.conf is JSON");
            let api = Api::new(
                &format!("https://127.0.0.1:{port}"),
                config["certificateAuthorityData"].as_str().unwrap(),
                Some(config["token"].as_str().unwrap()),
            );
            if api.raw("GET", "/healthz", None).map(|r| r.0) == Ok(200) {
                return api;
            }
        }
        assert!(
            Instant::now() < deadline,
            "skiff-control did not become ready on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A blocking HTTPS client that verifies the server against the cluster CA.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub ca: String,
    pub token: Option<String>,
    client: reqwest::blocking::Client,
}

impl Api {
    pub fn new(base: &str, ca_pem: &str, token: Option<&str>) -> Api {
        let client = reqwest::blocking::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        Api {
            base: base.into(),
            ca: ca_pem.into(),
            token: token.map(Into::into),
            client,
        }
    }

    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api::new(&self.base, &self.ca, token)
    }

    /// (status code, body as JSON or Null)
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request.send().map_err(|e| e.to_string())?;
        let code = response.status().as_u16();
        let text = response.text().map_err(|e| e.to_string())?;
        Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.raw(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Asserts the code and returns the body.
    pub fn expect(&self, method: &str, path: &str, body: Option<&Value>, code: u16) -> Value {
        let (got, value) = self.call(method, path, body);
        assert_eq!(got, code, "{method} {path} -> {got}: {value}");
        value
    }

    /// Opens a watch and returns the streamed response to read lines from.
    pub fn watch(&self, path: &str) -> Result<reqwest::blocking::Response, (u16, Value)> {
        let client = reqwest::blocking::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca.as_bytes()).unwrap())
            .build()
            .unwrap();
        let mut request = client.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let response = request.send().expect("watch request");
        let code = response.status().as_u16();
        if code != 200 {
            let body = response.json().unwrap_or(Value::Null);
            return Err((code, body));
        }
        Ok(response)
    }
}

/// Polls `check` until it returns Some or `timeout` passes.
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

/// Skips (developer machine) or fails (CI) when etcd is not installed.
pub fn etcd() -> Option<skiff_store::testing::EtcdServer> {
    match skiff_store::testing::EtcdServer::start() {
        Ok(e) => Some(e),
        Err(e) if std::env::var("CI").is_err() => {
            eprintln!("skipping: etcd not available ({e}); `cargo xtask setup` installs it");
            None
        }
        Err(e) => panic!("etcd must run under CI: {e}"),
    }
}
