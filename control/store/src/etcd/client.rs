//! A small etcd v3 client over etcd's JSON gateway (`POST /v3/...`), enough for the store:
//! int64s travel as JSON strings, keys and values as base64.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::{de::DeserializeOwned, Deserialize, Deserializer};

use crate::StoreError;

/// How long a unary call may take before the endpoint counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Client {
    http: reqwest::Client,
    endpoints: Vec<String>,
    /// The endpoint that answered last: tried first next time.
    preferred: AtomicUsize,
}

impl Client {
    pub(crate) fn new(endpoints: &[String]) -> Result<Client, StoreError> {
        let shown = endpoints.join(",");
        if endpoints.is_empty() {
            return Err(StoreError::etcd("(none)", "no etcd endpoint given"));
        }
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.trim_end_matches('/').to_string())
            .collect();
        for endpoint in &endpoints {
            if let Err(e) = reqwest::Url::parse(endpoint) {
                return Err(StoreError::etcd(
                    endpoint,
                    format!("not a URL ({e}); expected e.g. http://127.0.0.1:2379"),
                ));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            // Watch streams have no timeout; keepalives notice a peer that vanished silently.
            .tcp_keepalive(Duration::from_secs(15))
            .build()
            .map_err(|e| StoreError::etcd(shown, format!("building the HTTP client: {e}")))?;
        Ok(Client {
            http,
            endpoints,
            preferred: AtomicUsize::new(0),
        })
    }

    pub(crate) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A unary call: POSTs `body` to `path` and decodes the answer.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, StoreError> {
        self.call_within(path, body, CALL_TIMEOUT).await
    }

    pub(crate) async fn call_within<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<T, StoreError> {
        let (endpoint, response) = self.send(path, body, Some(timeout)).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| StoreError::etcd(&endpoint, format!("{path}: {}", chain(&e))))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::etcd(
                &endpoint,
                format!(
                    "{path}: undecodable answer ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                ),
            )
        })
    }

    /// POSTs to the first endpoint that accepts a connection, starting with the one that
    /// answered last. Only connection failures move on: a request that reached etcd may have
    /// been applied, so it is never sent twice.
    pub(crate) async fn send(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<(String, reqwest::Response), StoreError> {
        let count = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in 0..count {
            let index = (first + i) % count;
            let endpoint = &self.endpoints[index];
            let mut request = self.http.post(format!("{endpoint}{path}")).json(body);
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            match request.send().await {
                Ok(response) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    let status = response.status();
                    if status.is_success() {
                        return Ok((endpoint.clone(), response));
                    }
                    let text = response.text().await.unwrap_or_default();
                    let message = serde_json::from_str::<GatewayError>(&text)
                        .map(|e| e.message)
                        .unwrap_or(text);
                    return Err(StoreError::etcd(
                        endpoint,
                        format!("{path}: {message} (HTTP {status})"),
                    ));
                }
                Err(e) if e.is_connect() => failures.push(format!("{endpoint}: {}", chain(&e))),
                Err(e) => return Err(StoreError::etcd(endpoint, format!("{path}: {}", chain(&e)))),
            }
        }
        Err(StoreError::etcd(
            self.endpoints.join(","),
            format!("{path}: no endpoint reachable: {}", failures.join("; ")),
        ))
    }
}

/// An error with its causes, which is where reqwest puts the useful part ("connection
/// refused").
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether an etcd error says the requested revision has been compacted away.
pub(crate) fn is_compacted(error: &StoreError) -> bool {
    matches!(error, StoreError::Etcd { message, .. } if message.contains("required revision has been compacted"))
}

/// Whether an etcd error says the requested revision does not exist yet.
pub(crate) fn is_future_revision(error: &StoreError) -> bool {
    matches!(error, StoreError::Etcd { message, .. } if message.contains("required revision is a future revision"))
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub(crate) fn unb64(text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|e| format!("bad base64 from etcd: {e}"))
}

/// etcd's JSON encodes int64 as a string (and omits zeros); accept numbers too.
fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GatewayError {
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Header {
    #[serde(deserialize_with = "int")]
    pub revision: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawKv {
    pub key: String,
    pub value: String,
    #[serde(deserialize_with = "int")]
    pub create_revision: i64,
    #[serde(deserialize_with = "int")]
    pub mod_revision: i64,
    #[serde(deserialize_with = "int")]
    pub lease: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RangeResponse {
    pub header: Header,
    pub kvs: Vec<RawKv>,
    pub more: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TxnResponse {
    pub header: Header,
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ResponseOp {
    pub response_range: Option<RangeResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeaseGrantResponse {
    #[serde(rename = "ID", deserialize_with = "int")]
    pub id: i64,
    #[serde(rename = "TTL", deserialize_with = "int")]
    pub ttl: i64,
    pub error: String,
}

/// Streaming answers (watch, lease keepalive) come wrapped as `{"result": ...}` or
/// `{"error": ...}`, one JSON object per line.
#[derive(Debug, Deserialize)]
pub(crate) struct Streamed<T> {
    pub result: Option<T>,
    pub error: Option<GatewayError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeaseKeepAliveResponse {
    #[serde(rename = "TTL", deserialize_with = "int")]
    pub ttl: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WatchResponse {
    pub created: bool,
    pub canceled: bool,
    #[serde(deserialize_with = "int")]
    pub compact_revision: i64,
    pub cancel_reason: String,
    pub events: Vec<RawEvent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawEvent {
    /// "PUT" is the default and so usually absent.
    #[serde(rename = "type")]
    pub kind: String,
    pub kv: RawKv,
    pub prev_kv: Option<RawKv>,
}

/// Newline-separated JSON objects from a streaming gateway answer.
pub(crate) struct JsonLines {
    endpoint: String,
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl JsonLines {
    pub(crate) fn new(endpoint: String, response: reqwest::Response) -> JsonLines {
        JsonLines {
            endpoint,
            response,
            buffer: Vec::new(),
        }
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The next object, or `None` when etcd closed the stream.
    pub(crate) async fn next<T: DeserializeOwned>(&mut self) -> Option<Result<T, StoreError>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(serde_json::from_slice(&line).map_err(|e| {
                    StoreError::etcd(
                        &self.endpoint,
                        format!(
                            "undecodable stream message ({e}): {}",
                            String::from_utf8_lossy(&line)
                        ),
                    )
                }));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) if self.buffer.iter().all(u8::is_ascii_whitespace) => return None,
                // The last object may come without a newline.
                Ok(None) => self.buffer.push(b'\n'),
                Err(e) => {
                    return Some(Err(StoreError::etcd(
                        &self.endpoint,
                        format!("stream broke: {}", chain(&e)),
                    )))
                }
            }
        }
    }
}
