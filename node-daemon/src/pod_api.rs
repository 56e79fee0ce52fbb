//! The node API's pod endpoints, called by the control plane for `skiff logs` and
//! `skiff exec` (users never reach nodes directly):
//!
//! - `GET /pods/NS/NAME/log?container=C&follow=true&previous=true`: the container's log
//!   (the rotated file first), as `text/plain`; with `follow` the body keeps streaming until
//!   the container ends or the caller goes away;
//! - `POST /pods/NS/NAME/exec?container=C&timeout=SECONDS&command=["sh","-c","..."]`: runs
//!   the command in the container's namespaces and answers
//!   `{"stdout": "...", "stderr": "...", "exitCode": N}`.
//!
//! The caller shows `Authorization: Bearer <hex SHA-256 of this node's token>`, which the
//! control plane holds for each node it issued a token to. Errors are one line of text.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    sync::{Arc, RwLock},
    time::Duration,
};

use crate::{
    http::{answer, start_stream, Request},
    pods::{LookupError, PodDirectory},
    runtime::{ContainerId, RuntimeError},
};

/// Exec's default and longest timeout.
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct PodApi {
    pub directory: PodDirectory,
    /// Known once the node has joined.
    pub token_digest: Arc<RwLock<Option<String>>>,
}

fn text(stream: &mut TcpStream, status: &str, message: &str) {
    let _ = answer(
        stream,
        status,
        "text/plain; charset=utf-8",
        &format!("{message}\n"),
    );
}

pub fn handle(stream: &mut TcpStream, request: &Request, api: Option<&PodApi>) {
    let Some(api) = api else {
        return text(
            stream,
            "404 Not Found",
            "this node daemon runs no pods (--runtime none)",
        );
    };
    let expected = api
        .token_digest
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(expected) = expected else {
        return text(
            stream,
            "503 Service Unavailable",
            "the node has not joined the cluster yet",
        );
    };
    let presented = request
        .headers
        .get("authorization")
        .and_then(|h| h.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| same(p.trim(), &expected)) {
        return text(
            stream,
            "401 Unauthorized",
            "expected Authorization: Bearer <the control plane's digest of this node's token>",
        );
    }
    let parts: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let (namespace, name, action) = match parts.as_slice() {
        ["pods", ns, name, action] if !ns.is_empty() && !name.is_empty() => (*ns, *name, *action),
        _ => {
            return text(
                stream,
                "404 Not Found",
                &format!(
                    "{}: expected /pods/NAMESPACE/NAME/log or /pods/NAMESPACE/NAME/exec",
                    request.path
                ),
            )
        }
    };
    let pod = format!("{namespace}/{name}");
    let flag = |key: &str| {
        matches!(
            request.query.get(key).map(String::as_str),
            Some("true" | "1")
        )
    };
    let container = request
        .query
        .get("container")
        .map(String::as_str)
        .filter(|c| !c.is_empty());
    match (action, request.method.as_str()) {
        ("log", "GET") => {
            let previous = flag("previous");
            match api.directory.container(&pod, container, previous) {
                Ok(id) => {
                    let _ = stream_log(stream, &api.directory, &id, flag("follow") && !previous);
                }
                Err(e) => lookup_error(stream, &e),
            }
        }
        ("exec", "POST") => exec(stream, request, api, &pod, container),
        ("log", _) | ("exec", _) => text(
            stream,
            "405 Method Not Allowed",
            &format!(
                "{action} takes {}",
                if action == "log" { "GET" } else { "POST" }
            ),
        ),
        _ => text(
            stream,
            "404 Not Found",
            &format!("{action:?}: expected log or exec"),
        ),
    }
}

/// Compares secrets in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn lookup_error(stream: &mut TcpStream, e: &LookupError) {
    let status = match e {
        LookupError::Ambiguous { .. } => "400 Bad Request",
        _ => "404 Not Found",
    };
    text(stream, status, &e.to_string())
}

fn exec(
    stream: &mut TcpStream,
    request: &Request,
    api: &PodApi,
    pod: &str,
    container: Option<&str>,
) {
    let command: Vec<String> = match request
        .query
        .get("command")
        .map(|c| serde_json::from_str(c))
    {
        Some(Ok(command)) => command,
        Some(Err(e)) => {
            return text(
                stream,
                "400 Bad Request",
                &format!(
                    "command={:?}: expected a JSON array of strings: {e}",
                    request.query["command"]
                ),
            )
        }
        None => {
            return text(
                stream,
                "400 Bad Request",
                "command: missing (a JSON array of strings)",
            )
        }
    };
    if command.is_empty() {
        return text(
            stream,
            "400 Bad Request",
            "command=[]: expected at least the program to run",
        );
    }
    let timeout = match request.query.get("timeout").map(|t| t.parse::<u64>()) {
        None => DEFAULT_EXEC_TIMEOUT,
        Some(Ok(seconds)) if seconds > 0 && Duration::from_secs(seconds) <= MAX_EXEC_TIMEOUT => {
            Duration::from_secs(seconds)
        }
        Some(_) => {
            return text(
                stream,
                "400 Bad Request",
                &format!(
                    "timeout={:?}: expected seconds from 1 to {}",
                    request.query["timeout"],
                    MAX_EXEC_TIMEOUT.as_secs()
                ),
            )
        }
    };
    let id = match api.directory.container(pod, container, false) {
        Ok(id) => id,
        Err(e) => return lookup_error(stream, &e),
    };
    match api.directory.runtime.exec(&id, &command, timeout) {
        Ok(output) => {
            let body = serde_json::json!({
                "stdout": String::from_utf8_lossy(&output.stdout),
                "stderr": String::from_utf8_lossy(&output.stderr),
                "exitCode": output.exit_code,
            });
            let _ = answer(stream, "200 OK", "application/json", &format!("{body}\n"));
        }
        Err(e @ RuntimeError::NotRunning(_)) => text(stream, "409 Conflict", &e.to_string()),
        Err(e @ RuntimeError::ExecTimeout { .. }) => {
            text(stream, "504 Gateway Timeout", &e.to_string())
        }
        Err(e) => text(stream, "500 Internal Server Error", &e.to_string()),
    }
}

/// Streams the container's log (with `follow`, until it ends or the caller goes away).
fn stream_log(
    stream: &mut TcpStream,
    directory: &PodDirectory,
    id: &ContainerId,
    follow: bool,
) -> std::io::Result<()> {
    let mut log = match directory.runtime.logs(id, follow) {
        Ok(log) => log,
        Err(e) => {
            text(stream, "500 Internal Server Error", &e.to_string());
            return Ok(());
        }
    };
    start_stream(stream, "text/plain; charset=utf-8")?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = log.read(&mut buf)?;
        if n == 0 {
            return stream.flush();
        }
        stream.write_all(&buf[..n])?;
        stream.flush()?;
    }
}
