//! Health-check node ports, as kube-proxy serves them for `externalTrafficPolicy: Local`
//! services: `GET /` on the service's `healthCheckNodePort` answers 200 with the number of
//! endpoints on this node, or 503 when there are none, so an external load balancer sends
//! traffic only to nodes that can serve it.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use super::desired::{DesiredServices, TrafficPolicy};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Published {
    namespace: String,
    name: String,
    local_endpoints: usize,
}

struct Listener {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

/// Serves one listener per health-check node port, bound on all of the node's addresses in
/// the calling thread's network namespace.
#[derive(Default)]
pub struct HealthChecks {
    published: Arc<Mutex<BTreeMap<u16, Published>>>,
    listeners: BTreeMap<u16, Listener>,
}

impl HealthChecks {
    pub fn new() -> HealthChecks {
        HealthChecks::default()
    }

    /// Publishes the local endpoint counts of `desired`, opening and closing ports as needed.
    pub fn update(&mut self, desired: &DesiredServices) -> std::io::Result<()> {
        let mut wanted = BTreeMap::new();
        for service in &desired.services {
            let (Some(port), TrafficPolicy::Local) = (
                service.health_check_node_port,
                service.external_traffic_policy,
            ) else {
                continue;
            };
            let local_endpoints = service
                .endpoints
                .iter()
                .filter(|e| e.local && e.serving())
                .count();
            wanted.insert(
                port,
                Published {
                    namespace: service.namespace.clone(),
                    name: service.name.clone(),
                    local_endpoints,
                },
            );
        }
        *self.published.lock().expect("health state lock") = wanted.clone();
        let stale: Vec<u16> = self
            .listeners
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        for port in stale {
            let listener = self.listeners.remove(&port).expect("listed above");
            listener.stop.store(true, Ordering::Relaxed);
            let _ = listener.thread.join();
        }
        for port in wanted.keys() {
            if !self.listeners.contains_key(port) {
                let listener = self.listen(*port)?;
                self.listeners.insert(*port, listener);
            }
        }
        Ok(())
    }

    fn listen(&self, port: u16) -> std::io::Result<Listener> {
        let socket = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))?;
        socket.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::clone(&self.published);
        let thread_stop = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(format!("healthz-{port}"))
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    match socket.accept() {
                        Ok((stream, _)) => {
                            let published_now = published
                                .lock()
                                .expect("health state lock")
                                .get(&port)
                                .cloned();
                            let _ = answer(stream, published_now);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(50));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(50)),
                    }
                }
            })?;
        Ok(Listener { stop, thread })
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for listener in self.listeners.values() {
            listener.stop.store(true, Ordering::Relaxed);
        }
    }
}

fn answer(stream: TcpStream, published: Option<Published>) -> std::io::Result<()> {
    let (status, body) = match published {
        Some(p) => (
            if p.local_endpoints > 0 {
                "200 OK"
            } else {
                "503 Service Unavailable"
            },
            format!(
                r#"{{"service":{{"namespace":"{}","name":"{}"}},"localEndpoints":{},"serviceProxyHealthy":true}}"#,
                p.namespace, p.name, p.local_endpoints
            ),
        ),
        None => (
            "404 Not Found",
            r#"{"error":"no such service"}"#.to_string(),
        ),
    };
    crate::http::respond(stream, status, "application/json", &body)
}
