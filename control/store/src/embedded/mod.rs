//! The embedded backend: the whole store in memory, made durable by an append-only log of
//! checksummed records (one per transaction) and an occasional snapshot, in one directory
//! that one process owns at a time.
//!
//! One writer thread owns the log. It takes every transaction queued while the previous
//! fdatasync ran, checks and applies them in order against the in-memory state plus the
//! batch's own earlier writes, appends their records with one write(), syncs once (group
//! commit), and only then publishes the batch to readers and watchers and answers the callers.
//! So readers never see a write that a crash could still take back.

mod log;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    ops::Bound,
    path::{Path, PathBuf},
    sync::{mpsc, Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak},
    thread,
};

use tokio::sync::{broadcast, oneshot};

use crate::{
    last_write_per_key, Event, EventKind, KeyValue, Leadership, LeadershipSource, Listing,
    Precondition, Revision, Store, StoreError, TxnOutcome, Watch, WatchSource, Write,
};

const LOCK_FILE: &str = "lock";
const LOG_FILE: &str = "log";
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// Bounds one group commit so a flood of writers cannot make a single fsync unboundedly late.
const MAX_BATCH: usize = 1024;

/// Tuning for [`EmbeddedStore::open`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How many past events stay in memory for watches that resume from an older revision.
    pub history: usize,
    /// Log size in bytes past which the store writes a snapshot and starts an empty log.
    pub compact_log_bytes: u64,
    /// How many transactions a watcher may fall behind before its stream ends with
    /// `Err(Compacted)` (a slow watcher must never hold writers back).
    pub watch_buffer: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history: 10_000,
            compact_log_bytes: 64 << 20,
            watch_buffer: 4096,
        }
    }
}

/// The default store: see the module docs and `README.md`. Cloning shares one store; the
/// directory is released when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    state: Arc<RwLock<State>>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<thread::JoinHandle<()>>,
    // Held for the flock; released when dropped, after the writer has finished.
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit; waiting for it means
        // the directory is really free (the log closed) once the store is gone.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

struct State {
    kvs: BTreeMap<String, KeyValue>,
    revision: Revision,
    history: VecDeque<Event>,
    history_len: usize,
    /// Every event with a revision above this one is still in `history`.
    floor: Revision,
}

impl State {
    fn apply(&mut self, revision: Revision, events: &[Event]) {
        for event in events {
            match event.kind {
                EventKind::Put => {
                    self.kvs.insert(event.kv.key.clone(), event.kv.clone());
                }
                EventKind::Delete => {
                    self.kvs.remove(&event.kv.key);
                }
            }
            self.remember(event.clone());
        }
        self.revision = revision;
    }

    fn remember(&mut self, event: Event) {
        if self.history.len() >= self.history_len {
            let evicted = match self.history.pop_front() {
                Some(oldest) => oldest.revision(),
                None => event.revision(), // history of 0: nothing can be replayed
            };
            self.floor = self.floor.max(evicted);
            if self.history_len == 0 {
                return;
            }
        }
        self.history.push_back(event);
    }
}

/// The events one transaction's (deduplicated) writes make at `revision`, `lookup` giving each
/// key's value before them. Deleting a missing key is no change, hence no event.
fn events_for(
    revision: Revision,
    writes: &[Write],
    lookup: impl Fn(&str) -> Option<KeyValue>,
) -> Vec<Event> {
    writes
        .iter()
        .filter_map(|write| {
            let prev = lookup(write.key());
            match write {
                Write::Put { key, value } => Some(Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                        mod_revision: revision,
                    },
                    prev,
                }),
                Write::Delete { .. } => prev.map(|prev| Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        mod_revision: revision,
                        ..prev.clone()
                    },
                    prev: Some(prev),
                }),
            }
        })
        .collect()
}

fn read(state: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    state
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(state: &RwLock<State>) -> RwLockWriteGuard<'_, State> {
    state
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("syncing directory {}", dir.display()), e))
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`: takes the directory's lock, loads the
    /// snapshot, replays the log (cutting a torn last record off), and starts the writer.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;

        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(format!("opening {}", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: dir.display().to_string(),
                })
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(StoreError::io(
                    format!("locking {}", lock_path.display()),
                    e,
                ))
            }
        }

        let mut state = load_snapshot(dir, options.history)?;
        let (log, log_len) = replay_log(dir, &mut state)?;
        tracing::info!(
            dir = %dir.display(),
            revision = state.revision,
            keys = state.kvs.len(),
            "embedded store opened"
        );

        let state = Arc::new(RwLock::new(state));
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let (requests, queue) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            log_path: dir.join(LOG_FILE),
            log,
            log_len,
            state: state.clone(),
            events: events.clone(),
            compact_log_bytes: options.compact_log_bytes,
            broken: None,
        };
        let writer = thread::Builder::new()
            .name("skiff-store-writer".to_string())
            .spawn(move || writer.run(queue))
            .map_err(|e| StoreError::io("starting the store's writer thread", e))?;

        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                state,
                events,
                requests: Some(requests),
                writer: Some(writer),
                _lock: lock,
            }),
        })
    }

    fn state(&self) -> RwLockReadGuard<'_, State> {
        read(&self.inner.state)
    }
}

fn load_snapshot(dir: &Path, history_len: usize) -> Result<State, StoreError> {
    let tmp = dir.join(SNAPSHOT_TMP);
    match fs::remove_file(&tmp) {
        Ok(()) => tracing::warn!(path = %tmp.display(), "removed an unfinished snapshot"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(format!("removing {}", tmp.display()), e)),
    }
    let path = dir.join(SNAPSHOT_FILE);
    let (revision, kvs, floor) = match fs::read(&path) {
        Ok(buf) => {
            let (revision, kvs) = log::decode_snapshot(&buf, &path.display().to_string())?;
            // The events before the snapshot are gone.
            (revision, kvs, revision)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => (1, Vec::new(), 0),
        Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
    };
    Ok(State {
        kvs: kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
        revision,
        history: VecDeque::with_capacity(history_len.min(1024)),
        history_len,
        floor,
    })
}

/// Applies the log on top of the snapshot in `state`; returns the log opened for appending.
fn replay_log(dir: &Path, state: &mut State) -> Result<(File, u64), StoreError> {
    let path = dir.join(LOG_FILE);
    let shown = path.display().to_string();
    let io_err = |what: &str| {
        let context = format!("{what} {shown}");
        move |e| StoreError::io(context, e)
    };
    let existed = path.exists();
    let mut log = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)
        .map_err(io_err("opening"))?;
    if !existed {
        sync_dir(dir)?;
    }
    let mut buf = Vec::new();
    log.read_to_end(&mut buf).map_err(io_err("reading"))?;

    let scan = log::scan_log(&buf, &shown, state.revision)?;
    if let Some(why) = &scan.torn {
        tracing::warn!(
            path = %shown,
            offset = scan.valid_len,
            bytes = buf.len() as u64 - scan.valid_len,
            "cutting a torn record off the end of the log ({why}): a crash interrupted a write \
             that was never acknowledged"
        );
        log.set_len(scan.valid_len).map_err(io_err("truncating"))?;
        log.sync_all().map_err(io_err("syncing"))?;
    }
    for (offset, record) in scan.records {
        if record.revision <= state.revision {
            // Already in the snapshot: a crash came between writing it and emptying the log.
            continue;
        }
        if record.revision != state.revision + 1 {
            return Err(StoreError::Corrupt {
                path: shown,
                offset,
                reason: format!(
                    "record of revision {} where {} was expected",
                    record.revision,
                    state.revision + 1
                ),
            });
        }
        let events = events_for(record.revision, &record.writes, |k| {
            state.kvs.get(k).cloned()
        });
        state.apply(record.revision, &events);
    }
    Ok((log, scan.valid_len))
}

struct Request {
    preconditions: Vec<Precondition>,
    writes: Vec<Write>,
    reply: oneshot::Sender<Result<TxnOutcome, StoreError>>,
}

struct Writer {
    dir: PathBuf,
    log_path: PathBuf,
    log: File,
    log_len: u64,
    state: Arc<RwLock<State>>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    compact_log_bytes: u64,
    /// Set once a write or fdatasync of the log failed: after a failed fsync the file's
    /// contents are unknown (the kernel may have dropped the dirty pages), so appending more
    /// could acknowledge writes behind a hole. Restarting recovers from what is on disk.
    broken: Option<String>,
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Request>) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            batch.extend(queue.try_iter().take(MAX_BATCH - 1));
            self.commit(batch);
            if self.broken.is_none() && self.log_len > self.compact_log_bytes {
                if let Err(e) = self.compact() {
                    // The log is still intact and complete; compaction is retried after the
                    // next batch.
                    tracing::warn!(error = %e, "store compaction failed");
                }
            }
        }
    }

    fn commit(&mut self, batch: Vec<Request>) {
        if let Some(why) = &self.broken {
            for request in batch {
                let _ = request.reply.send(Err(broken_error(&self.log_path, why)));
            }
            return;
        }

        let mut answers = Vec::with_capacity(batch.len());
        let mut applied: Vec<(Revision, Vec<Event>)> = Vec::new();
        let mut bytes = Vec::new();
        {
            let state = read(&self.state);
            // The batch's own writes, visible to its later transactions before they are durable.
            let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
            let lookup =
                |overlay: &HashMap<String, Option<KeyValue>>, key: &str| match overlay.get(key) {
                    Some(value) => value.clone(),
                    None => state.kvs.get(key).cloned(),
                };
            let mut revision = state.revision;
            let batch_start = revision + 1;
            for request in batch {
                let failed = request
                    .preconditions
                    .iter()
                    .find(|p| !p.holds(lookup(&overlay, p.key()).as_ref()));
                let outcome = match failed {
                    Some(p) => TxnOutcome::Failed {
                        key: p.key().to_string(),
                    },
                    None => {
                        let writes = last_write_per_key(request.writes);
                        let events = events_for(revision + 1, &writes, |k| lookup(&overlay, k));
                        if !events.is_empty() {
                            revision += 1;
                            let effective: Vec<Write> = events.iter().map(as_write).collect();
                            log::encode_txn(revision, batch_start, &effective, &mut bytes);
                            for event in &events {
                                let after =
                                    (event.kind == EventKind::Put).then(|| event.kv.clone());
                                overlay.insert(event.kv.key.clone(), after);
                            }
                            applied.push((revision, events));
                        }
                        TxnOutcome::Committed { revision }
                    }
                };
                answers.push((request.reply, outcome));
            }
        }

        if !bytes.is_empty() {
            if let Err(e) = self
                .log
                .write_all(&bytes)
                .and_then(|()| self.log.sync_data())
            {
                let why = format!("writing or syncing {} failed: {e}", self.log_path.display());
                tracing::error!("{why}; the store accepts no more writes until restarted");
                for (reply, _) in answers {
                    let _ = reply.send(Err(broken_error(&self.log_path, &why)));
                }
                self.broken = Some(why);
                return;
            }
            self.log_len += bytes.len() as u64;
        }

        {
            let mut state = write(&self.state);
            for (revision, events) in applied {
                state.apply(revision, &events);
                // Sent under the lock so that a watch opening now sees each event exactly once:
                // either in the history it copies or on the channel it subscribes to.
                let _ = self.events.send(Arc::new(events));
            }
        }
        for (reply, outcome) in answers {
            let _ = reply.send(Ok(outcome));
        }
    }

    /// Writes a snapshot of the whole state and empties the log. Crash-safe at every step: the
    /// snapshot replaces the old one only by rename once synced, and log records it already
    /// covers are skipped on replay until the log is emptied.
    fn compact(&mut self) -> Result<(), StoreError> {
        let (revision, bytes) = {
            let state = read(&self.state);
            (
                state.revision,
                log::encode_snapshot(state.revision, state.kvs.values()),
            )
        };
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let path = self.dir.join(SNAPSHOT_FILE);
        File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_all()
            })
            .map_err(|e| StoreError::io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, &path).map_err(|e| {
            StoreError::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })?;
        sync_dir(&self.dir)?;
        self.log
            .set_len(0)
            .and_then(|()| self.log.sync_all())
            .map_err(|e| StoreError::io(format!("emptying {}", self.log_path.display()), e))?;
        tracing::info!(
            revision,
            snapshot_bytes = bytes.len(),
            log_bytes = self.log_len,
            "store compacted: snapshot written, log emptied"
        );
        self.log_len = 0;
        Ok(())
    }
}

fn as_write(event: &Event) -> Write {
    match event.kind {
        EventKind::Put => Write::Put {
            key: event.kv.key.clone(),
            value: event.kv.value.clone(),
        },
        EventKind::Delete => Write::Delete {
            key: event.kv.key.clone(),
        },
    }
}

fn broken_error(log_path: &Path, why: &str) -> StoreError {
    StoreError::io(
        format!(
            "{} is unusable after an earlier failure",
            log_path.display()
        ),
        io::Error::other(why.to_string()),
    )
}

fn writer_gone(dir: &Path) -> StoreError {
    StoreError::io(
        format!("embedded store {}", dir.display()),
        io::Error::other("the writer thread has stopped"),
    )
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.state().kvs.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let state = self.state();
        let items = state
            .kvs
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok(Listing {
            items,
            revision: state.revision,
        })
    }

    async fn txn(
        &self,
        preconditions: Vec<Precondition>,
        writes: Vec<Write>,
    ) -> Result<TxnOutcome, StoreError> {
        if writes.is_empty() {
            // Nothing to make durable: the state readers see is already durable.
            let state = self.state();
            return Ok(
                match preconditions
                    .iter()
                    .find(|p| !p.holds(state.kvs.get(p.key())))
                {
                    Some(p) => TxnOutcome::Failed {
                        key: p.key().to_string(),
                    },
                    None => TxnOutcome::Committed {
                        revision: state.revision,
                    },
                },
            );
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            preconditions,
            writes,
            reply,
        };
        let queued = self
            .inner
            .requests
            .as_ref()
            .is_some_and(|q| q.send(request).is_ok());
        if !queued {
            return Err(writer_gone(&self.inner.dir));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(writer_gone(&self.inner.dir)))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        let state = self.state();
        if after < state.floor {
            return Err(StoreError::Compacted {
                requested: after + 1,
                oldest: state.floor + 1,
            });
        }
        let start = state.history.partition_point(|e| e.revision() <= after);
        let pending = state
            .history
            .range(start..)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        // Subscribing under the read lock: the writer publishes under the write lock.
        let live = self.inner.events.subscribe();
        drop(state);
        Ok(Watch {
            source: WatchSource::Embedded(EmbeddedWatch {
                prefix: prefix.to_string(),
                after,
                delivered: after,
                pending,
                live,
                state: Arc::downgrade(&self.inner.state),
                ended: false,
            }),
        })
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.state().revision)
    }

    async fn campaign(&self, _election: &str, _candidate: &str) -> Result<Leadership, StoreError> {
        // The directory lock already makes this process the only one using the store.
        Ok(Leadership {
            source: LeadershipSource::Embedded,
        })
    }

    fn describe(&self) -> String {
        format!("embedded ({})", self.inner.dir.display())
    }
}

pub(crate) struct EmbeddedWatch {
    prefix: String,
    after: Revision,
    delivered: Revision,
    pending: VecDeque<Event>,
    live: broadcast::Receiver<Arc<Vec<Event>>>,
    // Weak, so that an open watch does not keep a dropped store alive.
    state: Weak<RwLock<State>>,
    ended: bool,
}

impl EmbeddedWatch {
    pub(crate) async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.delivered = event.revision();
                return Some(Ok(event));
            }
            if self.ended {
                return None;
            }
            match self.live.recv().await {
                Ok(events) => self.pending.extend(
                    events
                        .iter()
                        .filter(|e| e.revision() > self.after && e.kv.key.starts_with(&self.prefix))
                        .cloned(),
                ),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.ended = true;
                    let state = self.state.upgrade()?;
                    let oldest = read(&state).floor + 1;
                    return Some(Err(StoreError::Compacted {
                        requested: self.delivered + 1,
                        oldest,
                    }));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
