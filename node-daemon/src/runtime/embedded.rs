//! The embedded runtime: containers as namespaced processes under an init shim.
//!
//! `start` spawns `skiff-node container-init start DIR` after joining the container's
//! cgroups, entering the pod's network namespace and unsharing mount, UTS and PID
//! namespaces. That process forks the shim proper, which is PID 1 of the new PID namespace,
//! prints its host pid and exits; the shim is thereby nobody's child in the daemon and
//! survives it. The shim runs the command, keeps its log and records how it ended.
//!
//! Everything the daemon knows about a container is in `STATE_DIR/ID/`: `container.json`
//! (spec, cgroup, shim pid and its start time, which tells a live shim from a reused pid),
//! `exit.json` once it ended, and `log` / `log.1`.

use std::{
    fs::{File, OpenOptions},
    io::Read,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{
    cgroup::{CgroupError, ContainerCgroup},
    logs::FileLog,
    ContainerId, ContainerSpec, ContainerState, ExecOutput, Runtime, RuntimeError, Sandbox, Usage,
};

pub(crate) const RECORD_FILE: &str = "container.json";
pub(crate) const EXIT_FILE: &str = "exit.json";
const LOG_FILE: &str = "log";

/// Rotate a container's log past this size, keeping one previous file (`log.1`).
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 << 20;

/// Exit code of `container-init exec` when it failed before running the command;
/// its stderr then starts with [`EXEC_SETUP_ERROR`].
pub(crate) const EXEC_SETUP_EXIT_CODE: i32 = 125;
pub(crate) const EXEC_SETUP_ERROR: &str = "skiff-node container-init:";

static ID_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The container's record, written by the daemon and read by the shim.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: ContainerId,
    pub spec: ContainerSpec,
    pub cgroup: ContainerCgroup,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    /// Absent only while the shim is being started.
    pub shim: Option<ShimProcess>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct ShimProcess {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: with the pid, identifies the process across pid reuse.
    pub start_ticks: u64,
    pub started: SystemTime,
}

/// How the container ended; written by the shim, or by the daemon when the shim could not.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub finished: SystemTime,
}

impl From<ExitRecord> for ContainerState {
    fn from(e: ExitRecord) -> ContainerState {
        ContainerState::Exited {
            code: e.code,
            signal: e.signal,
            oom_killed: e.oom_killed,
            finished: e.finished,
        }
    }
}

/// Writes through a temporary file so that a reader (or a crash) never sees half a file.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

/// `Ok(None)` when the file does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(
    container: &str,
    path: &Path,
) -> Result<Option<T>, RuntimeError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RuntimeError::io(container, "reading", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| RuntimeError::StateFile {
            container: container.to_string(),
            path: path.to_path_buf(),
            source,
        })
}

/// State and start time of a process, from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields resume after the
    // last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

fn shim_alive(shim: &ShimProcess) -> bool {
    proc_stat(shim.pid)
        .is_some_and(|(state, start)| start == shim.start_ticks && state != 'Z' && state != 'X')
}

/// The environment every process in a container starts with; the spec's entries win.
pub(crate) fn container_env(spec: &ContainerSpec) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOSTNAME".to_string(), spec.hostname.clone()),
        ("HOME".to_string(), "/".to_string()),
    ];
    env.extend(spec.env.iter().cloned());
    env
}

fn cgroup_error(container: &str, e: CgroupError) -> RuntimeError {
    RuntimeError::Io {
        container: container.to_string(),
        step: e.step,
        path: e.path,
        source: e.source,
    }
}

/// Opens the files a child writes "0" into to join the cgroups; opened before the fork
/// because the child may only make async-signal-safe calls.
fn open_procs_files(container: &str, cgroup: &ContainerCgroup) -> Result<Vec<File>, RuntimeError> {
    cgroup
        .procs_files()
        .iter()
        .map(|path| {
            OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(RuntimeError::io(container, "opening the cgroup", path))
        })
        .collect()
}

/// For `pre_exec`: moves the calling process into each cgroup.
fn join_cgroups(procs: &[File]) -> std::io::Result<()> {
    for file in procs {
        // SAFETY: write(2) on an open descriptor from a valid buffer.
        if unsafe { libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// For `pre_exec`: blocks the signals the shim and the exec helper wait for, so that they
/// queue until those processes take them. Delivered earlier, SIGTERM would be dropped by
/// the shim (a PID 1 without a handler) or would kill the helper without its command.
fn block_stop_signals() -> std::io::Result<()> {
    // SAFETY: sigset manipulation on a local value, then sigprocmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD] {
            libc::sigaddset(&mut set, signal);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[derive(Clone)]
pub struct EmbeddedRuntime {
    state_dir: PathBuf,
    shim: PathBuf,
    log_max_bytes: u64,
}

impl EmbeddedRuntime {
    /// A runtime keeping its records in `state_dir` (created if missing). The shim is the
    /// running executable, which must be `skiff-node`.
    pub fn new(state_dir: &Path) -> Result<EmbeddedRuntime, RuntimeError> {
        std::fs::create_dir_all(state_dir).map_err(RuntimeError::io(
            "-",
            "creating the state directory",
            state_dir,
        ))?;
        let shim = std::env::current_exe().map_err(RuntimeError::io(
            "-",
            "finding the skiff-node executable",
            Path::new("/proc/self/exe"),
        ))?;
        Ok(EmbeddedRuntime {
            state_dir: state_dir.to_path_buf(),
            shim,
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
        })
    }

    /// Uses another `skiff-node` executable as the shim (tests, which are not skiff-node).
    pub fn with_shim(mut self, shim: &Path) -> EmbeddedRuntime {
        self.shim = shim.to_path_buf();
        self
    }

    /// The container's current log file (`log.1` beside it holds the rotated part).
    pub fn log_path(&self, id: &ContainerId) -> PathBuf {
        self.dir(id).join(LOG_FILE)
    }

    pub fn with_log_max_bytes(mut self, bytes: u64) -> EmbeddedRuntime {
        self.log_max_bytes = bytes.max(1);
        self
    }

    fn dir(&self, id: &ContainerId) -> PathBuf {
        self.state_dir.join(&id.0)
    }

    fn load(&self, id: &ContainerId) -> Result<Record, RuntimeError> {
        read_json(&id.0, &self.dir(id).join(RECORD_FILE))?
            .ok_or_else(|| RuntimeError::NotFound(id.clone()))
    }

    fn read_exit(&self, id: &ContainerId) -> Result<Option<ExitRecord>, RuntimeError> {
        read_json(&id.0, &self.dir(id).join(EXIT_FILE))
    }

    fn write_exit(&self, id: &ContainerId, exit: &ExitRecord) -> Result<(), RuntimeError> {
        let path = self.dir(id).join(EXIT_FILE);
        write_json(&path, exit).map_err(RuntimeError::io(&id.0, "recording the exit", &path))
    }

    /// A unique id that says whose container it is: `NAMESPACE_POD_CONTAINER_SUFFIX`.
    fn new_id(spec: &ContainerSpec) -> ContainerId {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let suffix = nanos ^ ID_SEQUENCE.fetch_add(1, Ordering::Relaxed).rotate_right(7);
        let readable: String = format!("{}_{}", spec.pod.replace('/', "_"), spec.name)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        ContainerId(format!("{readable}_{suffix:x}"))
    }

    fn validate(spec: &ContainerSpec) -> Result<(), RuntimeError> {
        let invalid = |reason: &str| RuntimeError::InvalidSpec {
            container: format!("{}/{}", spec.pod, spec.name),
            reason: reason.to_string(),
        };
        if spec.argv.is_empty() {
            return Err(invalid("no command"));
        }
        if spec.name.is_empty() || spec.name.contains('/') {
            return Err(invalid("the name must be non-empty and without '/'"));
        }
        if spec.hostname.is_empty() || spec.hostname.len() > 64 {
            return Err(invalid("the hostname must have 1 to 64 characters"));
        }
        Ok(())
    }

    fn start_in(
        &self,
        id: &ContainerId,
        dir: &Path,
        sandbox: &Sandbox,
        spec: &ContainerSpec,
        cgroup: &mut Option<ContainerCgroup>,
    ) -> Result<(), RuntimeError> {
        let name = id.0.as_str();
        let created = ContainerCgroup::create(
            &sandbox.cgroup,
            name,
            spec.cpu_limit_millis,
            spec.memory_limit_bytes,
        )
        .map_err(|e| cgroup_error(name, e))?;
        let mut record = Record {
            id: id.clone(),
            spec: spec.clone(),
            cgroup: cgroup.insert(created).clone(),
            log_path: dir.join(LOG_FILE),
            log_max_bytes: self.log_max_bytes,
            shim: None,
        };
        let record_path = dir.join(RECORD_FILE);
        write_json(&record_path, &record).map_err(RuntimeError::io(
            name,
            "writing the record",
            &record_path,
        ))?;
        let netns = File::open(&sandbox.netns).map_err(RuntimeError::io(
            name,
            "opening the pod's network namespace",
            &sandbox.netns,
        ))?;
        let procs = open_procs_files(name, &record.cgroup)?;
        let mut command = Command::new(&self.shim);
        command
            .arg("container-init")
            .arg("start")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe system calls on descriptors opened before the fork.
        unsafe {
            command.pre_exec(move || {
                block_stop_signals()?;
                join_cgroups(&procs)?;
                if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The PID namespace applies to the shim's children: the shim forks its
                // PID 1 right away.
                if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWPID) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Its own session: the daemon's terminal and process group signals do not
                // reach containers.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let output = command.output().map_err(RuntimeError::io(
            name,
            "starting the init shim",
            &self.shim,
        ))?;
        let shim_error = |message: String| RuntimeError::Shim {
            container: name.to_string(),
            shim: self.shim.clone(),
            message,
        };
        if !output.status.success() {
            return Err(shim_error(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let pid: u32 = stdout
            .trim()
            .parse()
            .map_err(|_| shim_error(format!("expected its pid, got {stdout:?}")))?;
        // A shim gone already (its command failed at once) has left its exit record.
        let start_ticks = proc_stat(pid).map_or(0, |(_, start)| start);
        record.shim = Some(ShimProcess {
            pid,
            start_ticks,
            started: SystemTime::now(),
        });
        write_json(&record_path, &record).map_err(RuntimeError::io(
            name,
            "writing the record",
            &record_path,
        ))
    }

    /// Waits until the shim is gone; false on timeout.
    fn wait_gone(shim: &ShimProcess, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while shim_alive(shim) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn kill_now(record: &Record) {
        record.cgroup.kill();
        if let Some(shim) = &record.shim {
            if shim_alive(shim) {
                let _ = kill(Pid::from_raw(shim.pid as i32), Signal::SIGKILL);
                Self::wait_gone(shim, Duration::from_secs(5));
            }
        }
    }
}

impl Runtime for EmbeddedRuntime {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn start(&self, sandbox: &Sandbox, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        Self::validate(spec)?;
        let id = Self::new_id(spec);
        let dir = self.dir(&id);
        std::fs::create_dir(&dir).map_err(RuntimeError::io(
            &id.0,
            "creating the container directory",
            &dir,
        ))?;
        let mut cgroup = None;
        if let Err(e) = self.start_in(&id, &dir, sandbox, spec, &mut cgroup) {
            if let Some(cgroup) = cgroup {
                cgroup.remove();
            }
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(id)
    }

    fn state(&self, id: &ContainerId) -> Result<ContainerState, RuntimeError> {
        let record = self.load(id)?;
        if let Some(exit) = self.read_exit(id)? {
            return Ok(exit.into());
        }
        if let Some(shim) = &record.shim {
            if shim_alive(shim) {
                return Ok(ContainerState::Running {
                    pid: shim.pid,
                    started: shim.started,
                });
            }
        }
        // The shim records the exit just before it ends, so look again.
        if let Some(exit) = self.read_exit(id)? {
            return Ok(exit.into());
        }
        let exit = ExitRecord {
            code: None,
            signal: None,
            oom_killed: record.cgroup.oom_kills() > 0,
            finished: SystemTime::now(),
        };
        self.write_exit(id, &exit)?;
        Ok(exit.into())
    }

    fn stop(&self, id: &ContainerId, grace: Duration) -> Result<ContainerState, RuntimeError> {
        let record = self.load(id)?;
        let Some(shim) = record.shim.filter(shim_alive) else {
            return self.state(id);
        };
        // The shim passes SIGTERM on to the command and ends when the command does.
        let _ = kill(Pid::from_raw(shim.pid as i32), Signal::SIGTERM);
        if Self::wait_gone(&shim, grace) {
            return self.state(id);
        }
        Self::kill_now(&record);
        if let Some(exit) = self.read_exit(id)? {
            return Ok(exit.into());
        }
        // The shim died with its command and could not record how.
        let exit = ExitRecord {
            code: None,
            signal: Some(libc::SIGKILL),
            oom_killed: record.cgroup.oom_kills() > 0,
            finished: SystemTime::now(),
        };
        self.write_exit(id, &exit)?;
        Ok(exit.into())
    }

    fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let record = self.load(id)?;
        Self::kill_now(&record);
        record.cgroup.remove();
        let dir = self.dir(id);
        std::fs::remove_dir_all(&dir).map_err(RuntimeError::io(
            &id.0,
            "removing the container directory",
            &dir,
        ))
    }

    fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let name = id.0.as_str();
        if argv.is_empty() {
            return Err(RuntimeError::InvalidSpec {
                container: name.to_string(),
                reason: "exec without a command".into(),
            });
        }
        let record = self.load(id)?;
        if !record.shim.as_ref().is_some_and(shim_alive) {
            return Err(RuntimeError::NotRunning(id.clone()));
        }
        let procs = open_procs_files(name, &record.cgroup)?;
        let mut command = Command::new(&self.shim);
        command
            .arg("container-init")
            .arg("exec")
            .arg(self.dir(id))
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe system calls on descriptors opened before the fork.
        unsafe {
            command.pre_exec(move || {
                block_stop_signals()?;
                join_cgroups(&procs)
            });
        }
        let mut child = command.spawn().map_err(RuntimeError::io(
            name,
            "starting the exec helper",
            &self.shim,
        ))?;
        // Shared buffers rather than joined threads: a process the command left in the
        // background may hold the pipes open for as long as it likes.
        let readers = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .map(|pipe| {
            let buffer = Arc::new(Mutex::new((Vec::new(), false)));
            if let Some(mut pipe) = pipe {
                let shared = buffer.clone();
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 8192];
                    loop {
                        let n = pipe.read(&mut chunk).unwrap_or(0);
                        let mut buffer = shared.lock().unwrap_or_else(|e| e.into_inner());
                        if n == 0 {
                            buffer.1 = true;
                            return;
                        }
                        buffer.0.extend_from_slice(&chunk[..n]);
                    }
                });
            } else {
                buffer.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
            }
            buffer
        });
        let deadline = Instant::now() + timeout;
        let wait = |child: &mut std::process::Child| {
            child.try_wait().map_err(RuntimeError::io(
                name,
                "waiting for the exec helper",
                &self.shim,
            ))
        };
        let status = loop {
            if let Some(status) = wait(&mut child)? {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let Some(status) = status else {
            // The helper answers SIGTERM by killing the command's process group.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let grace = Instant::now() + Duration::from_secs(1);
            while wait(&mut child)?.is_none() {
                if Instant::now() > grace {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            return Err(RuntimeError::ExecTimeout {
                container: name.to_string(),
                argv: argv.to_vec(),
                timeout,
            });
        };
        let drain = Instant::now() + Duration::from_millis(200);
        while readers
            .iter()
            .any(|r| !r.lock().unwrap_or_else(|e| e.into_inner()).1)
            && Instant::now() < drain
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let [stdout, stderr] =
            readers.map(|r| std::mem::take(&mut r.lock().unwrap_or_else(|e| e.into_inner()).0));
        let exit_code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        if exit_code == EXEC_SETUP_EXIT_CODE && stderr.starts_with(EXEC_SETUP_ERROR.as_bytes()) {
            return Err(RuntimeError::Shim {
                container: name.to_string(),
                shim: self.shim.clone(),
                message: String::from_utf8_lossy(&stderr).trim().to_string(),
            });
        }
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }

    fn logs(&self, id: &ContainerId, follow: bool) -> Result<Box<dyn Read + Send>, RuntimeError> {
        self.load(id)?;
        let alive: Option<Box<dyn Fn() -> bool + Send>> = follow.then(|| {
            let (runtime, id) = (self.clone(), id.clone());
            Box::new(move || runtime.state(&id).is_ok_and(|s| s.is_running()))
                as Box<dyn Fn() -> bool + Send>
        });
        Ok(Box::new(FileLog::new(&self.log_path(id), alive)))
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, RuntimeError> {
        let record = self.load(id)?;
        record.cgroup.usage().map_err(|e| cgroup_error(&id.0, e))
    }

    fn list(&self) -> Result<Vec<(ContainerId, ContainerSpec)>, RuntimeError> {
        let entries = std::fs::read_dir(&self.state_dir).map_err(RuntimeError::io(
            "-",
            "listing containers",
            &self.state_dir,
        ))?;
        let mut containers = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let id = ContainerId(entry.file_name().to_string_lossy().into_owned());
            // One unreadable record must not hide the other containers from adoption.
            match read_json::<Record>(&id.0, &entry.path().join(RECORD_FILE)) {
                Ok(Some(record)) if record.shim.is_some() => containers.push((id, record.spec)),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping a container record"),
            }
        }
        containers.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(containers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_stat_is_parsed() {
        let (state, start) = proc_stat(std::process::id()).expect("own stat");
        assert!(matches!(state, 'R' | 'S'));
        assert!(start > 0);
    }

    #[test]
    fn ids_are_unique_and_readable() {
        let spec = ContainerSpec {
            pod: "default/web server".into(),
            name: "app".into(),
            image: None,
            image_entrypoint: false,
            argv: vec!["true".into()],
            env: vec![],
            working_dir: None,
            hostname: "web".into(),
            cpu_limit_millis: None,
            memory_limit_bytes: None,
            resolv_conf: None,
        };
        let (a, b) = (
            EmbeddedRuntime::new_id(&spec),
            EmbeddedRuntime::new_id(&spec),
        );
        assert_ne!(a, b);
        assert!(a.0.starts_with("default_web-server_app_"), "{a}");
    }
}
