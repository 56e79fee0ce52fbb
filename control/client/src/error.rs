//! What can go wrong talking to the control plane, typed so callers can react (retry a
//! conflict, relist after `Expired`, tell a user which token to use).

use skiff_api::Status;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error (Kubernetes' `Status`: reason, code, field errors).
    /// Boxed: it is large, and every `Result` of the client carries this enum.
    #[error("{}", .0.message)]
    Api(Box<Status>),
    /// No answer at all: nothing listens, the TLS handshake failed, or the request timed out.
    #[error("{}", connect_message(server, source))]
    Connect {
        server: String,
        source: reqwest::Error,
    },
    /// An answer began but its body did not arrive whole.
    #[error(
        "the connection to the control plane at {server} broke: {}",
        root_cause(source)
    )]
    Broken {
        server: String,
        source: reqwest::Error,
    },
    /// The server answered something that is not the API's JSON.
    #[error("unexpected answer from the control plane: {0}")]
    Response(String),
    /// The config is missing, unreadable or incomplete.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The API's error body, when the API answered.
    pub fn status(&self) -> Option<&Status> {
        match self {
            ClientError::Api(status) => Some(status),
            _ => None,
        }
    }

    /// The HTTP code of an API error (404, 409, 422...).
    pub fn code(&self) -> Option<u16> {
        self.status().map(|s| s.code)
    }
}

fn connect_message(server: &str, source: &reqwest::Error) -> String {
    let cause = root_cause(source);
    if cause.contains("certificate") {
        format!(
            "the control plane at {server} is not the one the config's CA vouches for ({cause}): is the config from this cluster?"
        )
    } else {
        format!("cannot reach the control plane at {server}: is skiff-control running? ({cause})")
    }
}

/// reqwest's own message ("error sending request for url ...") hides the reason (refused,
/// timed out, unknown CA) at the end of the source chain.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}
