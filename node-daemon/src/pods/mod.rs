//! Pods on this node: their network ([`network`]); the pod manager that runs their
//! containers through a runtime arrives with the runtimes.
pub mod network;
