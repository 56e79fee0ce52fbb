//! What the pod manager writes down about each pod it runs, so a restarted daemon adopts
//! the pod (same address, namespace, veth and containers) instead of starting it again.
//! One JSON file per pod uid, replaced atomically.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::runtime::ContainerId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub netns: PathBuf,
    pub host_interface: String,
    pub cgroup: PathBuf,
    /// The runtime's container holding the network namespace (Docker's pause container).
    #[serde(default)]
    pub infra: Option<ContainerId>,
    pub containers: Vec<ContainerRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub id: ContainerId,
    pub restarts: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("pod record {path}: {message}")]
pub struct RecordError {
    pub path: PathBuf,
    pub message: String,
}

/// The folder of pod records.
#[derive(Clone, Debug)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn new(dir: &Path) -> Result<Records, RecordError> {
        std::fs::create_dir_all(dir).map_err(|e| RecordError {
            path: dir.to_path_buf(),
            message: format!("creating the folder: {e}"),
        })?;
        Ok(Records {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{uid}.json"))
    }

    pub fn save(&self, record: &PodRecord) -> Result<(), RecordError> {
        let path = self.path(&record.uid);
        let error = |message: String| RecordError {
            path: path.clone(),
            message,
        };
        let json = serde_json::to_vec_pretty(record).map_err(|e| error(e.to_string()))?;
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, json).map_err(|e| error(format!("writing: {e}")))?;
        std::fs::rename(&temp, &path).map_err(|e| error(format!("replacing: {e}")))
    }

    pub fn remove(&self, uid: &str) {
        let _ = std::fs::remove_file(self.path(uid));
        let _ = std::fs::remove_file(self.resolv_conf_path(uid));
    }

    /// The pod's /etc/resolv.conf, which the embedded runtime mounts into its containers.
    pub fn resolv_conf_path(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{uid}.resolv.conf"))
    }

    pub fn write_resolv_conf(&self, uid: &str, text: &str) -> Result<(), RecordError> {
        let path = self.resolv_conf_path(uid);
        let temp = path.with_extension("conf.tmp");
        let error = |e: std::io::Error| RecordError {
            path: path.clone(),
            message: format!("writing: {e}"),
        };
        std::fs::write(&temp, text).map_err(error)?;
        std::fs::rename(&temp, &path).map_err(error)
    }

    /// Every readable record; an unreadable one is reported and skipped, so one bad file
    /// does not keep the other pods from being adopted.
    pub fn load_all(&self) -> Vec<PodRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut records: Vec<PodRecord> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|path| {
                let parsed = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
                parsed
                    .inspect_err(|e| tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable pod record"))
                    .ok()
            })
            .collect();
        records.sort_by(|a, b| a.uid.cmp(&b.uid));
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path()).unwrap();
        let record = PodRecord {
            uid: "u1".into(),
            namespace: "shop".into(),
            name: "web".into(),
            ip: Ipv4Addr::new(10, 244, 1, 2),
            netns: "/run/skiff/netns/x.net".into(),
            host_interface: "sk0".into(),
            cgroup: "/sys/fs/cgroup/skiff/pods/u1".into(),
            infra: None,
            containers: vec![ContainerRecord {
                name: "app".into(),
                id: ContainerId("c1".into()),
                restarts: 2,
            }],
        };
        records.save(&record).unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        assert_eq!(records.load_all(), vec![record]);
        records.remove("u1");
        assert!(records.load_all().is_empty());
    }
}
