//! Writes the pod manager's reports back: pod status, and the final delete once a pod is
//! stopped and removed. Reports for one pod coalesce (only the newest status matters), a
//! failed write is retried, and nothing is written to a pod object whose uid is another's
//! (a pod deleted and created again under the same name).

use std::{collections::BTreeMap, time::Duration};

use skiff_api::{Kind, Object};
use skiff_client::{Client, ClientError};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::pods::manager::PodReport;

pub async fn run(client: Client, mut reports: UnboundedReceiver<PodReport>) {
    let mut pending: BTreeMap<(String, String), PodReport> = BTreeMap::new();
    loop {
        if pending.is_empty() {
            match reports.recv().await {
                Some(report) => insert(&mut pending, report),
                None => return,
            }
        }
        while let Ok(report) = reports.try_recv() {
            insert(&mut pending, report);
        }
        let mut failed = false;
        for (key, report) in std::mem::take(&mut pending) {
            match write(&client, &report).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(pod = %format!("{}/{}", key.0, key.1), error = %e, "writing the pod's status failed; retrying");
                    pending.entry(key).or_insert(report);
                    failed = true;
                }
            }
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn insert(pending: &mut BTreeMap<(String, String), PodReport>, report: PodReport) {
    let key = match &report {
        PodReport::Status {
            namespace, name, ..
        }
        | PodReport::Deleted {
            namespace, name, ..
        } => (namespace.clone(), name.clone()),
    };
    pending.insert(key, report);
}

async fn write(client: &Client, report: &PodReport) -> Result<(), ClientError> {
    let (namespace, name, uid) = match report {
        PodReport::Status {
            namespace,
            name,
            uid,
            ..
        }
        | PodReport::Deleted {
            namespace,
            name,
            uid,
        } => (namespace, name, uid),
    };
    for _ in 0..5 {
        let mut object = match client.get(Kind::Pod, namespace, name).await {
            Ok(o) => o,
            Err(ClientError::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        let Object::Pod(pod) = &mut object else {
            return Ok(());
        };
        if pod.metadata.uid.as_deref() != Some(uid.as_str()) {
            return Ok(());
        }
        let outcome = match report {
            PodReport::Status { status, .. } => {
                pod.status = Some(status.clone());
                client.update_status(&object).await.map(drop)
            }
            PodReport::Deleted { .. } => client
                .delete(Kind::Pod, namespace, name, true)
                .await
                .map(drop),
        };
        match outcome {
            Err(ClientError::Api(s)) if s.code == 409 => continue,
            Err(ClientError::Api(s)) if s.code == 404 => return Ok(()),
            other => return other,
        }
    }
    Ok(())
}
