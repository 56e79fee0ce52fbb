//! The DNS server: hickory-server's UDP and TCP listeners, answering from the current
//! [`Zone`] and forwarding other names to the node's upstream resolvers.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Record, RecordType},
    serialize::binary::BinEncodable,
    xfer::Protocol,
};
use hickory_server::{
    authority::MessageResponseBuilder,
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

use super::zone::{Lookup, QueryType, Zone};

/// The largest UDP answer we send to an EDNS client (the DNS flag day 2020 value), and to
/// one without EDNS (RFC 1035). Bigger answers are truncated, and clients retry over TCP.
const EDNS_PAYLOAD: u16 = 1232;
const PLAIN_UDP_PAYLOAD: usize = 512;

/// How long a query waits for the first view of a starting daemon before SERVFAIL.
const FIRST_VIEW_WAIT: Duration = Duration::from_secs(3);

/// How long one upstream gets before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The current zone; the agent swaps in a new one on every change of the cluster.
pub type ZoneHandle = Arc<RwLock<Arc<Zone>>>;

pub struct ClusterDns {
    pub zone: ZoneHandle,
    pub upstreams: Vec<SocketAddr>,
}

impl ClusterDns {
    fn zone(&self) -> Arc<Zone> {
        self.zone.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn query_type(t: RecordType) -> QueryType {
    match t {
        RecordType::A => QueryType::A,
        RecordType::SRV => QueryType::Srv,
        RecordType::ANY => QueryType::Any,
        _ => QueryType::Other,
    }
}

/// Encoded length of a record without name compression: an upper bound of its share of
/// the message.
fn encoded_len(record: &Record) -> usize {
    record.to_bytes().map_or(usize::MAX / 64, |b| b.len())
}

#[async_trait::async_trait]
impl RequestHandler for ClusterDns {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut header = Header::response_from_request(request.header());
        let mut builder = MessageResponseBuilder::from_message_request(request);
        let edns = request.edns().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().clamp(512, EDNS_PAYLOAD));
            edns
        });
        if let Some(edns) = &edns {
            builder.edns(edns.clone());
        }
        let query = match (request.message_type(), request.op_code(), request.queries()) {
            (MessageType::Query, OpCode::Query, [query]) => query,
            _ => {
                header.set_response_code(ResponseCode::NotImp);
                return send(&mut response_handle, builder.build_no_records(header)).await;
            }
        };
        let mut zone = self.zone();
        let waiting = std::time::Instant::now();
        while !zone.is_complete() && waiting.elapsed() < FIRST_VIEW_WAIT {
            tokio::time::sleep(Duration::from_millis(20)).await;
            zone = self.zone();
        }
        if !zone.is_complete() {
            header.set_response_code(ResponseCode::ServFail);
            return send(&mut response_handle, builder.build_no_records(header)).await;
        }
        let qname = query.name().to_string().to_ascii_lowercase();
        match zone.lookup(&qname, query_type(query.query_type())) {
            Lookup::Found {
                answers,
                additionals,
            } => {
                header.set_authoritative(true);
                let soa: Vec<&Record> = if answers.is_empty() {
                    vec![zone.soa()]
                } else {
                    Vec::new()
                };
                // Without EDNS hickory allows 4096 bytes; RFC 1035 says 512, and resolvers
                // such as glibc's only retry over TCP when the TC bit says so.
                if request.protocol() == Protocol::Udp && edns.is_none() {
                    let size = 12
                        + qname.len()
                        + 6
                        + answers
                            .iter()
                            .chain(&additionals)
                            .map(encoded_len)
                            .sum::<usize>();
                    if size > PLAIN_UDP_PAYLOAD && too_big(&header, query, &answers) {
                        header.set_truncated(true);
                        return send(&mut response_handle, builder.build_no_records(header)).await;
                    }
                }
                let response = builder.build(header, answers.iter(), [], soa, additionals.iter());
                send(&mut response_handle, response).await
            }
            Lookup::NxDomain => {
                header.set_authoritative(true);
                header.set_response_code(ResponseCode::NXDomain);
                let response = builder.build(header, [], [], [zone.soa()], []);
                send(&mut response_handle, response).await
            }
            Lookup::Outside => {
                if self.upstreams.is_empty() {
                    // No upstream configured: say so at once rather than let clients wait.
                    header.set_response_code(ResponseCode::Refused);
                    return send(&mut response_handle, builder.build_no_records(header)).await;
                }
                match forward(&self.upstreams, request.header(), query.original()).await {
                    Some(answer) => {
                        let mut upstream_header = *answer.header();
                        upstream_header.set_id(request.id());
                        upstream_header.set_message_type(MessageType::Response);
                        let response = builder.build(
                            upstream_header,
                            answer.answers(),
                            answer.name_servers(),
                            [],
                            answer.additionals(),
                        );
                        send(&mut response_handle, response).await
                    }
                    None => {
                        header.set_response_code(ResponseCode::ServFail);
                        send(&mut response_handle, builder.build_no_records(header)).await
                    }
                }
            }
        }
    }
}

/// Whether the answer, compressed as sent, exceeds what a client without EDNS accepts.
fn too_big(header: &Header, query: &hickory_proto::op::LowerQuery, answers: &[Record]) -> bool {
    let mut message = Message::new();
    message.set_header(*header);
    message.add_query(query.original().clone());
    message.add_answers(answers.iter().cloned());
    message
        .to_vec()
        .map_or(true, |bytes| bytes.len() > PLAIN_UDP_PAYLOAD)
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "sending a DNS answer failed");
            let mut header = Header::new();
            header.set_response_code(ResponseCode::ServFail);
            header.into()
        }
    }
}

/// Asks each upstream in turn (UDP, then TCP if the answer was truncated).
async fn forward(upstreams: &[SocketAddr], asked: &Header, query: &Query) -> Option<Message> {
    let mut message = Message::new();
    message
        .set_id(asked.id())
        .set_recursion_desired(asked.recursion_desired())
        .add_query(query.clone());
    let bytes = message.to_vec().ok()?;
    for upstream in upstreams {
        let attempt = async {
            let answer = forward_udp(*upstream, &bytes).await?;
            if answer.truncated() {
                forward_tcp(*upstream, &bytes).await
            } else {
                Ok(answer)
            }
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
            Ok(Ok(answer)) if answer.id() == asked.id() => return Some(answer),
            Ok(Ok(_)) => tracing::debug!(%upstream, "upstream answered another query id"),
            Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "upstream DNS failed"),
            Err(_) => tracing::debug!(%upstream, "upstream DNS timed out"),
        }
    }
    None
}

async fn forward_udp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let n = socket.recv(&mut buf).await?;
    Message::from_vec(&buf[..n]).map_err(std::io::Error::other)
}

async fn forward_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream
        .write_all(&(query.len() as u16).to_be_bytes())
        .await?;
    stream.write_all(query).await?;
    let len = stream.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Message::from_vec(&buf).map_err(std::io::Error::other)
}
