//! Which pod addresses this node's data plane hands new connections to right now.
//!
//! Written only after the service reconciler has put a view into the kernel, so a pod worker
//! that sees its address gone knows new connections from this node no longer reach it: the
//! moment a terminating pod may be told to stop without refusing anyone.

use std::{
    collections::HashSet,
    net::Ipv4Addr,
    sync::{Arc, RwLock},
};

use super::DesiredServices;

/// Shared between the daemon's main loop (the writer) and the pod workers (readers).
#[derive(Clone, Debug, Default)]
pub struct ServingEndpoints(Arc<RwLock<HashSet<Ipv4Addr>>>);

impl ServingEndpoints {
    /// Records what the kernel now holds; call only once `desired` is in it.
    pub fn programmed(&self, desired: &DesiredServices) {
        let serving = desired
            .services
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.serving())
            .map(|e| e.ip)
            .collect();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = serving;
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_serving_endpoints_count_and_each_view_replaces_the_last() {
        let desired: DesiredServices = serde_json::from_value(serde_json::json!({
            "services": [{
                "name": "web", "clusterIp": "10.96.0.10",
                "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080}],
                "endpoints": [
                    {"ip": "10.1.0.2"},
                    {"ip": "10.1.0.3", "terminating": true},
                    {"ip": "10.1.0.4", "ready": false}
                ]
            }]
        }))
        .unwrap();
        let serving = ServingEndpoints::default();
        serving.programmed(&desired);
        assert!(serving.contains("10.1.0.2".parse().unwrap()));
        assert!(!serving.contains("10.1.0.3".parse().unwrap()));
        assert!(!serving.contains("10.1.0.4".parse().unwrap()));
        serving.programmed(&DesiredServices::default());
        assert!(!serving.contains("10.1.0.2".parse().unwrap()));
    }
}
