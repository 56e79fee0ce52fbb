//! A minimal HTTP/1.1 GET client for the node daemon's API (plain HTTP on the node, for
//! `observe` and `policy explain`; the control plane's API is `skiff_client`'s).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use anyhow::{bail, Context as _};

/// GETs `path` and returns the body of a 200 answer; any other status becomes an error
/// carrying the API's message.
pub fn get(node: &str, path: &str, query: &[(&str, String)]) -> anyhow::Result<String> {
    let mut reader = get_stream(node, path, query)?;
    let mut body = String::new();
    reader.read_to_string(&mut body)?;
    Ok(body)
}

/// GETs `path` and returns a reader positioned at the start of a 200 answer's body.
pub fn get_stream(
    node: &str,
    path: &str,
    query: &[(&str, String)],
) -> anyhow::Result<BufReader<TcpStream>> {
    let addr = node
        .to_socket_addrs()
        .with_context(|| format!("--node {node:?}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("--node {node:?}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).with_context(|| {
        format!("connecting to the node daemon at {node} (is `skiff-node run --api {node}` running? --node / SKIFF_NODE)")
    })?;
    let query: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    write!(
        stream,
        "GET {path}?{} HTTP/1.1\r\nHost: {node}\r\nConnection: close\r\n\r\n",
        query.join("&")
    )?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        let mut body = String::new();
        reader.read_to_string(&mut body)?;
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(body);
        bail!("{}: {}", status.trim(), message.trim());
    }
    Ok(reader)
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
