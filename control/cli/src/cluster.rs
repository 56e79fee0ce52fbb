//! What every cluster command shares: the API client, the namespace, and how errors read.

use std::path::{Path, PathBuf};

use skiff_client::{Client, ClientError};

pub struct Ctx {
    pub client: Client,
    /// `-n`, else `default`.
    pub namespace: String,
    /// Whether `-n` was given: then a manifest's own namespace must agree with it.
    pub explicit_namespace: bool,
    pub config: PathBuf,
}

impl Ctx {
    /// Prints one failure of a command that goes on with its other objects.
    pub fn report(&self, error: &anyhow::Error) {
        eprintln!("error: {}", render(error, Some(&self.config)));
    }
}

/// Failures already printed one by one (several names or objects): only the exit code is
/// left to set.
#[derive(Debug, thiserror::Error)]
#[error("some operations failed (see above)")]
pub struct Reported;

/// An error as `skiff` prints it after `error: `. The API's own message comes first; field
/// errors get a line each; refused tokens say which token works.
pub fn render(error: &anyhow::Error, config: Option<&Path>) -> String {
    let mut parts = Vec::new();
    for cause in error.chain() {
        // A client error's sources are reqwest internals its message already summarises.
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            parts.push(client_error(e, config));
            break;
        }
        parts.push(cause.to_string());
    }
    parts.join(": ")
}

fn client_error(error: &ClientError, config: Option<&Path>) -> String {
    let Some(status) = error.status() else {
        return error.to_string();
    };
    let config = config.map_or("the config".into(), |p| p.display().to_string());
    match status.code {
        _ if !status.details.is_empty() => {
            // The message repeats the field errors after "is invalid: "; list them instead.
            let head = status
                .message
                .split_once(": ")
                .map_or(status.message.as_str(), |(head, _)| head);
            let mut text = format!("{head}:");
            for detail in &status.details {
                text.push_str(&format!("\n  {detail}"));
            }
            text
        }
        401 => format!(
            "{} (the token in {config} is not one this cluster issued: use the admin.conf that skiff-control wrote into its --data-dir, e.g. --config /var/lib/skiff-control/admin.conf)",
            status.message
        ),
        403 => format!(
            "{} (the token in {config} may not do this: use the admin token, from the admin.conf that skiff-control wrote into its --data-dir)",
            status.message
        ),
        _ => status.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::{FieldError, Status};

    #[test]
    fn field_errors_get_a_line_each() {
        let mut status = Status::failure(
            422,
            "Invalid",
            "Deployment \"web\" is invalid: spec.replicas: -1: expected 0 or more; spec.selector: {}: expected a non-empty selector",
        );
        status.details = vec![
            FieldError::new("spec.replicas", -1, "0 or more"),
            FieldError::new("spec.selector", "{}", "a non-empty selector"),
        ];
        let error = anyhow::Error::new(ClientError::Api(Box::new(status)));
        assert_eq!(
            render(&error, None),
            "Deployment \"web\" is invalid:\n  spec.replicas: -1: expected 0 or more\n  spec.selector: {}: expected a non-empty selector"
        );
    }

    #[test]
    fn refused_tokens_say_which_token_to_use() {
        let status = Status::failure(401, "Unauthorized", "the bearer token is not valid");
        let error = anyhow::Error::new(ClientError::Api(Box::new(status))).context("getting pods");
        let text = render(&error, Some(Path::new("/home/me/.config/skiff/config")));
        assert!(
            text.starts_with("getting pods: the bearer token is not valid (the token in /home/me/.config/skiff/config"),
            "{text}"
        );
        assert!(text.contains("admin.conf"), "{text}");
        let status = Status::failure(403, "Forbidden", "node n1 may write only its own Node");
        let text = render(
            &anyhow::Error::new(ClientError::Api(Box::new(status))),
            None,
        );
        assert!(text.contains("use the admin token"), "{text}");
    }
}
