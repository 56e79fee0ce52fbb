//! A throwaway single-member etcd for tests: its own data directory and ports, killed (and its
//! directory removed) when dropped. Needs Debian's `etcd-server` package (`/usr/bin/etcd`,
//! installed by `cargo xtask setup`).

use std::{
    io::{self, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// How long etcd gets to start answering.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running etcd, for tests. See [`EtcdServer::start_or_skip`] for the usual entry point.
pub struct EtcdServer {
    child: Child,
    endpoint: String,
    dir: PathBuf,
}

impl EtcdServer {
    /// Where Debian's `etcd-server` package installs etcd.
    pub const BINARY: &'static str = "/usr/bin/etcd";

    /// Starts etcd on free local ports and waits (up to 10 s) until its v3 API answers.
    pub fn start() -> io::Result<EtcdServer> {
        if !std::path::Path::new(Self::BINARY).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is missing: install the etcd-server package (cargo xtask setup)",
                    Self::BINARY
                ),
            ));
        }
        // Ports are picked by binding :0 and released just before etcd binds them, so another
        // process can win the race now and then: try again with new ports.
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_once() {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// For tests: a running etcd, or `None` (after printing why) when etcd is not installed
    /// and this is not CI. Under CI (`CI` set) a missing etcd fails the test instead, so a
    /// machine without it can never pass silently.
    pub fn start_or_skip(test: &str) -> Option<EtcdServer> {
        let missing = !std::path::Path::new(Self::BINARY).exists();
        if missing && std::env::var_os("CI").is_none() {
            eprintln!(
                "skipping {test}: {} is missing (install etcd-server, e.g. cargo xtask setup)",
                Self::BINARY
            );
            return None;
        }
        match Self::start() {
            Ok(server) => Some(server),
            Err(e) => panic!("{test}: could not start etcd: {e}"),
        }
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// What etcd has logged so far (errors only), for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn start_once() -> io::Result<EtcdServer> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("skiff-test-{}-{n}-{nanos}", std::process::id());
        let dir = scratch_root().join(&name);
        std::fs::create_dir_all(&dir)?;

        let client_port = TcpListener::bind("127.0.0.1:0")?;
        let peer_port = TcpListener::bind("127.0.0.1:0")?;
        let client = format!("http://{}", client_port.local_addr()?);
        let peer = format!("http://{}", peer_port.local_addr()?);
        drop((client_port, peer_port));

        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let mut command = Command::new(Self::BINARY);
        command
            .arg("--name")
            .arg(&name)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .arg("--initial-cluster")
            .arg(format!("{name}={peer}"))
            .args(["--logger", "zap", "--log-level", "error"])
            // A lone member still waits for an election; at these (local-only) timings it
            // leads within ~0.1 s instead of ~0.7 s.
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The caller's environment must not configure this etcd (etcd reads ETCD_* variables).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let child = command.spawn()?;
        let mut server = EtcdServer {
            child,
            endpoint: client,
            dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let started = Instant::now();
        let address = self.endpoint.trim_start_matches("http://").to_string();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "etcd exited ({status}) before answering: {}",
                    self.log()
                )));
            }
            if answers(&address) {
                return Ok(());
            }
            if started.elapsed() > READY_WITHIN {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd at {} did not answer within {READY_WITHIN:?}: {}",
                        self.endpoint,
                        self.log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// Where test etcds keep their data: tmpfs when there is one, because etcd fsyncs every write
/// and tests measure behaviour, not the disk (on a disk, 800 contended writes take seconds).
fn scratch_root() -> PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Whether etcd's v3 gateway answers a range request (plain HTTP, so no async runtime is
/// needed to start a server).
fn answers(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let body = r#"{"key":"AA=="}"#;
    let request = format!(
        "POST /v3/kv/range HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
