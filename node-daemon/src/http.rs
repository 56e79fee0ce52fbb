//! The one-shot HTTP answers the daemon's small endpoints give (health-check node ports,
//! `/metrics`): read whatever request arrived, answer, close. No routing, no keep-alive.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

pub fn respond(
    mut stream: TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    // The request does not choose the answer (any path works); read what arrived.
    let mut request = [0u8; 1024];
    let _ = stream.read(&mut request);
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
