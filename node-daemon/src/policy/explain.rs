//! `skiff policy explain`: why a flow between two pods is allowed or denied, computed by
//! [`Compiled::judge`] over the same entries the kernel holds, one answer per direction.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use skiff_api::Protocol;
use skiff_common::{POLICY_EGRESS, POLICY_INGRESS};

use super::{
    cluster::PodName,
    compile::{direction_name, Compiled, Judgement},
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub proto: String,
    /// `allowed` when both the source's egress and the destination's ingress allow.
    pub verdict: String,
    pub egress: DirectionVerdict,
    pub ingress: DirectionVerdict,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionVerdict {
    pub verdict: String,
    /// The allowing rule, e.g. `x/allow-web ingress[0]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Every policy selecting the pod for this direction (the deciding ones when denied).
    pub selected_by: Vec<String>,
    /// One sentence for humans.
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("no pod {0} with an address in the cluster state")]
    UnknownPod(PodName),
}

pub fn explain(
    compiled: &Compiled,
    from: &PodName,
    to: &PodName,
    port: u16,
    proto: Protocol,
) -> Result<Explanation, ExplainError> {
    let address = |pod: &PodName| -> Result<Ipv4Addr, ExplainError> {
        compiled
            .pods
            .iter()
            .find(|(_, name)| *name == pod)
            .map(|(ip, _)| *ip)
            .ok_or_else(|| ExplainError::UnknownPod(pod.clone()))
    };
    let (from_ip, to_ip) = (address(from)?, address(to)?);
    // Pods of other nodes have no entries in this node's compiled state: emit theirs.
    let compiled = &compiled.with_subjects(&[
        compiled.address_identity(from_ip).identity,
        compiled.address_identity(to_ip).identity,
    ]);
    let egress = compiled.judge(from_ip, to_ip, POLICY_EGRESS, proto.number(), port);
    let ingress = compiled.judge(to_ip, from_ip, POLICY_INGRESS, proto.number(), port);
    let describe = |judgement: &Judgement, pod: &PodName, peer: &PodName, direction: u8| {
        let selected_by: Vec<String> = compiled
            .selected_by
            .get(&(judgement.subject, direction))
            .map(|names| names.iter().map(PodName::to_string).collect())
            .unwrap_or_default();
        let dir = direction_name(direction);
        let reason = match (judgement.allowed, &judgement.rule) {
            (true, None) => format!("allowed: no policy selects {pod} for {dir}"),
            (true, Some(rule)) => format!(
                "allowed by {}",
                compiled.rule_name(*rule).unwrap_or_else(|| format!("rule #{rule}"))
            ),
            (false, _) => format!(
                "denied: {pod} is selected for {dir} by {} and no rule allows {peer} ({}) on {}/{port}",
                selected_by.join(", "),
                compiled.describe_identity(judgement.peer.identity),
                proto.name(),
            ),
        };
        DirectionVerdict {
            verdict: verdict_name(judgement.allowed).into(),
            rule: judgement
                .rule
                .filter(|_| judgement.allowed)
                .and_then(|r| compiled.rule_name(r)),
            selected_by,
            reason,
        }
    };
    Ok(Explanation {
        from: from.to_string(),
        to: to.to_string(),
        port,
        proto: proto.name().into(),
        verdict: verdict_name(egress.allowed && ingress.allowed).into(),
        egress: describe(&egress, from, to, POLICY_EGRESS),
        ingress: describe(&ingress, to, from, POLICY_INGRESS),
    })
}

pub fn verdict_name(allowed: bool) -> &'static str {
    if allowed {
        "allowed"
    } else {
        "denied"
    }
}
