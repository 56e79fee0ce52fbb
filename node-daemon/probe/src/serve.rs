//! `skiff-probe serve`: every answer is "NAME CLIENT_IP:CLIENT_PORT". As an HTTP tier of the
//! demo application it can also burn CPU per request (work for an autoscaler to see) and ask
//! an upstream tier before answering, appending that tier's answer: "NAME CLIENT -> UPSTREAM'S
//! ANSWER".

use std::{
    io::{BufRead, BufReader, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::wire;

/// Set by SIGTERM or SIGINT: answer what is in flight, then exit.
static TERMINATING: AtomicBool = AtomicBool::new(false);
/// HTTP connections being answered; a TCP session is the client's to end, so it is not waited on.
static HTTP_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Bounds the wait for answers in flight; the runtime kills us after the grace period anyway.
const FINISH_MAX: Duration = Duration::from_secs(5);

/// A server told to stop finishes the HTTP requests it has accepted (a request cut off
/// mid-answer is a failed request for someone) and exits; also as a container's PID 1, which
/// the kernel spares the default action of signals it has no handler for.
pub fn finish_on_termination() {
    extern "C" fn terminate(_: libc::c_int) {
        TERMINATING.store(true, Ordering::SeqCst);
    }
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs a handler that only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, terminate as *const () as libc::sighandler_t) };
    }
}

/// Counts one HTTP connection as in flight for as long as it lives.
struct InFlight;

impl InFlight {
    fn new() -> InFlight {
        HTTP_IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        HTTP_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What an HTTP request does besides answering.
#[derive(Clone, Debug, Default)]
pub struct HttpWork {
    /// Spin the CPU this long per request.
    pub cpu: Duration,
    /// `HOST:PORT` of an HTTP tier to ask first (resolved per request, so a recreated Service
    /// is followed); its failure is answered with 502.
    pub upstream: Option<String>,
}

pub fn serve(
    tcp: Vec<u16>,
    udp: Vec<u16>,
    http: Vec<u16>,
    name: Option<String>,
    bind: IpAddr,
    work: HttpWork,
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
            accept_loop(listener, move |stream, client| {
                answer_tcp(stream, &name, client)
            })
        }));
    }
    let work = Arc::new(work);
    for port in http {
        let listener =
            TcpListener::bind((bind, port)).with_context(|| format!("binding http {port}"))?;
        let name = name.clone();
        let work = Arc::clone(&work);
        workers.push(thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Ok(client) = stream.peer_addr() else {
                    continue;
                };
                // Counted from the accept, so a request on its way in is waited for too.
                let in_flight = InFlight::new();
                let name = name.clone();
                let work = Arc::clone(&work);
                thread::spawn(move || answer_http(stream, &name, client, &work, in_flight));
            }
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
    while !TERMINATING.load(Ordering::SeqCst) {
        if workers.iter().all(|w| w.is_finished()) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(10));
    }
    let told = Instant::now();
    while HTTP_IN_FLIGHT.load(Ordering::SeqCst) > 0 && told.elapsed() < FINISH_MAX {
        thread::sleep(Duration::from_millis(5));
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

fn accept_loop<F>(listener: TcpListener, answer: F)
where
    F: Fn(TcpStream, SocketAddr) + Clone + Send + 'static,
{
    for stream in listener.incoming().flatten() {
        let Ok(client) = stream.peer_addr() else {
            continue;
        };
        let answer = answer.clone();
        thread::spawn(move || answer(stream, client));
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
fn answer_http(
    mut stream: TcpStream,
    name: &str,
    client: SocketAddr,
    work: &HttpWork,
    in_flight: InFlight,
) {
    // An idle kept-alive connection is not in flight: only a request being answered is.
    let mut in_flight = Some(in_flight);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    loop {
        let Ok(Some(head)) = wire::read_http_head(&mut reader) else {
            return;
        };
        in_flight.get_or_insert_with(InFlight::new);
        let length = head.content_length.unwrap_or(0);
        match std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()) {
            Ok(n) if n == length => {}
            _ => return,
        }
        // A server on its way out closes kept-alive connections after this answer.
        let keep_alive = head.keep_alive && !TERMINATING.load(Ordering::SeqCst);
        let connection = if keep_alive { "keep-alive" } else { "close" };
        burn_cpu(work.cpu);
        let (status, body) = match &work.upstream {
            None => ("200 OK", format!("{name} {client}\n")),
            Some(upstream) => match ask_upstream(upstream) {
                Ok(answer) => ("200 OK", format!("{name} {client} -> {answer}\n")),
                Err(e) => (
                    "502 Bad Gateway",
                    format!("{name} {client} -> {upstream}: {e:#}\n"),
                ),
            },
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() || !keep_alive {
            return;
        }
        in_flight = None;
    }
}

fn ask_upstream(upstream: &str) -> anyhow::Result<String> {
    let addr = crate::resolve::target(upstream, Duration::from_secs(1))?;
    Ok(wire::http_once(addr, Duration::from_secs(2))?.answer)
}

/// Real CPU time, not sleep: the autoscaler measures the pod's cgroup CPU usage.
fn burn_cpu(duration: Duration) {
    let started = Instant::now();
    let mut x: u64 = 1;
    while started.elapsed() < duration {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
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
