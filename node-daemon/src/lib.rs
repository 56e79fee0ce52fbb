//! `skiff-node`: the per-node daemon.
//!
//! - [`dataplane`]: loads the object built from `ebpf-programs/`, pins its maps and links on
//!   bpffs, attaches the per-pod TC programs, the uplink program and the cgroup socket hooks.
//! - [`service_lb`]: the service reconciler (the only writer of the service maps), Maglev
//!   tables and health-check node ports.
//! - [`policy`]: NetworkPolicy compiler, the policy reconciler (the only writer of the policy
//!   maps), `explain` and the flow stream.
//! - [`api`]: the daemon's HTTP API (`/metrics`, `/flows`, `/explain`, `/status`).
//! - [`metrics`]: `/metrics` (map fullness, drops by reason) from the pinned maps.
//! - [`agent`]: joins the control plane, heartbeats, reports usage and watches the objects
//!   the data plane needs.
//! - [`dns`]: the node-local cluster DNS server, pods' resolver settings and service
//!   environment variables.
//! - [`pods`]: pod networks (namespace, veth, address, routes).
//! - [`runtime`]: container runtimes behind one trait; the embedded one runs containers in
//!   the pod's namespaces and cgroups through a small init shim.
pub mod agent;
pub mod api;
pub mod dataplane;
pub mod dns;
mod http;
pub mod metrics;
pub mod pod_api;
pub mod pods;
pub mod policy;
pub mod runtime;
pub mod service_lb;
