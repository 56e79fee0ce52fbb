//! What client and server say to each other, and the client's side of one exchange.

use std::{
    io::{BufRead, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{bail, Context as _};

/// The TCP line after which the server only counts what it receives.
pub const STREAM_LINE: &str = "skiff-probe stream";
/// UDP payloads starting with this are counted by the sender only, never answered.
pub const UDP_STREAM_PREFIX: &[u8] = b"skiff-probe stream ";
/// Longest request line or HTTP head either side accepts.
pub const MAX_LINE: u64 = 64 * 1024;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65507;

/// A target as IP:PORT or NAME:PORT (resolved once, here: see [`crate::resolve`]).
pub fn parse_addr(target: &str) -> anyhow::Result<SocketAddr> {
    crate::resolve::target(target, Duration::from_secs(1))
}

/// One answer split into (server name, client address the server saw). An answer relayed
/// through upstreams ("front-1 10.0.0.1:4000 -> api-2 10.0.0.2:5000") is the first hop's.
pub fn split_answer(answer: &str) -> Option<(&str, SocketAddr)> {
    let mut words = answer.split(' ');
    let name = words.next()?;
    Some((name, words.next()?.parse().ok()?))
}

pub struct Exchange {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The server's "NAME CLIENT" line.
    pub answer: String,
}

/// A connected stream with both timeouts set, and a buffered reader on it.
pub fn tcp_connect(
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<(TcpStream, BufReader<TcpStream>)> {
    let stream = TcpStream::connect_timeout(&addr, timeout).context("connect")?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // Small requests are latency samples, not bulk data to coalesce.
    stream.set_nodelay(true)?;
    let reader = BufReader::new(stream.try_clone()?);
    Ok((stream, reader))
}

/// The next line, without its newline; the peer closing first is an error.
pub fn read_line(reader: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = Vec::new();
    match reader.take(MAX_LINE).read_until(b'\n', &mut line)? {
        0 => bail!("connection closed by the peer"),
        _ => Ok(String::from_utf8_lossy(&line).trim_end().to_string()),
    }
}

pub struct HttpHead {
    pub status: u16,
    pub content_length: Option<u64>,
    /// `Connection: keep-alive` was said.
    pub keep_alive: bool,
}

/// Reads a request or response head; `None` when the peer closed before sending anything.
/// `status` is 0 for requests.
pub fn read_http_head(reader: &mut impl BufRead) -> anyhow::Result<Option<HttpHead>> {
    let mut line = String::new();
    let mut limited = reader.take(MAX_LINE);
    if limited.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let status = match line.strip_prefix("HTTP/1.") {
        Some(rest) => rest
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?,
        None => 0,
    };
    let mut head = HttpHead {
        status,
        content_length: None,
        keep_alive: false,
    };
    loop {
        line.clear();
        if limited.read_line(&mut line)? == 0 {
            bail!("connection closed inside the HTTP head");
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(Some(head));
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if key.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(value.parse().context("bad Content-Length")?);
        } else if key.eq_ignore_ascii_case("connection") {
            head.keep_alive = value.eq_ignore_ascii_case("keep-alive");
        }
    }
}

/// Sends one request (a GET, or a POST of `body`) and reads the answer: (body, the server
/// keeps the connection, bytes of payload both ways).
pub fn http_request(
    stream: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    addr: SocketAddr,
    body: Option<&[u8]>,
    keep_alive: bool,
) -> anyhow::Result<(String, bool, u64)> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = match body {
        Some(body) => format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
            body.len()
        ),
        None => format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: {connection}\r\n\r\n"),
    };
    stream.write_all(head.as_bytes()).context("send")?;
    if let Some(body) = body {
        stream.write_all(body).context("send")?;
    }
    let answer = read_http_head(reader)
        .context("receive")?
        .context("connection closed by the peer")?;
    if answer.status != 200 {
        bail!("HTTP status {}", answer.status);
    }
    let length = answer
        .content_length
        .context("answer without Content-Length")?;
    if length > MAX_LINE {
        bail!("answer body of {length} bytes");
    }
    let mut answer_body = Vec::new();
    reader
        .take(length)
        .read_to_end(&mut answer_body)
        .context("receive")?;
    if answer_body.len() as u64 != length {
        bail!("connection closed inside the answer body");
    }
    let sent = body.map_or(0, <[u8]>::len) as u64;
    Ok((
        String::from_utf8_lossy(&answer_body).trim_end().to_string(),
        answer.keep_alive,
        sent + length,
    ))
}

/// A UDP socket of `addr`'s family, connected to it unless `unconnected`.
pub fn udp_socket(
    addr: SocketAddr,
    timeout: Duration,
    unconnected: bool,
) -> anyhow::Result<UdpSocket> {
    let any: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).context("bind")?;
    if !unconnected {
        socket.connect(addr).context("connect")?;
    }
    socket.set_read_timeout(Some(timeout))?;
    Ok(socket)
}

/// One datagram out, one back.
pub fn udp_exchange(
    socket: &UdpSocket,
    addr: SocketAddr,
    payload: &[u8],
    unconnected: bool,
) -> anyhow::Result<Exchange> {
    let mut buf = [0u8; 65536];
    let (n, peer) = if unconnected {
        socket.send_to(payload, addr).context("sendto")?;
        socket.recv_from(&mut buf).context("no answer")?
    } else {
        socket.send(payload).context("send")?;
        let n = socket.recv(&mut buf).context("no answer")?;
        (n, socket.peer_addr()?)
    };
    Ok(Exchange {
        local: socket.local_addr()?,
        peer,
        answer: String::from_utf8_lossy(&buf[..n]).trim_end().to_string(),
    })
}

/// A new connection: the greeting is the answer.
pub fn tcp_once(addr: SocketAddr, timeout: Duration) -> anyhow::Result<Exchange> {
    let (stream, mut reader) = tcp_connect(addr, timeout)?;
    let answer = read_line(&mut reader).context("reading the answer")?;
    Ok(Exchange {
        local: stream.local_addr()?,
        peer: stream.peer_addr()?,
        answer,
    })
}

/// A new connection carrying one GET.
pub fn http_once(addr: SocketAddr, timeout: Duration) -> anyhow::Result<Exchange> {
    let (mut stream, mut reader) = tcp_connect(addr, timeout)?;
    let (answer, _, _) = http_request(&mut stream, &mut reader, addr, None, false)?;
    Ok(Exchange {
        local: stream.local_addr()?,
        peer: stream.peer_addr()?,
        answer,
    })
}

/// A new socket sending `count` datagrams of `size` bytes, each of which must be answered.
pub fn udp_once(
    addr: SocketAddr,
    timeout: Duration,
    count: u32,
    size: usize,
    unconnected: bool,
) -> anyhow::Result<Exchange> {
    if size > MAX_DATAGRAM {
        bail!("--size {size} exceeds the largest datagram ({MAX_DATAGRAM})");
    }
    let socket = udp_socket(addr, timeout, unconnected)?;
    let payload = vec![b'x'; size];
    let mut last = None;
    for i in 0..count {
        last = Some(
            udp_exchange(&socket, addr, &payload, unconnected)
                .with_context(|| format!("datagram {} of {count}", i + 1))?,
        );
    }
    last.context("--count 0 sends nothing")
}
