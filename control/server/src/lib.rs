//! `skiff-control`: the API server, its store, the scheduler and the controllers.
//!
//! The decisions are pure functions over API objects ([`scheduler`], [`controllers`]); the
//! [`runners`] around them watch the store, call them and write their results with
//! optimistic concurrency, so each piece of logic is testable without a server.
//!
//! - [`api`]: the HTTP routes (list, get, create, update, delete, watch, apply, join);
//! - [`node_proxy`]: logs and exec, proxied to the daemon of the pod's node;
//! - [`auth`]: bearer tokens and who may write what;
//! - [`pki`]: the cluster CA, tokens and this instance's TLS certificate;
//! - [`registry`]: typed objects over the store (validation, allocation, atomic apply);
//! - [`serve`]: TLS and HTTP plumbing; [`metrics`]: Prometheus text; [`error`]: API errors.
pub mod api;
pub mod auth;
pub mod controllers;
pub mod error;
pub mod metrics;
pub mod node_proxy;
pub mod pki;
pub mod registry;
pub mod runners;
pub mod scheduler;
pub mod serve;
