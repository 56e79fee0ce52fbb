//! The etcd v3 backend, through etcd's JSON gRPC gateway (no protobuf toolchain needed).
//!
//! Keys live under `{prefix}/kv/` in etcd and election keys under `{prefix}/elections/`, so
//! several control planes (or tests) can share one etcd and a listing never sees elections.

mod client;
mod election;

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde_json::json;
use tokio::sync::mpsc;

use self::client::{
    b64, is_compacted, is_future_revision, unb64, Client, JsonLines, RangeResponse, RawEvent,
    RawKv, Streamed, TxnResponse, WatchResponse,
};
pub(crate) use self::election::EtcdLeadership;
use crate::{
    last_write_per_key, Event, EventKind, KeyValue, Leadership, LeadershipSource, Listing,
    Precondition, Revision, Store, StoreError, TxnOutcome, Watch, WatchSource, Write,
};

/// Keys per range request when listing, so a large listing never needs one huge answer.
const LIST_PAGE: usize = 1000;
/// How long etcd gets to confirm a new watch.
const WATCH_SETUP: Duration = Duration::from_secs(5);

/// The etcd backend. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Arc<Client>,
    /// Prepended to every key: `{prefix}/kv/`.
    data: String,
    /// `{prefix}/elections/`.
    elections: String,
}

impl EtcdStore {
    /// A store on the etcd cluster at `endpoints` (tried in order when one is unreachable),
    /// keeping every key under `prefix` (e.g. "/skiff"). Makes no request: the first
    /// operation reports an unreachable etcd (call [`Store::revision`] to check early).
    pub fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore, StoreError> {
        let client = Client::new(endpoints)?;
        let root = prefix.trim_end_matches('/');
        Ok(EtcdStore {
            client: Arc::new(client),
            data: format!("{root}/kv/"),
            elections: format!("{root}/elections/"),
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.data)
    }

    fn endpoint(&self) -> String {
        self.client.endpoints().join(",")
    }

    fn convert(&self, raw: RawKv) -> Result<KeyValue, StoreError> {
        convert_kv(&self.data, raw).map_err(|e| StoreError::etcd(self.endpoint(), e))
    }

    async fn range(&self, body: serde_json::Value) -> Result<RangeResponse, StoreError> {
        self.client.call("/v3/kv/range", &body).await
    }
}

/// A caller's KeyValue from etcd's, the namespace taken off.
fn convert_kv(namespace: &str, raw: RawKv) -> Result<KeyValue, String> {
    let key = String::from_utf8(unb64(&raw.key)?).map_err(|_| "a key is not UTF-8".to_string())?;
    let key = key
        .strip_prefix(namespace)
        .ok_or_else(|| format!("key {key:?} is outside the namespace {namespace:?}"))?
        .to_string();
    Ok(KeyValue {
        key,
        value: unb64(&raw.value)?,
        create_revision: raw.create_revision as Revision,
        mod_revision: raw.mod_revision as Revision,
    })
}

/// The smallest key after every key starting with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the keyspace, which etcd spells "\0".
    vec![0]
}

fn compare(precondition: &Precondition, full_key: String) -> Vec<serde_json::Value> {
    let key = b64(full_key.as_bytes());
    match precondition {
        Precondition::Absent { .. } => vec![json!({
            "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0",
        })],
        Precondition::ModRevision { revision, .. } => {
            let mut compares = vec![json!({
                "key": key, "target": "MOD", "result": "EQUAL",
                "mod_revision": revision.to_string(),
            })];
            if *revision == 0 {
                // etcd reports a missing key's mod_revision as 0; ours requires the key to exist.
                compares.push(json!({
                    "key": key, "target": "CREATE", "result": "GREATER", "create_revision": "0",
                }));
            }
            compares
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let response = self
            .range(json!({ "key": b64(self.full_key(key).as_bytes()) }))
            .await?;
        response
            .kvs
            .into_iter()
            .next()
            .map(|kv| self.convert(kv))
            .transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let start = self.full_key(prefix).into_bytes();
        let end = b64(&prefix_end(&start));
        let mut from = start;
        let mut items = Vec::new();
        let mut revision: Option<i64> = None;
        loop {
            let mut body = json!({
                "key": b64(&from), "range_end": end, "limit": LIST_PAGE.to_string(),
            });
            if let Some(revision) = revision {
                // Later pages read the revision of the first, so the listing is one snapshot.
                body["revision"] = json!(revision.to_string());
            }
            let page = self.range(body).await?;
            let at = *revision.get_or_insert(page.header.revision);
            let last = page.kvs.last().map(|kv| unb64(&kv.key));
            for kv in page.kvs {
                items.push(self.convert(kv)?);
            }
            match last {
                Some(last) if page.more => {
                    let mut next = last.map_err(|e| StoreError::etcd(self.endpoint(), e))?;
                    next.push(0);
                    from = next;
                }
                _ => {
                    return Ok(Listing {
                        items,
                        revision: at as Revision,
                    })
                }
            }
        }
    }

    async fn txn(
        &self,
        preconditions: Vec<Precondition>,
        writes: Vec<Write>,
    ) -> Result<TxnOutcome, StoreError> {
        let writes = last_write_per_key(writes);
        let compares: Vec<_> = preconditions
            .iter()
            .flat_map(|p| compare(p, self.full_key(p.key())))
            .collect();
        let success: Vec<_> = writes
            .iter()
            .map(|write| match write {
                Write::Put { key, value } => json!({ "request_put": {
                    "key": b64(self.full_key(key).as_bytes()), "value": b64(value),
                }}),
                Write::Delete { key } => json!({ "request_delete_range": {
                    "key": b64(self.full_key(key).as_bytes()),
                }}),
            })
            .collect();
        // On failure etcd says only "not succeeded"; reading every compared key in the same
        // transaction tells which precondition failed, at the same revision.
        let mut checked: Vec<&str> = preconditions.iter().map(|p| p.key()).collect();
        checked.sort_unstable();
        checked.dedup();
        let failure: Vec<_> = checked
            .iter()
            .map(|key| json!({ "request_range": { "key": b64(self.full_key(key).as_bytes()) }}))
            .collect();
        let response: TxnResponse = self
            .client
            .call(
                "/v3/kv/txn",
                &json!({ "compare": compares, "success": success, "failure": failure }),
            )
            .await?;
        if response.succeeded {
            return Ok(TxnOutcome::Committed {
                revision: response.header.revision as Revision,
            });
        }
        let mut current: HashMap<String, KeyValue> = HashMap::new();
        for op in response.responses {
            for kv in op.response_range.map(|r| r.kvs).unwrap_or_default() {
                let kv = self.convert(kv)?;
                current.insert(kv.key.clone(), kv);
            }
        }
        match preconditions
            .iter()
            .find(|p| !p.holds(current.get(p.key())))
        {
            Some(p) => Ok(TxnOutcome::Failed {
                key: p.key().to_string(),
            }),
            None => Err(StoreError::etcd(
                self.endpoint(),
                format!(
                    "the transaction failed at revision {}, yet every precondition holds there",
                    response.header.revision
                ),
            )),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        let key = self.full_key(prefix).into_bytes();
        let range_end = prefix_end(&key);
        let request = json!({ "create_request": {
            "key": b64(&key), "range_end": b64(&range_end),
            "start_revision": (after + 1).to_string(), "prev_kv": true,
        }});
        let (endpoint, response) = self.client.send("/v3/watch", &request, None).await?;
        let mut lines = JsonLines::new(endpoint, response);
        match tokio::time::timeout(WATCH_SETUP, lines.next::<Streamed<WatchResponse>>()).await {
            Ok(Some(Ok(Streamed {
                result: Some(r), ..
            }))) if r.created => {}
            Ok(Some(Err(e))) => return Err(e),
            Ok(other) => {
                return Err(StoreError::etcd(
                    lines.endpoint(),
                    format!("the watch was not created: {other:?}"),
                ))
            }
            Err(_) => {
                return Err(StoreError::etcd(
                    lines.endpoint(),
                    "the watch was not confirmed within 5 s",
                ))
            }
        }

        // etcd reports a compacted start only later on the stream; a read at that revision
        // says so now, and then the stream's cancel message carries the oldest revision kept.
        let probe = self
            .range(json!({
                "key": b64(&key), "range_end": b64(&range_end), "limit": "1",
                "count_only": true, "revision": (after + 1).to_string(),
            }))
            .await;
        let mut translator = Translator {
            namespace: self.data.clone(),
            endpoint: lines.endpoint().to_string(),
            after,
        };
        match probe {
            Ok(_) => {}
            Err(e) if is_future_revision(&e) => {}
            Err(e) if is_compacted(&e) => {
                let cancel = tokio::time::timeout(WATCH_SETUP, async {
                    while let Some(message) = lines.next::<Streamed<WatchResponse>>().await {
                        if let Some(Err(e)) = translator.translate(message).first() {
                            return Some(clone_compacted(e));
                        }
                    }
                    None
                })
                .await;
                return Err(match cancel {
                    Ok(Some(Some(compacted))) => compacted,
                    // The compaction's revision is unknown; any later one is still kept.
                    _ => StoreError::Compacted {
                        requested: after + 1,
                        oldest: after + 2,
                    },
                });
            }
            Err(e) => return Err(e),
        }

        let (events, receiver) = mpsc::channel(256);
        let task = tokio::spawn(async move {
            while let Some(message) = lines.next().await {
                for item in translator.translate(message) {
                    let last = item.is_err();
                    if events.send(item).await.is_err() || last {
                        return;
                    }
                }
            }
            let _ = events
                .send(Err(StoreError::etcd(
                    lines.endpoint(),
                    "etcd closed the watch stream: watch again from the last revision seen",
                )))
                .await;
        });
        Ok(Watch {
            source: WatchSource::Etcd(EtcdWatch { receiver, task }),
        })
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let key = self.data.as_bytes();
        let response = self
            .range(json!({ "key": b64(key), "limit": "1", "count_only": true }))
            .await?;
        Ok(response.header.revision as Revision)
    }

    async fn campaign(&self, election: &str, candidate: &str) -> Result<Leadership, StoreError> {
        let key = format!("{}{election}", self.elections);
        let leadership =
            election::campaign(self.client.clone(), key, candidate.to_string()).await?;
        Ok(Leadership {
            source: LeadershipSource::Etcd(leadership),
        })
    }

    fn describe(&self) -> String {
        format!("etcd ({})", self.endpoint())
    }
}

/// `Compacted` is the only error translated before the stream starts; it is plain data.
fn clone_compacted(error: &StoreError) -> Option<StoreError> {
    match error {
        StoreError::Compacted { requested, oldest } => Some(StoreError::Compacted {
            requested: *requested,
            oldest: *oldest,
        }),
        _ => None,
    }
}

/// Turns watch stream messages into the caller's events.
struct Translator {
    namespace: String,
    endpoint: String,
    /// The last revision delivered (or the watch's start): where a resumed watch would begin.
    after: Revision,
}

impl Translator {
    /// The events (or the error that ends the stream) one message carries.
    fn translate(
        &mut self,
        message: Result<Streamed<WatchResponse>, StoreError>,
    ) -> Vec<Result<Event, StoreError>> {
        let response = match message {
            Ok(Streamed {
                result: Some(response),
                ..
            }) => response,
            Ok(Streamed { error, .. }) => {
                let message = error.map_or_else(|| "an empty message".to_string(), |e| e.message);
                return vec![Err(StoreError::etcd(&self.endpoint, message))];
            }
            Err(e) => return vec![Err(e)],
        };
        if response.canceled {
            return vec![Err(if response.compact_revision > 0 {
                StoreError::Compacted {
                    requested: self.after + 1,
                    oldest: response.compact_revision as Revision,
                }
            } else {
                StoreError::etcd(
                    &self.endpoint,
                    format!("etcd canceled the watch: {}", response.cancel_reason),
                )
            })];
        }
        let mut out = Vec::with_capacity(response.events.len());
        for raw in response.events {
            match self.event(raw) {
                Ok(event) => {
                    self.after = self.after.max(event.revision());
                    out.push(Ok(event));
                }
                Err(e) => {
                    out.push(Err(StoreError::etcd(&self.endpoint, e)));
                    break;
                }
            }
        }
        out
    }

    fn event(&self, raw: RawEvent) -> Result<Event, String> {
        let prev = raw
            .prev_kv
            .map(|kv| convert_kv(&self.namespace, kv))
            .transpose()?;
        if raw.kind == "DELETE" {
            // etcd's delete event carries only the key and revision; the last value is in
            // prev_kv (asked for with prev_kv: true).
            let revision = raw.kv.mod_revision as Revision;
            let kv = convert_kv(&self.namespace, raw.kv)?;
            Ok(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: kv.key,
                    value: prev.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
                    create_revision: prev.as_ref().map_or(0, |p| p.create_revision),
                    mod_revision: revision,
                },
                prev,
            })
        } else {
            Ok(Event {
                kind: EventKind::Put,
                kv: convert_kv(&self.namespace, raw.kv)?,
                prev,
            })
        }
    }
}

pub(crate) struct EtcdWatch {
    receiver: mpsc::Receiver<Result<Event, StoreError>>,
    task: tokio::task::JoinHandle<()>,
}

impl EtcdWatch {
    pub(crate) async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        self.receiver.recv().await
    }
}

impl Drop for EtcdWatch {
    fn drop(&mut self) {
        // Closes the HTTP stream, which cancels the watch in etcd.
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_be() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
