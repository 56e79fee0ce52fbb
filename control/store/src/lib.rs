//! The control plane's key-value store: an embedded crash-safe backend and etcd v3.
//!
//! The API server keeps every object under a string key and needs only a small, etcd-shaped
//! model, which both backends implement behind the [`Store`] trait:
//!
//! - a single, store-wide [`Revision`] counter that grows by one with every transaction that
//!   writes (etcd: every write anywhere in the cluster, so revisions seen by one prefix are
//!   increasing but not contiguous);
//! - compare-and-swap transactions ([`Store::txn`]): preconditions on keys' existence or
//!   `mod_revision`, then puts and deletes applied atomically at one revision;
//! - prefix listings consistent at a revision, and watches that resume from any revision the
//!   store still keeps ([`StoreError::Compacted`] otherwise: list again, watch from there);
//! - leader election ([`Store::campaign`]) so that only one control plane acts at a time.
//!
//! Backends: [`EmbeddedStore`] (default; one process, an append-only checksummed log in a
//! directory, see `README.md` for the format and durability guarantee) and [`EtcdStore`]
//! (etcd v3 through its JSON gateway). [`testing::EtcdServer`] starts a throwaway etcd for
//! tests.

mod embedded;
mod error;
mod etcd;
mod etcd_server;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::StoreError;
pub use etcd::EtcdStore;

/// Test helpers shared with other crates' tests.
pub mod testing {
    pub use crate::etcd_server::EtcdServer;
}

/// A store-wide logical clock. An empty store is at revision 1, as in etcd.
pub type Revision = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision at which the key was last created (reset by a delete).
    pub create_revision: Revision,
    /// The revision of the last write to the key.
    pub mod_revision: Revision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// The key must not exist.
    Absent { key: String },
    /// The key must exist with exactly this `mod_revision`.
    ModRevision { key: String, revision: Revision },
}

impl Precondition {
    pub fn key(&self) -> &str {
        match self {
            Precondition::Absent { key } | Precondition::ModRevision { key, .. } => key,
        }
    }

    /// Whether the precondition holds against the key's current value.
    pub(crate) fn holds(&self, current: Option<&KeyValue>) -> bool {
        match (self, current) {
            (Precondition::Absent { .. }, current) => current.is_none(),
            (Precondition::ModRevision { revision, .. }, Some(kv)) => kv.mod_revision == *revision,
            (Precondition::ModRevision { .. }, None) => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl Write {
    pub fn key(&self) -> &str {
        match self {
            Write::Put { key, .. } | Write::Delete { key } => key,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// All writes were applied atomically at this one revision (the current revision if the
    /// transaction changed nothing).
    Committed { revision: Revision },
    /// The first precondition that did not hold; nothing was written.
    Failed { key: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a delete: the key, the last value it had, and `mod_revision` = the delete's
    /// revision, so a watcher can tell what went away without a cache of its own.
    pub kv: KeyValue,
    /// The value before this event; `None` for a create.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision the event happened at.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Sorted by key.
    pub items: Vec<KeyValue>,
    /// The store revision the listing is consistent at: watch from here to miss nothing.
    pub revision: Revision,
}

/// An ordered stream of events with revision greater than the `after` it was opened with.
pub struct Watch {
    source: WatchSource,
}

enum WatchSource {
    Embedded(embedded::EmbeddedWatch),
    Etcd(etcd::EtcdWatch),
}

impl Watch {
    /// The next event, in revision order. `Some(Err(Compacted))` means this watcher fell behind
    /// (history it needed is gone): list again and watch from the listing's revision. `None`
    /// means the store shut down (or, after an error, that the stream has ended).
    pub async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        match &mut self.source {
            WatchSource::Embedded(w) => w.next().await,
            WatchSource::Etcd(w) => w.next().await,
        }
    }
}

/// Proof that this process won an election, until [`Leadership::lost`] resolves.
///
/// Dropping it stops renewing the etcd lease without revoking it, exactly as a crash would:
/// another candidate takes over once the lease expires (about 3 s). [`Leadership::resign`]
/// hands over at once.
pub struct Leadership {
    source: LeadershipSource,
}

enum LeadershipSource {
    Embedded,
    Etcd(etcd::EtcdLeadership),
}

impl Leadership {
    /// Resolves when leadership is lost (etcd lease expired / key taken / connection lost).
    /// Never resolves for the embedded store.
    pub async fn lost(&mut self) {
        match &mut self.source {
            LeadershipSource::Embedded => std::future::pending().await,
            LeadershipSource::Etcd(l) => l.lost().await,
        }
    }

    pub fn is_leader(&self) -> bool {
        match &self.source {
            LeadershipSource::Embedded => true,
            LeadershipSource::Etcd(l) => l.is_leader(),
        }
    }

    /// Gives leadership up now so another candidate need not wait for the lease to expire.
    pub async fn resign(self) -> Result<(), StoreError> {
        match self.source {
            LeadershipSource::Embedded => Ok(()),
            LeadershipSource::Etcd(l) => l.resign().await,
        }
    }
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix`, sorted, consistent at one revision.
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError>;

    /// Checks every precondition, then applies every write at one new revision, or nothing.
    /// If a transaction writes one key twice, the last write wins. Deleting a missing key is
    /// not a change (no event); a transaction that changes nothing commits at the current
    /// revision without creating a new one.
    async fn txn(
        &self,
        preconditions: Vec<Precondition>,
        writes: Vec<Write>,
    ) -> Result<TxnOutcome, StoreError>;

    /// Events under `prefix` with revision > `after`, in revision order, then live ones.
    /// `after` older than the kept history -> Err(Compacted).
    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError>;

    /// The store's current revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Waits until this candidate (a name such as "host:pid") leads; the embedded store
    /// returns at once.
    async fn campaign(&self, election: &str, candidate: &str) -> Result<Leadership, StoreError>;

    /// Human-readable backend description for logs and /status, e.g.
    /// "embedded (/var/lib/skiff)" or "etcd (http://127.0.0.1:2379)".
    fn describe(&self) -> String;
}

/// One write per key, the last one given winning, in the order keys first appear: etcd
/// refuses a transaction that names a key twice, and the embedded store must agree with it.
pub(crate) fn last_write_per_key(writes: Vec<Write>) -> Vec<Write> {
    let mut out: Vec<Write> = Vec::with_capacity(writes.len());
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for write in writes {
        match index.get(write.key()) {
            Some(&i) => out[i] = write,
            None => {
                index.insert(write.key().to_string(), out.len());
                out.push(write);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: &T) {}

    /// The API server moves watches and leadership into spawned tasks: all of it must be Send.
    #[allow(dead_code)]
    fn watches_and_leadership_can_move_between_tasks(mut watch: Watch, mut leader: Leadership) {
        is_send(&watch.next());
        is_send(&leader.lost());
        is_send(&watch);
        is_send(&leader.resign());
    }

    #[test]
    fn last_write_per_key_keeps_first_position_and_last_value() {
        let writes = vec![
            Write::Put {
                key: "a".into(),
                value: b"1".to_vec(),
            },
            Write::Put {
                key: "b".into(),
                value: b"2".to_vec(),
            },
            Write::Delete { key: "a".into() },
        ];
        assert_eq!(
            last_write_per_key(writes),
            vec![
                Write::Delete { key: "a".into() },
                Write::Put {
                    key: "b".into(),
                    value: b"2".to_vec()
                },
            ]
        );
    }
}
