//! The loops that run the scheduler and controllers while this instance leads.
//!
//! Each runner is level-triggered: a change to any kind it reads (seen through a store
//! watch) or its period wakes it; it lists what it needs, asks its pure controller
//! (`crate::controllers`, `crate::scheduler`) what should change, and writes that through
//! the registry with optimistic concurrency. A lost race just wakes it again. Each runner is
//! the only writer of what it owns:
//!
//! | runner | writes |
//! |---|---|
//! | scheduler | `Pod.spec.nodeName`, the PodScheduled condition of pending pods |
//! | replicasets | pods (create, delete), ReplicaSet status |
//! | deployments | ReplicaSets, Deployment status |
//! | endpoints | EndpointSlices |
//! | nodes | Node Ready condition when heartbeats stop, the unreachable taint, evictions |
//! | autoscaler | Deployment `spec.replicas` of autoscaled deployments, HPA status |
//! | garbage-collector | deletes objects whose owner is gone, empties deleted namespaces |

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use skiff_api::time::parse_rfc3339;
use skiff_api::{
    apps::{Deployment, ReplicaSet, REVISION_ANNOTATION},
    core::{Condition, PodStatus},
    service::SERVICE_NAME_LABEL,
    EndpointSlice, Kind, Node, Object, Pod,
};
use tokio::{sync::Notify, task::JoinSet};

use crate::{
    api::node_metrics,
    controllers::{
        autoscaler::{self, Recommendations},
        deployment, endpoints, node_lifecycle, replicaset,
    },
    error::ApiError,
    metrics::Metrics,
    registry::{kind_prefix, Part, Registry},
    scheduler::Scheduler,
};

/// Campaigns for leadership, runs every runner while leading, stops them when leadership is
/// lost, and campaigns again. Never returns.
pub async fn lead(
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    node_grace: Duration,
    candidate: String,
) {
    loop {
        let mut leadership = match registry.store().campaign("controllers", &candidate).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "campaign for leadership failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        metrics.leader.store(1, Ordering::Relaxed);
        tracing::info!(%candidate, "leading: running the scheduler and controllers");
        let mut tasks = JoinSet::new();
        spawn_all(&mut tasks, &registry, &metrics, node_grace);
        leadership.lost().await;
        metrics.leader.store(0, Ordering::Relaxed);
        tracing::warn!("lost leadership: stopping the scheduler and controllers");
        tasks.abort_all();
    }
}

fn spawn_all(
    tasks: &mut JoinSet<()>,
    registry: &Arc<Registry>,
    metrics: &Arc<Metrics>,
    node_grace: Duration,
) {
    let ctx = Ctx {
        registry: registry.clone(),
        metrics: metrics.clone(),
    };
    let second = Duration::from_secs(1);
    {
        let c = ctx.clone();
        tasks.spawn(run(
            "scheduler",
            ctx.clone(),
            &[Kind::Pod, Kind::Node],
            second,
            move || {
                let c = c.clone();
                async move { schedule(&c).await }
            },
        ));
    }
    {
        let c = ctx.clone();
        tasks.spawn(run(
            "replicasets",
            ctx.clone(),
            &[Kind::ReplicaSet, Kind::Pod],
            second * 5,
            move || {
                let c = c.clone();
                async move { replicasets(&c).await }
            },
        ));
    }
    {
        let c = ctx.clone();
        tasks.spawn(run(
            "deployments",
            ctx.clone(),
            &[Kind::Deployment, Kind::ReplicaSet, Kind::Pod],
            second * 5,
            move || {
                let c = c.clone();
                async move { deployments(&c).await }
            },
        ));
    }
    {
        let c = ctx.clone();
        tasks.spawn(run(
            "endpoints",
            ctx.clone(),
            &[Kind::Service, Kind::Pod, Kind::EndpointSlice],
            second * 5,
            move || {
                let c = c.clone();
                async move { endpoint_slices(&c).await }
            },
        ));
    }
    {
        let c = ctx.clone();
        // This term's controllers saw no heartbeat from before now.
        let watching_since = SystemTime::now();
        tasks.spawn(run(
            "nodes",
            ctx.clone(),
            &[Kind::Node],
            second,
            move || {
                let c = c.clone();
                async move { nodes(&c, watching_since, node_grace).await }
            },
        ));
    }
    {
        let c = ctx.clone();
        let history: Arc<tokio::sync::Mutex<HashMap<String, Recommendations>>> = Arc::default();
        tasks.spawn(run(
            "autoscaler",
            ctx.clone(),
            &[Kind::HorizontalPodAutoscaler],
            second * 2,
            move || {
                let c = c.clone();
                let history = history.clone();
                async move { autoscale(&c, &history).await }
            },
        ));
    }
    {
        let c = ctx.clone();
        tasks.spawn(run(
            "garbage-collector",
            ctx,
            &[
                Kind::Namespace,
                Kind::Deployment,
                Kind::ReplicaSet,
                Kind::Service,
            ],
            second * 2,
            move || {
                let c = c.clone();
                async move { collect_garbage(&c).await }
            },
        ));
    }
}

#[derive(Clone)]
struct Ctx {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

/// Runs `pass` whenever one of `kinds` changes or `period` passes, and again soon after a
/// failed pass.
async fn run<F, Fut>(name: &'static str, ctx: Ctx, kinds: &[Kind], period: Duration, pass: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), ApiError>>,
{
    let notify = Arc::new(Notify::new());
    let pending = Arc::new(AtomicI64::new(0));
    let mut watchers = JoinSet::new();
    for kind in kinds {
        watchers.spawn(watch_kind(
            ctx.registry.clone(),
            *kind,
            notify.clone(),
            pending.clone(),
        ));
    }
    loop {
        ctx.metrics.queue(name, pending.swap(0, Ordering::Relaxed));
        let result = pass().await;
        ctx.metrics.reconciled(name, result.is_ok());
        match result {
            Ok(()) => {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(period) => {}
                }
                // Let a burst of changes (an apply of many objects) land before reading.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                tracing::warn!(controller = name, error = %e, "reconcile failed; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Wakes a runner on every change to `kind`; re-opens the watch if it ends or falls behind.
async fn watch_kind(
    registry: Arc<Registry>,
    kind: Kind,
    notify: Arc<Notify>,
    pending: Arc<AtomicI64>,
) {
    let prefix = kind_prefix(kind, None);
    loop {
        let from = match registry.store().revision().await {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(mut watch) = registry.store().watch(&prefix, from).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // Whatever changed between the pass and this watch is covered by this wake-up.
        notify.notify_one();
        while let Some(Ok(_)) = watch.next().await {
            pending.fetch_add(1, Ordering::Relaxed);
            notify.notify_one();
        }
    }
}

async fn list<T>(
    registry: &Registry,
    kind: Kind,
    unwrap: fn(Object) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    let (objects, _) = registry.list(kind, None, None).await?;
    Ok(objects.into_iter().filter_map(unwrap).collect())
}

fn pods_of(o: Object) -> Option<Pod> {
    match o {
        Object::Pod(p) => Some(*p),
        _ => None,
    }
}

fn nodes_of(o: Object) -> Option<Node> {
    match o {
        Object::Node(n) => Some(*n),
        _ => None,
    }
}

fn replica_sets_of(o: Object) -> Option<ReplicaSet> {
    match o {
        Object::ReplicaSet(r) => Some(*r),
        _ => None,
    }
}

fn deployments_of(o: Object) -> Option<Deployment> {
    match o {
        Object::Deployment(d) => Some(*d),
        _ => None,
    }
}

/// Conflicts and vanished objects are races with other writers: the next pass sees the new
/// state, so they do not fail this one.
fn tolerate_races<T>(result: Result<T, ApiError>) -> Result<(), ApiError> {
    match result {
        Ok(_) | Err(ApiError::Conflict(_)) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn schedule(ctx: &Ctx) -> Result<(), ApiError> {
    let pods = list(&ctx.registry, Kind::Pod, pods_of).await?;
    let mut pending: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.spec.node_name.is_none() && !p.is_terminating() && !p.is_finished())
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    pending.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    let nodes = list(&ctx.registry, Kind::Node, nodes_of).await?;
    let mut scheduler = Scheduler::new(&nodes, &pods);
    for pod in pending {
        match scheduler.schedule(pod) {
            Ok(node) => {
                let mut bound = pod.clone();
                bound.spec.node_name = Some(node.clone());
                tolerate_races(
                    ctx.registry
                        .update(Object::Pod(Box::new(bound)), Part::Main)
                        .await,
                )?;
                if let Some(created) = pod
                    .metadata
                    .creation_timestamp
                    .as_deref()
                    .and_then(parse_rfc3339)
                {
                    ctx.metrics.scheduled(
                        SystemTime::now()
                            .duration_since(created)
                            .unwrap_or_default(),
                    );
                }
                tracing::debug!(pod = %pod.metadata.name, %node, "scheduled");
            }
            Err(why) => {
                let mut status = pod.status.clone().unwrap_or_default();
                status.phase = Some(skiff_api::PodPhase::Pending);
                set_condition(
                    &mut status,
                    Condition::new(
                        "PodScheduled",
                        false,
                        Some("Unschedulable"),
                        Some(why.to_string()),
                    ),
                );
                let mut unscheduled = pod.clone();
                unscheduled.status = Some(status);
                tolerate_races(
                    ctx.registry
                        .update(Object::Pod(Box::new(unscheduled)), Part::Status)
                        .await,
                )?;
            }
        }
    }
    Ok(())
}

fn set_condition(status: &mut PodStatus, condition: Condition) {
    status.conditions.retain(|c| c.type_ != condition.type_);
    status.conditions.push(condition);
}

/// Groups objects by the uid of their controlling owner.
fn by_owner<T>(items: &[T], meta: fn(&T) -> &skiff_api::ObjectMeta) -> HashMap<String, Vec<T>>
where
    T: Clone,
{
    let mut groups: HashMap<String, Vec<T>> = HashMap::new();
    for item in items {
        if let Some(owner) = meta(item).controller() {
            groups
                .entry(owner.uid.clone())
                .or_default()
                .push(item.clone());
        }
    }
    groups
}

async fn replicasets(ctx: &Ctx) -> Result<(), ApiError> {
    let sets = list(&ctx.registry, Kind::ReplicaSet, replica_sets_of).await?;
    let pods = list(&ctx.registry, Kind::Pod, pods_of).await?;
    let owned = by_owner(&pods, |p| &p.metadata);
    for rs in &sets {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let mine = owned.get(&uid).map(Vec::as_slice).unwrap_or(&[]);
        let plan = replicaset::reconcile(rs, mine, &mut replicaset::random_suffix);
        for pod in plan.create {
            tolerate_races(ctx.registry.create(Object::Pod(Box::new(pod))).await)?;
        }
        for name in plan.delete {
            tolerate_races(
                ctx.registry
                    .delete(Kind::Pod, rs.metadata.namespace(), &name, false)
                    .await,
            )?;
        }
        if rs.status.as_ref() != Some(&plan.status) {
            let mut updated = rs.clone();
            updated.status = Some(plan.status);
            tolerate_races(
                ctx.registry
                    .update(Object::ReplicaSet(Box::new(updated)), Part::Status)
                    .await,
            )?;
        }
    }
    Ok(())
}

async fn deployments(ctx: &Ctx) -> Result<(), ApiError> {
    let deps = list(&ctx.registry, Kind::Deployment, deployments_of).await?;
    if deps.is_empty() {
        return Ok(());
    }
    let sets = list(&ctx.registry, Kind::ReplicaSet, replica_sets_of).await?;
    let pods = list(&ctx.registry, Kind::Pod, pods_of).await?;
    let sets_by_owner = by_owner(&sets, |r| &r.metadata);
    let pods_by_owner = by_owner(&pods, |p| &p.metadata);
    for d in &deps {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let mine = sets_by_owner.get(&uid).cloned().unwrap_or_default();
        let my_pods: Vec<Pod> = mine
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_ref())
            .flat_map(|uid| pods_by_owner.get(uid).cloned().unwrap_or_default())
            .collect();
        let plan = deployment::reconcile(d, &mine, &my_pods, deployment::template_hash);
        // Scale-downs, then the new ReplicaSet, then scale-ups: between two writes the
        // ReplicaSets never add up to more than replicas + maxSurge. If a scale-down loses
        // a race, nothing grows in this pass.
        let current = |name: &str| {
            mine.iter()
                .find(|r| r.metadata.name == name)
                .map_or(0, |r| r.spec.replicas)
        };
        let (downs, ups): (Vec<ReplicaSet>, Vec<ReplicaSet>) = plan
            .update
            .into_iter()
            .partition(|rs| rs.spec.replicas < current(&rs.metadata.name));
        let mut shrunk = true;
        for rs in downs {
            match ctx
                .registry
                .update(Object::ReplicaSet(Box::new(rs)), Part::Main)
                .await
            {
                Ok(_) => {}
                Err(ApiError::Conflict(_)) | Err(ApiError::NotFound { .. }) => shrunk = false,
                Err(e) => return Err(e),
            }
        }
        if !shrunk {
            continue;
        }
        if let Some(rs) = plan.create {
            tolerate_races(ctx.registry.create(Object::ReplicaSet(Box::new(rs))).await)?;
        }
        for rs in ups {
            tolerate_races(
                ctx.registry
                    .update(Object::ReplicaSet(Box::new(rs)), Part::Main)
                    .await,
            )?;
        }
        for name in plan.delete {
            tolerate_races(
                ctx.registry
                    .delete(Kind::ReplicaSet, d.metadata.namespace(), &name, true)
                    .await,
            )?;
        }
        if let Some(revision) = plan.revision.map(|r| r.to_string()) {
            if d.metadata.annotations.get(REVISION_ANNOTATION) != Some(&revision) {
                let mut annotated = d.clone();
                annotated
                    .metadata
                    .annotations
                    .insert(REVISION_ANNOTATION.into(), revision);
                tolerate_races(
                    ctx.registry
                        .update(Object::Deployment(Box::new(annotated)), Part::Main)
                        .await,
                )?;
            }
        }
        if d.status.as_ref() != Some(&plan.status) {
            let mut updated = d.clone();
            updated.status = Some(plan.status);
            tolerate_races(
                ctx.registry
                    .update(Object::Deployment(Box::new(updated)), Part::Status)
                    .await,
            )?;
        }
    }
    Ok(())
}

async fn endpoint_slices(ctx: &Ctx) -> Result<(), ApiError> {
    let (services, _) = ctx.registry.list(Kind::Service, None, None).await?;
    let pods = list(&ctx.registry, Kind::Pod, pods_of).await?;
    let (slices, _) = ctx.registry.list(Kind::EndpointSlice, None, None).await?;
    let mut pods_by_ns: BTreeMap<&str, Vec<Pod>> = BTreeMap::new();
    for p in &pods {
        pods_by_ns
            .entry(p.metadata.namespace())
            .or_default()
            .push(p.clone());
    }
    let mut existing: HashMap<(String, String), EndpointSlice> = HashMap::new();
    for s in slices {
        if let Object::EndpointSlice(s) = s {
            existing.insert(
                (s.metadata.namespace().to_string(), s.metadata.name.clone()),
                *s,
            );
        }
    }
    let mut wanted = HashSet::new();
    for svc in services {
        let Object::Service(svc) = svc else { continue };
        let ns = svc.metadata.namespace();
        let mine = pods_by_ns.get(ns).map(Vec::as_slice).unwrap_or(&[]);
        for slice in endpoints::desired_slices(&svc, mine) {
            let key = (ns.to_string(), slice.metadata.name.clone());
            wanted.insert(key.clone());
            match existing.get(&key) {
                None => tolerate_races(
                    ctx.registry
                        .create(Object::EndpointSlice(Box::new(slice)))
                        .await,
                )?,
                Some(current) if slice_differs(current, &slice) => {
                    let mut slice = slice;
                    slice.metadata.resource_version = current.metadata.resource_version.clone();
                    tolerate_races(
                        ctx.registry
                            .update(Object::EndpointSlice(Box::new(slice)), Part::Main)
                            .await,
                    )?
                }
                Some(_) => {}
            }
        }
    }
    // Slices this controller made (a Service controls them) for services that are gone or
    // no longer need them. Slices users write for selector-less services are theirs.
    for (key, slice) in &existing {
        let made_here = slice
            .metadata
            .owner_references
            .iter()
            .any(|o| o.kind == "Service" && o.controller == Some(true));
        if made_here
            && slice.metadata.labels.contains_key(SERVICE_NAME_LABEL)
            && !wanted.contains(key)
        {
            tolerate_races(
                ctx.registry
                    .delete(Kind::EndpointSlice, &key.0, &key.1, true)
                    .await,
            )?;
        }
    }
    Ok(())
}

fn slice_differs(current: &EndpointSlice, desired: &EndpointSlice) -> bool {
    current.endpoints != desired.endpoints
        || current.ports != desired.ports
        || current.metadata.labels != desired.metadata.labels
        || current.metadata.owner_references != desired.metadata.owner_references
}

async fn nodes(ctx: &Ctx, watching_since: SystemTime, grace: Duration) -> Result<(), ApiError> {
    let nodes = list(&ctx.registry, Kind::Node, nodes_of).await?;
    let pods = list(&ctx.registry, Kind::Pod, pods_of).await?;
    let plan = node_lifecycle::reconcile(&nodes, &pods, SystemTime::now(), watching_since, grace);
    for node in plan.node_updates {
        let name = node.metadata.name.clone();
        let object = Object::Node(Box::new(node));
        tolerate_races(ctx.registry.update(object.clone(), Part::Main).await)?;
        tolerate_races(ctx.registry.update(object, Part::Status).await)?;
        tracing::info!(node = %name, "node condition changed");
    }
    for (namespace, name) in plan.evict {
        tracing::info!(%namespace, pod = %name, "evicting a pod from an unreachable node");
        tolerate_races(
            ctx.registry
                .delete(Kind::Pod, &namespace, &name, true)
                .await,
        )?;
    }
    Ok(())
}

async fn autoscale(
    ctx: &Ctx,
    history: &tokio::sync::Mutex<HashMap<String, Recommendations>>,
) -> Result<(), ApiError> {
    let (hpas, _) = ctx
        .registry
        .list(Kind::HorizontalPodAutoscaler, None, None)
        .await?;
    if hpas.is_empty() {
        return Ok(());
    }
    let metrics = node_metrics(&ctx.registry).await?;
    let mut history = history.lock().await;
    for hpa in hpas {
        let Object::HorizontalPodAutoscaler(hpa) = hpa else {
            continue;
        };
        let ns = hpa.metadata.namespace().to_string();
        let target = match ctx
            .registry
            .get(Kind::Deployment, &ns, &hpa.spec.scale_target_ref.name)
            .await
        {
            Ok(Object::Deployment(d)) => *d,
            Ok(_) | Err(ApiError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let (pods, _) = ctx
            .registry
            .list(Kind::Pod, Some(&ns), Some(&target.spec.selector))
            .await?;
        let pods: Vec<Pod> = pods.into_iter().filter_map(pods_of).collect();
        let key = format!("{ns}/{}", hpa.metadata.name);
        let recommendations = history.entry(key).or_default();
        let plan = autoscaler::reconcile(
            &hpa,
            &target,
            &pods,
            &metrics,
            recommendations,
            SystemTime::now(),
        );
        if let Some(replicas) = plan.replicas {
            let mut scaled = target.clone();
            scaled.spec.replicas = Some(replicas);
            tracing::info!(deployment = %target.metadata.name, replicas, "autoscaling");
            tolerate_races(
                ctx.registry
                    .update(Object::Deployment(Box::new(scaled)), Part::Main)
                    .await,
            )?;
        }
        if hpa.status.as_ref() != Some(&plan.status) {
            let mut updated = (*hpa).clone();
            updated.status = Some(plan.status);
            tolerate_races(
                ctx.registry
                    .update(
                        Object::HorizontalPodAutoscaler(Box::new(updated)),
                        Part::Status,
                    )
                    .await,
            )?;
        }
    }
    Ok(())
}

async fn collect_garbage(ctx: &Ctx) -> Result<(), ApiError> {
    let mut uids: HashSet<String> = HashSet::new();
    let mut objects = Vec::new();
    for kind in [
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::Service,
        Kind::Pod,
        Kind::EndpointSlice,
    ] {
        let (list, _) = ctx.registry.list(kind, None, None).await?;
        uids.extend(list.iter().filter_map(|o| o.metadata().uid.clone()));
        objects.extend(list);
    }
    for object in &objects {
        let meta = object.metadata();
        if let Some(owner) = meta.controller() {
            if !uids.contains(&owner.uid) {
                tracing::info!(kind = %object.kind(), name = %object.key_name(), owner = %owner.name, "deleting an object whose owner is gone");
                tolerate_races(
                    ctx.registry
                        .delete(object.kind(), meta.namespace(), &meta.name, false)
                        .await,
                )?;
            }
        }
    }
    // Deleted namespaces: delete what is inside, then the namespace once it is empty.
    let (namespaces, _) = ctx.registry.list(Kind::Namespace, None, None).await?;
    for ns in namespaces {
        if ns.metadata().deletion_timestamp.is_none() {
            continue;
        }
        let name = ns.metadata().name.clone();
        let mut empty = true;
        for kind in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
            let (inside, _) = ctx.registry.list(kind, Some(&name), None).await?;
            for object in inside {
                empty = false;
                if object.metadata().deletion_timestamp.is_none() {
                    tolerate_races(
                        ctx.registry
                            .delete(kind, &name, &object.metadata().name, false)
                            .await,
                    )?;
                }
            }
        }
        if empty {
            tolerate_races(ctx.registry.delete(Kind::Namespace, "", &name, true).await)?;
        }
    }
    Ok(())
}
