//! `skiff-probe serve`: every answer is "NAME CLIENT_IP:CLIENT_PORT".

use std::{
    io::{BufRead, BufReader, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _};

use crate::wire;

pub fn serve(
    tcp: Vec<u16>,
    udp: Vec<u16>,
    http: Vec<u16>,
    name: Option<String>,
    bind: IpAddr,
) -> anyhow::Result<()> {
    if tcp.is_empty() && udp.is_empty() && http.is_empty() {
        bail!("nothing to serve: give at least one --tcp, --udp or --http port");
    }
    let name = name.unwrap_or_else(default_name);
    let mut workers = Vec::new();
    for port in tcp {
        let listener =
            TcpListener::bind((bind, port)).with_context(|| format!("binding tcp {port}"))?;
        let name = name.clone();
        workers.push(thread::spawn(move || {
            accept_loop(listener, name, answer_tcp)
        }));
    }
    for port in http {
        let listener =
            TcpListener::bind((bind, port)).with_context(|| format!("binding http {port}"))?;
        let name = name.clone();
        workers.push(thread::spawn(move || {
            accept_loop(listener, name, answer_http)
        }));
    }
    for port in udp {
        let socket =
            UdpSocket::bind((bind, port)).with_context(|| format!("binding udp {port}"))?;
        let name = name.clone();
        workers.push(thread::spawn(move || udp_loop(socket, name)));
    }
    // Readiness signal for whoever started us.
    println!("serving");
    let _ = std::io::stdout().flush();
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// `--name`, else `$POD_NAME` (the downward API's usual variable), else the hostname of our
/// UTS namespace: /proc rather than gethostname(3) keeps the static binary free of NSS.
fn default_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "skiff-probe".to_string())
}

fn accept_loop(listener: TcpListener, name: String, answer: fn(TcpStream, &str, SocketAddr)) {
    for stream in listener.incoming().flatten() {
        let Ok(client) = stream.peer_addr() else {
            continue;
        };
        let name = name.clone();
        thread::spawn(move || answer(stream, &name, client));
    }
}

/// Greets with "NAME CLIENT", then answers every line the client sends with the same, so one
/// connection can carry many exchanges (`session`, `load --mode rr`). The line
/// [`wire::STREAM_LINE`] turns the connection into a sink for `load --mode stream`: everything
/// after it is discarded and, once the client shuts down its side, the byte count is the last
/// line, so the client knows what actually arrived.
fn answer_tcp(mut stream: TcpStream, name: &str, client: SocketAddr) {
    let greeting = format!("{name} {client}\n");
    if stream.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    // Until the client closes: the client closing first keeps TIME_WAIT off the server.
    loop {
        line.clear();
        // Bounded, so a client sending bytes without newlines cannot grow our memory.
        match (&mut reader)
            .take(wire::MAX_LINE)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.strip_suffix(b"\n") == Some(wire::STREAM_LINE.as_bytes()) {
            if let Ok(received) = std::io::copy(&mut reader, &mut std::io::sink()) {
                let _ = stream.write_all(format!("{received}\n").as_bytes());
            }
            return;
        }
        if stream.write_all(greeting.as_bytes()).is_err() {
            return;
        }
    }
}

/// Answers 200 with "NAME CLIENT" as the body. Closes after the answer unless the client asked
/// for keep-alive, as plain `bash /dev/tcp` readers of the answer rely on. A request body
/// (`load --proto http --mode stream` uploads) is read and discarded.
fn answer_http(mut stream: TcpStream, name: &str, client: SocketAddr) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    let body = format!("{name} {client}\n");
    loop {
        let Ok(Some(head)) = wire::read_http_head(&mut reader) else {
            return;
        };
        let length = head.content_length.unwrap_or(0);
        match std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()) {
            Ok(n) if n == length => {}
            _ => return,
        }
        let connection = if head.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() || !head.keep_alive {
            return;
        }
    }
}

/// Answers every datagram, except `load --mode stream --proto udp` payloads, which are only
/// counted by the sender: answering them would halve the throughput being measured.
fn udp_loop(socket: UdpSocket, name: String) {
    let mut buf = [0u8; 65536];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if buf[..n].starts_with(wire::UDP_STREAM_PREFIX) {
            continue;
        }
        let _ = socket.send_to(format!("{name} {client}\n").as_bytes(), client);
    }
}
