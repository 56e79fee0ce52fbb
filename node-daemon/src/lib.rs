//! `skiff-node`: the per-node daemon.
//!
//! Today it owns the eBPF data plane ([`dataplane`]): it loads the object built from
//! `ebpf-programs/`, attaches the per-pod TC programs and the cgroup socket hooks, and is the
//! only writer of the maps. Pod runtimes, joining the control plane and the reconcilers that
//! feed the maps from cluster state arrive with the node-daemon, service and policy issues.
pub mod dataplane;
