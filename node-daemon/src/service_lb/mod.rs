//! Service load balancing in user space: the desired-state model, the reconciler that owns the
//! service maps, Maglev tables, and the health-check node ports.
//!
//! The kernel side (socket hooks, per-packet NAT) is in `ebpf-programs/programs`; the map
//! layouts are in `skiff-common`. docs/services.md describes the whole data path.

pub mod desired;
pub mod health;
pub mod maglev;
mod reconciler;
pub mod serving;

pub use desired::DesiredServices;
pub use reconciler::{ReconcileError, ReconcileStats, ServiceReconciler};
pub use serving::ServingEndpoints;
