//! The HTTP API: JSON over HTTPS, Kubernetes-shaped paths under `/api/v1`.
//!
//! ```text
//! GET    /api/v1/{plural}                              list (all namespaces) or ?watch=true
//! GET    /api/v1/namespaces/{ns}/{plural}              list in a namespace, ?labelSelector=
//! POST   /api/v1/namespaces/{ns}/{plural}              create      (cluster kinds: /api/v1/{plural})
//! GET    /api/v1/namespaces/{ns}/{plural}/{name}       get
//! PUT    /api/v1/namespaces/{ns}/{plural}/{name}       update (resourceVersion = optimistic lock)
//! PUT    /api/v1/namespaces/{ns}/{plural}/{name}/status  status update
//! DELETE /api/v1/namespaces/{ns}/{plural}/{name}       delete, ?gracePeriodSeconds=0 forces
//! POST   /api/v1/apply   {"objects": [...]}            create-or-update, all or nothing
//! POST   /api/v1/join    {"nodeName": "n1"}            join token -> node token
//! GET    /api/v1/namespaces/{ns}/pods/{name}/log       ?container=&follow=&previous= (admin)
//! POST   /api/v1/namespaces/{ns}/pods/{name}/exec      {"command": [...]}           (admin)
//! PUT    /api/v1/nodes/{name}/metrics                  a node's usage sample
//! GET    /api/v1/metrics                               every node's latest sample
//! GET    /metrics  /healthz
//! ```
//! Watches stream one JSON event per line (`{"type":"ADDED","object":{...}}`); a watch
//! from a resourceVersion the store no longer keeps answers 410 with reason `Expired`.
//! Logs and exec are proxied to the daemon of the pod's node ([`crate::node_proxy`]).

use std::{collections::HashMap, sync::Arc, time::Instant};

use axum::{
    body::{Body, Bytes},
    extract::{Query, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde::Deserialize;
use skiff_api::{
    object::ListMeta, Kind, LabelSelector, List, NodeMetrics, Object, Requirement,
    SelectorOperator, WatchEvent,
};
use skiff_store::{EventKind, Write};

use crate::{
    auth::{may_read, may_write, Auth, Caller},
    error::ApiError,
    metrics::Metrics,
    node_proxy::{ExecRequest, LogOptions, NodeProxy},
    registry::{decode, kind_prefix, Part, Registry},
};

pub struct AppState {
    pub registry: Arc<Registry>,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    /// The client of node daemons, for logs and exec.
    pub nodes: NodeProxy,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback(api)
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match state.auth.authenticate(header(&headers)).await {
        Ok(_) => (
            [("content-type", "text/plain; version=0.0.4")],
            state.metrics.render(),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

fn header(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok())
}

fn json_response(code: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).expect("responses serialize");
    (code, [("content-type", "application/json")], body).into_response()
}

fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.status())
}

async fn api(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let verb = verb(&method, &query);
    let response = match handle(&state, &method, uri.path(), &query, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            if e.code() >= 500 {
                tracing::warn!(%method, path = uri.path(), error = %e, "request failed");
            }
            error_response(&e)
        }
    };
    state
        .metrics
        .request(verb, response.status().as_u16(), started.elapsed());
    response
}

fn verb(method: &Method, query: &HashMap<String, String>) -> &'static str {
    match *method {
        Method::GET if query.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::DELETE => "delete",
        _ => "other",
    }
}

/// A parsed `/api/v1/...` path.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_kind(plural: &str) -> Result<Kind, ApiError> {
    Kind::ALL
        .into_iter()
        .find(|k| k.plural() == plural)
        .ok_or_else(|| {
            ApiError::not_found(
                "resource type",
                format!(
                    "{plural} (known: {})",
                    Kind::ALL.map(|k| k.plural()).join(", ")
                ),
            )
        })
}

fn parse_target(segments: &[&str]) -> Result<Target, ApiError> {
    let target = |kind, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        kind,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    };
    match segments {
        ["namespaces", ns, plural, rest @ ..] if rest.len() <= 2 => {
            let kind = parse_kind(plural)?;
            if !kind.namespaced() {
                return Err(ApiError::BadRequest(format!(
                    "{kind} is cluster-scoped: use /api/v1/{plural}"
                )));
            }
            Ok(target(
                kind,
                Some(ns),
                rest.first().copied(),
                rest.get(1).copied(),
            ))
        }
        [plural, rest @ ..] if rest.len() <= 2 => {
            let kind = parse_kind(plural)?;
            if kind.namespaced() && !rest.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "{kind} lives in a namespace: use /api/v1/namespaces/NS/{plural}/NAME"
                )));
            }
            Ok(target(
                kind,
                None,
                rest.first().copied(),
                rest.get(1).copied(),
            ))
        }
        _ => Err(ApiError::not_found("path", segments.join("/"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApplyRequest {
    objects: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinRequest {
    node_name: String,
}

const METRICS_PREFIX: &str = "/metrics/nodes/";

async fn handle(
    state: &Arc<AppState>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = state.auth.authenticate(header(headers)).await?;
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Err(ApiError::not_found("path", path));
    };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let registry = &state.registry;
    match (method, segments.as_slice()) {
        (&Method::POST, ["join"]) => {
            let request: JoinRequest = parse_body(&body)?;
            if !matches!(caller, Caller::Joiner | Caller::Admin) {
                return Err(ApiError::Forbidden("joining needs the join token".into()));
            }
            let token = state.auth.issue_node_token(&request.node_name).await?;
            tracing::info!(node = %request.node_name, "node joined");
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({"nodeName": request.node_name, "token": token}),
            ))
        }
        (&Method::POST, ["apply"]) => {
            may_write(&caller, Kind::Namespace, "", false, false, None)?;
            let request: ApplyRequest = parse_body(&body)?;
            let mut objects = Vec::new();
            for (i, value) in request.objects.into_iter().enumerate() {
                objects.push(object_from_json(value).map_err(|e| match e {
                    ApiError::BadRequest(m) => ApiError::BadRequest(format!("objects[{i}]: {m}")),
                    other => other,
                })?);
            }
            let applied = registry.apply(objects).await?;
            Ok(json_response(StatusCode::OK, &applied))
        }
        (&Method::PUT, ["nodes", node, "metrics"]) => {
            may_write(&caller, Kind::Node, node, true, false, None)?;
            let sample: NodeMetrics = parse_body(&body)?;
            if sample.node != *node {
                return Err(ApiError::BadRequest(format!(
                    "node: {:?}: expected {node:?} (the node in the path)",
                    sample.node
                )));
            }
            registry
                .store()
                .txn(
                    Vec::new(),
                    vec![Write::Put {
                        key: format!("{METRICS_PREFIX}{node}"),
                        value: serde_json::to_vec(&sample).expect("serializes"),
                    }],
                )
                .await?;
            Ok(json_response(StatusCode::OK, &sample))
        }
        (&Method::GET, ["metrics"]) => {
            may_read(&caller)?;
            Ok(json_response(
                StatusCode::OK,
                &node_metrics(registry).await?,
            ))
        }
        (&Method::GET, ["namespaces", ns, "pods", name, "log"]) => {
            admin_only(&caller, "read a pod's log")?;
            let options = LogOptions::from_query(query)?;
            let target = NodeProxy::locate(registry, &state.auth, ns, name).await?;
            state.nodes.logs(&target, &options).await
        }
        (&Method::POST, ["namespaces", ns, "pods", name, "exec"]) => {
            admin_only(&caller, "run a command in a pod")?;
            let exec = ExecRequest::from_body(&body)?;
            let target = NodeProxy::locate(registry, &state.auth, ns, name).await?;
            state.nodes.exec(&target, &exec).await
        }
        _ => {
            let target = parse_target(&segments)?;
            handle_object(state, &caller, method, target, query, body).await
        }
    }
}

/// Logs and exec reach into pods on any node: only the admin may.
fn admin_only(caller: &Caller, what: &str) -> Result<(), ApiError> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Joiner => Err(ApiError::Forbidden(
            "the join token only joins nodes (POST /api/v1/join)".into(),
        )),
        Caller::Node(node) => Err(ApiError::Forbidden(format!(
            "only the admin token may {what}, not node {node}'s token"
        ))),
    }
}

/// Every node's latest usage sample.
pub async fn node_metrics(registry: &Registry) -> Result<Vec<NodeMetrics>, ApiError> {
    let listing = registry.store().list(METRICS_PREFIX).await?;
    Ok(listing
        .items
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
}

/// Reads an object whose kind comes from its own `kind` field.
fn object_from_json(value: serde_json::Value) -> Result<Object, ApiError> {
    let kind_name = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let kind = Kind::from_name(kind_name).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "kind {kind_name:?}: expected one of {}",
            Kind::ALL.map(|k| k.name()).join(", ")
        ))
    })?;
    Object::from_json(kind, value).map_err(|e| ApiError::BadRequest(format!("{kind}: {e}")))
}

async fn handle_object(
    state: &Arc<AppState>,
    caller: &Caller,
    method: &Method,
    target: Target,
    query: &HashMap<String, String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let registry = &state.registry;
    let kind = target.kind;
    let namespace = target.namespace.as_deref().unwrap_or("");
    match (method, target.name.as_deref(), target.sub.as_deref()) {
        (&Method::GET, None, None) => {
            may_read(caller)?;
            let selector = match query.get("labelSelector") {
                Some(s) => Some(parse_selector(s)?),
                None => None,
            };
            let ns = target.namespace.as_deref();
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return watch(state, kind, ns, selector, query.get("resourceVersion")).await;
            }
            let (objects, revision) = registry.list(kind, ns, selector.as_ref()).await?;
            Ok(json_response(
                StatusCode::OK,
                &List {
                    api_version: kind.api_version().into(),
                    kind: format!("{}List", kind.name()),
                    metadata: ListMeta {
                        resource_version: Some(revision.to_string()),
                    },
                    items: objects.iter().map(Object::to_json).collect(),
                },
            ))
        }
        (&Method::GET, Some(name), None) => {
            may_read(caller)?;
            let object = registry.get(kind, namespace, name).await?;
            Ok(json_response(StatusCode::OK, &object.to_json()))
        }
        (&Method::POST, None, None) => {
            let mut object = typed_body(kind, &body)?;
            if let Some(ns) = &target.namespace {
                match &object.metadata().namespace {
                    Some(given) if given != ns => {
                        return Err(ApiError::BadRequest(format!(
                        "metadata.namespace {given:?} does not match the path's namespace {ns:?}"
                    )))
                    }
                    _ => object.metadata_mut().namespace = Some(ns.clone()),
                }
            }
            let pod_node = pod_node(&object);
            may_write(
                caller,
                kind,
                &object.metadata().name,
                false,
                false,
                pod_node.as_deref(),
            )?;
            let created = registry.create(object).await?;
            Ok(json_response(StatusCode::CREATED, &created.to_json()))
        }
        (&Method::PUT, Some(name), sub) => {
            let part = match sub {
                None => Part::Main,
                Some("status") => Part::Status,
                Some(other) => {
                    return Err(ApiError::not_found("subresource", other));
                }
            };
            let mut object = typed_body(kind, &body)?;
            if object.metadata().name != name {
                return Err(ApiError::BadRequest(format!(
                    "metadata.name {:?} does not match the path's name {name:?}",
                    object.metadata().name
                )));
            }
            if kind.namespaced() {
                object.metadata_mut().namespace = Some(namespace.to_string());
            }
            // A node's rights over a pod follow the stored pod, not what the body claims.
            let pod_node = if kind == Kind::Pod {
                pod_node(&registry.get(kind, namespace, name).await?)
            } else {
                None
            };
            let status_only = part == Part::Status;
            may_write(caller, kind, name, status_only, false, pod_node.as_deref())?;
            let updated = match (caller, kind, part) {
                // A node registering itself creates its Node on first contact.
                (Caller::Node(_), Kind::Node, Part::Main) => {
                    match registry.update(object.clone(), part).await {
                        Err(ApiError::NotFound { .. }) => registry.create(object).await?,
                        other => other?,
                    }
                }
                _ => registry.update(object, part).await?,
            };
            Ok(json_response(StatusCode::OK, &updated.to_json()))
        }
        (&Method::DELETE, Some(name), None) => {
            let pod_node = if kind == Kind::Pod {
                pod_node(&registry.get(kind, namespace, name).await?)
            } else {
                None
            };
            may_write(caller, kind, name, false, true, pod_node.as_deref())?;
            let grace_zero = query.get("gracePeriodSeconds").is_some_and(|g| g == "0");
            let deleted = registry.delete(kind, namespace, name, grace_zero).await?;
            Ok(json_response(StatusCode::OK, &deleted.to_json()))
        }
        _ => Err(ApiError::BadRequest(format!(
            "{method} is not supported here (see docs/control-plane.md for the API)"
        ))),
    }
}

fn pod_node(object: &Object) -> Option<String> {
    match object {
        Object::Pod(p) => p.spec.node_name.clone(),
        _ => None,
    }
}

fn typed_body(kind: Kind, body: &Bytes) -> Result<Object, ApiError> {
    let value: serde_json::Value = parse_body(body)?;
    Object::from_json(kind, value).map_err(|e| ApiError::BadRequest(format!("{kind}: {e}")))
}

/// `app=web,tier!=db,env in (a,b),release,!canary` (the kubectl forms).
pub fn parse_selector(text: &str) -> Result<LabelSelector, ApiError> {
    let mut selector = LabelSelector::default();
    let bad = |part: &str| {
        ApiError::BadRequest(format!(
            "labelSelector {part:?}: expected key=value, key!=value, key in (a,b), key notin (a,b), key or !key"
        ))
    };
    // Split on commas outside parentheses.
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let requirement = |key: &str, operator, values: Vec<String>| Requirement {
            key: key.trim().to_string(),
            operator,
            values,
        };
        let set = |rest: &str| -> Option<Vec<String>> {
            let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            Some(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        if let Some((k, v)) = part.split_once("!=") {
            selector.match_expressions.push(requirement(
                k,
                SelectorOperator::NotIn,
                vec![v.trim().to_string()],
            ));
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            selector
                .match_labels
                .insert(k.trim().to_string(), v.trim().to_string());
        } else if let Some((k, rest)) = part.split_once(" notin ") {
            let values = set(rest).ok_or_else(|| bad(part))?;
            selector
                .match_expressions
                .push(requirement(k, SelectorOperator::NotIn, values));
        } else if let Some((k, rest)) = part.split_once(" in ") {
            let values = set(rest).ok_or_else(|| bad(part))?;
            selector
                .match_expressions
                .push(requirement(k, SelectorOperator::In, values));
        } else if let Some(k) = part.strip_prefix('!') {
            selector
                .match_expressions
                .push(requirement(k, SelectorOperator::DoesNotExist, vec![]));
        } else if part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            selector
                .match_expressions
                .push(requirement(part, SelectorOperator::Exists, vec![]));
        } else {
            return Err(bad(part));
        }
    }
    Ok(selector)
}

/// A watch stream. Without a resourceVersion it starts with ADDED events for what exists.
async fn watch(
    state: &Arc<AppState>,
    kind: Kind,
    namespace: Option<&str>,
    selector: Option<LabelSelector>,
    resource_version: Option<&String>,
) -> Result<Response, ApiError> {
    let registry = &state.registry;
    let (initial, after) = match resource_version.filter(|v| !v.is_empty() && *v != "0") {
        Some(v) => {
            let after: u64 = v.parse().map_err(|_| {
                ApiError::BadRequest(format!("resourceVersion {v:?}: expected a number"))
            })?;
            (Vec::new(), after)
        }
        None => registry.list(kind, namespace, selector.as_ref()).await?,
    };
    let prefix = kind_prefix(kind, namespace);
    let mut stream = match registry.store().watch(&prefix, after).await {
        Ok(s) => s,
        Err(skiff_store::StoreError::Compacted { requested, oldest }) => {
            return Err(ApiError::Expired(format!(
                "resourceVersion {requested} is too old (the oldest kept is {oldest}): list again and watch from the list's resourceVersion"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let metrics = state.metrics.clone();
    let line = |event: &WatchEvent| {
        let mut bytes = serde_json::to_vec(event).expect("events serialize");
        bytes.push(b'\n');
        Ok(Bytes::from(bytes))
    };
    tokio::spawn(async move {
        metrics
            .watches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for object in initial {
            let event = WatchEvent {
                type_: "ADDED".into(),
                object: object.to_json(),
            };
            if tx.send(line(&event)).await.is_err() {
                break;
            }
        }
        loop {
            // A client that went away ends the stream now, not at the next event.
            let next = tokio::select! {
                next = stream.next() => next,
                _ = tx.closed() => break,
            };
            let Some(next) = next else { break };
            let event = match next {
                Ok(event) => event,
                Err(e) => {
                    let status = ApiError::from(e).status();
                    let _ = tx
                        .send(line(&WatchEvent {
                            type_: "ERROR".into(),
                            object: serde_json::to_value(status).expect("serializes"),
                        }))
                        .await;
                    break;
                }
            };
            let Ok(object) = decode(kind, &event.kv) else {
                continue;
            };
            if selector
                .as_ref()
                .is_some_and(|s| !s.matches(&object.metadata().labels))
            {
                continue;
            }
            let type_ = match (event.kind, &event.prev) {
                (EventKind::Delete, _) => "DELETED",
                (EventKind::Put, None) => "ADDED",
                (EventKind::Put, Some(_)) => "MODIFIED",
            };
            let event = WatchEvent {
                type_: type_.into(),
                object: object.to_json(),
            };
            if tx.send(line(&event)).await.is_err() {
                break;
            }
        }
        metrics
            .watches
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        StatusCode::OK,
        [("content-type", "application/json;stream=watch")],
        body,
    )
        .into_response())
}
