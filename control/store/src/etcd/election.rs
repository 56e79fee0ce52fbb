//! Leader election on etcd: the leader is whoever created the election key, attached to a
//! lease that it keeps renewing. When the leader dies its renewals stop, etcd expires the lease
//! and deletes the key, and a waiting candidate creates it.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use super::client::{
    b64, unb64, Client, LeaseGrantResponse, LeaseKeepAliveResponse, RangeResponse, Streamed,
    TxnResponse,
};
use crate::StoreError;

/// Short, so that a crashed leader is replaced within a few seconds.
const LEASE_TTL_SECONDS: i64 = 3;
const RENEW_EVERY: Duration = Duration::from_secs(1);
const RENEW_TIMEOUT: Duration = Duration::from_secs(1);
const POLL_EVERY: Duration = Duration::from_millis(300);
/// A lease counts as held until this long before the TTL runs out, measured from when the
/// renewal was sent (etcd counts from when it received it, later), to absorb clock-rate skew.
const SAFETY_MARGIN: Duration = Duration::from_millis(500);

/// Waits until `candidate` holds `key`.
pub(crate) async fn campaign(
    client: Arc<Client>,
    key: String,
    candidate: String,
) -> Result<EtcdLeadership, StoreError> {
    let key64 = b64(key.as_bytes());
    loop {
        let holder: RangeResponse = client
            .call("/v3/kv/range", &json!({ "key": key64 }))
            .await?;
        if holder.kvs.is_empty() {
            let granted_at = Instant::now();
            let lease: LeaseGrantResponse = client
                .call(
                    "/v3/lease/grant",
                    &json!({ "TTL": LEASE_TTL_SECONDS.to_string() }),
                )
                .await?;
            if !lease.error.is_empty() || lease.id == 0 || lease.ttl <= 0 {
                return Err(StoreError::etcd(
                    client.endpoints().join(","),
                    format!("granting a lease for {key}: {}", lease.error),
                ));
            }
            let put: TxnResponse = client
                .call(
                    "/v3/kv/txn",
                    &json!({
                        "compare": [{
                            "key": key64, "target": "CREATE", "result": "EQUAL",
                            "create_revision": "0",
                        }],
                        "success": [{ "request_put": {
                            "key": key64, "value": b64(candidate.as_bytes()),
                            "lease": lease.id.to_string(),
                        }}],
                    }),
                )
                .await?;
            if put.succeeded {
                tracing::info!(%key, %candidate, lease = lease.id, "won the election");
                let deadline = granted_at + Duration::from_secs(lease.ttl as u64) - SAFETY_MARGIN;
                let (status, watcher) = watch::channel(Some(deadline));
                let task = tokio::spawn(keep(client.clone(), key, candidate, lease.id, status));
                return Ok(EtcdLeadership {
                    client,
                    lease: lease.id,
                    status: watcher,
                    task,
                });
            }
            // Another candidate was faster; our lease would only expire by itself.
            let _ = revoke(&client, lease.id).await;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn revoke(client: &Client, lease: i64) -> Result<(), StoreError> {
    let _: serde_json::Value = client
        .call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
        .await?;
    Ok(())
}

/// Renews the lease every second and checks the key is still ours; reports the time until
/// which leadership is certain, or `None` once it is lost (and then stops).
async fn keep(
    client: Arc<Client>,
    key: String,
    candidate: String,
    lease: i64,
    status: watch::Sender<Option<Instant>>,
) {
    let mut ticks = tokio::time::interval_at(Instant::now() + RENEW_EVERY, RENEW_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        ticks.tick().await;
        let sent = Instant::now();
        match renew(&client, &key, &candidate, lease).await {
            Ok(ttl) => {
                let held_until = status.borrow().unwrap_or(sent);
                if Instant::now() >= held_until {
                    // Leadership already counted as lost (lost() may have resolved): never
                    // take it back silently.
                    break "the lease was renewed only after it could have expired".to_string();
                }
                status.send_replace(Some(sent + ttl - SAFETY_MARGIN));
            }
            Err(reason) => break reason,
        }
    };
    tracing::warn!(%key, %candidate, lease, %reason, "lost the election");
    status.send_replace(None);
}

/// One renewal: the lease's new TTL, or why leadership is gone.
async fn renew(
    client: &Client,
    key: &str,
    candidate: &str,
    lease: i64,
) -> Result<Duration, String> {
    let renewed: Streamed<LeaseKeepAliveResponse> = client
        .call_within(
            "/v3/lease/keepalive",
            &json!({ "ID": lease.to_string() }),
            RENEW_TIMEOUT,
        )
        .await
        .map_err(|e| format!("renewing the lease failed: {e}"))?;
    let ttl = renewed.result.map_or(0, |r| r.ttl);
    if ttl <= 0 {
        return Err("the lease has expired".to_string());
    }
    let holder: RangeResponse = client
        .call_within(
            "/v3/kv/range",
            &json!({ "key": b64(key.as_bytes()) }),
            RENEW_TIMEOUT,
        )
        .await
        .map_err(|e| format!("reading the election key failed: {e}"))?;
    match holder.kvs.first() {
        None => Err("the election key was deleted".to_string()),
        Some(kv)
            if kv.lease == lease
                && unb64(&kv.value).ok().as_deref() == Some(candidate.as_bytes()) =>
        {
            Ok(Duration::from_secs(ttl as u64))
        }
        Some(_) => Err("the election key now belongs to another candidate".to_string()),
    }
}

pub(crate) struct EtcdLeadership {
    client: Arc<Client>,
    lease: i64,
    status: watch::Receiver<Option<Instant>>,
    task: JoinHandle<()>,
}

impl EtcdLeadership {
    pub(crate) async fn lost(&mut self) {
        loop {
            let Some(held_until) = *self.status.borrow_and_update() else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(held_until) => return,
                changed = self.status.changed() => if changed.is_err() { return },
            }
        }
    }

    pub(crate) fn is_leader(&self) -> bool {
        matches!(*self.status.borrow(), Some(held_until) if Instant::now() < held_until)
    }

    pub(crate) async fn resign(self) -> Result<(), StoreError> {
        self.task.abort();
        // Revoking the lease deletes the key, so the next candidate need not wait for the TTL.
        revoke(&self.client, self.lease).await
    }
}

impl Drop for EtcdLeadership {
    fn drop(&mut self) {
        // No revoke: dropping behaves like a crash, and the lease runs out by itself.
        self.task.abort();
    }
}
