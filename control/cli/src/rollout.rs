//! `skiff scale` and `skiff rollout`: changes to a Deployment, and following them.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use skiff_api::{
    apps::{
        DeploymentStatus, ReplicaSet, RESTARTED_AT_ANNOTATION, REVISION_ANNOTATION,
        TEMPLATE_HASH_LABEL,
    },
    Deployment, Kind, Object,
};

use crate::{
    cluster::Ctx,
    kinds::{parse_kind, resource},
    table::{age, now_rfc3339, Table},
};

#[derive(clap::Args)]
#[command(long_about = "Set a Deployment's replica count.\n\n\
    A HorizontalPodAutoscaler that targets the Deployment changes it back to what it decides.\n\n\
    Examples:\n  \
    skiff scale deployment web --replicas 5\n  \
    skiff scale deploy/web --replicas 0 -n shop")]
pub struct ScaleArgs {
    /// deployment NAME, or deployment/NAME.
    #[arg(value_name = "KIND NAME", num_args = 1..=2, required = true)]
    target: Vec<String>,
    /// The new number of pods.
    #[arg(long)]
    replicas: u32,
}

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// Wait until a Deployment's rollout is complete, printing its progress.
    #[command(
        long_about = "Wait until a Deployment's rollout is complete: every replica \
        runs the current template and is available. Prints progress as it changes; exits 1 on \
        --timeout or when the rollout stops making progress.\n\n\
        Examples:\n  \
        skiff rollout status deployment web\n  \
        skiff rollout status deploy/web --timeout 2m"
    )]
    Status {
        #[command(flatten)]
        target: DeploymentTarget,
        /// Give up after this long (e.g. 90s, 5m); by default wait as long as it takes.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Replace every pod of a Deployment, as a rolling update (e.g. to pick up new config).
    #[command(
        long_about = "Replace every pod of a Deployment, by a rolling update that \
        respects its strategy (maxSurge, maxUnavailable). Sets the pod template annotation \
        kubectl.kubernetes.io/restartedAt, as kubectl does.\n\n\
        Example:\n  skiff rollout restart deployment web"
    )]
    Restart {
        #[command(flatten)]
        target: DeploymentTarget,
    },
    /// Roll a Deployment back to its previous pod template (or to --to-revision).
    #[command(
        long_about = "Roll a Deployment back: its pod template becomes that of an \
        earlier revision (kept in the ReplicaSets it owns), which starts a rolling update to \
        it. See the revisions with `skiff rollout history`.\n\n\
        Examples:\n  \
        skiff rollout undo deployment web\n  \
        skiff rollout undo deployment web --to-revision 2"
    )]
    Undo {
        #[command(flatten)]
        target: DeploymentTarget,
        /// The revision to go back to; 0 (the default) is the one before the current.
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
    /// List a Deployment's revisions (one per pod template it has run).
    History {
        #[command(flatten)]
        target: DeploymentTarget,
    },
}

#[derive(clap::Args)]
pub struct DeploymentTarget {
    /// deployment NAME, or deployment/NAME.
    #[arg(value_name = "KIND NAME", num_args = 1..=2, required = true)]
    target: Vec<String>,
}

/// Reads `deployment NAME` or `deployment/NAME` (only Deployments roll out and scale here:
/// a ReplicaSet belongs to its Deployment, which would undo the change).
fn deployment_name(words: &[String]) -> anyhow::Result<String> {
    let (kind, name) = match words {
        [kind, name] => (kind.as_str(), name.as_str()),
        [one] => match one.split_once('/') {
            Some(pair) => pair,
            None => bail!("{one:?}: expected `deployment NAME` or `deployment/NAME`"),
        },
        _ => bail!("expected `deployment NAME` or `deployment/NAME`"),
    };
    let kind = parse_kind(kind)?;
    if kind != Kind::Deployment {
        bail!(
            "{kind}: only deployments can do this (a ReplicaSet or pod belongs to its Deployment)"
        );
    }
    if name.is_empty() {
        bail!("expected a deployment name");
    }
    Ok(name.to_string())
}

pub async fn scale(ctx: &Ctx, args: ScaleArgs) -> anyhow::Result<()> {
    let name = deployment_name(&args.target)?;
    let replicas = i32::try_from(args.replicas).context("--replicas: too many")?;
    change(ctx, &name, |d| {
        d.spec.replicas = Some(replicas);
        Ok(())
    })
    .await?;
    println!("{}/{name} scaled", resource(Kind::Deployment));
    Ok(())
}

pub async fn run(ctx: &Ctx, command: RolloutCommand) -> anyhow::Result<()> {
    match command {
        RolloutCommand::Status { target, timeout } => {
            status(ctx, &deployment_name(&target.target)?, timeout).await
        }
        RolloutCommand::Restart { target } => {
            let name = deployment_name(&target.target)?;
            let now = now_rfc3339();
            change(ctx, &name, |d| {
                d.spec
                    .template
                    .metadata
                    .annotations
                    .insert(RESTARTED_AT_ANNOTATION.into(), now.clone());
                Ok(())
            })
            .await?;
            println!("{}/{name} restarted", resource(Kind::Deployment));
            Ok(())
        }
        RolloutCommand::Undo {
            target,
            to_revision,
        } => undo(ctx, &deployment_name(&target.target)?, to_revision).await,
        RolloutCommand::History { target } => history(ctx, &deployment_name(&target.target)?).await,
    }
}

async fn get_deployment(ctx: &Ctx, name: &str) -> anyhow::Result<Deployment> {
    match ctx
        .client
        .get(Kind::Deployment, &ctx.namespace, name)
        .await?
    {
        Object::Deployment(d) => Ok(*d),
        other => bail!("asked for a Deployment, got a {}", other.kind()),
    }
}

/// Gets the deployment, changes it and updates it at the version it read. If someone wrote
/// it in between (409 Conflict), once more from a fresh read: the change is re-applied to
/// their version instead of overwriting it.
async fn change(
    ctx: &Ctx,
    name: &str,
    edit: impl Fn(&mut Deployment) -> anyhow::Result<()>,
) -> anyhow::Result<Deployment> {
    let mut retried = false;
    loop {
        let mut deployment = get_deployment(ctx, name).await?;
        edit(&mut deployment)?;
        match ctx
            .client
            .update(&Object::Deployment(Box::new(deployment)))
            .await
        {
            Ok(Object::Deployment(d)) => return Ok(*d),
            Ok(other) => bail!("updated a Deployment, got a {}", other.kind()),
            Err(e) if e.code() == Some(409) && !retried => retried = true,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Where a rollout stands: done, or what it waits for (kubectl's wording).
pub fn progress(d: &Deployment) -> Result<Option<String>, String> {
    let name = &d.metadata.name;
    let status = d.status.clone().unwrap_or_default();
    if status.observed_generation < d.metadata.generation.unwrap_or(0) {
        return Ok(Some(
            "Waiting for deployment spec update to be observed...".into(),
        ));
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing" && !c.is_true())
        .filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
    {
        return Err(format!(
            "deployment {name:?} exceeded its progress deadline{}",
            c.message
                .as_ref()
                .map_or(String::new(), |m| format!(": {m}"))
        ));
    }
    let DeploymentStatus {
        replicas,
        updated_replicas: updated,
        available_replicas: available,
        ..
    } = status;
    let wanted = d.replicas();
    Ok(if updated < wanted {
        Some(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ))
    } else if replicas > updated {
        Some(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ))
    } else if available < updated {
        Some(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ))
    } else {
        None
    })
}

async fn status(ctx: &Ctx, name: &str, timeout: Option<Duration>) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let deployment = get_deployment(ctx, name).await?;
        match progress(&deployment) {
            Ok(None) => {
                println!("deployment {name:?} successfully rolled out");
                return Ok(());
            }
            Ok(Some(line)) => {
                if line != last {
                    println!("{line}");
                    last = line;
                }
            }
            Err(stuck) => bail!(stuck),
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            bail!(
                "timed out after {} waiting for the rollout of deployment {name:?}: {}",
                humantime::format_duration(timeout.unwrap_or_default()),
                last.trim_start_matches(&format!(
                    "Waiting for deployment {name:?} rollout to finish: "
                ))
            );
        }
        // Polling a single object each second is cheap and survives API restarts.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The deployment's ReplicaSets, newest revision first.
async fn owned_replica_sets(ctx: &Ctx, d: &Deployment) -> anyhow::Result<Vec<ReplicaSet>> {
    let uid = d.metadata.uid.as_deref().unwrap_or_default();
    let (sets, _) = ctx
        .client
        .list(Kind::ReplicaSet, Some(&ctx.namespace), None)
        .await?;
    let mut owned: Vec<ReplicaSet> = sets
        .into_iter()
        .filter_map(|o| match o {
            Object::ReplicaSet(r) => Some(*r),
            _ => None,
        })
        .filter(|r| r.metadata.owner_references.iter().any(|o| o.uid == uid))
        .collect();
    owned.sort_by_key(|r| std::cmp::Reverse(r.revision()));
    Ok(owned)
}

/// Which revision `undo` goes back to: `to_revision`, or (0) the newest before the current
/// (the highest revision is the current template).
pub fn pick_revision(sets: &[ReplicaSet], to_revision: i64) -> anyhow::Result<&ReplicaSet> {
    if to_revision != 0 {
        return sets
            .iter()
            .find(|r| r.revision() == to_revision)
            .with_context(|| {
                let known: Vec<String> = sets.iter().map(|r| r.revision().to_string()).collect();
                format!(
                    "no revision {to_revision} in the history (it has: {})",
                    known.join(", ")
                )
            });
    }
    let current = sets.iter().map(ReplicaSet::revision).max().unwrap_or(0);
    sets.iter()
        .filter(|r| r.revision() < current)
        .max_by_key(|r| r.revision())
        .context("no earlier revision to roll back to")
}

async fn undo(ctx: &Ctx, name: &str, to_revision: i64) -> anyhow::Result<()> {
    let deployment = get_deployment(ctx, name).await?;
    let sets = owned_replica_sets(ctx, &deployment).await?;
    let target = pick_revision(&sets, to_revision)?;
    let revision = target.revision();
    let mut template = target.spec.template.clone();
    // The hash label is the ReplicaSet's own; the controller adds it to whatever it makes.
    template.metadata.labels.remove(TEMPLATE_HASH_LABEL);
    if template == deployment.spec.template {
        println!(
            "{}/{name} skipped rollback (the current template already matches revision {revision})",
            resource(Kind::Deployment)
        );
        return Ok(());
    }
    change(ctx, name, |d| {
        d.spec.template = template.clone();
        Ok(())
    })
    .await?;
    println!(
        "{}/{name} rolled back to revision {revision}",
        resource(Kind::Deployment)
    );
    Ok(())
}

async fn history(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let deployment = get_deployment(ctx, name).await?;
    let mut sets = owned_replica_sets(ctx, &deployment).await?;
    sets.reverse();
    println!("{}/{name}", resource(Kind::Deployment));
    let mut table = Table::new(&["REVISION", "REPLICASET", "IMAGES", "AGE", "CHANGE-CAUSE"]);
    let now = std::time::SystemTime::now();
    for r in &sets {
        let images: Vec<&str> = r
            .spec
            .template
            .spec
            .containers
            .iter()
            .map(|c| c.image.as_deref().unwrap_or("<none>"))
            .collect();
        table.push(vec![
            r.metadata
                .annotations
                .get(REVISION_ANNOTATION)
                .cloned()
                .unwrap_or("<none>".into()),
            r.metadata.name.clone(),
            images.join(","),
            age(r.metadata.creation_timestamp.as_deref(), now),
            r.metadata
                .annotations
                .get("kubernetes.io/change-cause")
                .cloned()
                .unwrap_or("<none>".into()),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
            "status": status
        }))
        .unwrap()
    }

    fn replica_set(revision: i64, image: &str) -> ReplicaSet {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("web-{revision}"),
                "annotations": {REVISION_ANNOTATION: revision.to_string()}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", TEMPLATE_HASH_LABEL: "h"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn progress_reads_like_kubectl() {
        let d = deployment(2, serde_json::json!({"observedGeneration": 1}));
        assert_eq!(
            progress(&d).unwrap().unwrap(),
            "Waiting for deployment spec update to be observed..."
        );
        let d = deployment(
            2,
            serde_json::json!({"observedGeneration": 2, "replicas": 5, "updatedReplicas": 4,
                "availableReplicas": 3}),
        );
        assert_eq!(
            progress(&d).unwrap().unwrap(),
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
        let d = deployment(
            2,
            serde_json::json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 4,
                "availableReplicas": 2}),
        );
        assert_eq!(
            progress(&d).unwrap().unwrap(),
            "Waiting for deployment \"web\" rollout to finish: 2 of 4 updated replicas are available..."
        );
        let d = deployment(
            2,
            serde_json::json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 4,
                "availableReplicas": 4}),
        );
        assert_eq!(progress(&d), Ok(None));
    }

    #[test]
    fn undo_goes_to_the_revision_before_the_current_or_the_one_asked() {
        let sets = [
            replica_set(3, "nginx:3"),
            replica_set(1, "nginx:1"),
            replica_set(2, "nginx:2"),
        ];
        assert_eq!(pick_revision(&sets, 0).unwrap().revision(), 2);
        assert_eq!(pick_revision(&sets, 1).unwrap().revision(), 1);
        let e = pick_revision(&sets, 7).unwrap_err().to_string();
        assert!(e.contains("no revision 7") && e.contains("3, 1, 2"), "{e}");
        assert!(pick_revision(&sets[..1], 0).is_err());
    }

    #[test]
    fn targets_must_be_deployments() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(deployment_name(&words(&["deploy", "web"])).unwrap(), "web");
        assert_eq!(
            deployment_name(&words(&["deployments/web"])).unwrap(),
            "web"
        );
        assert!(deployment_name(&words(&["rs", "web-1"])).is_err());
        assert!(deployment_name(&words(&["web"])).is_err());
    }
}
