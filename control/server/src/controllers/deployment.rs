//! The Deployment controller: owns the ReplicaSets of each Deployment (which exist, their
//! `spec.replicas` and revision annotations) and the Deployment's status.
//!
//! As in Kubernetes, every pod template a Deployment has run is one ReplicaSet, named and
//! labelled with a hash of the template; the one matching the current template is the "new"
//! ReplicaSet, the others are "old" and are the rollout history `skiff rollout undo` reads.
//! A rollout moves replicas from old to new:
//! - RollingUpdate: the new ReplicaSet grows while the ReplicaSets' replicas total at most
//!   `replicas + maxSurge`; old ones shrink only while at least `replicas - maxUnavailable`
//!   pods stay ready, their unready pods first. The steps are Kubernetes' own
//!   (`reconcileNewReplicaSet`, `reconcileOldReplicaSets`), repeated within one call until
//!   neither can move, so one call plans all that the current pods allow and a second call
//!   on the result plans nothing.
//! - Recreate: old ReplicaSets go to zero; the new one is created and scaled up only once
//!   their pods are gone.
//!
//! Readiness stands for availability (the function gets no clock, so `minReadySeconds` is
//! not applied), and a replica count changed mid-rollout is absorbed by the rollout steps
//! rather than spread proportionally over the ReplicaSets.

use std::hash::Hasher;

use skiff_api::{
    apps::{
        DeploymentStatus, PodTemplateSpec, ReplicaSetSpec, StrategyType, REVISION_ANNOTATION,
        TEMPLATE_HASH_LABEL,
    },
    meta::ObjectMeta,
    Condition, Deployment, Pod, ReplicaSet,
};

use super::{controller_reference, encode_for_names, is_active, is_controlled_by};

/// Kubernetes' default `revisionHistoryLimit`.
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// The writes that move one Deployment's rollout forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentPlan {
    /// The ReplicaSet for the current template, when it does not exist yet.
    pub create: Option<ReplicaSet>,
    /// Existing ReplicaSets whose `spec.replicas` or revision annotation changed (whole
    /// objects with their resourceVersion, for a conditional update).
    pub update: Vec<ReplicaSet>,
    /// Names of old ReplicaSets beyond `revisionHistoryLimit` that have no replicas and no
    /// pods left.
    pub delete: Vec<String>,
    pub status: DeploymentStatus,
    /// The revision of the ReplicaSet running the current template, for the Deployment's
    /// `deployment.kubernetes.io/revision` annotation (`None` while there is no such
    /// ReplicaSet: a Recreate rollout waiting for old pods, or a paused Deployment).
    pub revision: Option<i64>,
}

/// Plans the ReplicaSets of `d`, given `replica_sets` (those `d` controls) and `pods` (those
/// they control). `hash_of_template` is [`template_hash`] in the server.
pub fn reconcile(
    d: &Deployment,
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
    hash_of_template: impl Fn(&PodTemplateSpec) -> String,
) -> DeploymentPlan {
    let hash = hash_of_template(&d.spec.template);
    let replicas = d.replicas();
    let rolling = d.strategy() == StrategyType::RollingUpdate;
    let (max_surge, max_unavailable) = if rolling {
        d.surge_and_unavailable()
    } else {
        (0, 0)
    };

    let (mut news, mut olds): (Vec<Member>, Vec<Member>) = replica_sets
        .iter()
        .map(|rs| Member::observe(rs, pods))
        .partition(|m| {
            m.rs.spec.template.metadata.labels.get(TEMPLATE_HASH_LABEL) == Some(&hash)
                && m.rs.metadata.deletion_timestamp.is_none()
        });
    // Normally at most one; should several carry the hash, the newest revision is the new one.
    news.sort_by_key(Member::revision);
    let mut new = news.pop();
    olds.extend(news);
    // Oldest first: the order in which Kubernetes scales old ReplicaSets down.
    olds.sort_by(|a, b| {
        (
            a.revision(),
            &a.rs.metadata.creation_timestamp,
            &a.rs.metadata.name,
        )
            .cmp(&(
                b.revision(),
                &b.rs.metadata.creation_timestamp,
                &b.rs.metadata.name,
            ))
    });
    let newest_old_revision = olds.iter().map(Member::revision).max().unwrap_or(0);
    let old_pods_remain = olds.iter().any(|m| m.remaining > 0);

    let paused = d.spec.paused == Some(true);
    if paused {
        scale_without_rollout(replicas, new.as_mut(), &mut olds);
    } else if rolling {
        let new = new.get_or_insert_with(|| Member::created(new_replica_set(d, &hash, 0)));
        if new.replicas() > replicas {
            new.rs.spec.replicas = replicas;
        }
        let limits = Limits {
            replicas,
            max_surge,
            max_unavailable,
        };
        while scale_up(&limits, new, &olds) | scale_down(&limits, new, &mut olds) {}
    } else {
        for old in &mut olds {
            old.rs.spec.replicas = 0;
        }
        if !old_pods_remain {
            let new = new.get_or_insert_with(|| Member::created(new_replica_set(d, &hash, 0)));
            new.rs.spec.replicas = replicas;
        }
    }

    // Rolling back to an old template makes its ReplicaSet the newest revision again.
    if let Some(new) = &mut new {
        if new.revision() <= newest_old_revision {
            new.rs.metadata.annotations.insert(
                REVISION_ANNOTATION.into(),
                (newest_old_revision + 1).to_string(),
            );
        }
    }

    let history_limit = d
        .spec
        .revision_history_limit
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
        .max(0) as usize;
    let excess = olds.len().saturating_sub(history_limit);
    let delete: Vec<String> = olds[..excess]
        .iter()
        .filter(|m| m.replicas() == 0 && m.remaining == 0)
        .map(|m| m.rs.metadata.name.clone())
        .collect();

    let status = status(d, new.as_ref(), &olds, max_unavailable);
    let revision = new.as_ref().map(Member::revision);
    let mut update = Vec::new();
    let mut create = None;
    for member in new.into_iter().chain(olds) {
        match member.original {
            None => create = Some(member.rs),
            Some(original)
                if *original != member.rs && !delete.contains(&original.metadata.name) =>
            {
                update.push(member.rs)
            }
            Some(_) => {}
        }
    }
    DeploymentPlan {
        create,
        update,
        delete,
        status,
        revision,
    }
}

/// The template of an earlier revision, for `skiff rollout undo`: `to_revision`, or by
/// default the revision before the newest. The `pod-template-hash` label is removed, so the
/// result can be written into the Deployment as it is.
pub fn rollback_template(
    d: &Deployment,
    replica_sets: &[ReplicaSet],
    to_revision: Option<i64>,
) -> Result<PodTemplateSpec, String> {
    let mut revisions: Vec<i64> = replica_sets.iter().map(ReplicaSet::revision).collect();
    revisions.sort_unstable();
    revisions.dedup();
    let name = &d.metadata.name;
    let wanted = match to_revision {
        None | Some(0) => match revisions.as_slice() {
            [.., previous, _current] => *previous,
            _ => return Err(format!("deployment {name:?} has no previous revision")),
        },
        Some(r) if revisions.contains(&r) => r,
        Some(r) => {
            let known: Vec<String> = revisions.iter().map(i64::to_string).collect();
            return Err(format!(
                "deployment {name:?} has no revision {r} (it has {})",
                known.join(", ")
            ));
        }
    };
    let rs = replica_sets
        .iter()
        .find(|rs| rs.revision() == wanted)
        .expect("the revision was taken from these ReplicaSets");
    let mut template = rs.spec.template.clone();
    template.metadata.labels.remove(TEMPLATE_HASH_LABEL);
    Ok(template)
}

/// A stable name-safe hash of a pod template: 10 characters (`[b-z2-9]`, no vowels) from
/// FNV-1a 64 over its JSON form. Used in the new ReplicaSet's name and
/// `pod-template-hash` label, so the same template always maps to the same ReplicaSet.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_vec(template).expect("a pod template always serializes");
    let mut hasher = Fnv1a64::default();
    hasher.write(&json);
    encode_for_names(hasher.finish(), 10)
}

/// FNV-1a, 64 bits: fixed constants, so hashes survive restarts and upgrades (std's hasher
/// promises neither).
struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a64 {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// One ReplicaSet as planned, with what its pods are doing now.
struct Member<'a> {
    /// As read; `None` for the ReplicaSet being created.
    original: Option<&'a ReplicaSet>,
    /// As planned.
    rs: ReplicaSet,
    /// Active pods (not finished, not terminating).
    active: i32,
    /// Active pods that are ready.
    ready: i32,
    /// Pods not finished, terminating ones included: what Recreate waits for.
    remaining: usize,
}

impl<'a> Member<'a> {
    fn observe(rs: &'a ReplicaSet, pods: &[Pod]) -> Member<'a> {
        let mut member = Member::created(rs.clone());
        member.original = Some(rs);
        for pod in pods
            .iter()
            .filter(|p| is_controlled_by(&p.metadata, "ReplicaSet", &rs.metadata))
        {
            member.remaining += usize::from(!pod.is_finished());
            if is_active(pod) {
                member.active += 1;
                member.ready += i32::from(pod.is_ready());
            }
        }
        member
    }

    fn created(rs: ReplicaSet) -> Member<'a> {
        Member {
            original: None,
            rs,
            active: 0,
            ready: 0,
            remaining: 0,
        }
    }

    fn replicas(&self) -> i32 {
        self.rs.spec.replicas
    }

    fn revision(&self) -> i64 {
        self.rs.revision()
    }

    /// Ready pods once the ReplicaSet controller has applied the planned replicas: it
    /// deletes unready pods first, so only a scale-down below the ready count costs
    /// readiness.
    fn available(&self) -> i32 {
        self.ready.min(self.replicas())
    }
}

struct Limits {
    replicas: i32,
    max_surge: i32,
    max_unavailable: i32,
}

/// Kubernetes' `NewRSNewReplicas`: grow the new ReplicaSet into the room maxSurge leaves.
fn scale_up(limits: &Limits, new: &mut Member, olds: &[Member]) -> bool {
    let total: i32 = new.replicas() + olds.iter().map(Member::replicas).sum::<i32>();
    let room = limits.replicas + limits.max_surge - total;
    let missing = limits.replicas - new.replicas();
    let add = room.min(missing);
    if add <= 0 {
        return false;
    }
    new.rs.spec.replicas += add;
    true
}

/// Kubernetes' `reconcileOldReplicaSets`: shrink old ReplicaSets, unready pods first, as far
/// as maxUnavailable allows.
fn scale_down(limits: &Limits, new: &Member, olds: &mut [Member]) -> bool {
    let old_total: i32 = olds.iter().map(Member::replicas).sum();
    if old_total == 0 {
        return false;
    }
    let min_available = limits.replicas - limits.max_unavailable;
    let new_unavailable = new.replicas() - new.available();
    let max_scaled_down = old_total + new.replicas() - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    // Unready old pods first: they serve nobody, and waiting for them would block the
    // rollout forever.
    let mut scaled = 0;
    for old in olds.iter_mut() {
        let unready = old.replicas() - old.available();
        let n = unready.min(max_scaled_down - scaled);
        if n > 0 {
            old.rs.spec.replicas -= n;
            scaled += n;
        }
    }
    // Then ready ones, oldest ReplicaSet first, while enough stay ready.
    let available = new.available() + olds.iter().map(Member::available).sum::<i32>();
    let mut budget = available - min_available;
    for old in olds.iter_mut() {
        let n = old.replicas().min(budget);
        if n > 0 {
            old.rs.spec.replicas -= n;
            budget -= n;
            scaled += n;
        }
    }
    scaled > 0
}

/// Kubernetes' `scale` for a paused Deployment: a replica count change goes to the only
/// ReplicaSet with replicas (or the newest one when none has any); with several, the paused
/// rollout keeps their sizes.
fn scale_without_rollout<'a>(replicas: i32, new: Option<&mut Member<'a>>, olds: &mut [Member<'a>]) {
    let mut members: Vec<&mut Member> = olds.iter_mut().chain(new).collect();
    let with_replicas = members.iter().filter(|m| m.replicas() > 0).count();
    let target = match with_replicas {
        0 => members.iter_mut().max_by_key(|m| m.revision()),
        1 => members.iter_mut().find(|m| m.replicas() > 0),
        _ => None,
    };
    if let Some(member) = target {
        member.rs.spec.replicas = replicas;
    }
}

fn new_replica_set(d: &Deployment, hash: &str, replicas: i32) -> ReplicaSet {
    let mut template = d.spec.template.clone();
    template
        .metadata
        .labels
        .insert(TEMPLATE_HASH_LABEL.into(), hash.into());
    let mut selector = d.spec.selector.clone();
    selector
        .match_labels
        .insert(TEMPLATE_HASH_LABEL.into(), hash.into());
    ReplicaSet {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        metadata: ObjectMeta {
            name: format!("{}-{hash}", d.metadata.name),
            namespace: Some(d.metadata.namespace().to_string()),
            labels: template.metadata.labels.clone(),
            owner_references: vec![controller_reference("apps/v1", "Deployment", &d.metadata)],
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas,
            selector,
            template,
        },
        status: None,
    }
}

/// Kubernetes' `calculateStatus`: pod counts as observed, `unavailableReplicas` against the
/// planned replica total, and the Available and Progressing conditions.
fn status(
    d: &Deployment,
    new: Option<&Member>,
    olds: &[Member],
    max_unavailable: i32,
) -> DeploymentStatus {
    let all = || new.into_iter().chain(olds);
    let replicas = d.replicas();
    let available: i32 = all().map(|m| m.ready).sum();
    let planned: i32 = all().map(Member::replicas).sum();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation.unwrap_or(0),
        replicas: all().map(|m| m.active).sum(),
        updated_replicas: new.map_or(0, |m| m.active),
        ready_replicas: available,
        available_replicas: available,
        unavailable_replicas: (planned - available).max(0),
        conditions: Vec::new(),
    };
    status
        .conditions
        .push(if available >= replicas - max_unavailable {
            Condition::new(
                "Available",
                true,
                Some("MinimumReplicasAvailable"),
                Some("Deployment has minimum availability.".into()),
            )
        } else {
            Condition::new(
                "Available",
                false,
                Some("MinimumReplicasUnavailable"),
                Some("Deployment does not have minimum availability.".into()),
            )
        });
    let complete = status.updated_replicas == replicas
        && status.replicas == replicas
        && status.available_replicas == replicas;
    status.conditions.push(match new {
        _ if d.spec.paused == Some(true) => Condition {
            status: "Unknown".into(),
            ..Condition::new(
                "Progressing",
                false,
                Some("DeploymentPaused"),
                Some("Deployment is paused".into()),
            )
        },
        Some(m) if complete => Condition::new(
            "Progressing",
            true,
            Some("NewReplicaSetAvailable"),
            Some(format!(
                "ReplicaSet {:?} has successfully progressed.",
                m.rs.metadata.name
            )),
        ),
        Some(m) => Condition::new(
            "Progressing",
            true,
            Some("ReplicaSetUpdated"),
            Some(format!(
                "ReplicaSet {:?} is progressing.",
                m.rs.metadata.name
            )),
        ),
        None => Condition::new(
            "Progressing",
            true,
            Some("ReplicaSetUpdated"),
            Some("Waiting for the pods of old ReplicaSets to terminate.".into()),
        ),
    });
    status
}

#[cfg(test)]
mod tests {
    use skiff_api::apps::DeploymentStrategy;

    use super::*;
    use crate::controllers::fixtures::{self, pod, pod_status, rolling};

    /// Deployment `shop/web` as stored, with a uid and generation 2.
    pub(super) fn deployment(replicas: i32, image: &str) -> Deployment {
        let mut d = fixtures::deployment(replicas, image);
        d.metadata.uid = Some("d-uid".into());
        d.metadata.generation = Some(2);
        d
    }

    /// The ReplicaSet `d` would create for its template, as stored: with a uid, `replicas`
    /// and `revision`.
    fn stored(d: &Deployment, replicas: i32, revision: i64) -> ReplicaSet {
        let mut rs = new_replica_set(d, &template_hash(&d.spec.template), replicas);
        rs.metadata.uid = Some(format!("uid-{}", rs.metadata.name));
        rs.metadata
            .annotations
            .insert(REVISION_ANNOTATION.into(), revision.to_string());
        rs
    }

    fn pods_of(rs: &ReplicaSet, count: usize, ready: bool) -> Vec<Pod> {
        let name = &rs.metadata.name;
        let uid = rs.metadata.uid.as_deref().unwrap();
        (0..count)
            .map(|i| Pod {
                spec: rs.spec.template.spec.clone(),
                status: Some(pod_status(Some(skiff_api::PodPhase::Running), ready)),
                ..pod(&format!("{name}-{i}-{ready}"), name, uid, &[])
            })
            .collect()
    }

    fn replicas_of(plan: &DeploymentPlan, name: &str) -> Option<i32> {
        plan.update
            .iter()
            .chain(&plan.create)
            .find(|rs| rs.metadata.name == name)
            .map(|rs| rs.spec.replicas)
    }

    #[test]
    fn creates_the_first_replica_set() {
        let d = deployment(3, "web:1");
        let plan = reconcile(&d, &[], &[], template_hash);
        let rs = plan.create.as_ref().expect("a new ReplicaSet");
        let hash = template_hash(&d.spec.template);
        assert_eq!(rs.metadata.name, format!("web-{hash}"));
        assert_eq!(rs.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(rs.spec.replicas, 3);
        assert_eq!(rs.revision(), 1);
        assert_eq!(plan.revision, Some(1));
        assert_eq!(
            rs.spec.selector.match_labels.get(TEMPLATE_HASH_LABEL),
            Some(&hash)
        );
        assert_eq!(rs.spec.selector.match_labels.get("app").unwrap(), "web");
        assert!(rs.spec.selector.matches(&rs.spec.template.metadata.labels));
        assert_eq!(rs.metadata.labels, rs.spec.template.metadata.labels);
        let owner = rs.metadata.controller().unwrap();
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Deployment", "d-uid")
        );
        assert!(plan.update.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.status.observed_generation, 2);

        // Idempotent once the ReplicaSet exists.
        let again = reconcile(&d, &[stored(&d, 3, 1)], &[], template_hash);
        assert_eq!((again.create, again.update), (None, vec![]));
    }

    #[test]
    fn template_hash_is_stable_and_name_safe() {
        let a = deployment(1, "web:1").spec.template;
        let b = deployment(1, "web:2").spec.template;
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        let h = template_hash(&a);
        assert_eq!(h.len(), 10);
        assert!(h
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        // Pinned: a different value would orphan every running ReplicaSet on upgrade.
        assert_eq!(h, template_hash(&deployment(7, "web:1").spec.template));
        assert_eq!(h, "6hk5xxv5zj");
    }

    #[test]
    fn scaling_changes_the_only_replica_set() {
        let d = deployment(5, "web:1");
        let rs = stored(&d, 2, 1);
        let pods = pods_of(&rs, 2, true);
        let plan = reconcile(&d, std::slice::from_ref(&rs), &pods, template_hash);
        assert_eq!(replicas_of(&plan, &rs.metadata.name), Some(5));
        let d = deployment(1, "web:1");
        let plan = reconcile(&d, std::slice::from_ref(&rs), &pods, template_hash);
        assert_eq!(replicas_of(&plan, &rs.metadata.name), Some(1));
        assert_eq!(plan.status.replicas, 2);
    }

    #[test]
    fn rolling_update_respects_surge_and_availability() {
        let v1 = rolling(deployment(4, "web:1"), 1, 1);
        let old = stored(&v1, 4, 1);
        let old_pods = pods_of(&old, 4, true);
        let v2 = rolling(deployment(4, "web:2"), 1, 1);
        let plan = reconcile(&v2, std::slice::from_ref(&old), &old_pods, template_hash);
        let new = plan.create.as_ref().expect("new ReplicaSet");
        assert_eq!(new.revision(), 2);
        // Up to 5 in total; 3 of the 4 ready old pods must stay.
        assert_eq!(new.spec.replicas, 2);
        assert_eq!(replicas_of(&plan, &old.metadata.name), Some(3));
        assert_eq!(plan.status.updated_replicas, 0);
        assert_eq!(plan.status.unavailable_replicas, 1);

        // Same pods, plan applied: nothing more to do.
        let mut new = new.clone();
        new.metadata.uid = Some("new-uid".into());
        let mut old = old.clone();
        old.spec.replicas = 3;
        let rss = [old.clone(), new.clone()];
        let again = reconcile(&v2, &rss, &old_pods[..3], template_hash);
        assert_eq!((again.create, again.update), (None, vec![]));

        // The two new pods are ready: the old ReplicaSet can lose two more.
        let mut pods = old_pods[..3].to_vec();
        pods.extend(pods_of(&new, 2, true));
        let plan = reconcile(&v2, &rss, &pods, template_hash);
        assert_eq!(replicas_of(&plan, &old.metadata.name), Some(1));
        assert_eq!(replicas_of(&plan, &new.metadata.name), Some(4));
    }

    #[test]
    fn unready_old_pods_go_first_without_touching_ready_ones() {
        let v1 = rolling(deployment(4, "web:1"), 0, 1);
        let old = stored(&v1, 4, 1);
        let mut pods = pods_of(&old, 2, true);
        pods.extend(pods_of(&old, 2, false));
        let v2 = rolling(deployment(4, "web:2"), 0, 1);
        let plan = reconcile(&v2, std::slice::from_ref(&old), &pods, template_hash);
        // No surge and 1 unavailable allows 1 pod fewer than 4 in total: one unready old pod
        // goes and a new one takes its place. The ready old pods stay (only 2 are ready, fewer
        // than the 3 wanted).
        assert_eq!(replicas_of(&plan, &old.metadata.name), Some(3));
        assert_eq!(plan.create.unwrap().spec.replicas, 1);
    }

    #[test]
    fn recreate_waits_for_old_pods_before_creating() {
        let mut v1 = deployment(3, "web:1");
        v1.spec.strategy = Some(DeploymentStrategy {
            type_: Some(StrategyType::Recreate),
            rolling_update: None,
        });
        let old = stored(&v1, 3, 1);
        let pods = pods_of(&old, 3, true);
        let mut v2 = v1.clone();
        v2.spec.template.spec.containers[0].image = Some("web:2".into());
        let plan = reconcile(&v2, std::slice::from_ref(&old), &pods, template_hash);
        assert_eq!(plan.create, None);
        assert_eq!(plan.revision, None);
        assert_eq!(replicas_of(&plan, &old.metadata.name), Some(0));

        // Old pods terminating: still waiting.
        let mut old = old.clone();
        old.spec.replicas = 0;
        let mut leaving = pods.clone();
        for p in &mut leaving {
            p.metadata.deletion_timestamp = Some("2026-11-22T10:00:00Z".into());
        }
        let plan = reconcile(&v2, std::slice::from_ref(&old), &leaving, template_hash);
        assert_eq!((plan.create, plan.update), (None, vec![]));

        // Gone: the new ReplicaSet comes at full size.
        let plan = reconcile(&v2, std::slice::from_ref(&old), &[], template_hash);
        let new = plan.create.unwrap();
        assert_eq!((new.spec.replicas, new.revision()), (3, 2));
    }

    #[test]
    fn rollback_reuses_the_old_replica_set_with_a_new_revision() {
        let v1 = deployment(2, "web:1");
        let v2 = deployment(2, "web:2");
        let old = stored(&v1, 0, 1);
        let current = stored(&v2, 2, 2);
        let rss = [old.clone(), current.clone()];
        let template = rollback_template(&v2, &rss, None).unwrap();
        assert_eq!(template, v1.spec.template);
        assert_eq!(
            rollback_template(&v2, &rss, Some(2)).unwrap(),
            v2.spec.template
        );
        assert_eq!(
            rollback_template(&v2, &rss, Some(7)).unwrap_err(),
            "deployment \"web\" has no revision 7 (it has 1, 2)"
        );
        assert!(rollback_template(&v2, &rss[1..], None).is_err());

        let mut back = v2.clone();
        back.spec.template = template;
        let plan = reconcile(&back, &rss, &pods_of(&current, 2, true), template_hash);
        assert_eq!(plan.create, None);
        let reused = plan
            .update
            .iter()
            .find(|rs| rs.metadata.name == old.metadata.name)
            .unwrap();
        assert_eq!(reused.revision(), 3);
        assert_eq!(plan.revision, Some(3));
    }

    #[test]
    fn old_replica_sets_beyond_the_history_limit_are_deleted() {
        let mut d = deployment(1, "web:9");
        d.spec.revision_history_limit = Some(2);
        let mut rss: Vec<ReplicaSet> = (1..=4)
            .map(|i| stored(&deployment(1, &format!("web:{i}")), 0, i))
            .collect();
        let current = stored(&d, 1, 5);
        rss.push(current.clone());
        // Revision 1 still has a pod: kept until it is gone.
        let pods = pods_of(&rss[0], 1, false);
        let plan = reconcile(&d, &rss, &pods, template_hash);
        assert_eq!(plan.delete, [rss[1].metadata.name.clone()]);
        assert!(plan.update.is_empty());
    }

    #[test]
    fn paused_deployments_scale_but_do_not_roll_out() {
        let v1 = deployment(2, "web:1");
        let old = stored(&v1, 2, 1);
        let mut v2 = deployment(5, "web:2");
        v2.spec.paused = Some(true);
        let plan = reconcile(&v2, std::slice::from_ref(&old), &[], template_hash);
        assert_eq!(plan.create, None);
        assert_eq!(replicas_of(&plan, &old.metadata.name), Some(5));
        let progressing = &plan.status.conditions[1];
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_deref()),
            ("Unknown", Some("DeploymentPaused"))
        );
    }

    #[test]
    fn status_reports_progress_and_availability() {
        let d = rolling(deployment(2, "web:1"), 1, 0);
        let rs = stored(&d, 2, 1);
        let plan = reconcile(
            &d,
            std::slice::from_ref(&rs),
            &pods_of(&rs, 2, true),
            template_hash,
        );
        let s = &plan.status;
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas
            ),
            (2, 2, 2, 2)
        );
        assert_eq!(s.unavailable_replicas, 0);
        assert!(s.conditions.iter().all(Condition::is_true));
        assert_eq!(
            s.conditions[1].reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );

        let plan = reconcile(
            &d,
            std::slice::from_ref(&rs),
            &pods_of(&rs, 2, false),
            template_hash,
        );
        assert_eq!(plan.status.unavailable_replicas, 2);
        assert!(!plan.status.conditions[0].is_true());
        assert_eq!(
            plan.status.conditions[1].reason.as_deref(),
            Some("ReplicaSetUpdated")
        );
    }
}
