//! What only the etcd backend has besides elections: namespaces and endpoint failover.

use crate::common::put;
use skiff_store::{testing::EtcdServer, EtcdStore, Store, StoreError, TxnOutcome};

fn connect(server: &EtcdServer, prefix: &str) -> EtcdStore {
    EtcdStore::connect(&[server.endpoint()], prefix).unwrap()
}

#[tokio::test]
async fn prefixes_keep_stores_apart_and_out_of_sight() {
    let Some(server) = EtcdServer::start_or_skip("prefixes") else {
        return;
    };
    let one = connect(&server, "/one");
    let two = connect(&server, "/two/");
    one.txn(vec![], vec![put("/k", "1")]).await.unwrap();
    let _leader = one.campaign("control", "me").await.unwrap();
    assert_eq!(two.get("/k").await.unwrap(), None);
    let listing = one.list("").await.unwrap();
    let keys: Vec<_> = listing.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/k"],
        "no namespace in keys, no election keys in listings"
    );
    assert_eq!(one.describe(), format!("etcd ({})", server.endpoint()));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_skipped() {
    let Some(server) = EtcdServer::start_or_skip("failover") else {
        return;
    };
    // Nothing listens on port 1.
    let endpoints = ["http://127.0.0.1:1".to_string(), server.endpoint()];
    let store = EtcdStore::connect(&endpoints, "/skiff").unwrap();
    let outcome = store.txn(vec![], vec![put("/k", "v")]).await.unwrap();
    assert!(matches!(outcome, TxnOutcome::Committed { .. }));

    let nowhere = EtcdStore::connect(&["http://127.0.0.1:1".to_string()], "/skiff").unwrap();
    match nowhere.revision().await {
        Err(StoreError::Etcd { endpoint, message }) => {
            assert_eq!(endpoint, "http://127.0.0.1:1");
            assert!(message.contains("no endpoint reachable"), "{message}");
        }
        other => panic!("expected an etcd error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_large_listing_comes_in_pages_at_one_revision() {
    let Some(server) = EtcdServer::start_or_skip("paging") else {
        return;
    };
    let store = connect(&server, "/skiff");
    // etcd allows 128 operations per transaction by default.
    for batch in 0..20 {
        let writes = (0..125)
            .map(|i| put(&format!("/many/{:05}", batch * 125 + i), "v"))
            .collect();
        store.txn(vec![], writes).await.unwrap();
    }
    let revision = store.revision().await.unwrap();
    let listing = store.list("/many/").await.unwrap();
    assert_eq!(listing.items.len(), 2500);
    assert_eq!(listing.revision, revision);
    let keys: Vec<_> = listing.items.iter().map(|kv| kv.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "sorted, no key twice across pages");
}
