//! `skiff-node container-init`: the embedded runtime's init shim and exec helper.
//!
//! - `container-init start DIR`: started by the runtime already in the container's cgroup,
//!   network namespace and fresh mount/UTS/PID namespaces. Forks the shim (PID 1 of the
//!   new PID namespace), prints the shim's host pid and exits. The shim mounts the
//!   namespace's own /proc, sets the hostname, runs the command, reaps every orphan,
//!   passes SIGTERM/SIGINT on to the command, copies its output to the rotating log, and
//!   when the command ends, ends the rest of the namespace and records the exit.
//! - `container-init exec DIR -- ARGV...`: joins the running container's namespaces, runs
//!   ARGV there and exits with its status; SIGTERM kills the command's process group.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use nix::{
    errno::Errno,
    mount::{mount, MsFlags},
    sched::{setns, CloneFlags},
    sys::{
        signal::{kill, SigSet, Signal},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::{fork, sethostname, ForkResult, Pid},
};

use super::embedded::{
    container_env, read_json, write_json, ExitRecord, Record, EXEC_SETUP_ERROR,
    EXEC_SETUP_EXIT_CODE, EXIT_FILE, RECORD_FILE,
};

/// Exit code recorded when the command could not be started (as containerd reports it).
const START_ERROR_CODE: i32 = 128;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("usage: container-init start DIR | container-init exec DIR -- COMMAND [ARG...]")]
    Usage,
    #[error("{step} ({path}): {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{step}: {source}")]
    Sys { step: &'static str, source: Errno },
    #[error(transparent)]
    Record(#[from] super::RuntimeError),
    #[error("container in {0} was never started")]
    NotStarted(PathBuf),
}

fn io_at(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InitError {
    let path = path.to_path_buf();
    move |source| InitError::Io { step, path, source }
}

fn sys(step: &'static str) -> impl FnOnce(Errno) -> InitError {
    move |source| InitError::Sys { step, source }
}

/// Entry point of the hidden subcommand. `exec` never returns: it exits with the
/// command's status.
pub fn run(args: &[String]) -> Result<(), InitError> {
    match args {
        [mode, dir] if mode == "start" => start(Path::new(dir)),
        [mode, dir, separator, argv @ ..]
            if mode == "exec" && separator == "--" && !argv.is_empty() =>
        {
            let code = exec(Path::new(dir), argv).unwrap_or_else(|e| {
                eprintln!("{EXEC_SETUP_ERROR} {e}");
                EXEC_SETUP_EXIT_CODE
            });
            std::process::exit(code)
        }
        _ => Err(InitError::Usage),
    }
}

fn load(dir: &Path) -> Result<Record, InitError> {
    read_json(&dir.display().to_string(), &dir.join(RECORD_FILE))?
        .ok_or_else(|| InitError::NotStarted(dir.to_path_buf()))
}

fn start(dir: &Path) -> Result<(), InitError> {
    let record = load(dir)?;
    // SAFETY: nothing has started a thread in this process yet.
    match unsafe { fork() }.map_err(sys("forking the shim"))? {
        ForkResult::Parent { child } => {
            println!("{child}");
            Ok(())
        }
        ForkResult::Child => {
            let exit = shim(&record).unwrap_or_else(|e| {
                if let Ok(mut log) = RotatingLog::open(&record.log_path, record.log_max_bytes) {
                    let _ = log.write(format!("{EXEC_SETUP_ERROR} {e}\n").as_bytes());
                }
                ExitRecord {
                    code: Some(START_ERROR_CODE),
                    signal: None,
                    oom_killed: false,
                    finished: SystemTime::now(),
                }
            });
            let _ = write_json(&dir.join(EXIT_FILE), &exit);
            std::process::exit(0)
        }
    }
}

/// The container's PID 1. Returns how the command ended.
fn shim(record: &Record) -> Result<ExitRecord, InitError> {
    // The daemon reads the start output until every writer is gone; the shim must not be
    // one of them for the container's lifetime.
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(io_at("opening", Path::new("/dev/null")))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(InitError::Sys {
                step: "redirecting the shim's standard streams",
                source: Errno::last(),
            });
        }
    }
    // Private propagation first, or the new /proc would also replace the host's.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("making mounts private"))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(sys("mounting /proc"))?;
    if let Some(resolv_conf) = &record.spec.resolv_conf {
        // Only in this mount namespace: the node's own resolv.conf is untouched.
        mount(
            Some(resolv_conf.as_path()),
            "/etc/resolv.conf",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys("mounting the pod's /etc/resolv.conf"))?;
    }
    sethostname(&record.spec.hostname).map_err(sys("setting the hostname"))?;

    // The runtime starts the shim with these blocked already, so none is lost before this
    // point; blocking them here again keeps the shim correct whoever starts it. Before any
    // thread starts, so that only the main loop's sigwait takes them.
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(signal);
    }
    signals.thread_block().map_err(sys("blocking signals"))?;

    let log = Arc::new(Mutex::new(RotatingLog::open(
        &record.log_path,
        record.log_max_bytes,
    )?));
    let spec = &record.spec;
    let mut command = Command::new(&spec.argv[0]);
    command
        .args(&spec.argv[1..])
        .env_clear()
        .envs(container_env(spec))
        .current_dir(spec.working_dir.as_deref().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    unblock_signals_on_exec(&mut command);
    let mut child = command
        .spawn()
        .map_err(io_at("starting the command", Path::new(&spec.argv[0])))?;
    let child_pid = Pid::from_raw(child.id() as i32);
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                // A full disk must not stop the container; the bytes are dropped.
                let _ = log.write(&chunk[..n]);
            }
        })
    })
    .collect();

    let mut status = None;
    while status.is_none() {
        match signals.wait().map_err(sys("waiting for signals"))? {
            Signal::SIGCHLD => status = reap(child_pid),
            forwarded => {
                let _ = kill(child_pid, forwarded);
            }
        }
    }
    // The kernel would end the namespace's other processes when PID 1 exits anyway; ending
    // them now closes their copies of the output pipes, so the log is complete.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while !matches!(waitpid(None, None), Err(Errno::ECHILD)) {}
    for pump in pumps {
        let _ = pump.join();
    }
    let (code, signal) = status.unwrap_or_default();
    Ok(ExitRecord {
        code,
        signal,
        oom_killed: record.cgroup.oom_kills() > 0,
        finished: SystemTime::now(),
    })
}

/// Gives the command an empty signal mask: std's posix_spawn path passes ours on, and a
/// command with SIGTERM blocked could not be stopped gracefully.
fn unblock_signals_on_exec(command: &mut Command) {
    // SAFETY: sigprocmask on a local, empty set is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Reaps every exited child; returns the command's (code, signal) once it is among them.
fn reap(command: Pid) -> Option<(Option<i32>, Option<i32>)> {
    let mut ended = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => ended = Some((Some(code), None)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                ended = Some((None, Some(signal as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return ended,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return ended,
        }
    }
}

fn exec(dir: &Path, argv: &[String]) -> Result<i32, InitError> {
    let record = load(dir)?;
    let shim = record
        .shim
        .ok_or_else(|| InitError::NotStarted(dir.to_path_buf()))?;
    // All opened before the first setns: in the container's mount namespace, /proc shows
    // only the container's processes.
    let namespaces = [
        ("net", CloneFlags::CLONE_NEWNET),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ]
    .map(|(name, flag)| {
        let path = PathBuf::from(format!("/proc/{}/ns/{name}", shim.pid));
        File::open(&path)
            .map(|file| (file, flag))
            .map_err(io_at("opening the container's namespace", &path))
    });
    let mut opened = Vec::new();
    for namespace in namespaces {
        opened.push(namespace?);
    }
    for (file, flag) in &opened {
        setns(file, *flag).map_err(sys("entering the container's namespaces"))?;
    }
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(signal);
    }
    signals.thread_block().map_err(sys("blocking signals"))?;
    let spec = &record.spec;
    // The PID namespace applies from this child on.
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .envs(container_env(spec))
        .current_dir(spec.working_dir.as_deref().unwrap_or(Path::new("/")))
        .process_group(0);
    unblock_signals_on_exec(&mut command);
    let child = command.spawn();
    let child = match child {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(e) => {
            // As a shell reports a command it cannot run.
            eprintln!("{}: {e}", argv[0]);
            return Ok(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    loop {
        match signals.wait().map_err(sys("waiting for signals"))? {
            Signal::SIGCHLD => match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
                _ => {}
            },
            _ => {
                let _ = kill(Pid::from_raw(-child.as_raw()), Signal::SIGKILL);
            }
        }
    }
}

/// The container's log: `log`, and `log.1` holding the previous `max_bytes`.
struct RotatingLog {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
}

impl RotatingLog {
    fn open(path: &Path, max_bytes: u64) -> Result<RotatingLog, InitError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_at("opening the log", path))?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingLog {
            path: path.to_path_buf(),
            file,
            written,
            max_bytes: max_bytes.max(1),
        })
    }

    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.written >= self.max_bytes {
                self.rotate()?;
            }
            let room = (self.max_bytes - self.written).min(bytes.len() as u64) as usize;
            self.file.write_all(&bytes[..room])?;
            self.written += room as u64;
            bytes = &bytes[room..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let mut previous = self.path.clone().into_os_string();
        previous.push(".1");
        std::fs::rename(&self.path, previous)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotates_at_the_size_limit_keeping_one_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = RotatingLog::open(&path, 10).unwrap();
        log.write(b"0123456").unwrap();
        log.write(b"789abcdef").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("log.1")).unwrap(),
            b"0123456789"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdef");
        log.write(b"ghijklmnopqrstuvwxyz").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("log.1")).unwrap(),
            b"klmnopqrst"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"uvwxyz");
    }
}
