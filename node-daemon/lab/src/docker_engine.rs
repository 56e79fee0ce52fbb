//! A Docker engine of the test's own: containerd and dockerd with every path (state, data,
//! sockets, pid files) under a fresh folder in /tmp, `--bridge=none --iptables=false` so
//! they touch no network configuration, stopped and removed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

static ENGINE_SEQUENCE: AtomicU32 = AtomicU32::new(0);

pub struct DockerEngine {
    dir: PathBuf,
    containerd: Child,
    dockerd: Child,
}

fn binary(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

impl DockerEngine {
    /// Starts an engine for `test`. Without root or without Docker installed it returns
    /// `None` (a skip), except under `CI=true`, where that is a failure.
    pub fn start_or_skip(test: &str) -> Option<DockerEngine> {
        if !crate::privileged() {
            return None;
        }
        let missing = missing_docker_binaries();
        if !missing.is_empty() {
            let message = format!("{test}: {missing:?} not installed (`cargo xtask setup` installs docker.io, containerd and runc)");
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("{message}");
            }
            eprintln!("skipping: {message}");
            return None;
        }
        Some(DockerEngine::start().unwrap_or_else(|e| panic!("{test}: starting dockerd: {e}")))
    }

    fn start() -> std::io::Result<DockerEngine> {
        let dir = PathBuf::from(format!(
            "/tmp/skiff-docker-{}-{}",
            std::process::id(),
            ENGINE_SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut commands = EngineCommands::new(&dir)?;
        let containerd = commands.containerd.spawn()?;
        let dockerd = commands.dockerd.spawn()?;
        let engine = DockerEngine {
            dir,
            containerd,
            dockerd,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(engine.socket()).is_err() {
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(engine.dir.join("dockerd.log")).unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "dockerd did not listen within 30 s: {log}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(engine)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The two processes of an engine whose every path is under one folder, for callers that run
/// them themselves (a local cluster starts one engine per node inside its lab).
pub struct EngineCommands {
    pub containerd: Command,
    pub dockerd: Command,
    /// Where dockerd will listen.
    pub socket: PathBuf,
}

impl EngineCommands {
    /// Writes the engine's configs into `dir` (made if missing); logs go to
    /// `dir/containerd.log` and `dir/dockerd.log`.
    pub fn new(dir: &Path) -> std::io::Result<EngineCommands> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{d}/containerd-root\"\nstate = \"{d}/containerd-state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{d}/containerd.sock\"\n\
                 [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
                 [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
                d = dir.display()
            ),
        )?;
        let log = |name: &str| std::fs::File::create(dir.join(name));
        let mut containerd = Command::new("containerd");
        containerd
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log("containerd.log")?);
        let daemon_json = dir.join("daemon.json");
        std::fs::write(&daemon_json, "{}")?;
        let socket = dir.join("docker.sock");
        let mut dockerd = Command::new("dockerd");
        dockerd
            .arg("--config-file")
            .arg(&daemon_json)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--containerd")
            .arg(dir.join("containerd.sock"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--userland-proxy=false",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log("dockerd.log")?);
        Ok(EngineCommands {
            containerd,
            dockerd,
            socket,
        })
    }
}

/// Whether containerd, dockerd and runc are installed; the missing ones otherwise.
pub fn missing_docker_binaries() -> Vec<&'static str> {
    ["containerd", "dockerd", "runc"]
        .into_iter()
        .filter(|b| binary(b).is_none())
        .collect()
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        // Containers a failed test left running: their shims would outlive the engine.
        let host = format!("unix://{}", self.socket().display());
        if let Ok(out) = Command::new("docker")
            .args(["-H", &host, "ps", "-aq"])
            .output()
        {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["-H", &host, "rm", "-f"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for child in [&mut self.dockerd, &mut self.containerd] {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Container shims outlive containerd; their mounts would pin the folder.
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let prefix = self.dir.display().to_string();
            let mut inside: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|m| m.starts_with(&prefix))
                .collect();
            inside.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in inside {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
