//! The flow stream behind `skiff observe`: verdicts the kernel reports through `FLOW_EVENTS`,
//! named (pods, policies, rules) from the current compiled state, kept in a short history and
//! sent to every live subscriber.

use std::{
    collections::VecDeque,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    sync::{mpsc, Arc, Mutex, RwLock},
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use skiff_api::Protocol;
use skiff_common::{DropReason, FlowEvent, VERDICT_ALLOWED};

use super::{
    cluster::PodName,
    compile::{direction_name, Compiled},
    explain::verdict_name,
};
use crate::dataplane::FlowEvents;

/// Flows kept for `skiff observe` without `--follow`.
const HISTORY: usize = 4096;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Seconds since the Unix epoch when the daemon read the event.
    pub time: f64,
    pub verdict: String,
    /// `ingress` or `egress`, from the local pod's point of view.
    pub direction: String,
    pub proto: String,
    pub source: FlowEndpoint,
    pub destination: FlowEndpoint,
    /// The allowing rule, or for a default deny the policy whose selection caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Why the packet was dropped (the drop reason label), for denied flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowEndpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Identity in words (namespace and labels, this node, outside, ipBlocks).
    pub identity: String,
}

/// Which flows a subscriber wants.
#[derive(Clone, Debug, Default)]
pub struct FlowFilter {
    /// Either side is this pod.
    pub pod: Option<PodName>,
    /// Either side is in this namespace.
    pub namespace: Option<String>,
    pub verdict: Option<String>,
}

impl FlowFilter {
    pub fn matches(&self, flow: &FlowRecord) -> bool {
        let sides = [&flow.source, &flow.destination];
        let pod_ok = self.pod.as_ref().is_none_or(|pod| {
            let pod = pod.to_string();
            sides.iter().any(|s| s.pod.as_deref() == Some(pod.as_str()))
        });
        let namespace_ok = self.namespace.as_ref().is_none_or(|ns| {
            sides.iter().any(|s| {
                s.pod
                    .as_deref()
                    .and_then(|p| p.split_once('/'))
                    .is_some_and(|(pns, _)| pns == ns)
            })
        });
        let verdict_ok = self.verdict.as_ref().is_none_or(|v| *v == flow.verdict);
        pod_ok && namespace_ok && verdict_ok
    }
}

/// Recent flows and live subscribers.
#[derive(Default)]
pub struct FlowHub {
    inner: Mutex<HubInner>,
}

#[derive(Default)]
struct HubInner {
    recent: VecDeque<FlowRecord>,
    subscribers: Vec<(FlowFilter, mpsc::Sender<FlowRecord>)>,
}

impl FlowHub {
    pub fn publish(&self, flow: FlowRecord) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .subscribers
            .retain(|(filter, tx)| !filter.matches(&flow) || tx.send(flow.clone()).is_ok());
        if inner.recent.len() == HISTORY {
            inner.recent.pop_front();
        }
        inner.recent.push_back(flow);
    }

    /// The last `last` matching flows, and (when `follow`) a channel of the ones to come.
    pub fn subscribe(
        &self,
        filter: FlowFilter,
        last: usize,
        follow: bool,
    ) -> (Vec<FlowRecord>, Option<mpsc::Receiver<FlowRecord>>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let matching: Vec<FlowRecord> = inner
            .recent
            .iter()
            .filter(|f| filter.matches(f))
            .cloned()
            .collect();
        let history = matching[matching.len().saturating_sub(last)..].to_vec();
        let live = follow.then(|| {
            let (tx, rx) = mpsc::channel();
            inner.subscribers.push((filter, tx));
            rx
        });
        (history, live)
    }
}

/// The compiled state flows are named from, swapped by the daemon after each reconcile.
pub type SharedCompiled = Arc<RwLock<Arc<Compiled>>>;

/// Reads the ring buffer on a background thread until the process exits.
pub fn spawn_reader(
    mut events: FlowEvents,
    compiled: SharedCompiled,
    hub: Arc<FlowHub>,
) -> std::io::Result<()> {
    thread::Builder::new()
        .name("flows".into())
        .spawn(move || loop {
            let mut fds = libc::pollfd {
                fd: events.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd. A timeout bounds the wait, so no wakeup is ever missed.
            unsafe { libc::poll(&mut fds, 1, 500) };
            let mut batch = Vec::new();
            while let Some(item) = events.next() {
                if item.len() >= std::mem::size_of::<FlowEvent>() {
                    // SAFETY: the kernel wrote a FlowEvent (a plain-integer repr(C) type).
                    batch.push(unsafe { (item.as_ptr() as *const FlowEvent).read_unaligned() });
                }
            }
            if batch.is_empty() {
                continue;
            }
            let compiled = compiled.read().unwrap_or_else(|e| e.into_inner()).clone();
            for event in batch {
                hub.publish(record(&compiled, &event));
            }
        })?;
    Ok(())
}

fn record(compiled: &Compiled, event: &FlowEvent) -> FlowRecord {
    let endpoint = |addr: u32, port: u16, identity: u32| {
        let ip = Ipv4Addr::from(u32::from_be(addr));
        let identity = if identity == 0 {
            compiled.address_identity(ip).identity
        } else {
            identity
        };
        FlowEndpoint {
            ip,
            port: u16::from_be(port),
            pod: compiled.pods.get(&ip).map(PodName::to_string),
            identity: compiled.describe_identity(identity),
        }
    };
    let ingress = event.direction == skiff_common::POLICY_INGRESS;
    let (source_identity, destination_identity) = if ingress {
        (event.peer_identity, event.subject_identity)
    } else {
        (event.subject_identity, event.peer_identity)
    };
    let allowed = event.verdict == VERDICT_ALLOWED;
    FlowRecord {
        time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64(),
        verdict: verdict_name(allowed).into(),
        direction: direction_name(event.direction).into(),
        proto: Protocol::from_number(event.proto)
            .map_or_else(|| format!("proto-{}", event.proto), |p| p.name().into()),
        source: endpoint(event.saddr, event.sport, source_identity),
        destination: endpoint(event.daddr, event.dport, destination_identity),
        policy: (event.rule != 0).then(|| {
            compiled
                .rule_name(event.rule)
                .unwrap_or_else(|| format!("rule #{} (changed since)", event.rule))
        }),
        drop_reason: DropReason::from_index(event.drop_reason as u32)
            .filter(|_| !allowed)
            .map(|r| r.label().to_string()),
    }
}
