//! The node daemon's HTTP API (one listener, `--api ADDR`):
//!
//! - `GET /metrics`: Prometheus metrics (see [`crate::metrics`]);
//! - `GET /flows?pod=NS/POD&namespace=NS&verdict=allowed|denied&last=N&follow=true`: flow
//!   records as JSON lines, the recent ones and (with `follow`) live ones until the client
//!   goes away (`skiff observe`);
//! - `GET /explain?from=NS/POD&to=NS/POD&port=N&proto=tcp`: a policy verdict with the deciding
//!   policies (`skiff policy explain`);
//! - `GET /status`: the policy revision and which cluster state file content is applied;
//! - `/pods/NS/NAME/log` and `/pods/NS/NAME/exec`: container logs and exec for the control
//!   plane, which proxies `skiff logs` and `skiff exec` (see [`crate::pod_api`]).

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    http::{answer, read_request, start_stream, Request},
    policy::{
        explain,
        flows::{FlowFilter, FlowHub, FlowRecord, SharedCompiled},
        PodName,
    },
};

/// What `/status` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `uname -r` of the node: which kernel the data plane was verified by.
    #[serde(default)]
    pub kernel: String,
    /// How TC programs are attached here: `tcx` (kernel >= 6.6) or `clsact`.
    #[serde(default)]
    pub tc_attach_mode: String,
    pub policy_revision: u32,
    /// `fnv1a64:<hex>` of the cluster state file content last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_applied: Option<String>,
    /// The content last rejected, and why (the applied state stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_rejected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_error: Option<String>,
}

/// Everything the API answers from.
#[derive(Clone)]
pub struct ApiState {
    pub pin_dir: PathBuf,
    pub compiled: SharedCompiled,
    pub flows: Arc<FlowHub>,
    pub status: Arc<Mutex<Status>>,
    /// This data plane's program ids, for their run counts.
    pub programs: Vec<(&'static str, u32)>,
    /// Present when the daemon runs pods.
    pub pods: Option<crate::pod_api::PodApi>,
}

/// Serves the API on `addr` from background threads (one per connection).
pub fn serve(addr: SocketAddr, state: ApiState) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    thread::Builder::new().name("api".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = state.clone();
            let _ = thread::Builder::new()
                .name("api-conn".into())
                .spawn(move || handle(stream, &state));
        }
    })?;
    Ok(())
}

fn handle(mut stream: TcpStream, state: &ApiState) {
    let Ok(request) = read_request(&mut stream) else {
        return;
    };
    if request.path.starts_with("/pods/") {
        crate::pod_api::handle(&mut stream, &request, state.pods.as_ref());
        return;
    }
    let result = match request.path.as_str() {
        "/metrics" => {
            let compiled = state
                .compiled
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            match crate::metrics::render(&state.pin_dir, &compiled, &state.programs) {
                Ok(body) => answer(&mut stream, "200 OK", "text/plain; version=0.0.4", &body),
                Err(e) => error(&mut stream, "500 Internal Server Error", &format!("{e}")),
            }
        }
        "/flows" => flows(&mut stream, &request, state),
        "/explain" => explain_answer(&mut stream, &request, state),
        "/status" => {
            let status = state
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            json(&mut stream, &status)
        }
        other => error(
            &mut stream,
            "404 Not Found",
            &format!(
                "no endpoint {other}: try /metrics, /flows, /explain, /status or /pods/NS/NAME/log"
            ),
        ),
    };
    let _ = result;
}

fn json<T: Serialize>(stream: &mut TcpStream, value: &T) -> std::io::Result<()> {
    let body = serde_json::to_string(value).unwrap_or_default() + "\n";
    answer(stream, "200 OK", "application/json", &body)
}

fn error(stream: &mut TcpStream, status: &str, message: &str) -> std::io::Result<()> {
    let body = serde_json::json!({ "error": message }).to_string() + "\n";
    answer(stream, status, "application/json", &body)
}

fn bad_request(stream: &mut TcpStream, message: String) -> std::io::Result<()> {
    error(stream, "400 Bad Request", &message)
}

fn flows(stream: &mut TcpStream, request: &Request, state: &ApiState) -> std::io::Result<()> {
    let q = &request.query;
    let pod = match q.get("pod").map(|p| p.parse::<PodName>()) {
        Some(Err(e)) => return bad_request(stream, format!("pod: {e}")),
        Some(Ok(pod)) => Some(pod),
        None => None,
    };
    let verdict = q.get("verdict").cloned();
    if let Some(v) = &verdict {
        if v != "allowed" && v != "denied" {
            return bad_request(
                stream,
                format!("verdict: {v:?}: expected allowed or denied"),
            );
        }
    }
    let last = match q.get("last").map(|n| n.parse::<usize>()) {
        Some(Err(_)) => {
            return bad_request(stream, format!("last: {:?}: expected a number", q["last"]))
        }
        Some(Ok(n)) => n,
        None => 20,
    };
    let follow = matches!(q.get("follow").map(String::as_str), Some("true" | "1"));
    let filter = FlowFilter {
        pod,
        namespace: q.get("namespace").cloned(),
        verdict,
    };
    let (history, live) = state.flows.subscribe(filter, last, follow);
    start_stream(stream, "application/x-ndjson")?;
    let send = |stream: &mut TcpStream, flow: &FlowRecord| -> std::io::Result<()> {
        let line = serde_json::to_string(flow).unwrap_or_default();
        writeln!(stream, "{line}")?;
        stream.flush()
    };
    for flow in &history {
        send(stream, flow)?;
    }
    let Some(live) = live else { return Ok(()) };
    loop {
        match live.recv_timeout(Duration::from_secs(5)) {
            Ok(flow) => send(stream, &flow)?,
            // An empty line now and then finds out whether the client is still there.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                stream.write_all(b"\n")?;
                stream.flush()?;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

fn explain_answer(
    stream: &mut TcpStream,
    request: &Request,
    state: &ApiState,
) -> std::io::Result<()> {
    let q = &request.query;
    let pod = |field: &str| -> Result<PodName, String> {
        q.get(field)
            .ok_or_else(|| format!("{field}: missing (NAMESPACE/POD)"))?
            .parse()
            .map_err(|e| format!("{field}: {e}"))
    };
    let parsed = (|| -> Result<_, String> {
        let from = pod("from")?;
        let to = pod("to")?;
        let port = q
            .get("port")
            .ok_or("port: missing (1-65535)")?
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port: {:?}: expected 1-65535", q["port"]))?;
        let proto = q
            .get("proto")
            .map_or("tcp", String::as_str)
            .parse()
            .map_err(|e| format!("{e}"))?;
        Ok((from, to, port, proto))
    })();
    let (from, to, port, proto) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_request(stream, e),
    };
    let compiled = state
        .compiled
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match explain(&compiled, &from, &to, port, proto) {
        Ok(explanation) => json(stream, &explanation),
        Err(e) => error(stream, "404 Not Found", &e.to_string()),
    }
}

/// How `/status` names a cluster state file's content (`fnv1a64:<hex>`), so a client that
/// wrote the file can tell when the daemon applied it.
pub fn digest(text: &str) -> String {
    format!("fnv1a64:{:016x}", crate::policy::fnv1a(text.as_bytes()))
}
