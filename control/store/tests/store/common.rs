//! What the integration tests share: a store of either backend, ready to use.

use std::sync::Arc;

use skiff_store::{testing::EtcdServer, EmbeddedOptions, EmbeddedStore, Store, TxnOutcome, Write};

/// How many events the embedded harness keeps for watches: small, so that `compact` can push
/// history out cheaply.
pub const HISTORY: usize = 64;

/// A store under test and what keeps it alive.
pub struct Harness {
    pub store: Arc<dyn Store>,
    backend: Backend,
}

enum Backend {
    Embedded { _dir: tempfile::TempDir },
    Etcd { server: EtcdServer },
}

impl Harness {
    pub fn embedded() -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let options = EmbeddedOptions {
            history: HISTORY,
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open(dir.path(), options).expect("open the embedded store");
        Harness {
            store: Arc::new(store),
            backend: Backend::Embedded { _dir: dir },
        }
    }

    /// `None` (test skipped) only when etcd is missing outside CI.
    pub fn etcd(test: &str) -> Option<Harness> {
        let server = EtcdServer::start_or_skip(test)?;
        let store = skiff_store::EtcdStore::connect(&[server.endpoint()], "/skiff-test")
            .expect("connect to etcd");
        Some(Harness {
            store: Arc::new(store),
            backend: Backend::Etcd { server },
        })
    }

    pub fn is_etcd(&self) -> bool {
        matches!(self.backend, Backend::Etcd { .. })
    }

    /// Makes the store forget the history of every revision up to now.
    pub async fn compact(&self) {
        match &self.backend {
            Backend::Embedded { .. } => {
                // One transaction with more writes than the history holds evicts everything
                // before it.
                let writes = (0..=HISTORY)
                    .map(|i| Write::Put {
                        key: format!("/filler/{i}"),
                        value: vec![],
                    })
                    .collect();
                let outcome = self.store.txn(vec![], writes).await.unwrap();
                assert!(matches!(outcome, TxnOutcome::Committed { .. }));
            }
            Backend::Etcd { server } => {
                let revision = self.store.revision().await.unwrap();
                let answer = reqwest::Client::new()
                    .post(format!("{}/v3/kv/compaction", server.endpoint()))
                    .json(
                        &serde_json::json!({ "revision": revision.to_string(), "physical": true }),
                    )
                    .send()
                    .await
                    .unwrap();
                assert!(answer.status().is_success(), "{:?}", answer.text().await);
            }
        }
    }
}

pub fn put(key: &str, value: &str) -> Write {
    Write::Put {
        key: key.to_string(),
        value: value.as_bytes().to_vec(),
    }
}
