//! Removing what labs made: on drop, and what crashed runs left behind.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{sys, NAME_PREFIX};

/// The process id embedded in a lab name (`skiff-lab-PID-SEQ...`).
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(NAME_PREFIX)?
        .strip_prefix('-')?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn is_stale(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

fn stale_entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| is_stale(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect()
}

/// Removes namespaces, cgroups and bpffs folders of labs whose process no longer exists
/// (a test killed before its drop ran).
pub fn sweep_stale() {
    for path in stale_entries(Path::new("/run/netns")) {
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            let _ = sys::ip(&["netns", "del", name]);
        }
    }
    if let Ok(cgroup2) = sys::cgroup2_mount() {
        for path in stale_entries(&cgroup2.join(NAME_PREFIX)) {
            remove_cgroup(&path);
        }
        for hierarchy in v1_mirrors(&cgroup2, Path::new(NAME_PREFIX)) {
            for path in stale_entries(&hierarchy) {
                remove_cgroup(&path);
            }
        }
    }
    if let Ok(bpffs) = sys::bpffs_mount() {
        for path in stale_entries(&bpffs) {
            remove_bpffs_dir(&path);
        }
    }
}

/// Removes everything of the lab `id`: processes and cgroups first (a namespace whose
/// processes still run would outlive its name), then namespaces and the bpffs folder.
pub fn remove_lab_parts(id: &str) {
    let prefix = format!("{id}-");
    if let Ok(cgroup2) = sys::cgroup2_mount() {
        let relative = Path::new(NAME_PREFIX).join(id);
        kill_subtree(&cgroup2.join(&relative));
        remove_cgroup(&cgroup2.join(&relative));
        for mirror in v1_mirrors(&cgroup2, &relative) {
            remove_cgroup(&mirror);
        }
    }
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            let _ = sys::ip(&["netns", "del", &name]);
        }
    }
    if let Ok(bpffs) = sys::bpffs_mount() {
        remove_bpffs_dir(&bpffs.join(id));
    }
}

/// The same path in each cgroup v1 hierarchy of a hybrid host, where Docker (cgroup v1
/// driver) mirrors the cgroup parents it is given.
pub fn v1_mirrors(cgroup2: &Path, relative: &Path) -> Vec<PathBuf> {
    let Some(root) = cgroup2.parent() else {
        return Vec::new();
    };
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|h| h != cgroup2)
        .map(|h| h.join(relative))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// Kills every process of a cgroup subtree and waits (up to 5 s) until none is left.
pub fn kill_subtree(dir: &Path) {
    // cgroup.kill (Linux 5.14+) takes the whole subtree at once; without it, each cgroup's
    // processes are killed one by one.
    if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
        for pid in subtree_pids(dir) {
            // SAFETY: plain kill(2) of a process in the lab's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !subtree_pids(dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn subtree_pids(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pids.extend(subtree_pids(&entry.path()));
        }
    }
    pids
}

/// Kills whatever still runs in a cgroup subtree and removes it, children first.
pub fn remove_cgroup(dir: &Path) {
    if !dir.exists() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    // cgroup.kill (Linux 5.14+) kills the whole subtree at once; v1 hierarchies lack it.
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        // SAFETY: plain kill(2) of a process in the lab's own cgroup.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            // EBUSY while killed processes are still exiting.
            Err(e) if Instant::now() > deadline => {
                eprintln!("lab cleanup: removing cgroup {}: {e}", dir.display());
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

pub fn remove_bpffs_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("lab cleanup: removing {}: {e}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_is_read_from_lab_names() {
        assert_eq!(owner_pid("skiff-lab-1234-0-lab"), Some(1234));
        assert_eq!(owner_pid("skiff-lab-77-3-n1-a"), Some(77));
        assert_eq!(owner_pid("skiff-lab-x-0"), None);
        assert_eq!(owner_pid("other-1234"), None);
    }
}
