//! `logs` and `exec` through a real `skiff-control`: every way they can fail before a node
//! answers, and the proxying itself against a stand-in node daemon on 127.0.0.1 that speaks
//! the daemon's contract (bearer = SHA-256 of the node token, streamed logs, JSON exec).

mod support;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use serde_json::{json, Value};
use support::{free_port, Api, Control};

fn hex_sha256(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// One request the stand-in daemon received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: HashMap<String, String>,
}

/// A stand-in node daemon: plain HTTP/1.1 on 127.0.0.1, one thread per connection.
struct FakeDaemon {
    port: u16,
    /// The bearer it accepts (the hex digest of the node's token).
    bearer: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The test says here that it read a followed log's first chunk...
    first_chunk_read: mpsc::Sender<()>,
    /// ...and the daemon says here whether it heard that before it sent the second.
    second_chunk_sent: Arc<Mutex<mpsc::Receiver<bool>>>,
}

impl FakeDaemon {
    fn start() -> FakeDaemon {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bearer = Arc::new(Mutex::new(String::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (read_tx, read_rx) = mpsc::channel::<()>();
        let (sent_tx, sent_rx) = mpsc::channel::<bool>();
        let gate = Arc::new(Mutex::new((read_rx, sent_tx)));
        let (b, s) = (bearer.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (b, s, gate) = (b.clone(), s.clone(), gate.clone());
                std::thread::spawn(move || serve(stream, &b, &s, &gate));
            }
        });
        FakeDaemon {
            port,
            bearer,
            seen,
            first_chunk_read: read_tx,
            second_chunk_sent: Arc::new(Mutex::new(sent_rx)),
        }
    }

    fn last_seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

type Gate = Mutex<(mpsc::Receiver<()>, mpsc::Sender<bool>)>;

fn serve(stream: TcpStream, bearer: &Mutex<String>, seen: &Mutex<Vec<Seen>>, gate: &Gate) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.insert(k.trim().to_lowercase(), v.trim().to_string());
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap().to_string();
    let target = parts.next().unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: HashMap<String, String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.to_string(),
        query: query.clone(),
    });
    let mut answer = |code: u16, content_type: &str, body: &str| {
        write!(
            stream,
            "HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    };
    let expected = format!("Bearer {}", bearer.lock().unwrap());
    if headers.get("authorization") != Some(&expected) {
        return answer(401, "text/plain", "bad token\n");
    }
    let container = query.get("container").map(String::as_str).unwrap_or("app");
    if container != "app" {
        return answer(
            404,
            "text/plain",
            &format!("container {container:?} not found in pod default/web\n"),
        );
    }
    match (method.as_str(), path) {
        ("GET", "/pods/default/stopped/log") => {
            answer(409, "text/plain", "container app is not running\n")
        }
        ("GET", "/pods/default/web/log") if query.get("follow").is_some_and(|f| f == "true") => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nfirst chunk\n"
            )
            .unwrap();
            stream.flush().unwrap();
            let gate = gate.lock().unwrap();
            // Generous: the test reads the first chunk in well under a second when the
            // control plane streams; a buffering proxy would hold it until this gives up.
            let heard = gate.0.recv_timeout(Duration::from_secs(30)).is_ok();
            let _ = stream.write_all(b"second chunk\n");
            let _ = gate.1.send(heard);
        }
        ("GET", "/pods/default/web/log") if query.get("previous").is_some_and(|f| f == "true") => {
            answer(200, "text/plain", "the run before\n")
        }
        ("GET", "/pods/default/web/log") => answer(200, "text/plain", "line 1\nline 2\n"),
        ("POST", "/pods/default/web/exec") => {
            let command: Vec<String> = serde_json::from_str(&query["command"]).unwrap();
            if command[0] == "sleep" {
                return answer(504, "text/plain", "exec timed out after 1 s\n");
            }
            let body = json!({
                "stdout": format!("ran {command:?} with timeout {}\n", query["timeout"]),
                "stderr": "to stderr\n",
                "exitCode": 3,
            });
            answer(200, "application/json", &body.to_string())
        }
        _ => answer(404, "text/plain", &format!("no route {method} {path}\n")),
    }
}

/// A joined node registered with `status` (addresses, daemon endpoint); returns its token.
fn register(api: &Api, joiner: &Api, name: &str, status: Value) -> String {
    let joined = joiner.expect(
        "POST",
        "/api/v1/join",
        Some(&json!({"nodeName": name})),
        200,
    );
    let token = joined["token"].as_str().unwrap().to_string();
    let node = api.with_token(Some(&token));
    let me = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    node.expect("PUT", &format!("/api/v1/nodes/{name}"), Some(&me), 200);
    let mut object = node.expect("GET", &format!("/api/v1/nodes/{name}"), None, 200);
    object["status"] = status;
    node.expect(
        "PUT",
        &format!("/api/v1/nodes/{name}/status"),
        Some(&object),
        200,
    );
    token
}

fn daemon_status(port: u16) -> Value {
    json!({
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "conditions": [{"type": "Ready", "status": "True"}],
    })
}

fn pod(api: &Api, name: &str, node: Option<&str>) {
    let mut spec = json!({"containers": [{"name": "app", "image": "skiff/probe"}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    api.expect(
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})),
        201,
    );
}

/// GETs a path whose 200 body is not JSON: (code, body text or the error's message).
fn get_text(api: &Api, path: &str) -> (u16, String) {
    match api.watch(path) {
        Ok(mut response) => {
            let mut text = String::new();
            response.read_to_string(&mut text).unwrap();
            (200, text)
        }
        Err((code, body)) => (code, body["message"].as_str().unwrap_or("").to_string()),
    }
}

fn message(api: &Api, method: &str, path: &str, body: Option<&Value>, code: u16) -> String {
    let body = api.expect(method, path, body, code);
    body["message"].as_str().unwrap().to_string()
}

const LOG: &str = "/api/v1/namespaces/default/pods/web/log";
const EXEC: &str = "/api/v1/namespaces/default/pods/web/exec";

#[test]
fn logs_and_exec_are_proxied_to_the_pods_node() {
    let control = Control::embedded(&["--disable-controllers"]);
    let api = &control.api;
    let join_token = std::fs::read_to_string(control.dir.join("join-token")).unwrap();
    let joiner = api.with_token(Some(join_token.trim()));
    let daemon = FakeDaemon::start();
    let n1_token = register(api, &joiner, "n1", daemon_status(daemon.port));
    *daemon.bearer.lock().unwrap() = hex_sha256(&n1_token);
    pod(api, "web", Some("n1"));
    pod(api, "stopped", Some("n1"));

    // Only the admin: a node's token and the join token are refused, no token is unknown.
    let node = api.with_token(Some(&n1_token));
    let e = message(&node, "GET", LOG, None, 403);
    assert_eq!(
        e,
        "only the admin token may read a pod's log, not node n1's token"
    );
    let e = message(&node, "POST", EXEC, Some(&json!({"command": ["ls"]})), 403);
    assert!(e.contains("may run a command in a pod"), "{e}");
    assert_eq!(joiner.call("GET", LOG, None).0, 403);
    assert_eq!(api.with_token(None).call("GET", LOG, None).0, 401);
    assert!(daemon.seen.lock().unwrap().is_empty());

    // A log, whole.
    assert_eq!(get_text(api, LOG), (200, "line 1\nline 2\n".into()));
    let seen = daemon.last_seen();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/pods/default/web/log")
    );
    assert!(seen.query.is_empty(), "{seen:?}");
    assert_eq!(
        get_text(api, &format!("{LOG}?container=app&previous=true")),
        (200, "the run before\n".into())
    );
    assert_eq!(daemon.last_seen().query["previous"], "true");
    assert_eq!(daemon.last_seen().query["container"], "app");

    // Followed: the first chunk reaches the client while the daemon still holds the second.
    let mut stream = api.watch(&format!("{LOG}?follow=true")).unwrap();
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/plain"
    );
    let mut got = Vec::new();
    let mut buffer = [0u8; 256];
    while !got.ends_with(b"first chunk\n") {
        let n = stream.read(&mut buffer).unwrap();
        assert!(
            n > 0,
            "the stream ended after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buffer[..n]);
    }
    assert_eq!(got, b"first chunk\n");
    daemon.first_chunk_read.send(()).unwrap();
    stream.read_to_end(&mut got).unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "first chunk\nsecond chunk\n"
    );
    assert!(
        daemon
            .second_chunk_sent
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .unwrap(),
        "the daemon sent the second chunk before the client had the first"
    );

    // The daemon's own errors come back with its code, naming the node.
    let (code, e) = get_text(api, &format!("{LOG}?container=nope"));
    assert_eq!(code, 404);
    assert_eq!(
        e,
        format!(
            "node n1 (daemon at 127.0.0.1:{}): container \"nope\" not found in pod default/web",
            daemon.port
        )
    );
    let (code, e) = get_text(api, "/api/v1/namespaces/default/pods/stopped/log");
    assert_eq!(code, 409);
    assert!(e.ends_with(": container app is not running"), "{e}");
    let (code, e) = get_text(api, &format!("{LOG}?follow=maybe"));
    assert_eq!(
        (code, e.as_str()),
        (400, "follow: \"maybe\": expected true or false")
    );

    // Exec: the daemon's JSON, unchanged; the command travels as a JSON array.
    let answer = api.expect(
        "POST",
        EXEC,
        Some(&json!({"command": ["sh", "-c", "echo a+b & c"], "container": "app", "timeoutSeconds": 7})),
        200,
    );
    assert_eq!(
        answer,
        json!({"stdout": "ran [\"sh\", \"-c\", \"echo a+b & c\"] with timeout 7\n", "stderr": "to stderr\n", "exitCode": 3})
    );
    let seen = daemon.last_seen();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/pods/default/web/exec")
    );
    assert_eq!(seen.query["container"], "app");
    let answer = api.expect("POST", EXEC, Some(&json!({"command": ["true"]})), 200);
    assert!(
        answer["stdout"]
            .as_str()
            .unwrap()
            .ends_with("with timeout 30\n"),
        "{answer}"
    );
    let e = message(
        api,
        "POST",
        EXEC,
        Some(&json!({"command": ["sleep", "9"]})),
        504,
    );
    assert!(
        e.starts_with("node n1 (daemon at 127.0.0.1:") && e.ends_with("exec timed out after 1 s"),
        "{e}"
    );

    // Bad exec bodies name the field, the value and what was expected.
    for (body, expected) in [
        (
            json!({"command": []}),
            "exec request: command: []: expected a non-empty array of strings",
        ),
        (
            json!({"command": "ls -l"}),
            "exec request: command: \"ls -l\": expected a non-empty array of strings",
        ),
        (
            json!({"command": ["ls", 1]}),
            "exec request: command[1]: 1: expected a string",
        ),
        (
            json!({"command": ["ls"], "timeoutSeconds": 601}),
            "exec request: timeoutSeconds: 601: expected a whole number of seconds from 1 to 600",
        ),
    ] {
        let e = message(api, "POST", EXEC, Some(&body), 400);
        assert!(
            e.starts_with(expected),
            "{e:?} does not start with {expected:?}"
        );
    }

    // Rejoining gives the node a new token: a daemon still on the old one refuses the
    // control plane, and the error says so instead of blaming the user's token.
    joiner.expect(
        "POST",
        "/api/v1/join",
        Some(&json!({"nodeName": "n1"})),
        200,
    );
    let (code, e) = get_text(api, LOG);
    assert_eq!(code, 502);
    assert!(
        e.contains("refused the control plane's credentials (401 Unauthorized: bad token)"),
        "{e}"
    );
}

#[test]
fn logs_and_exec_say_why_no_node_can_answer() {
    let control = Control::embedded(&["--disable-controllers"]);
    let api = &control.api;
    let join_token = std::fs::read_to_string(control.dir.join("join-token")).unwrap();
    let joiner = api.with_token(Some(join_token.trim()));

    let e = message(
        api,
        "GET",
        "/api/v1/namespaces/default/pods/nothere/log",
        None,
        404,
    );
    assert_eq!(e, "Pod \"nothere\" not found");
    let e = message(
        api,
        "POST",
        "/api/v1/namespaces/default/pods/nothere/exec",
        Some(&json!({"command": ["ls"]})),
        404,
    );
    assert_eq!(e, "Pod \"nothere\" not found");

    pod(api, "pending", None);
    let e = message(
        api,
        "GET",
        "/api/v1/namespaces/default/pods/pending/log",
        None,
        409,
    );
    assert!(
        e.starts_with("pod pending is not scheduled to a node yet"),
        "{e}"
    );

    pod(api, "lost", Some("ghost"));
    let e = message(
        api,
        "GET",
        "/api/v1/namespaces/default/pods/lost/log",
        None,
        503,
    );
    assert!(e.contains("node ghost, which is not registered"), "{e}");

    // A node whose daemon advertises no API port.
    register(
        api,
        &joiner,
        "n2",
        json!({"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}),
    );
    pod(api, "mute", Some("n2"));
    let e = message(
        api,
        "POST",
        "/api/v1/namespaces/default/pods/mute/exec",
        Some(&json!({"command": ["ls"]})),
        503,
    );
    assert!(
        e.starts_with("node n2's daemon did not advertise an API port"),
        "{e}"
    );

    // A node whose daemon port has nothing listening.
    let closed = free_port();
    register(api, &joiner, "n3", daemon_status(closed));
    pod(api, "down", Some("n3"));
    for (method, path, body) in [
        (
            "GET",
            "/api/v1/namespaces/default/pods/down/log?follow=true",
            None,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods/down/exec",
            Some(json!({"command": ["ls"]})),
        ),
    ] {
        let e = message(api, method, path, body.as_ref(), 502);
        assert!(
            e.starts_with(&format!(
                "cannot reach node n3's daemon at 127.0.0.1:{closed}: "
            )),
            "{e}"
        );
        assert!(e.to_lowercase().contains("refused"), "{e}");
    }
}
