//! A typed, async client of `skiff-control`'s API (HTTPS, bearer token), shared by the
//! `skiff` CLI and the node daemon.
//!
//! Paths follow Kubernetes: namespaced kinds live under `/api/v1/namespaces/{ns}/{plural}`,
//! cluster kinds (Namespace, Node) under `/api/v1/{plural}`, and a list of a namespaced kind
//! across all namespaces is `/api/v1/{plural}`. Errors are [`ClientError`]s: an API error
//! carries the server's [`Status`] (reason, code and field errors).
//!
//! ```no_run
//! # async fn demo() -> Result<(), skiff_client::ClientError> {
//! use skiff_api::Kind;
//! let client = skiff_client::Client::from_config("/var/lib/skiff-control/admin.conf".as_ref())?;
//! let (pods, _revision) = client.list(Kind::Pod, Some("default"), Some("app=web")).await?;
//! # Ok(()) }
//! ```

mod config;
mod error;

use std::{path::Path, time::Duration};

use reqwest::{Method, RequestBuilder, Response};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use skiff_api::{Kind, List, NodeMetrics, Object, Status, WatchEvent};

pub use config::Config;
pub use error::ClientError;

/// A request that is not a watch gives up after this long (a watch waits for events).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one API server. Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: String,
}

/// What one apply did to one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub kind: Kind,
    /// `namespace/name` for namespaced kinds, `name` otherwise.
    pub name: String,
    /// `created`, `configured` or `unchanged`.
    pub action: String,
}

impl Client {
    /// Reads a config file ([`Config::load`]) and connects with it.
    pub fn from_config(path: &Path) -> Result<Client, ClientError> {
        Client::new(&Config::load(path)?)
    }

    /// Trusts only the config's CA: a cluster's API is never vouched for by the public CAs.
    pub fn new(config: &Config) -> Result<Client, ClientError> {
        let pem = config.ca_pem()?;
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| ClientError::Config(format!("the CA certificate: {e}")))?;
        if certificates.is_empty() {
            return Err(ClientError::Config(
                "the CA certificate: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)"
                    .into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .connect_timeout(CONNECT_TIMEOUT);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Config(format!("setting up TLS: {e}")))?;
        Ok(Client {
            http,
            server: config.server.trim_end_matches('/').to_string(),
            token: config.token.trim().to_string(),
        })
    }

    /// Succeeds once the API server answers (`GET /healthz`).
    pub async fn healthz(&self) -> Result<(), ClientError> {
        self.send(self.request(Method::GET, "/healthz")).await?;
        Ok(())
    }

    /// One object. `namespace` is ignored for cluster kinds.
    pub async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Object, ClientError> {
        let value = self
            .json(self.request(Method::GET, &object_path(kind, namespace, name)))
            .await?;
        typed(kind, value)
    }

    /// Objects of a kind in one namespace (`Some`) or in all (`None`), optionally filtered by
    /// a label selector in kubectl's syntax (`app=web,tier!=db,env in (a,b)`). Also returns
    /// the resourceVersion the list is consistent at, to [`watch`](Client::watch) from.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<(Vec<Object>, String), ClientError> {
        let request = self
            .request(Method::GET, &collection_path(kind, namespace))
            .query(&list_query(selector, None));
        let list: List = self.json(request).await?;
        let objects = list
            .items
            .into_iter()
            .map(|item| typed(kind, item))
            .collect::<Result<_, _>>()?;
        Ok((objects, list.metadata.resource_version.unwrap_or_default()))
    }

    pub async fn create(&self, object: &Object) -> Result<Object, ClientError> {
        let kind = object.kind();
        let namespace = object.metadata().namespace();
        let request = self
            .request(Method::POST, &collection_path(kind, Some(namespace)))
            .json(&object.to_json());
        typed(kind, self.json(request).await?)
    }

    /// Replaces metadata and spec. With `metadata.resourceVersion` set, the update succeeds
    /// only if nobody wrote the object since (else a 409 `Conflict`: get it again and retry).
    pub async fn update(&self, object: &Object) -> Result<Object, ClientError> {
        self.put(object, "").await
    }

    /// Replaces the status (the writer of the status: a node for its pods and itself).
    pub async fn update_status(&self, object: &Object) -> Result<Object, ClientError> {
        self.put(object, "/status").await
    }

    async fn put(&self, object: &Object, sub: &str) -> Result<Object, ClientError> {
        let kind = object.kind();
        let meta = object.metadata();
        let path = object_path(kind, meta.namespace(), &meta.name) + sub;
        let request = self.request(Method::PUT, &path).json(&object.to_json());
        typed(kind, self.json(request).await?)
    }

    /// Deletes an object and returns it as it was. A pod on a live node is only marked
    /// terminating (its node stops it, then deletes it); `force` deletes at once.
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        force: bool,
    ) -> Result<Object, ClientError> {
        let mut request = self.request(Method::DELETE, &object_path(kind, namespace, name));
        if force {
            request = request.query(&[("gracePeriodSeconds", "0")]);
        }
        typed(kind, self.json(request).await?)
    }

    /// Creates or updates every object in one transaction: all of them, or none.
    pub async fn apply(&self, objects: &[Object]) -> Result<Vec<Applied>, ClientError> {
        let body = serde_json::json!({
            "objects": objects.iter().map(Object::to_json).collect::<Vec<_>>(),
        });
        self.json(self.request(Method::POST, "/api/v1/apply").json(&body))
            .await
    }

    /// Changes to objects of a kind, from `resource_version` on (from a list's, to miss
    /// nothing); without one, the stream starts with an ADDED event per existing object.
    pub async fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&str>,
        resource_version: Option<&str>,
    ) -> Result<Watch, ClientError> {
        let request = self
            .http
            .get(format!(
                "{}{}",
                self.server,
                collection_path(kind, namespace)
            ))
            .bearer_auth(&self.token)
            .query(&list_query(selector, Some(resource_version.unwrap_or(""))));
        let response = self.send(request).await?;
        Ok(Watch {
            response,
            buffer: Vec::new(),
            server: self.server.clone(),
        })
    }

    /// A pod container's log, streamed from the node that runs it through the control
    /// plane (admin token only). `container` may be left out when the pod has one; `follow`
    /// keeps the stream open while the container writes; `previous` reads the log of the
    /// container's previous run (after a restart). Read it with [`LogStream::chunk`].
    pub async fn logs(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
        follow: bool,
        previous: bool,
    ) -> Result<LogStream, ClientError> {
        let mut query = Vec::new();
        if let Some(c) = container {
            query.push(("container", c));
        }
        if follow {
            query.push(("follow", "true"));
        }
        if previous {
            query.push(("previous", "true"));
        }
        // No overall timeout: a followed log lasts as long as the container writes.
        let request = self
            .http
            .get(format!(
                "{}{}/log",
                self.server,
                object_path(Kind::Pod, namespace, name)
            ))
            .bearer_auth(&self.token)
            .query(&query);
        let response = self.send(request).await?;
        Ok(LogStream {
            response,
            server: self.server.clone(),
        })
    }

    /// Runs `command` in a pod's container, on the node that runs it, and waits for it to
    /// end (admin token only). `timeout` is how long the command may run (rounded up to whole
    /// seconds, at most 600 s); past it the node stops it and the answer is a 504 error.
    pub async fn exec(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, ClientError> {
        let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let mut body = serde_json::json!({ "command": command, "timeoutSeconds": seconds });
        if let Some(c) = container {
            body["container"] = c.into();
        }
        let request = self
            .http
            .post(format!(
                "{}{}/exec",
                self.server,
                object_path(Kind::Pod, namespace, name)
            ))
            .bearer_auth(&self.token)
            // The command's own time, and time for the node and the control plane to answer.
            .timeout(timeout + REQUEST_TIMEOUT)
            .json(&body);
        self.json(request).await
    }

    /// Trades the join token (this client's token) for a node token for `node_name`.
    pub async fn join(&self, node_name: &str) -> Result<String, ClientError> {
        #[derive(Deserialize)]
        struct Joined {
            token: String,
        }
        let request = self
            .request(Method::POST, "/api/v1/join")
            .json(&serde_json::json!({ "nodeName": node_name }));
        let joined: Joined = self.json(request).await?;
        Ok(joined.token)
    }

    /// Reports a node's usage sample (a node token may report only its own node).
    pub async fn put_node_metrics(&self, sample: &NodeMetrics) -> Result<(), ClientError> {
        let path = format!("/api/v1/nodes/{}/metrics", segment(&sample.node));
        self.send(self.request(Method::PUT, &path).json(sample))
            .await?;
        Ok(())
    }

    /// Every node's latest usage sample.
    pub async fn node_metrics(&self) -> Result<Vec<NodeMetrics>, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/metrics"))
            .await
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .timeout(REQUEST_TIMEOUT)
    }

    /// Sends a request; any answer but 2xx becomes [`ClientError::Api`].
    async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Connect {
                server: self.server.clone(),
                source,
            })?;
        let code = response.status();
        if code.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(ClientError::Api(Box::new(
            serde_json::from_slice::<Status>(&body).unwrap_or_else(|_| {
                // Not the API's error shape (a proxy in the way?): keep what it said.
                let reason: String = code
                    .canonical_reason()
                    .unwrap_or("Unknown")
                    .split_whitespace()
                    .collect();
                let text = String::from_utf8_lossy(&body).trim().to_string();
                let message = if text.is_empty() {
                    code.to_string()
                } else {
                    format!("{code}: {text}")
                };
                Status::failure(code.as_u16(), &reason, message)
            }),
        )))
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        let body = response
            .bytes()
            .await
            .map_err(|source| ClientError::Broken {
                server: self.server.clone(),
                source,
            })?;
        serde_json::from_slice(&body).map_err(|e| {
            ClientError::Response(format!(
                "{e} in {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })
    }
}

/// What a command run by [`Client::exec`] printed, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecResult {
    pub stdout: String,
    pub stderr: String,
    /// The command's exit status (128 + the signal's number if a signal ended it).
    pub exit_code: i32,
}

/// A pod's log as the node sends it.
pub struct LogStream {
    response: Response,
    server: String,
}

impl LogStream {
    /// The next bytes of the log as they arrive, or `None` at its end (with `follow`: once
    /// the container ends or the node closes the stream).
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        match self.response.chunk().await {
            Ok(chunk) => Ok(chunk.map(|c| c.to_vec())),
            Err(source) => Err(ClientError::Broken {
                server: self.server.clone(),
                source,
            }),
        }
    }
}

/// A watch stream: newline-delimited JSON events.
pub struct Watch {
    response: Response,
    buffer: Vec<u8>,
    server: String,
}

impl Watch {
    /// The next event, or `None` once the server ends the stream. An `ERROR` event comes back
    /// as [`ClientError::Api`]; reason `Expired` means: list again and watch from there.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, ClientError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if let Some(event) = parse_event(&line)? {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => return parse_event(&std::mem::take(&mut self.buffer)),
                Err(source) => {
                    return Err(ClientError::Broken {
                        server: self.server.clone(),
                        source,
                    })
                }
            }
        }
    }
}

fn parse_event(line: &[u8]) -> Result<Option<WatchEvent>, ClientError> {
    if line.trim_ascii().is_empty() {
        return Ok(None);
    }
    let event: WatchEvent = serde_json::from_slice(line)
        .map_err(|e| ClientError::Response(format!("a watch event: {e}")))?;
    if event.type_ == "ERROR" {
        let status = serde_json::from_value(event.object)
            .map_err(|e| ClientError::Response(format!("a watch ERROR event: {e}")))?;
        return Err(ClientError::Api(Box::new(status)));
    }
    Ok(Some(event))
}

fn typed(kind: Kind, value: serde_json::Value) -> Result<Object, ClientError> {
    Object::from_json(kind, value).map_err(|e| ClientError::Response(format!("a {kind}: {e}")))
}

fn list_query<'a>(
    selector: Option<&'a str>,
    watch_from: Option<&'a str>,
) -> Vec<(&'static str, &'a str)> {
    let mut query = Vec::new();
    if let Some(selector) = selector {
        query.push(("labelSelector", selector));
    }
    if let Some(revision) = watch_from {
        query.push(("watch", "true"));
        if !revision.is_empty() {
            query.push(("resourceVersion", revision));
        }
    }
    query
}

/// The path of a kind's objects: in one namespace, or (namespace `None`, or a cluster kind)
/// all of them.
fn collection_path(kind: Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced() => {
            format!("/api/v1/namespaces/{}/{}", segment(ns), kind.plural())
        }
        _ => format!("/api/v1/{}", kind.plural()),
    }
}

/// The path of one object; `namespace` is ignored for cluster kinds.
fn object_path(kind: Kind, namespace: &str, name: &str) -> String {
    format!(
        "{}/{}",
        collection_path(kind, Some(namespace)),
        segment(name)
    )
}

/// Valid names need no escaping; a mistyped one (`web/x`, `a b`) must still stay one path
/// segment, so the server answers "not found" instead of reading another path.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_config(server: &str) -> Config {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        Config {
            server: server.into(),
            certificate_authority_data: Some(ca.cert.pem()),
            certificate_authority: None,
            token: "secret\n".into(),
        }
    }

    #[test]
    fn paths_follow_kubernetes() {
        assert_eq!(
            object_path(Kind::Deployment, "shop", "web"),
            "/api/v1/namespaces/shop/deployments/web"
        );
        assert_eq!(object_path(Kind::Node, "shop", "n1"), "/api/v1/nodes/n1");
        assert_eq!(collection_path(Kind::Pod, None), "/api/v1/pods");
        assert_eq!(
            collection_path(Kind::Namespace, Some("x")),
            "/api/v1/namespaces"
        );
        assert_eq!(
            object_path(Kind::Pod, "default", "a/b c"),
            "/api/v1/namespaces/default/pods/a%2Fb%20c"
        );
    }

    #[test]
    fn selectors_and_watch_positions_travel_as_query_parameters() {
        let client = Client::new(&test_config("https://127.0.0.1:6443/")).unwrap();
        let request = client
            .request(Method::GET, &collection_path(Kind::Pod, Some("shop")))
            .query(&list_query(Some("app=web,env in (a,b)"), Some("42")))
            .build()
            .unwrap();
        assert_eq!(
            request.url().as_str(),
            "https://127.0.0.1:6443/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb%2Cenv+in+%28a%2Cb%29&watch=true&resourceVersion=42"
        );
        assert_eq!(
            request.headers()["authorization"].to_str().unwrap(),
            "Bearer secret"
        );
        let pairs: Vec<(String, String)> = request.url().query_pairs().into_owned().collect();
        assert_eq!(pairs[0].1, "app=web,env in (a,b)");
    }

    #[test]
    fn a_ca_that_is_not_pem_is_a_config_error() {
        let mut config = test_config("https://127.0.0.1:6443");
        config.certificate_authority_data = Some("not a certificate".into());
        let e = Client::new(&config).unwrap_err();
        assert!(matches!(e, ClientError::Config(_)), "{e:?}");
        assert!(e.to_string().contains("BEGIN CERTIFICATE"), "{e}");
    }

    #[tokio::test]
    async fn nothing_listening_says_to_start_skiff_control() {
        // A port that was free a moment ago: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(&test_config(&format!("https://127.0.0.1:{port}"))).unwrap();
        let e = client.list(Kind::Pod, None, None).await.unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        let message = e.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot reach the control plane at https://127.0.0.1:{port}: is skiff-control running?"
            )),
            "{message}"
        );
        assert!(message.to_lowercase().contains("refused"), "{message}");
    }

    #[test]
    fn exec_results_read_the_node_daemons_json() {
        let result: ExecResult =
            serde_json::from_str(r#"{"stdout": "a\n", "stderr": "oops", "exitCode": 3}"#).unwrap();
        assert_eq!(
            result,
            ExecResult {
                stdout: "a\n".into(),
                stderr: "oops".into(),
                exit_code: 3
            }
        );
    }

    #[test]
    fn watch_lines_become_events_and_errors() {
        let added = br#"{"type":"ADDED","object":{"kind":"Pod"}}"#;
        assert_eq!(parse_event(added).unwrap().unwrap().type_, "ADDED");
        assert!(parse_event(b"  \n").unwrap().is_none());
        let expired = serde_json::json!({
            "type": "ERROR",
            "object": Status::failure(410, "Expired", "too old"),
        });
        let e = parse_event(expired.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.code(), Some(410));
        assert_eq!(e.status().unwrap().reason, "Expired");
    }
}
