//! The embedded store's durability: reopening, torn and corrupt logs, snapshots, the lock, slow
//! watchers, and a real kill -9 in the middle of writing.

use std::{
    fs::OpenOptions,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::common::put;
use skiff_store::{
    EmbeddedOptions, EmbeddedStore, EventKind, Precondition, Store, StoreError, TxnOutcome, Write,
};

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open")
}

async fn commit(store: &EmbeddedStore, writes: Vec<Write>) -> u64 {
    match store.txn(vec![], writes).await.unwrap() {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("{other:?}"),
    }
}

async fn value(store: &EmbeddedStore, key: &str) -> Option<String> {
    let kv = store.get(key).await.unwrap()?;
    Some(String::from_utf8(kv.value).unwrap())
}

#[tokio::test]
async fn a_new_store_starts_at_revision_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.revision().await.unwrap(), 1);
    assert_eq!(commit(&store, vec![put("a", "1")]).await, 2);
    assert_eq!(
        store.describe(),
        format!("embedded ({})", dir.path().display())
    );
    let leadership = store.campaign("control", "me:1").await.unwrap();
    assert!(leadership.is_leader());
}

#[tokio::test]
async fn reopen_after_drop_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let r1 = commit(&store, vec![put("/a", "1"), put("/b", "1")]).await;
    let r2 = commit(&store, vec![put("/a", "2")]).await;
    let r3 = commit(
        &store,
        vec![Write::Delete {
            key: "/b".to_string(),
        }],
    )
    .await;
    let before = store.list("").await.unwrap();
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.list("").await.unwrap(), before);
    assert_eq!(store.revision().await.unwrap(), r3);
    let a = store.get("/a").await.unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision), (r1, r2));
    // The log is replayed into the watch history too: a watcher can resume across a restart.
    let mut watch = store.watch("/", r1).await.unwrap();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!((first.kv.mod_revision, first.kind), (r2, EventKind::Put));
    let second = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (second.kv.mod_revision, second.kind),
        (r3, EventKind::Delete)
    );
    assert_eq!(commit(&store, vec![put("/c", "1")]).await, r3 + 1);
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, vec![put("/a", "1")]).await;
    let r2 = commit(&store, vec![put("/b", "2")]).await;
    let before_last = std::fs::metadata(dir.path().join("log")).unwrap().len();
    commit(&store, vec![put("/c", "a value long enough to tear")]).await;
    drop(store);

    // A crash mid-write leaves part of the last record.
    let log = dir.path().join("log");
    let full = std::fs::metadata(&log).unwrap().len();
    let file = OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(full - 5).unwrap();
    drop(file);

    let store = open(dir.path());
    assert_eq!(value(&store, "/b").await.as_deref(), Some("2"));
    assert_eq!(value(&store, "/c").await, None);
    assert_eq!(store.revision().await.unwrap(), r2);
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        before_last,
        "cut back to the last whole record"
    );
    // New writes follow on cleanly and survive another reopen.
    let r3 = commit(&store, vec![put("/d", "4")]).await;
    assert_eq!(r3, r2 + 1);
    drop(store);
    let store = open(dir.path());
    assert_eq!(value(&store, "/d").await.as_deref(), Some("4"));

    // Garbage after the last record (an unsynced write's pages) is a crash artefact too.
    drop(store);
    let mut file = OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(&[0xab; 100]).unwrap();
    drop(file);
    let store = open(dir.path());
    assert_eq!(store.revision().await.unwrap(), r3);
}

#[tokio::test]
async fn a_corrupt_record_in_the_middle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..3 {
        commit(&store, vec![put(&format!("/k{i}"), "some value")]).await;
    }
    drop(store);

    let log = dir.path().join("log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[12] ^= 0x40; // inside the first record's payload
    std::fs::write(&log, &bytes).unwrap();

    match EmbeddedStore::open(dir.path(), EmbeddedOptions::default()) {
        Err(StoreError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, log.display().to_string());
            assert_eq!(offset, 0);
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a corrupt log was accepted"),
    }
    let message = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("offset 0"), "{message}");
}

#[tokio::test]
async fn compaction_writes_a_snapshot_and_recovery_uses_it_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let small = EmbeddedOptions {
        compact_log_bytes: 2048,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), small.clone()).unwrap();
    let mut last = 0;
    for i in 0..200 {
        last = commit(&store, vec![put(&format!("/k/{}", i % 50), &i.to_string())]).await;
    }
    commit(
        &store,
        vec![Write::Delete {
            key: "/k/0".to_string(),
        }],
    )
    .await;
    let expected = store.list("").await.unwrap();
    drop(store);

    let snapshot = std::fs::metadata(dir.path().join("snapshot"))
        .unwrap()
        .len();
    let log = std::fs::metadata(dir.path().join("log")).unwrap().len();
    assert!(snapshot > 0);
    assert!(log < 2048 + 200, "the log was restarted ({log} bytes)");

    let store = EmbeddedStore::open(dir.path(), small.clone()).unwrap();
    assert_eq!(store.list("").await.unwrap(), expected);
    assert_eq!(expected.revision, last + 1);
    // History before the snapshot is gone; after it, it is replayed from the log.
    assert!(matches!(
        store.watch("/", 1).await,
        Err(StoreError::Compacted { .. })
    ));
    let kv = store.get("/k/49").await.unwrap().unwrap();
    assert_eq!(kv.value, b"199");
}

#[tokio::test]
async fn a_crash_between_snapshot_and_log_reset_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..20 {
        commit(&store, vec![put(&format!("/k/{i}"), "v")]).await;
    }
    drop(store);
    let old_log = std::fs::read(dir.path().join("log")).unwrap();

    // Compact on the next write, then put the old log back: the state a crash right after the
    // snapshot's rename leaves behind (every log record already in the snapshot).
    let eager = EmbeddedOptions {
        compact_log_bytes: 1,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), eager).unwrap();
    let last = commit(&store, vec![put("/last", "v")]).await;
    let expected = store.list("").await.unwrap();
    drop(store);
    assert_eq!(std::fs::metadata(dir.path().join("log")).unwrap().len(), 0);
    std::fs::write(dir.path().join("log"), old_log).unwrap();

    let store = open(dir.path());
    assert_eq!(store.list("").await.unwrap(), expected);
    assert_eq!(commit(&store, vec![put("/after", "v")]).await, last + 1);
    drop(store);
    let store = open(dir.path());
    assert_eq!(value(&store, "/after").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    match EmbeddedStore::open(dir.path(), EmbeddedOptions::default()) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.path().display().to_string()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("two stores opened one directory"),
    }
    drop(store);
    open(dir.path());
}

#[tokio::test]
async fn a_slow_watcher_is_cut_off_without_slowing_writers() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        watch_buffer: 4,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    let mut slow = store.watch("/", 1).await.unwrap();
    for i in 0..20 {
        commit(&store, vec![put("/k", &i.to_string())]).await;
    }
    match slow.next().await {
        Some(Err(StoreError::Compacted { requested, .. })) => assert_eq!(requested, 2),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(
        slow.next().await.is_none(),
        "the stream ends after the error"
    );
    // A new watcher catches up from the history instead.
    let mut fresh = store.watch("/", 1).await.unwrap();
    for i in 0..20 {
        let event = fresh.next().await.unwrap().unwrap();
        assert_eq!(event.kv.value, i.to_string().as_bytes());
    }
}

#[tokio::test]
async fn watches_end_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut watch = store.watch("/", 1).await.unwrap();
    drop(store);
    assert!(watch.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_fsyncs_and_keep_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let key = format!("/t{t}/{i}");
                let outcome = store
                    .txn(
                        vec![Precondition::Absent { key: key.clone() }],
                        vec![put(&key, "v")],
                    )
                    .await
                    .unwrap();
                assert!(matches!(outcome, TxnOutcome::Committed { .. }));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.revision().await.unwrap(), 1 + 16 * 25);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.list("/").await.unwrap().items.len(), 16 * 25);
}

/// The child process of `kill_9_loses_no_acknowledged_write`: writes pairs of keys in single
/// transactions and prints each one once it is acknowledged, until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_writer() {
    let Some(dir) = std::env::var_os("SKIFF_STORE_CRASH_DIR") else {
        return; // only meaningful as the child of the kill -9 test
    };
    let store = EmbeddedStore::open(Path::new(&dir), EmbeddedOptions::default()).unwrap();
    let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel();
    for t in 0..4 {
        let store = store.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let n = format!("{t}-{i}");
                let writes = vec![put(&format!("/a/{n}"), &n), put(&format!("/b/{n}"), &n)];
                store.txn(vec![], writes).await.unwrap();
                acked.send(n).unwrap();
            }
        });
    }
    let mut out = std::io::stdout().lock();
    while let Some(n) = acks.recv().await {
        writeln!(out, "acked {n}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "embedded::crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SKIFF_STORE_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    let started = Instant::now();
    while acked.len() < 300 && started.elapsed() < Duration::from_secs(10) {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(n) = line.strip_prefix("acked ") {
                    acked.push(n.to_string());
                }
            }
            _ => break,
        }
    }
    child.kill().unwrap(); // SIGKILL, while the writers are mid-flight
    child.wait().unwrap();
    // Acknowledgements printed before the kill are still in the pipe.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("acked ") {
            acked.push(n.to_string());
        }
    }
    assert!(
        acked.len() >= 100,
        "the child acknowledged only {}",
        acked.len()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = open(dir.path());
        for n in &acked {
            assert_eq!(
                value(&store, &format!("/a/{n}")).await.as_deref(),
                Some(n.as_str()),
                "acknowledged write {n} was lost"
            );
        }
        // Whatever survived beyond the acknowledged ones, no transaction is half there.
        let a = store.list("/a/").await.unwrap().items.len();
        let b = store.list("/b/").await.unwrap().items.len();
        assert_eq!(a, b);
        assert!(a >= acked.len());
    });
}
