//! Typed objects over the key-value store: keys, validation, server-set metadata, address
//! allocation, graceful deletion, and atomic multi-object apply.
//!
//! Every write is one store transaction guarded by preconditions, so concurrent writers
//! (several API servers on etcd, controllers, users) never lose an update: the loser gets a
//! `Conflict` and tries again with fresh data. Addresses are allocated by writing an
//! allocation key (`/alloc/...`) in the same transaction as the object that holds it, so a
//! ClusterIP, NodePort or pod CIDR is never handed out twice, also across restarts.

use std::{collections::BTreeSet, ops::RangeInclusive, sync::Arc};

use skiff_api::time::rfc3339;
use skiff_api::{
    apps::REVISION_ANNOTATION,
    network_policy::Cidr,
    service::{ServiceType, HEADLESS},
    Kind, LabelSelector, Object,
};
use skiff_store::{KeyValue, Precondition, Store, TxnOutcome, Write};

use crate::{
    controllers::addresses::{NodePortAllocator, PodCidrAllocator, ServiceIpAllocator},
    error::ApiError,
};

/// Where the control plane hands out addresses from.
#[derive(Clone, Debug)]
pub struct AddressConfig {
    pub service_cidr: Cidr,
    pub node_ports: RangeInclusive<u16>,
    pub cluster_pod_cidr: Cidr,
    pub node_pod_prefix: u8,
}

/// Who is asking; checked by the HTTP layer before the registry is called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    Admin,
    /// A node daemon, known by the node name its token was issued for.
    Node(String),
    /// The control plane's own controllers and scheduler.
    Controller(&'static str),
}

/// Which part of an object an update replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// metadata and spec; the stored status is kept.
    Main,
    /// status only.
    Status,
}

/// What one apply did to one object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub kind: Kind,
    pub name: String,
    /// `created`, `configured` or `unchanged`, as kubectl says.
    pub action: String,
}

pub struct Registry {
    store: Arc<dyn Store>,
    addresses: AddressConfig,
}

/// The writes and checks of one object's change, gathered so several can commit together.
#[derive(Default)]
struct Batch {
    preconditions: Vec<Precondition>,
    writes: Vec<Write>,
    /// Allocation keys taken earlier in this batch (not yet in the store).
    taken: BTreeSet<String>,
}

const ALLOC_CLUSTER_IP: &str = "/alloc/cluster-ip/";
const ALLOC_NODE_PORT: &str = "/alloc/node-port/";
const ALLOC_POD_CIDR: &str = "/alloc/pod-cidr/";
/// How many times a write retries after losing a race to another writer.
const CONFLICT_RETRIES: usize = 8;

pub fn object_key(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    match (kind.namespaced(), namespace) {
        (true, Some(ns)) => format!("/registry/{}/{ns}/{name}", kind.plural()),
        (true, None) => format!("/registry/{}/default/{name}", kind.plural()),
        (false, _) => format!("/registry/{}/{name}", kind.plural()),
    }
}

/// The key prefix of a kind, or of its objects in one namespace.
pub fn kind_prefix(kind: Kind, namespace: Option<&str>) -> String {
    match namespace.filter(|_| kind.namespaced()) {
        Some(ns) => format!("/registry/{}/{ns}/", kind.plural()),
        None => format!("/registry/{}/", kind.plural()),
    }
}

fn key_of(object: &Object) -> String {
    let meta = object.metadata();
    object_key(object.kind(), Some(meta.namespace()), &meta.name)
}

/// Decodes a stored object; its resourceVersion is the key's mod revision.
pub fn decode(kind: Kind, kv: &KeyValue) -> Result<Object, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::BadRequest(format!("stored {kind} at {} is unreadable: {e}", kv.key))
    })?;
    let mut object = Object::from_json(kind, value).map_err(|e| {
        ApiError::BadRequest(format!("stored {kind} at {} is unreadable: {e}", kv.key))
    })?;
    object.metadata_mut().resource_version = Some(kv.mod_revision.to_string());
    Ok(object)
}

fn encode(object: &Object) -> Vec<u8> {
    let mut object = object.clone();
    object.metadata_mut().resource_version = None;
    serde_json::to_vec(&object).expect("API objects always serialize")
}

/// Two versions of an object are the same when they differ at most in resourceVersion.
fn same(a: &Object, b: &Object) -> bool {
    encode(a) == encode(b)
}

fn new_uid() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn now() -> String {
    rfc3339(std::time::SystemTime::now())
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, addresses: AddressConfig) -> Registry {
        Registry { store, addresses }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Object, ApiError> {
        let key = object_key(kind, Some(namespace), name);
        match self.store.get(&key).await? {
            Some(kv) => decode(kind, &kv),
            None => Err(ApiError::not_found(kind, name)),
        }
    }

    /// Every object of `kind` (in `namespace`, or everywhere) matching `selector`, and the
    /// revision the list is consistent at.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&LabelSelector>,
    ) -> Result<(Vec<Object>, u64), ApiError> {
        let listing = self.store.list(&kind_prefix(kind, namespace)).await?;
        let mut objects = Vec::with_capacity(listing.items.len());
        for kv in &listing.items {
            let object = decode(kind, kv)?;
            if selector.is_none_or(|s| s.matches(&object.metadata().labels)) {
                objects.push(object);
            }
        }
        Ok((objects, listing.revision))
    }

    /// Creates one object.
    pub async fn create(&self, object: Object) -> Result<Object, ApiError> {
        if object.metadata().resource_version.is_some() {
            return Err(ApiError::BadRequest(
                "metadata.resourceVersion must not be set on create (it is the server's)".into(),
            ));
        }
        for _ in 0..CONFLICT_RETRIES {
            let mut batch = Batch::default();
            let created = self.prepare_create(object.clone(), &mut batch).await?;
            if self.commit(batch).await?.is_some() {
                return self.get_written(&created).await;
            }
        }
        Err(self.too_busy(&object))
    }

    /// Replaces an object's spec (and metadata) or its status. With a resourceVersion the
    /// update succeeds only if nobody wrote the object since.
    pub async fn update(&self, object: Object, part: Part) -> Result<Object, ApiError> {
        let pinned = object.metadata().revision().is_some();
        for _ in 0..CONFLICT_RETRIES {
            let mut batch = Batch::default();
            let Some(updated) = self
                .prepare_update(object.clone(), part, &mut batch)
                .await?
            else {
                return self.get_written(&object).await;
            };
            match self.commit(batch).await? {
                Some(_) => return self.get_written(&updated).await,
                None if pinned => {
                    return Err(ApiError::Conflict(format!(
                        "{} {:?} was changed by someone else since resourceVersion {}: get it again and reapply your change",
                        object.kind(),
                        object.metadata().name,
                        object.metadata().resource_version.as_deref().unwrap_or("")
                    )))
                }
                None => continue,
            }
        }
        Err(self.too_busy(&object))
    }

    /// Creates or updates every object, all or nothing (`skiff apply`).
    pub async fn apply(&self, objects: Vec<Object>) -> Result<Vec<Applied>, ApiError> {
        let mut seen = BTreeSet::new();
        for object in &objects {
            if !seen.insert(key_of(object)) {
                return Err(ApiError::BadRequest(format!(
                    "{} {} appears twice in one apply",
                    object.kind(),
                    object.key_name()
                )));
            }
        }
        for _ in 0..CONFLICT_RETRIES {
            let mut batch = Batch::default();
            let mut applied = Vec::new();
            // Namespaces first: a namespace created earlier in the batch counts as existing
            // for the objects after it.
            let mut ordered = objects.clone();
            ordered.sort_by_key(|o| o.kind() != Kind::Namespace);
            for mut object in ordered {
                // Applied manifests carry no server fields; exported ones may: drop them.
                object.metadata_mut().resource_version = None;
                let kind = object.kind();
                let name = object.key_name();
                let key = key_of(&object);
                let action = match self.store.get(&key).await? {
                    None => {
                        self.prepare_create(object, &mut batch).await?;
                        "created"
                    }
                    Some(_) => match self.prepare_update(object, Part::Main, &mut batch).await? {
                        Some(_) => "configured",
                        None => "unchanged",
                    },
                };
                applied.push(Applied {
                    kind,
                    name,
                    action: action.into(),
                });
            }
            if self.commit(batch).await?.is_some() {
                return Ok(applied);
            }
        }
        Err(ApiError::Conflict(
            "the objects kept changing while applying: try again".into(),
        ))
    }

    /// Deletes an object. A pod running on a live node is only marked terminating (its node
    /// stops it within the grace period, then deletes it); `grace_zero` deletes at once.
    /// A namespace with objects is marked terminating and emptied by the garbage collector.
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        grace_zero: bool,
    ) -> Result<Object, ApiError> {
        if kind == Kind::Namespace && name == "default" {
            return Err(ApiError::Forbidden(
                "the default namespace cannot be deleted (objects without a namespace go there)"
                    .into(),
            ));
        }
        for _ in 0..CONFLICT_RETRIES {
            let key = object_key(kind, Some(namespace), name);
            let kv = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::not_found(kind, name))?;
            let current = decode(kind, &kv)?;
            let mut batch = Batch::default();
            batch.preconditions.push(Precondition::ModRevision {
                key: key.clone(),
                revision: kv.mod_revision,
            });
            let graceful = !grace_zero && self.needs_graceful_delete(&current).await?;
            if graceful {
                if current.metadata().deletion_timestamp.is_some() {
                    return Ok(current);
                }
                let mut marked = current.clone();
                marked.metadata_mut().deletion_timestamp = Some(now());
                batch.writes.push(Write::Put {
                    key,
                    value: encode(&marked),
                });
            } else {
                batch.writes.push(Write::Delete { key });
                for alloc in allocation_keys(&current) {
                    batch.writes.push(Write::Delete { key: alloc });
                }
            }
            if self.commit(batch).await?.is_some() {
                return Ok(current);
            }
        }
        Err(ApiError::Conflict(format!(
            "{kind} {name:?} kept changing while deleting: try again"
        )))
    }

    async fn needs_graceful_delete(&self, object: &Object) -> Result<bool, ApiError> {
        match object {
            Object::Pod(pod) => {
                let Some(node) = &pod.spec.node_name else {
                    return Ok(false);
                };
                if pod.is_finished() {
                    return Ok(false);
                }
                Ok(match self.get(Kind::Node, "", node).await {
                    Ok(Object::Node(node)) => node.is_ready(),
                    _ => false,
                })
            }
            Object::Namespace(ns) => {
                let name = &ns.metadata.name;
                for kind in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
                    let listing = self.store.list(&kind_prefix(kind, Some(name))).await?;
                    if !listing.items.is_empty() {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    async fn get_written(&self, object: &Object) -> Result<Object, ApiError> {
        let meta = object.metadata();
        self.get(object.kind(), meta.namespace(), &meta.name).await
    }

    fn too_busy(&self, object: &Object) -> ApiError {
        ApiError::Conflict(format!(
            "{} {:?} kept changing while writing: try again",
            object.kind(),
            object.metadata().name
        ))
    }

    /// Commits a batch: `Some(revision)`, or `None` when a precondition failed (a race).
    async fn commit(&self, batch: Batch) -> Result<Option<u64>, ApiError> {
        if batch.writes.is_empty() {
            return Ok(Some(self.store.revision().await?));
        }
        match self.store.txn(batch.preconditions, batch.writes).await? {
            TxnOutcome::Committed { revision } => Ok(Some(revision)),
            TxnOutcome::Failed { .. } => Ok(None),
        }
    }

    async fn prepare_create(
        &self,
        mut object: Object,
        batch: &mut Batch,
    ) -> Result<Object, ApiError> {
        let kind = object.kind();
        if kind.namespaced() && object.metadata().namespace.is_none() {
            object.metadata_mut().namespace = Some("default".into());
        }
        let errors = object.validate();
        if !errors.is_empty() {
            return Err(ApiError::invalid(kind, &object.metadata().name, errors));
        }
        let key = key_of(&object);
        if self.store.get(&key).await?.is_some() || !batch.taken.insert(key.clone()) {
            return Err(ApiError::AlreadyExists {
                kind,
                name: object.key_name(),
            });
        }
        if kind.namespaced() {
            self.check_namespace(object.metadata().namespace(), batch)
                .await?;
        }
        {
            let meta = object.metadata_mut();
            meta.uid = Some(new_uid());
            meta.creation_timestamp = Some(now());
            meta.generation = Some(1);
            meta.deletion_timestamp = None;
        }
        self.allocate(&mut object, None, batch).await?;
        batch
            .preconditions
            .push(Precondition::Absent { key: key.clone() });
        batch.writes.push(Write::Put {
            key,
            value: encode(&object),
        });
        Ok(object)
    }

    async fn check_namespace(&self, namespace: &str, batch: &Batch) -> Result<(), ApiError> {
        let key = object_key(Kind::Namespace, None, namespace);
        if batch.taken.contains(&key) {
            return Ok(());
        }
        match self.store.get(&key).await? {
            None => Err(ApiError::NotFound {
                kind: "Namespace".into(),
                name: format!(
                    "{namespace} (create it first: it can be a document of the same apply)"
                ),
            }),
            Some(kv) => match decode(Kind::Namespace, &kv)? {
                ns if ns.metadata().deletion_timestamp.is_some() => Err(ApiError::Forbidden(
                    format!("namespace {namespace:?} is being deleted: nothing new can be created in it"),
                )),
                _ => Ok(()),
            },
        }
    }

    /// `Ok(None)` when the update changes nothing.
    async fn prepare_update(
        &self,
        object: Object,
        part: Part,
        batch: &mut Batch,
    ) -> Result<Option<Object>, ApiError> {
        let kind = object.kind();
        if part == Part::Status && !kind.has_status() {
            return Err(ApiError::BadRequest(format!("{kind} has no status")));
        }
        let mut object = object;
        if kind.namespaced() && object.metadata().namespace.is_none() {
            object.metadata_mut().namespace = Some("default".into());
        }
        let key = key_of(&object);
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(kind, object.metadata().name.clone()))?;
        let current = decode(kind, &kv)?;
        if let Some(asked) = object.metadata().revision() {
            if asked != kv.mod_revision {
                return Err(ApiError::Conflict(format!(
                    "{kind} {:?} was changed by someone else (your resourceVersion {asked}, now {}): get it again and reapply your change",
                    object.metadata().name,
                    kv.mod_revision
                )));
            }
        }
        let merged = match part {
            Part::Main => merge_main(&current, object)?,
            Part::Status => merge_status(&current, object),
        };
        if same(&merged, &current) {
            return Ok(None);
        }
        let errors = merged.validate();
        if !errors.is_empty() {
            return Err(ApiError::invalid(kind, &merged.metadata().name, errors));
        }
        let mut merged = merged;
        self.allocate(&mut merged, Some(&current), batch).await?;
        batch.preconditions.push(Precondition::ModRevision {
            key: key.clone(),
            revision: kv.mod_revision,
        });
        batch.writes.push(Write::Put {
            key,
            value: encode(&merged),
        });
        Ok(Some(merged))
    }

    /// Fills in and reserves the addresses an object holds: a Service's ClusterIP and
    /// NodePorts, a Node's pod CIDR. Addresses the object no longer holds are released.
    async fn allocate(
        &self,
        object: &mut Object,
        previous: Option<&Object>,
        batch: &mut Batch,
    ) -> Result<(), ApiError> {
        let owner = key_of(object);
        match object {
            Object::Service(svc) => {
                if svc.spec.cluster_ip.is_none() {
                    let used = self.used(ALLOC_CLUSTER_IP, batch).await?;
                    let mut alloc = ServiceIpAllocator::new(
                        self.addresses.service_cidr,
                        used.iter().filter_map(|s| s.parse().ok()),
                    );
                    let ip = alloc.allocate().map_err(|e| {
                        ApiError::invalid(
                            Kind::Service,
                            &svc.metadata.name,
                            vec![skiff_api::FieldError::new(
                                "spec.clusterIP",
                                "nothing",
                                e.to_string(),
                            )],
                        )
                    })?;
                    svc.spec.cluster_ip = Some(ip.to_string());
                } else if let Some(ip) = svc.cluster_ip() {
                    if !self.addresses.service_cidr.contains(ip) {
                        return Err(ApiError::invalid(
                            Kind::Service,
                            &svc.metadata.name,
                            vec![skiff_api::FieldError::new(
                                "spec.clusterIP",
                                ip,
                                format!(
                                    "an address in the service range {}",
                                    self.addresses.service_cidr
                                ),
                            )],
                        ));
                    }
                }
                if svc.type_() == ServiceType::NodePort {
                    let mut used: BTreeSet<u16> = self
                        .used(ALLOC_NODE_PORT, batch)
                        .await?
                        .iter()
                        .filter_map(|s| s.parse().ok())
                        .collect();
                    // Ports this service already holds stay its own.
                    if let Some(Object::Service(prev)) = previous {
                        for p in &prev.spec.ports {
                            if let Some(n) = p.node_port {
                                used.remove(&n);
                            }
                        }
                    }
                    let mut alloc = NodePortAllocator::new(
                        self.addresses.node_ports.clone(),
                        used.iter().copied(),
                    );
                    let name = svc.metadata.name.clone();
                    for (i, port) in svc.spec.ports.iter_mut().enumerate() {
                        match port.node_port {
                            Some(n) => alloc.reserve(n).map_err(|e| {
                                ApiError::invalid(
                                    Kind::Service,
                                    &name,
                                    vec![skiff_api::FieldError::new(
                                        format!("spec.ports[{i}].nodePort"),
                                        n,
                                        e.to_string(),
                                    )],
                                )
                            })?,
                            None => {
                                port.node_port = Some(alloc.allocate().map_err(|e| {
                                    ApiError::invalid(
                                        Kind::Service,
                                        &name,
                                        vec![skiff_api::FieldError::new(
                                            format!("spec.ports[{i}].nodePort"),
                                            "nothing",
                                            e.to_string(),
                                        )],
                                    )
                                })?)
                            }
                        }
                    }
                }
            }
            Object::Node(node) if node.spec.pod_cidr.is_none() => {
                let used = self.used(ALLOC_POD_CIDR, batch).await?;
                let mut alloc = PodCidrAllocator::new(
                    self.addresses.cluster_pod_cidr,
                    self.addresses.node_pod_prefix,
                    used.iter().filter_map(|s| s.replace('_', "/").parse().ok()),
                );
                let cidr = alloc.allocate().map_err(|e| {
                    ApiError::invalid(
                        Kind::Node,
                        &node.metadata.name,
                        vec![skiff_api::FieldError::new(
                            "spec.podCIDR",
                            "nothing",
                            e.to_string(),
                        )],
                    )
                })?;
                node.spec.pod_cidr = Some(cidr.to_string());
            }
            _ => {}
        }
        let now_held: BTreeSet<String> = allocation_keys(object).into_iter().collect();
        let before: BTreeSet<String> = previous
            .map(allocation_keys)
            .unwrap_or_default()
            .into_iter()
            .collect();
        for key in now_held.difference(&before) {
            if !batch.taken.insert(key.clone()) {
                return Err(ApiError::Conflict(format!(
                    "{key} is asked for twice in one apply"
                )));
            }
            batch
                .preconditions
                .push(Precondition::Absent { key: key.clone() });
            batch.writes.push(Write::Put {
                key: key.clone(),
                value: owner.clone().into_bytes(),
            });
        }
        for key in before.difference(&now_held) {
            batch.writes.push(Write::Delete { key: key.clone() });
        }
        // A user-chosen address someone else holds fails the Absent precondition: say which.
        for key in now_held.difference(&before) {
            if let Some(kv) = self.store.get(key).await? {
                let holder = String::from_utf8_lossy(&kv.value).to_string();
                return Err(ApiError::invalid(
                    object.kind(),
                    &object.metadata().name,
                    vec![skiff_api::FieldError::new(
                        allocation_field(key),
                        key.rsplit('/').next().unwrap_or("").replace('_', "/"),
                        format!("an address not already held (held by {holder})"),
                    )],
                ));
            }
        }
        Ok(())
    }

    /// Allocation values already taken under `prefix`, in the store or earlier in the batch.
    async fn used(&self, prefix: &str, batch: &Batch) -> Result<BTreeSet<String>, ApiError> {
        let listing = self.store.list(prefix).await?;
        Ok(listing
            .items
            .iter()
            .map(|kv| kv.key.as_str())
            .chain(batch.taken.iter().map(String::as_str))
            .filter_map(|k| k.strip_prefix(prefix))
            .map(str::to_string)
            .collect())
    }
}

fn allocation_field(key: &str) -> &'static str {
    if key.starts_with(ALLOC_CLUSTER_IP) {
        "spec.clusterIP"
    } else if key.starts_with(ALLOC_NODE_PORT) {
        "spec.ports[].nodePort"
    } else {
        "spec.podCIDR"
    }
}

/// The allocation keys an object holds.
fn allocation_keys(object: &Object) -> Vec<String> {
    match object {
        Object::Service(svc) => {
            let mut keys = Vec::new();
            if let Some(ip) = svc.cluster_ip() {
                keys.push(format!("{ALLOC_CLUSTER_IP}{ip}"));
            }
            if svc.type_() == ServiceType::NodePort {
                keys.extend(
                    svc.spec
                        .ports
                        .iter()
                        .filter_map(|p| p.node_port)
                        .map(|n| format!("{ALLOC_NODE_PORT}{n}")),
                );
            }
            keys
        }
        Object::Node(node) => node
            .spec
            .pod_cidr
            .iter()
            .map(|c| format!("{ALLOC_POD_CIDR}{}", c.replace('/', "_")))
            .collect(),
        _ => Vec::new(),
    }
}

/// A spec update: the new metadata and spec over the stored object's server-set fields and
/// status. Immutable fields keep their values or are refused when changed.
fn merge_main(current: &Object, new: Object) -> Result<Object, ApiError> {
    let kind = current.kind();
    let mut merged = new;
    let cur = current.metadata();
    {
        let meta = merged.metadata_mut();
        meta.uid = cur.uid.clone();
        meta.creation_timestamp = cur.creation_timestamp.clone();
        meta.deletion_timestamp = cur.deletion_timestamp.clone();
        meta.resource_version = None;
        meta.generation = cur.generation;
    }
    let immutable = |path: &str, was: String| {
        ApiError::invalid(
            kind,
            &cur.name,
            vec![skiff_api::FieldError::new(
                path,
                "a change",
                format!("{was} (the field is immutable)"),
            )],
        )
    };
    match (&mut merged, current) {
        (Object::Pod(new), Object::Pod(cur)) => {
            new.status = cur.status.clone();
            // The scheduler binds a pod once; a user cannot move it.
            if cur.spec.node_name.is_some() && new.spec.node_name != cur.spec.node_name {
                if new.spec.node_name.is_none() {
                    new.spec.node_name = cur.spec.node_name.clone();
                } else {
                    return Err(immutable(
                        "spec.nodeName",
                        format!("{:?}", cur.spec.node_name.as_deref().unwrap_or("")),
                    ));
                }
            }
            let mut a = new.spec.clone();
            let mut b = cur.spec.clone();
            a.node_name = None;
            b.node_name = None;
            if a != b {
                return Err(immutable(
                    "spec",
                    "the pod's containers as created; delete and recreate the pod, or let a Deployment roll it".into(),
                ));
            }
        }
        (Object::Service(new), Object::Service(cur)) => {
            new.status = cur.status.clone();
            match (&new.spec.cluster_ip, &cur.spec.cluster_ip) {
                (None, was) => new.spec.cluster_ip = was.clone(),
                (Some(a), Some(b)) if a != b => {
                    return Err(immutable("spec.clusterIP", b.clone()));
                }
                _ => {}
            }
            // NodePorts left out keep the ones allocated before (kubectl apply does the same).
            for port in new.spec.ports.iter_mut() {
                if port.node_port.is_none() && new.spec.type_ == cur.spec.type_ {
                    port.node_port = cur
                        .spec
                        .ports
                        .iter()
                        .find(|p| p.port == port.port && p.protocol == port.protocol)
                        .and_then(|p| p.node_port);
                }
            }
            if new.spec.cluster_ip.as_deref() == Some(HEADLESS)
                && cur.spec.cluster_ip.as_deref() != Some(HEADLESS)
            {
                return Err(immutable(
                    "spec.clusterIP",
                    cur.spec.cluster_ip.clone().unwrap_or_default(),
                ));
            }
        }
        (Object::Node(new), Object::Node(cur)) => {
            new.status = cur.status.clone();
            if new.spec.pod_cidr.is_none() {
                new.spec.pod_cidr = cur.spec.pod_cidr.clone();
            } else if new.spec.pod_cidr != cur.spec.pod_cidr && cur.spec.pod_cidr.is_some() {
                return Err(immutable(
                    "spec.podCIDR",
                    cur.spec.pod_cidr.clone().unwrap_or_default(),
                ));
            }
        }
        (Object::Deployment(new), Object::Deployment(cur)) => {
            new.status = cur.status.clone();
            // The rollout revision is the deployment controller's; a re-applied manifest
            // without it is not a change.
            if let Some(r) = cur.metadata.annotations.get(REVISION_ANNOTATION) {
                new.metadata
                    .annotations
                    .entry(REVISION_ANNOTATION.into())
                    .or_insert_with(|| r.clone());
            }
            if new.spec != cur.spec {
                new.metadata.generation = Some(cur.metadata.generation.unwrap_or(1) + 1);
            }
        }
        (Object::ReplicaSet(new), Object::ReplicaSet(cur)) => {
            new.status = cur.status.clone();
            if new.spec != cur.spec {
                new.metadata.generation = Some(cur.metadata.generation.unwrap_or(1) + 1);
            }
        }
        (Object::HorizontalPodAutoscaler(new), Object::HorizontalPodAutoscaler(cur)) => {
            new.status = cur.status.clone();
        }
        _ => {}
    }
    Ok(merged)
}

/// A status update: the stored object with only its status replaced.
fn merge_status(current: &Object, new: Object) -> Object {
    let mut merged = current.clone();
    merged.metadata_mut().resource_version = None;
    match (&mut merged, new) {
        (Object::Pod(m), Object::Pod(n)) => m.status = n.status,
        (Object::Node(m), Object::Node(n)) => m.status = n.status,
        (Object::Deployment(m), Object::Deployment(n)) => m.status = n.status,
        (Object::ReplicaSet(m), Object::ReplicaSet(n)) => m.status = n.status,
        (Object::Service(m), Object::Service(n)) => m.status = n.status,
        (Object::HorizontalPodAutoscaler(m), Object::HorizontalPodAutoscaler(n)) => {
            m.status = n.status
        }
        _ => {}
    }
    merged
}
