//! `logs` and `exec` through the control plane: the API finds the node a pod runs on and
//! proxies the request to that node's daemon, as the Kubernetes API server does to kubelets.
//!
//! ```text
//! GET  /api/v1/namespaces/{ns}/pods/{name}/log?container=&follow=&previous=
//!        -> GET  http://{InternalIP}:{daemon port}/pods/{ns}/{name}/log?...   (streamed through)
//! POST /api/v1/namespaces/{ns}/pods/{name}/exec  {"command": [...], "container": "c", "timeoutSeconds": 30}
//!        -> POST http://{InternalIP}:{daemon port}/pods/{ns}/{name}/exec?container=&timeout=&command=JSON
//! ```
//!
//! The node's address is its Node's `status.addresses[type=InternalIP]` and
//! `status.daemonEndpoints.kubeletEndpoint.Port` ([`skiff_api::Node::daemon_address`]). The
//! daemon speaks plain HTTP/1.1 and accepts `Authorization: Bearer D`, where D is the hex
//! SHA-256 of the node's token, which the control plane keeps ([`Auth::node_token_digest`]).
//!
//! Errors say where things stopped: the pod is not scheduled, the node is not registered or
//! advertises no daemon port (503), the daemon cannot be reached (502, with the address), or
//! the daemon refused (its own code and message, prefixed with the node that answered).

use std::{collections::HashMap, net::SocketAddrV4, time::Duration};

use axum::{
    body::Body,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use skiff_api::{FieldError, Kind, Object};

use crate::{auth::Auth, error::ApiError, registry::Registry};

/// How long a daemon may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a daemon may take to start answering a log request (the body may then stream
/// for as long as the container writes, with `follow`).
const LOG_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// What a daemon gets on top of an exec's own timeout to send its answer.
const EXEC_GRACE: Duration = Duration::from_secs(10);
/// An exec's timeout when the request names none, and the most it may ask for.
pub const EXEC_DEFAULT_TIMEOUT_SECONDS: u64 = 30;
pub const EXEC_MAX_TIMEOUT_SECONDS: u64 = 600;
/// How much of a daemon's error answer is kept as its message.
const ERROR_BODY_LIMIT: usize = 4096;

/// The HTTP client to node daemons (one connection pool for all of them).
pub struct NodeProxy {
    http: reqwest::Client,
}

impl Default for NodeProxy {
    fn default() -> Self {
        NodeProxy::new()
    }
}

/// Where a pod runs, and how to talk to that node's daemon.
#[derive(Clone, Debug)]
pub struct PodTarget {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub address: SocketAddrV4,
    bearer: String,
}

/// `?container=&follow=&previous=` of a log request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
}

/// The body of an exec request, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub container: Option<String>,
    pub timeout_seconds: u64,
}

impl LogOptions {
    /// Reads the query; `follow` and `previous` take `true`/`false` (also `1`/`0`, or empty
    /// for true, as `?follow` alone).
    pub fn from_query(query: &HashMap<String, String>) -> Result<LogOptions, ApiError> {
        let flag = |name: &str| -> Result<bool, ApiError> {
            match query.get(name).map(String::as_str) {
                None | Some("false") | Some("0") => Ok(false),
                Some("true") | Some("1") | Some("") => Ok(true),
                Some(other) => Err(ApiError::BadRequest(
                    FieldError::new(name, format!("{other:?}"), "true or false").to_string(),
                )),
            }
        };
        for key in query.keys() {
            if !["container", "follow", "previous"].contains(&key.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {key:?}: expected one of container, follow, previous"
                )));
            }
        }
        Ok(LogOptions {
            container: query.get("container").filter(|c| !c.is_empty()).cloned(),
            follow: flag("follow")?,
            previous: flag("previous")?,
        })
    }
}

impl ExecRequest {
    /// Checks an exec body, naming the field, the value found and what was expected.
    pub fn from_body(body: &[u8]) -> Result<ExecRequest, ApiError> {
        let bad = |path: &str, found: String, expected: &str| {
            ApiError::BadRequest(format!(
                "exec request: {}",
                FieldError::new(path, found, expected)
            ))
        };
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("exec request: the body is not JSON: {e} (expected {{\"command\": [\"sh\", \"-c\", \"...\"]}})")))?;
        let serde_json::Value::Object(fields) = value else {
            return Err(bad(
                "(body)",
                value.to_string(),
                "an object such as {\"command\": [\"ls\", \"-l\"]}",
            ));
        };
        for key in fields.keys() {
            if !["command", "container", "timeoutSeconds"].contains(&key.as_str()) {
                return Err(bad(
                    key,
                    "an unknown field".into(),
                    "only command, container and timeoutSeconds",
                ));
            }
        }
        const COMMAND: &str = "a non-empty array of strings, such as [\"sh\", \"-c\", \"ls\"]";
        let command = match fields.get("command") {
            None => return Err(bad("command", "missing".into(), COMMAND)),
            Some(serde_json::Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    other => Err(bad(&format!("command[{i}]"), other.to_string(), "a string")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => return Err(bad("command", other.to_string(), COMMAND)),
        };
        if command[0].is_empty() {
            return Err(bad(
                "command[0]",
                "\"\"".into(),
                "the program to run (not empty)",
            ));
        }
        let container = match fields.get("container") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if s.is_empty() => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(bad(
                    "container",
                    other.to_string(),
                    "a container name (a string)",
                ))
            }
        };
        let timeout_seconds = match fields.get("timeoutSeconds") {
            None | Some(serde_json::Value::Null) => EXEC_DEFAULT_TIMEOUT_SECONDS,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=EXEC_MAX_TIMEOUT_SECONDS).contains(&n) => n,
                _ => {
                    return Err(bad(
                        "timeoutSeconds",
                        v.to_string(),
                        &format!("a whole number of seconds from 1 to {EXEC_MAX_TIMEOUT_SECONDS}"),
                    ))
                }
            },
        };
        Ok(ExecRequest {
            command,
            container,
            timeout_seconds,
        })
    }
}

impl NodeProxy {
    pub fn new() -> NodeProxy {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // Daemons are reached by address, never through an environment's HTTP proxy.
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        NodeProxy { http }
    }

    /// Finds the node `namespace/pod` runs on and the address and credentials of its daemon.
    pub async fn locate(
        registry: &Registry,
        auth: &Auth,
        namespace: &str,
        pod: &str,
    ) -> Result<PodTarget, ApiError> {
        let Object::Pod(found) = registry.get(Kind::Pod, namespace, pod).await? else {
            unreachable!("the registry returns the kind asked for");
        };
        let Some(node) = found.spec.node_name.clone().filter(|n| !n.is_empty()) else {
            return Err(ApiError::Conflict(format!(
                "pod {pod} is not scheduled to a node yet (spec.nodeName is unset): wait until it is (skiff describe pod {pod} -n {namespace} says why it waits)"
            )));
        };
        let node_object = match registry.get(Kind::Node, "", &node).await {
            Ok(Object::Node(n)) => n,
            Ok(_) => unreachable!("the registry returns the kind asked for"),
            Err(ApiError::NotFound { .. }) => {
                return Err(ApiError::Unavailable(format!(
                    "pod {pod} is bound to node {node}, which is not registered (no Node {node:?})"
                )))
            }
            Err(e) => return Err(e),
        };
        let Some(address) = node_object.daemon_address() else {
            return Err(ApiError::Unavailable(format!(
                "node {node}'s daemon did not advertise an API port (its Node needs status.daemonEndpoints.kubeletEndpoint.Port and a status.addresses InternalIP): is skiff-node on {node} running a version that serves logs and exec?"
            )));
        };
        let Some(bearer) = auth.node_token_digest(&node).await? else {
            return Err(ApiError::Unavailable(format!(
                "node {node} never joined this control plane (it has no node token), so its daemon at {address} would not accept the control plane's requests"
            )));
        };
        Ok(PodTarget {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            node,
            address,
            bearer,
        })
    }

    /// The pod's log, streamed through as the daemon sends it.
    pub async fn logs(
        &self,
        target: &PodTarget,
        options: &LogOptions,
    ) -> Result<Response, ApiError> {
        let mut query = Vec::new();
        if let Some(c) = &options.container {
            query.push(("container", c.clone()));
        }
        if options.follow {
            query.push(("follow", "true".into()));
        }
        if options.previous {
            query.push(("previous", "true".into()));
        }
        let request = self
            .http
            .get(target.url("log", &query))
            .bearer_auth(&target.bearer);
        let response = match tokio::time::timeout(LOG_HEADER_TIMEOUT, request.send()).await {
            Ok(sent) => sent.map_err(|e| target.unreachable(&e))?,
            Err(_) => {
                return Err(ApiError::Node {
                    code: 504,
                    message: format!(
                        "node {}'s daemon at {} did not start answering within {} s",
                        target.node,
                        target.address,
                        LOG_HEADER_TIMEOUT.as_secs()
                    ),
                })
            }
        };
        let response = target.success(response).await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/plain; charset=utf-8")
            .to_string();
        // Each chunk goes on as it arrives; a client that goes away drops the stream, which
        // closes the connection to the daemon.
        let body = Body::from_stream(response.bytes_stream());
        Ok((StatusCode::OK, [("content-type", content_type)], body).into_response())
    }

    /// Runs a command in the pod; the daemon's JSON answer (`stdout`, `stderr`, `exitCode`)
    /// goes back unchanged.
    pub async fn exec(&self, target: &PodTarget, exec: &ExecRequest) -> Result<Response, ApiError> {
        let mut query = Vec::new();
        if let Some(c) = &exec.container {
            query.push(("container", c.clone()));
        }
        query.push(("timeout", exec.timeout_seconds.to_string()));
        query.push((
            "command",
            serde_json::to_string(&exec.command).expect("strings serialize"),
        ));
        let wait = Duration::from_secs(exec.timeout_seconds) + EXEC_GRACE;
        let response = self
            .http
            .post(target.url("exec", &query))
            .bearer_auth(&target.bearer)
            .body(Vec::new())
            .timeout(wait)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    target.timed_out(wait)
                } else {
                    target.unreachable(&e)
                }
            })?;
        let response = target.success(response).await?;
        let body = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                target.timed_out(wait)
            } else {
                target.broken(&e)
            }
        })?;
        if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
            return Err(ApiError::BadGateway(format!(
                "node {}'s daemon at {} answered an exec with something that is not JSON: {:?}",
                target.node,
                target.address,
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        Ok((StatusCode::OK, [("content-type", "application/json")], body).into_response())
    }
}

impl PodTarget {
    fn url(&self, action: &str, query: &[(&str, String)]) -> String {
        let mut url = format!(
            "http://{}/pods/{}/{}/{action}",
            self.address,
            encode(&self.namespace),
            encode(&self.pod)
        );
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(&encode(value));
        }
        url
    }

    fn unreachable(&self, e: &reqwest::Error) -> ApiError {
        ApiError::BadGateway(format!(
            "cannot reach node {}'s daemon at {}: {} (is skiff-node running there, and is the port open to the control plane?)",
            self.node,
            self.address,
            root_cause(e)
        ))
    }

    fn broken(&self, e: &reqwest::Error) -> ApiError {
        ApiError::BadGateway(format!(
            "the connection to node {}'s daemon at {} broke: {}",
            self.node,
            self.address,
            root_cause(e)
        ))
    }

    fn timed_out(&self, wait: Duration) -> ApiError {
        ApiError::Node {
            code: 504,
            message: format!(
                "node {}'s daemon at {} did not answer within {} s",
                self.node,
                self.address,
                wait.as_secs()
            ),
        }
    }

    /// A 200 answer, or the daemon's error as an [`ApiError`] naming the node.
    async fn success(&self, response: reqwest::Response) -> Result<reqwest::Response, ApiError> {
        let code = response.status();
        if code == reqwest::StatusCode::OK {
            return Ok(response);
        }
        let mut text = Vec::new();
        let mut response = response;
        while let Ok(Some(chunk)) = response.chunk().await {
            text.extend_from_slice(&chunk);
            if text.len() >= ERROR_BODY_LIMIT {
                text.truncate(ERROR_BODY_LIMIT);
                break;
            }
        }
        let text = String::from_utf8_lossy(&text).trim().to_string();
        let said = if text.is_empty() {
            code.to_string()
        } else {
            text
        };
        let at = format!("node {} (daemon at {})", self.node, self.address);
        Err(match code.as_u16() {
            // The daemon refused the control plane itself: passing on 401/403 would tell the
            // user their own token is wrong, which it is not.
            401 | 403 => ApiError::BadGateway(format!(
                "{at} refused the control plane's credentials ({code}: {said}): the daemon may still use an older token of the node; restart skiff-node there so it joins again"
            )),
            c if (400..600).contains(&c) => ApiError::Node {
                code: c,
                message: format!("{at}: {said}"),
            },
            c => ApiError::BadGateway(format!("{at} answered {c}: {said}")),
        })
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (so a space is `%20`,
/// never `+`, whichever way the daemon decodes).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// reqwest's message hides the reason (refused, timed out) at the end of the source chain.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: ApiError) -> String {
        assert_eq!(e.code(), 400, "{e}");
        e.to_string()
    }

    #[test]
    fn exec_bodies_are_checked_field_by_field() {
        let ok = ExecRequest::from_body(br#"{"command": ["sh", "-c", "echo hi"]}"#).unwrap();
        assert_eq!(ok.command, ["sh", "-c", "echo hi"]);
        assert_eq!(ok.container, None);
        assert_eq!(ok.timeout_seconds, EXEC_DEFAULT_TIMEOUT_SECONDS);
        let full = ExecRequest::from_body(
            br#"{"command": ["ls"], "container": "app", "timeoutSeconds": 5}"#,
        )
        .unwrap();
        assert_eq!(full.container.as_deref(), Some("app"));
        assert_eq!(full.timeout_seconds, 5);
        for (body, expected) in [
            (&br#"{"command": []}"#[..], "exec request: command: []: expected a non-empty array of strings"),
            (br#"{"command": "ls -l"}"#, "exec request: command: \"ls -l\": expected a non-empty array"),
            (br#"{"command": ["ls", 5]}"#, "exec request: command[1]: 5: expected a string"),
            (br#"{}"#, "exec request: command: missing: expected"),
            (br#"{"command": ["ls"], "timeoutSeconds": 601}"#, "exec request: timeoutSeconds: 601: expected a whole number of seconds from 1 to 600"),
            (br#"{"command": ["ls"], "timeoutSeconds": "5"}"#, "timeoutSeconds: \"5\""),
            (br#"{"command": ["ls"], "container": 3}"#, "container: 3: expected a container name"),
            (br#"{"command": ["ls"], "cmd": 1}"#, "cmd: an unknown field"),
            (br#"[1]"#, "expected an object"),
            (b"ls", "the body is not JSON"),
        ] {
            let got = message(ExecRequest::from_body(body).unwrap_err());
            assert!(got.contains(expected), "{got:?} lacks {expected:?}");
        }
    }

    #[test]
    fn log_options_come_from_the_query() {
        let query = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            LogOptions::from_query(&query(&[("follow", "true"), ("container", "app")])).unwrap(),
            LogOptions {
                container: Some("app".into()),
                follow: true,
                previous: false
            }
        );
        assert_eq!(
            LogOptions::from_query(&query(&[("container", "")])).unwrap(),
            LogOptions::default()
        );
        let e = message(LogOptions::from_query(&query(&[("previous", "yes")])).unwrap_err());
        assert_eq!(e, "previous: \"yes\": expected true or false");
        let e = message(LogOptions::from_query(&query(&[("tail", "5")])).unwrap_err());
        assert!(e.contains("\"tail\""), "{e}");
    }

    #[test]
    fn daemon_urls_encode_every_reserved_byte() {
        let target = PodTarget {
            namespace: "shop".into(),
            pod: "web-1".into(),
            node: "n1".into(),
            address: "10.0.0.5:10250".parse().unwrap(),
            bearer: "d".into(),
        };
        assert_eq!(
            target.url(
                "exec",
                &[
                    ("timeout", "30".into()),
                    ("command", r#"["sh","-c","echo a+b"]"#.into())
                ]
            ),
            "http://10.0.0.5:10250/pods/shop/web-1/exec?timeout=30&command=%5B%22sh%22%2C%22-c%22%2C%22echo%20a%2Bb%22%5D"
        );
    }
}
