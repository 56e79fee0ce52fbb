use crate::Revision;

/// Everything a store operation can fail with. Each variant names what a human needs to act:
/// the path, the endpoint, the offset.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The caller asked for history the store no longer keeps (or a watcher fell too far
    /// behind). The cure is always the same: list again and watch from the listing's revision.
    /// `requested` is the first revision the watch needed (`after + 1`); `oldest` the oldest
    /// revision whose events are still kept (a watch with `after = oldest - 1` would work).
    #[error(
        "revision {requested} has been compacted; the oldest revision still kept is {oldest}: \
         list again and watch from the listing's revision"
    )]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },

    /// The embedded store could not read or write one of its files.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A record that is not the last one in the file fails its checksum or does not decode:
    /// this is damage, not a crash artefact, so the store refuses to start rather than
    /// silently dropping acknowledged writes.
    #[error(
        "{path} is corrupt at byte offset {offset}: {reason}; refusing to start (restore the \
         directory from a backup, or move the file away to start empty)"
    )]
    Corrupt {
        path: String,
        offset: u64,
        reason: String,
    },

    /// etcd could not be reached, or answered with an error.
    #[error("etcd at {endpoint}: {message}")]
    Etcd { endpoint: String, message: String },

    /// Another process (or another open store in this one) holds the directory's lock file.
    #[error(
        "{path} is locked by another process: is another skiff-control running on this directory?"
    )]
    Locked { path: String },
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn etcd(endpoint: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Etcd {
            endpoint: endpoint.into(),
            message: message.into(),
        }
    }
}
