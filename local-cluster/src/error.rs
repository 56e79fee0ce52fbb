use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Lab(#[from] skiff_lab::LabError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is missing: build the workspace first (`cargo xtask build`)")]
    MissingBinary(String),
    #[error("{what} did not happen within {seconds} s{detail}")]
    Timeout {
        what: String,
        seconds: u64,
        /// A log tail or the last answer, starting with a newline when present.
        detail: String,
    },
    #[error("{process} exited while starting ({status}); its log {log}:\n{tail}")]
    Exited {
        process: String,
        status: String,
        log: String,
        tail: String,
    },
    #[error("API {method} {path}: {status} {body}")]
    Api {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("{0}")]
    Config(String),
}

impl ClusterError {
    pub(crate) fn io(what: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> ClusterError {
        let what = what.as_ref().display().to_string();
        move |source| ClusterError::Io { what, source }
    }
}
