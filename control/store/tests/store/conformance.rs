//! One behaviour, two backends: every test here runs against the embedded store and against a
//! real etcd started for it.

use std::{sync::Arc, time::Duration};

use crate::common::{put, Harness};
use skiff_store::{
    Event, EventKind, KeyValue, Precondition, Store, StoreError, TxnOutcome, Watch, Write,
};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Harness::embedded()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(harness) = super::Harness::etcd(stringify!($name)) {
                        super::$name(&harness).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    get_put_and_list,
    txn_create_and_update_conflicts,
    failed_precondition_writes_nothing,
    txn_without_changes_keeps_the_revision,
    txn_writing_a_key_twice_keeps_the_last_write,
    delete_events_carry_the_last_value,
    watch_replays_missed_events_then_live_ones,
    watch_from_now_sees_only_live_events,
    watch_from_a_compacted_revision_fails,
    revisions_are_monotonic,
    concurrent_cas_increments_lose_nothing,
);

fn delete(key: &str) -> Write {
    Write::Delete {
        key: key.to_string(),
    }
}

fn absent(key: &str) -> Precondition {
    Precondition::Absent {
        key: key.to_string(),
    }
}

async fn commit(store: &Arc<dyn Store>, writes: Vec<Write>) -> u64 {
    match store.txn(vec![], writes).await.unwrap() {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("expected a commit, got {other:?}"),
    }
}

async fn next_event(watch: &mut Watch) -> Event {
    match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        Ok(Some(Ok(event))) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Asserts no event arrives for a short while.
async fn assert_quiet(watch: &mut Watch) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), watch.next()).await {
        panic!("expected no event, got {item:?}");
    }
}

fn summary(event: &Event) -> (EventKind, String, String, u64) {
    (
        event.kind,
        event.kv.key.clone(),
        String::from_utf8_lossy(&event.kv.value).into_owned(),
        event.kv.mod_revision,
    )
}

async fn get_put_and_list(h: &Harness) {
    let store = &h.store;
    assert_eq!(store.get("/pods/a").await.unwrap(), None);
    let empty = store.list("/pods/").await.unwrap();
    assert!(empty.items.is_empty());

    let r1 = commit(store, vec![put("/pods/b", "B")]).await;
    let r2 = commit(store, vec![put("/pods/a", "A"), put("/podsx", "X")]).await;
    assert!(r2 > r1 && r1 >= empty.revision);

    assert_eq!(
        store.get("/pods/a").await.unwrap(),
        Some(KeyValue {
            key: "/pods/a".to_string(),
            value: b"A".to_vec(),
            create_revision: r2,
            mod_revision: r2,
        })
    );
    let listing = store.list("/pods/").await.unwrap();
    let keys: Vec<_> = listing.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/pods/a", "/pods/b"],
        "sorted, and /podsx is not under /pods/"
    );
    assert_eq!(listing.revision, r2);
    assert_eq!(store.list("").await.unwrap().items.len(), 3);
    assert_eq!(store.revision().await.unwrap(), r2);
    assert!(!store.describe().is_empty());
}

async fn txn_create_and_update_conflicts(h: &Harness) {
    let store = &h.store;
    let created = store
        .txn(vec![absent("/ns/a")], vec![put("/ns/a", "1")])
        .await
        .unwrap();
    let TxnOutcome::Committed { revision: r1 } = created else {
        panic!("create failed: {created:?}");
    };
    assert_eq!(
        store
            .txn(vec![absent("/ns/a")], vec![put("/ns/a", "again")])
            .await
            .unwrap(),
        TxnOutcome::Failed {
            key: "/ns/a".to_string()
        }
    );

    let update = |revision| {
        store.txn(
            vec![Precondition::ModRevision {
                key: "/ns/a".to_string(),
                revision,
            }],
            vec![put("/ns/a", "2")],
        )
    };
    let TxnOutcome::Committed { revision: r2 } = update(r1).await.unwrap() else {
        panic!("update at the current revision failed");
    };
    assert!(r2 > r1);
    // The same update again is stale now: a lost update is refused.
    assert_eq!(
        update(r1).await.unwrap(),
        TxnOutcome::Failed {
            key: "/ns/a".to_string()
        }
    );
    let kv = store.get("/ns/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"2"[..], r1, r2)
    );

    // ModRevision needs the key to exist, whatever the revision asked for.
    for revision in [0, r2] {
        assert_eq!(
            store
                .txn(
                    vec![Precondition::ModRevision {
                        key: "/ns/missing".to_string(),
                        revision,
                    }],
                    vec![put("/ns/missing", "x")],
                )
                .await
                .unwrap(),
            TxnOutcome::Failed {
                key: "/ns/missing".to_string()
            }
        );
    }
}

async fn failed_precondition_writes_nothing(h: &Harness) {
    let store = &h.store;
    let r1 = commit(store, vec![put("/x/held", "1")]).await;
    let outcome = store
        .txn(
            vec![absent("/x/new"), absent("/x/held"), absent("/x/other")],
            vec![put("/x/new", "n"), delete("/x/held"), put("/x/third", "t")],
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TxnOutcome::Failed {
            key: "/x/held".to_string()
        },
        "the first precondition that does not hold is named"
    );
    assert_eq!(store.revision().await.unwrap(), r1);
    let keys: Vec<_> = store
        .list("/x/")
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, ["/x/held"]);

    // And when every precondition holds, every write lands at one revision.
    let r2 = match store
        .txn(
            vec![absent("/x/new")],
            vec![put("/x/new", "n"), delete("/x/held"), put("/x/third", "t")],
        )
        .await
        .unwrap()
    {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("{other:?}"),
    };
    let listing = store.list("/x/").await.unwrap();
    let got: Vec<_> = listing
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.mod_revision))
        .collect();
    assert_eq!(got, [("/x/new", r2), ("/x/third", r2)]);
}

async fn txn_without_changes_keeps_the_revision(h: &Harness) {
    let store = &h.store;
    let r1 = commit(store, vec![put("/k", "v")]).await;
    let kv = store.get("/k").await.unwrap().unwrap();
    let check = store
        .txn(
            vec![
                Precondition::ModRevision {
                    key: "/k".to_string(),
                    revision: kv.mod_revision,
                },
                absent("/nothing"),
            ],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(check, TxnOutcome::Committed { revision: r1 });
    // Deleting a missing key changes nothing: no new revision, no event.
    let mut watch = store.watch("/", r1).await.unwrap();
    assert_eq!(
        store.txn(vec![], vec![delete("/nothing")]).await.unwrap(),
        TxnOutcome::Committed { revision: r1 }
    );
    assert_eq!(store.revision().await.unwrap(), r1);
    assert_quiet(&mut watch).await;
}

async fn txn_writing_a_key_twice_keeps_the_last_write(h: &Harness) {
    let store = &h.store;
    let r1 = commit(store, vec![put("/d", "first"), put("/d", "second")]).await;
    assert_eq!(store.get("/d").await.unwrap().unwrap().value, b"second");
    commit(store, vec![put("/d", "third"), delete("/d")]).await;
    assert_eq!(store.get("/d").await.unwrap(), None);
    let mut watch = store.watch("/d", r1).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(event.kind, EventKind::Delete);
    assert_eq!(event.kv.value, b"second");
}

async fn delete_events_carry_the_last_value(h: &Harness) {
    let store = &h.store;
    let r1 = commit(store, vec![put("/pods/a", "v1")]).await;
    let r2 = commit(store, vec![put("/pods/a", "v2")]).await;
    let mut watch = store.watch("/pods/", r2).await.unwrap();
    let r3 = commit(store, vec![delete("/pods/a")]).await;
    let event = next_event(&mut watch).await;
    let last = KeyValue {
        key: "/pods/a".to_string(),
        value: b"v2".to_vec(),
        create_revision: r1,
        mod_revision: r2,
    };
    assert_eq!(
        event,
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                mod_revision: r3,
                ..last.clone()
            },
            prev: Some(last),
        }
    );
}

async fn watch_replays_missed_events_then_live_ones(h: &Harness) {
    let store = &h.store;
    commit(store, vec![put("/pods/old", "o")]).await;
    let listing = store.list("/pods/").await.unwrap();

    let r1 = commit(store, vec![put("/pods/a", "1")]).await;
    let r2 = commit(store, vec![put("/other/x", "ignored"), put("/pods/b", "2")]).await;
    let r3 = commit(store, vec![put("/pods/a", "1b")]).await;
    let r4 = commit(store, vec![delete("/pods/old")]).await;

    let mut watch = store.watch("/pods/", listing.revision).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(summary(&next_event(&mut watch).await));
    }
    assert_eq!(
        seen,
        [
            (EventKind::Put, "/pods/a".into(), "1".into(), r1),
            (EventKind::Put, "/pods/b".into(), "2".into(), r2),
            (EventKind::Put, "/pods/a".into(), "1b".into(), r3),
            (EventKind::Delete, "/pods/old".into(), "o".into(), r4),
        ]
    );
    let update = next_event_after(&mut watch, store, put("/pods/b", "live")).await;
    assert_eq!(update.kv.value, b"live");
    assert_eq!(update.prev.map(|p| p.value), Some(b"2".to_vec()));
    assert_quiet(&mut watch).await;

    // A second watcher from a point in the middle sees exactly the rest, in order.
    let mut from_middle = store.watch("/pods/", r2).await.unwrap();
    assert_eq!(next_event(&mut from_middle).await.kv.mod_revision, r3);
    assert_eq!(next_event(&mut from_middle).await.kv.mod_revision, r4);
}

async fn next_event_after(watch: &mut Watch, store: &Arc<dyn Store>, write: Write) -> Event {
    let revision = commit(store, vec![write]).await;
    let event = next_event(watch).await;
    assert_eq!(event.kv.mod_revision, revision);
    event
}

async fn watch_from_now_sees_only_live_events(h: &Harness) {
    let store = &h.store;
    commit(store, vec![put("/a", "1")]).await;
    let now = store.revision().await.unwrap();
    let mut watch = store.watch("/", now).await.unwrap();
    assert_quiet(&mut watch).await;
    let event = next_event_after(&mut watch, store, put("/b", "2")).await;
    assert_eq!((event.kind, event.kv.key.as_str()), (EventKind::Put, "/b"));
    assert_eq!(event.prev, None, "a create has no previous value");
}

async fn watch_from_a_compacted_revision_fails(h: &Harness) {
    let store = &h.store;
    let start = commit(store, vec![put("/c/a", "1")]).await;
    commit(store, vec![put("/c/a", "2")]).await;
    h.compact().await;
    commit(store, vec![put("/c/a", "3")]).await;
    match store.watch("/c/", start - 1).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!(requested, start);
            assert!(oldest > requested, "oldest {oldest}");
            let message = StoreError::Compacted { requested, oldest }.to_string();
            assert!(message.contains("list again"), "{message}");
        }
        Err(other) => panic!("expected Compacted, got {other}"),
        Ok(_) => panic!("expected Compacted, got a watch"),
    }
    // Relisting and watching from the listing's revision is the cure.
    let listing = store.list("/c/").await.unwrap();
    let mut watch = store.watch("/c/", listing.revision).await.unwrap();
    next_event_after(&mut watch, store, put("/c/a", "4")).await;
}

async fn revisions_are_monotonic(h: &Harness) {
    let store = &h.store;
    let mut last = store.revision().await.unwrap();
    assert!(last >= 1);
    for i in 0..20 {
        let revision = commit(store, vec![put(&format!("/m/{}", i % 3), "v")]).await;
        assert!(revision > last, "{revision} after {last}");
        assert_eq!(store.revision().await.unwrap(), revision);
        last = revision;
    }
}

async fn concurrent_cas_increments_lose_nothing(h: &Harness) {
    const TASKS: usize = 8;
    const EACH: usize = 100;
    let store = &h.store;
    commit(store, vec![put("/counter", "0")]).await;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..EACH {
                loop {
                    let kv = store.get("/counter").await.unwrap().unwrap();
                    let n: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                    let outcome = store
                        .txn(
                            vec![Precondition::ModRevision {
                                key: "/counter".to_string(),
                                revision: kv.mod_revision,
                            }],
                            vec![put("/counter", &(n + 1).to_string())],
                        )
                        .await
                        .unwrap();
                    match outcome {
                        TxnOutcome::Committed { .. } => break,
                        TxnOutcome::Failed { .. } => {
                            // Back off as a real client would, so that eight writers spend the
                            // test's time writing rather than re-reading a hot key.
                            conflicts += 1;
                            tokio::time::sleep(Duration::from_micros(500 * (t as u64 + 1))).await;
                        }
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let value = store.get("/counter").await.unwrap().unwrap().value;
    assert_eq!(
        String::from_utf8(value).unwrap(),
        (TASKS * EACH).to_string(),
        "after {conflicts} conflicts"
    );
    if h.is_etcd() {
        return;
    }
    // Only this test writes to the embedded store, so every increment is one revision.
    assert_eq!(
        store.revision().await.unwrap(),
        1 + 1 + (TASKS * EACH) as u64
    );
}
