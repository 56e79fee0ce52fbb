//! What the node reports about itself: capacity (from /proc) and usage samples.

use std::{collections::BTreeMap, time::Instant};

use skiff_api::node::PodMetrics;

use crate::pods::LocalPod;

/// CPUs (millicores) and memory (bytes) this machine has.
pub fn capacity() -> (u64, u64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    (cpus * 1000, meminfo("MemTotal").unwrap_or(0))
}

/// A `/proc/meminfo` field in bytes.
fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// Busy and total jiffies of all CPUs, from the first line of `/proc/stat`.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait are not busy.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Node CPU use between two calls (millicores) and memory in use now (bytes).
pub struct UsageSampler {
    last: Option<((u64, u64), Instant)>,
}

impl UsageSampler {
    pub fn new() -> UsageSampler {
        UsageSampler {
            last: cpu_jiffies().map(|j| (j, Instant::now())),
        }
    }

    pub fn sample(&mut self) -> (u64, u64) {
        let now = cpu_jiffies();
        let cpus = capacity().0;
        let millicores = match (self.last, now) {
            (Some(((busy0, total0), _)), Some((busy1, total1))) if total1 > total0 => {
                (busy1.saturating_sub(busy0) * cpus) / (total1 - total0)
            }
            _ => 0,
        };
        self.last = now.map(|j| (j, Instant::now()));
        let memory = meminfo("MemTotal")
            .zip(meminfo("MemAvailable"))
            .map_or(0, |(t, a)| t.saturating_sub(a));
        (millicores, memory)
    }
}

impl Default for UsageSampler {
    fn default() -> Self {
        UsageSampler::new()
    }
}

/// Per-pod CPU (from the change in each pod's cgroup CPU time between samples) and memory.
#[derive(Default)]
pub struct PodCpu {
    last: BTreeMap<String, (String, u64, Instant)>,
}

impl PodCpu {
    pub fn sample(&mut self, pods: &BTreeMap<String, LocalPod>) -> Vec<PodMetrics> {
        let now = Instant::now();
        let mut next = BTreeMap::new();
        let metrics = pods
            .iter()
            .map(|(key, pod)| {
                let used = pod.usage.cpu_usage_usec;
                let millicores = match self.last.get(key) {
                    Some((uid, before, at)) if *uid == pod.uid && used >= *before => {
                        let elapsed = now.duration_since(*at).as_micros().max(1) as u64;
                        (used - before) * 1000 / elapsed
                    }
                    _ => 0,
                };
                next.insert(key.clone(), (pod.uid.clone(), used, now));
                let (namespace, name) = key.split_once('/').unwrap_or(("default", key));
                PodMetrics {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    cpu_millicores: millicores,
                    memory_bytes: pod.usage.memory_bytes,
                }
            })
            .collect();
        self.last = next;
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let (cpu, memory) = capacity();
        assert!(cpu >= 1000 && memory > 64 << 20);
        let mut sampler = UsageSampler::new();
        let (used_cpu, used_memory) = sampler.sample();
        assert!(used_cpu <= cpu && used_memory <= memory);
    }
}
