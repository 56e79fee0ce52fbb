//! A container's cgroup.
//!
//! The container always gets a cgroup v2 directory below the pod's: that is where the
//! node's socket hooks see it and where `cgroup.kill` reaches every process. Memory and CPU
//! limits go to v2 when the pod cgroup offers those controllers. A hybrid host (cgroup v2
//! mounted beside v1 hierarchies that hold `memory` and `cpu`) cannot give them to v2, so
//! there the limits go to a v1 cgroup below the daemon's own v1 cgroup, which keeps the
//! container inside whatever limits the node itself runs under.

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::Usage;

/// CFS period for CPU limits: the kernel's default, as Kubernetes uses.
const CPU_PERIOD_USEC: u64 = 100_000;

/// Below this the kernel refuses a CFS quota.
const MIN_CPU_QUOTA_USEC: u64 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerCgroup {
    pub unified: PathBuf,
    pub memory_v1: Option<PathBuf>,
    pub cpu_v1: Option<PathBuf>,
}

/// A failed cgroup operation and the file it was on.
#[derive(Debug, thiserror::Error)]
#[error("{step} ({path}): {source}")]
pub struct CgroupError {
    pub step: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

fn at(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError { step, path, source }
}

fn write(path: &Path, value: &str, step: &'static str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(at(step, path))
}

fn has_controller(cgroup: &Path, controller: &str) -> bool {
    std::fs::read_to_string(cgroup.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
}

/// Delegates `controller` from `parent` to its children. Writing an already enabled
/// controller is a no-op for the kernel.
fn enable(parent: &Path, controller: &str) -> Result<(), CgroupError> {
    write(
        &parent.join("cgroup.subtree_control"),
        &format!("+{controller}"),
        "delegating a controller to child cgroups",
    )
}

/// Where this process's v1 hierarchy holding `controller` puts it:
/// `<mount>/<own cgroup path>`. `None` when no v1 hierarchy has the controller.
fn own_v1_cgroup(controller: &str) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let mount = mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (target, kind, options) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        (*kind == "cgroup" && options.split(',').any(|o| o == controller))
            .then(|| PathBuf::from(target))
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.trim_start_matches('/').to_string())
    })?;
    Some(mount.join(path))
}

fn v1_dir(controller: &str, name: &str) -> Result<PathBuf, CgroupError> {
    let dir = own_v1_cgroup(controller)
        .ok_or_else(|| CgroupError {
            step: "finding a cgroup hierarchy with the controller",
            path: PathBuf::from(controller),
            source: io::Error::new(io::ErrorKind::Unsupported, "no cgroup v1 or v2 controller"),
        })?
        .join("skiff")
        .join(name);
    std::fs::create_dir_all(&dir).map_err(at("creating the v1 cgroup", &dir))?;
    Ok(dir)
}

/// The controllers pods' limits and accounting use.
const POD_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// Hands the pod controllers down from the cgroup v2 `mount` to the pod cgroups: on every
/// level from the mount's child to `pod_root`, each controller the level is given is enabled
/// for its children, as systemd does for its own slices. The mount's root level is left as the
/// host set it. Returns the controllers pod cgroups get; what could not be enabled (a level
/// that holds processes refuses) is logged, and limits then go to v1 or are not enforced.
pub fn delegate_to_pods(mount: &Path, pod_root: &Path) -> Vec<&'static str> {
    let Ok(below) = pod_root.strip_prefix(mount) else {
        tracing::warn!(
            pod_cgroup = %pod_root.display(),
            mount = %mount.display(),
            "the pod cgroup is not below the cgroup v2 mount; controllers are not delegated"
        );
        return Vec::new();
    };
    let mut level = mount.to_path_buf();
    for part in below.components() {
        level.push(part);
        for controller in POD_CONTROLLERS {
            if has_controller(&level, controller) && !delegates(&level, controller) {
                if let Err(e) = enable(&level, controller) {
                    tracing::warn!(controller, error = %e, "cannot delegate a controller to pods");
                }
            }
        }
    }
    POD_CONTROLLERS
        .into_iter()
        .filter(|controller| delegates(pod_root, controller))
        .collect()
}

fn delegates(cgroup: &Path, controller: &str) -> bool {
    std::fs::read_to_string(cgroup.join("cgroup.subtree_control"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
}

/// The cgroup v2 mount: /sys/fs/cgroup on unified hosts, its `unified` folder on hybrid ones.
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
        })
        .min_by_key(|p| p.as_os_str().len())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup2 mount: pods need cgroup v2 (mount it, or pass --runtime none)",
            )
        })
}

impl ContainerCgroup {
    /// Creates `<parent>/<name>` with the given limits; on failure removes what it made.
    pub fn create(
        parent: &Path,
        name: &str,
        cpu_limit_millis: Option<u64>,
        memory_limit_bytes: Option<u64>,
    ) -> Result<ContainerCgroup, CgroupError> {
        let mut cgroup = ContainerCgroup {
            unified: parent.join(name),
            memory_v1: None,
            cpu_v1: None,
        };
        let result = cgroup.configure(parent, name, cpu_limit_millis, memory_limit_bytes);
        match result {
            Ok(()) => Ok(cgroup),
            Err(e) => {
                cgroup.remove();
                Err(e)
            }
        }
    }

    fn configure(
        &mut self,
        parent: &Path,
        name: &str,
        cpu_limit_millis: Option<u64>,
        memory_limit_bytes: Option<u64>,
    ) -> Result<(), CgroupError> {
        std::fs::create_dir(&self.unified).map_err(at("creating the cgroup", &self.unified))?;
        // Memory accounting (usage, OOM kills) is wanted even without a limit.
        if has_controller(parent, "memory") {
            enable(parent, "memory")?;
            if let Some(bytes) = memory_limit_bytes {
                let max = self.unified.join("memory.max");
                write(&max, &bytes.to_string(), "setting the memory limit")?;
                // With swap the limit would slow a hog down instead of stopping it.
                let swap = self.unified.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0", "disabling swap")?;
                }
            }
        } else {
            let dir = v1_dir("memory", name)?;
            self.memory_v1 = Some(dir.clone());
            if let Some(bytes) = memory_limit_bytes {
                let limit = dir.join("memory.limit_in_bytes");
                write(&limit, &bytes.to_string(), "setting the memory limit")?;
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &bytes.to_string(), "disabling swap")?;
                }
            }
        }
        let Some(millis) = cpu_limit_millis else {
            return Ok(());
        };
        let quota = (millis * CPU_PERIOD_USEC / 1000).max(MIN_CPU_QUOTA_USEC);
        if has_controller(parent, "cpu") {
            enable(parent, "cpu")?;
            let max = self.unified.join("cpu.max");
            write(
                &max,
                &format!("{quota} {CPU_PERIOD_USEC}"),
                "setting the CPU limit",
            )?;
        } else {
            let dir = v1_dir("cpu", name)?;
            self.cpu_v1 = Some(dir.clone());
            write(
                &dir.join("cpu.cfs_period_us"),
                &CPU_PERIOD_USEC.to_string(),
                "setting the CPU period",
            )?;
            write(
                &dir.join("cpu.cfs_quota_us"),
                &quota.to_string(),
                "setting the CPU limit",
            )?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes itself into to join the container.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        std::iter::once(&self.unified)
            .chain(&self.memory_v1)
            .chain(&self.cpu_v1)
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }

    /// How many processes the kernel's OOM killer killed in the container.
    pub fn oom_kills(&self) -> u64 {
        let (file, dir) = match &self.memory_v1 {
            Some(dir) => ("memory.oom_control", dir),
            None => ("memory.events", &self.unified),
        };
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| keyed(&text, "oom_kill"))
            .unwrap_or(0)
    }

    pub fn usage(&self) -> Result<Usage, CgroupError> {
        let stat = self.unified.join("cpu.stat");
        let text = std::fs::read_to_string(&stat).map_err(at("reading CPU usage", &stat))?;
        let memory = match &self.memory_v1 {
            Some(dir) => dir.join("memory.usage_in_bytes"),
            None => self.unified.join("memory.current"),
        };
        let memory_text =
            std::fs::read_to_string(&memory).map_err(at("reading memory usage", &memory))?;
        Ok(Usage {
            cpu_usage_usec: keyed(&text, "usage_usec").unwrap_or(0),
            memory_bytes: memory_text.trim().parse().unwrap_or(0),
        })
    }

    /// Kills every process in the container at once.
    pub fn kill(&self) {
        // Absent on kernels before 5.14; the caller's SIGKILL to the init is the fallback.
        let _ = std::fs::write(self.unified.join("cgroup.kill"), "1");
    }

    /// Kills what still runs and removes the directories; what cannot be removed within a
    /// few seconds is logged and left.
    pub fn remove(&self) {
        self.kill();
        for dir in std::iter::once(&self.unified)
            .chain(&self.memory_v1)
            .chain(&self.cpu_v1)
        {
            remove_dir(dir);
        }
    }
}

fn remove_dir(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            // EBUSY while killed processes are still exiting.
            Err(e) if Instant::now() > deadline => {
                tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove a container cgroup");
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The value of `key` in a `key value` per line file (cpu.stat, memory.events).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_are_read() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(keyed(text, "oom_kill"), Some(2));
        assert_eq!(keyed(text, "under_oom"), Some(0));
        assert_eq!(
            keyed("usage_usec 1234\nuser_usec 5\n", "usage_usec"),
            Some(1234)
        );
        assert_eq!(keyed("usage_usec 1\n", "oom_kill"), None);
    }
}
