//! API errors, each mapped to Kubernetes' `Status` shape and HTTP code.

use skiff_api::{FieldError, Kind, Status};
use skiff_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: Kind, name: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{kind} {name:?} is invalid: {}", list(.errors))]
    Invalid {
        kind: String,
        name: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A watch asked for history the store no longer has: the client must list again.
    #[error("{0}")]
    Expired(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A node daemon answered a proxied request (logs, exec) with an error: its code and
    /// its message, already prefixed with which node answered.
    #[error("{message}")]
    Node { code: u16, message: String },
    /// A node daemon could not be reached, or answered something that is not HTTP.
    #[error("{0}")]
    BadGateway(String),
    /// What the request needs is not there yet (a node that advertises no daemon port).
    #[error("{0}")]
    Unavailable(String),
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    pub fn invalid(kind: Kind, name: &str, errors: Vec<FieldError>) -> ApiError {
        ApiError::Invalid {
            kind: kind.to_string(),
            name: name.to_string(),
            errors,
        }
    }

    pub fn not_found(kind: impl std::fmt::Display, name: impl Into<String>) -> ApiError {
        ApiError::NotFound {
            kind: kind.to_string(),
            name: name.into(),
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict(_) => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::Expired(_) => 410,
            ApiError::Store(StoreError::Compacted { .. }) => 410,
            ApiError::Store(_) => 503,
            ApiError::Node { code, .. } => *code,
            ApiError::BadGateway(_) => 502,
            ApiError::Unavailable(_) => 503,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::Expired(_) | ApiError::Store(StoreError::Compacted { .. }) => "Expired",
            ApiError::Store(_) | ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::BadGateway(_) => "BadGateway",
            ApiError::Node { code, .. } => match code {
                400 => "BadRequest",
                404 => "NotFound",
                409 => "Conflict",
                504 => "Timeout",
                500 => "InternalError",
                _ => "NodeError",
            },
        }
    }

    pub fn status(&self) -> Status {
        let mut status = Status::failure(self.code(), self.reason(), self.to_string());
        if let ApiError::Invalid { errors, .. } = self {
            status.details = errors.clone();
        }
        status
    }
}
