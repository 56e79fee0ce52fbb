//! `skiff describe`: one object for a human, with what explains its state (conditions and
//! their messages, owners, the objects it owns or serves).

use std::time::SystemTime;

use skiff_api::{
    apps::{PodTemplateSpec, ReplicaSet, StrategyType, DEFAULT_MAX_SURGE, DEFAULT_MAX_UNAVAILABLE},
    core::{Container, ContainerStatus, Probe},
    meta::ObjectMeta,
    network_policy::{NetworkPolicyPeer, NetworkPolicyPort, PolicyType},
    quantity::ResourceList,
    service::ServiceType,
    Condition, Deployment, EndpointSlice, HorizontalPodAutoscaler, IntOrString, Kind, Labels,
    Namespace, NetworkPolicy, Node, Object, Pod, PodPhase, Service,
};

use crate::{
    cluster::{Ctx, Reported},
    get::{first_few, hpa_targets, node_status, pod_status, service_selector},
    kinds::{labels_text, selector_text, targets},
    table::{age, Table},
};

#[derive(clap::Args)]
#[command(
    long_about = "Show one object in detail, with what explains its state: \
    conditions with their reasons and messages (why a pod is not scheduled), its containers, \
    node and owner; for a Deployment its ReplicaSets, for a Service its endpoints, for a Node \
    its pods and what they reserve.\n\n\
    Examples:\n  \
    skiff describe pod web-7d9f-x2k4\n  \
    skiff describe deployment web -n shop\n  \
    skiff describe svc/web node/n1"
)]
pub struct DescribeArgs {
    /// KIND NAME... or KIND/NAME...
    #[arg(required = true, value_name = "KIND NAME")]
    targets: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: DescribeArgs) -> anyhow::Result<()> {
    let mut failed = false;
    let mut first = true;
    for (kind, names) in targets(&args.targets)? {
        if names.is_empty() {
            anyhow::bail!(
                "which {}? Give a name: `skiff describe {} NAME`",
                kind.plural(),
                kind.plural()
            );
        }
        for name in names {
            let text = match describe(ctx, kind, &name).await {
                Ok(text) => text,
                Err(e) => {
                    ctx.report(&e);
                    failed = true;
                    continue;
                }
            };
            if !first {
                println!();
            }
            first = false;
            print!("{text}");
        }
    }
    if failed {
        return Err(Reported.into());
    }
    Ok(())
}

async fn describe(ctx: &Ctx, kind: Kind, name: &str) -> anyhow::Result<String> {
    let object = ctx.client.get(kind, &ctx.namespace, name).await?;
    let now = SystemTime::now();
    let mut text = Text::default();
    match &object {
        Object::Pod(p) => pod(&mut text, p, now),
        Object::Deployment(d) => {
            let sets = owned(ctx, Kind::ReplicaSet, d.metadata.uid.as_deref()).await?;
            deployment(&mut text, d, &sets, now)
        }
        Object::ReplicaSet(r) => {
            let pods = owned(ctx, Kind::Pod, r.metadata.uid.as_deref()).await?;
            replica_set(&mut text, r, &pods, now)
        }
        Object::Service(s) => {
            let (slices, _) = ctx
                .client
                .list(
                    Kind::EndpointSlice,
                    Some(&ctx.namespace),
                    Some(&service_selector(&s.metadata.name)),
                )
                .await?;
            service(&mut text, s, &slices, now)
        }
        Object::Node(n) => {
            let (pods, _) = ctx.client.list(Kind::Pod, None, None).await?;
            node(&mut text, n, &pods, now)
        }
        Object::Namespace(n) => namespace(&mut text, n, now),
        Object::NetworkPolicy(p) => network_policy(&mut text, p, now),
        Object::HorizontalPodAutoscaler(h) => hpa(&mut text, h, now),
        Object::EndpointSlice(e) => endpoint_slice(&mut text, e, now),
    }
    Ok(text.0)
}

/// The objects of `kind` in the namespace that `owner` (a uid) owns.
async fn owned(ctx: &Ctx, kind: Kind, owner: Option<&str>) -> anyhow::Result<Vec<Object>> {
    let (objects, _) = ctx.client.list(kind, Some(&ctx.namespace), None).await?;
    Ok(objects
        .into_iter()
        .filter(|o| {
            o.metadata()
                .owner_references
                .iter()
                .any(|r| Some(r.uid.as_str()) == owner)
        })
        .collect())
}

/// Text in kubectl's describe layout: aligned `Key:  value` blocks, indented sections.
#[derive(Default)]
struct Text(String);

impl Text {
    /// Aligned `Key:  value` lines; a value of several lines continues under its first.
    fn fields(&mut self, indent: usize, fields: &[(&str, String)]) {
        let width = fields.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0) + 2;
        let pad = " ".repeat(indent);
        for (key, value) in fields {
            let mut lines = value.lines();
            let first = format!(
                "{pad}{:<width$}{}",
                format!("{key}:"),
                lines.next().unwrap_or("")
            );
            self.0.push_str(first.trim_end());
            self.0.push('\n');
            for more in lines {
                self.0
                    .push_str(&format!("{pad}{}{more}\n", " ".repeat(width)));
            }
        }
    }

    fn line(&mut self, indent: usize, text: &str) {
        self.0.push_str(&format!("{}{text}\n", " ".repeat(indent)));
    }

    fn table(&mut self, indent: usize, table: &Table) {
        for line in table.render().lines() {
            self.line(indent, line);
        }
    }

    fn conditions(&mut self, conditions: &[Condition]) {
        if conditions.is_empty() {
            self.fields(0, &[("Conditions", "<none>".into())]);
            return;
        }
        self.line(0, "Conditions:");
        let mut table = Table::new(&["Type", "Status", "Reason", "Message"]);
        for c in conditions {
            table.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            ]);
        }
        self.table(2, &table);
    }
}

/// Labels or annotations one per line, `<none>` when there are none.
fn pairs(map: &Labels) -> String {
    if map.is_empty() {
        return "<none>".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Name, namespace, age, labels, annotations and controller: what every object has.
fn common(meta: &ObjectMeta, namespaced: bool, now: SystemTime) -> Vec<(&'static str, String)> {
    let mut fields = vec![("Name", meta.name.clone())];
    if namespaced {
        fields.push(("Namespace", meta.namespace().to_string()));
    }
    fields.push((
        "CreationTimestamp",
        match &meta.creation_timestamp {
            Some(t) => format!("{t} ({} ago)", age(Some(t), now)),
            None => "<unknown>".into(),
        },
    ));
    fields.push(("Labels", pairs(&meta.labels)));
    fields.push(("Annotations", pairs(&meta.annotations)));
    if let Some(owner) = meta.controller() {
        fields.push(("Controlled By", format!("{}/{}", owner.kind, owner.name)));
    }
    if let Some(t) = &meta.deletion_timestamp {
        fields.push(("Terminating Since", t.clone()));
    }
    fields
}

fn resources(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn port_text(port: &IntOrString) -> String {
    match port {
        IntOrString::Int(n) => format!(":{n}"),
        IntOrString::String(name) => format!(":{name}"),
    }
}

fn probe(p: &Probe) -> String {
    let action = if let Some(h) = &p.http_get {
        format!(
            "http-get {}{}",
            port_text(&h.port),
            h.path.as_deref().unwrap_or("/")
        )
    } else if let Some(t) = &p.tcp_socket {
        format!("tcp-socket {}", port_text(&t.port))
    } else if let Some(e) = &p.exec {
        format!("exec [{}]", e.command.join(" "))
    } else {
        "<no handler>".into()
    };
    format!(
        "{action} delay={}s timeout={}s period={}s #success={} #failure={}",
        p.initial_delay_seconds.unwrap_or(0),
        p.timeout_seconds.unwrap_or(1),
        p.period_seconds.unwrap_or(10),
        p.success_threshold.unwrap_or(1),
        p.failure_threshold.unwrap_or(3)
    )
}

/// Each container's settings and, for a pod, its state.
fn containers(text: &mut Text, indent: usize, list: &[Container], statuses: &[ContainerStatus]) {
    for c in list {
        text.line(indent, &format!("{}:", c.name));
        let mut fields = vec![("Image", c.image.clone().unwrap_or("<none>".into()))];
        if !c.command.is_empty() {
            fields.push(("Command", c.command.join(" ")));
        }
        if !c.args.is_empty() {
            fields.push(("Args", c.args.join(" ")));
        }
        let ports: Vec<String> = c
            .ports
            .iter()
            .map(|p| {
                let base = format!(
                    "{}/{}",
                    p.container_port,
                    p.protocol.name().to_ascii_uppercase()
                );
                match &p.name {
                    Some(name) => format!("{base} ({name})"),
                    None => base,
                }
            })
            .collect();
        fields.push(("Ports", ports.join(", ")));
        if !c.resources.requests.is_empty() {
            fields.push(("Requests", resources(&c.resources.requests)));
        }
        if !c.resources.limits.is_empty() {
            fields.push(("Limits", resources(&c.resources.limits)));
        }
        if let Some(p) = &c.liveness_probe {
            fields.push(("Liveness", probe(p)));
        }
        if let Some(p) = &c.readiness_probe {
            fields.push(("Readiness", probe(p)));
        }
        let env: Vec<String> = c
            .env
            .iter()
            .map(|e| format!("{}={}", e.name, e.value))
            .collect();
        fields.push((
            "Environment",
            if env.is_empty() {
                "<none>".into()
            } else {
                env.join("\n")
            },
        ));
        if let Some(status) = statuses.iter().find(|s| s.name == c.name) {
            if let Some(state) = status.state.as_ref().and_then(|s| s.as_object()) {
                let described: Vec<String> = state
                    .iter()
                    .map(
                        |(name, detail)| match detail.get("reason").and_then(|r| r.as_str()) {
                            Some(reason) => format!("{name} ({reason})"),
                            None => name.clone(),
                        },
                    )
                    .collect();
                fields.push(("State", described.join(", ")));
            }
            fields.push(("Ready", status.ready.to_string()));
            fields.push(("Restart Count", status.restart_count.to_string()));
        }
        text.fields(indent + 2, &fields);
    }
}

fn template(text: &mut Text, t: &PodTemplateSpec) {
    text.line(0, "Pod Template:");
    text.fields(
        2,
        &[
            ("Labels", pairs(&t.metadata.labels)),
            ("Annotations", pairs(&t.metadata.annotations)),
        ],
    );
    text.line(2, "Containers:");
    containers(text, 3, &t.spec.containers, &[]);
}

fn pod(text: &mut Text, p: &Pod, now: SystemTime) {
    let status = p.status.clone().unwrap_or_default();
    let mut fields = common(&p.metadata, true, now);
    fields.push((
        "Node",
        match (&p.spec.node_name, status.host_ip) {
            (Some(node), Some(ip)) => format!("{node}/{ip}"),
            (Some(node), None) => node.clone(),
            (None, _) => "<none>".into(),
        },
    ));
    if let Some(start) = &status.start_time {
        fields.push(("Start Time", start.clone()));
    }
    fields.push(("Status", pod_status(p)));
    if let Some(reason) = &status.reason {
        fields.push(("Reason", reason.clone()));
    }
    if let Some(message) = &status.message {
        fields.push(("Message", message.clone()));
    }
    fields.push(("IP", p.ip().map_or("<none>".into(), |ip| ip.to_string())));
    text.fields(0, &fields);
    text.line(0, "Containers:");
    containers(text, 2, &p.spec.containers, &status.container_statuses);
    text.conditions(&status.conditions);
    let tolerations: Vec<String> = p
        .spec
        .tolerations
        .iter()
        .map(|t| {
            let mut s = t.key.clone().unwrap_or_default();
            if let Some(v) = &t.value {
                s.push_str(&format!("={v}"));
            }
            if let Some(e) = t.effect {
                s.push_str(&format!(":{e:?}"));
            }
            if let Some(secs) = t.toleration_seconds {
                s.push_str(&format!(" for {secs}s"));
            }
            if s.is_empty() {
                s = "(everything)".into();
            }
            s
        })
        .collect();
    text.fields(
        0,
        &[
            ("Node-Selectors", labels_text(&p.spec.node_selector)),
            (
                "Tolerations",
                if tolerations.is_empty() {
                    "<none>".into()
                } else {
                    tolerations.join("\n")
                },
            ),
        ],
    );
}

fn deployment(text: &mut Text, d: &Deployment, sets: &[Object], now: SystemTime) {
    let status = d.status.clone().unwrap_or_default();
    let mut fields = common(&d.metadata, true, now);
    fields.push(("Selector", selector_text(&d.spec.selector)));
    fields.push((
        "Replicas",
        format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            d.replicas(),
            status.updated_replicas,
            status.replicas,
            status.available_replicas,
            status.unavailable_replicas
        ),
    ));
    let strategy = d.strategy();
    fields.push(("StrategyType", format!("{strategy:?}")));
    fields.push((
        "MinReadySeconds",
        d.spec.min_ready_seconds.unwrap_or(0).to_string(),
    ));
    if strategy == StrategyType::RollingUpdate {
        let rolling = d
            .spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.clone())
            .unwrap_or_default();
        let or_default = |v: Option<IntOrString>, default: &str| {
            v.map_or(default.to_string(), |v| v.to_string())
        };
        fields.push((
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                or_default(rolling.max_unavailable, DEFAULT_MAX_UNAVAILABLE),
                or_default(rolling.max_surge, DEFAULT_MAX_SURGE)
            ),
        ));
    }
    if d.spec.paused == Some(true) {
        fields.push(("Paused", "true".into()));
    }
    text.fields(0, &fields);
    template(text, &d.spec.template);
    text.conditions(&status.conditions);
    let mut sets: Vec<&ReplicaSet> = sets
        .iter()
        .filter_map(|o| match o {
            Object::ReplicaSet(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
    sets.sort_by_key(|r| std::cmp::Reverse(r.revision()));
    if sets.is_empty() {
        text.fields(0, &[("ReplicaSets", "<none>".into())]);
        return;
    }
    text.line(0, "ReplicaSets:");
    let mut table = Table::new(&["NAME", "REVISION", "DESIRED", "CURRENT", "READY", "AGE"]);
    for r in sets {
        let s = r.status.clone().unwrap_or_default();
        table.push(vec![
            r.metadata.name.clone(),
            r.revision().to_string(),
            r.spec.replicas.to_string(),
            s.replicas.to_string(),
            s.ready_replicas.to_string(),
            age(r.metadata.creation_timestamp.as_deref(), now),
        ]);
    }
    text.table(2, &table);
}

fn replica_set(text: &mut Text, r: &ReplicaSet, pods: &[Object], now: SystemTime) {
    let status = r.status.clone().unwrap_or_default();
    let count = |phase: PodPhase| {
        pods.iter()
            .filter(|o| matches!(o, Object::Pod(p) if p.phase() == phase))
            .count()
    };
    let mut fields = common(&r.metadata, true, now);
    fields.push(("Selector", selector_text(&r.spec.selector)));
    fields.push((
        "Replicas",
        format!("{} current / {} desired", status.replicas, r.spec.replicas),
    ));
    fields.push((
        "Pods Status",
        format!(
            "{} Running / {} Waiting / {} Succeeded / {} Failed",
            count(PodPhase::Running),
            count(PodPhase::Pending),
            count(PodPhase::Succeeded),
            count(PodPhase::Failed)
        ),
    ));
    text.fields(0, &fields);
    template(text, &r.spec.template);
}

fn service(text: &mut Text, s: &Service, slices: &[Object], now: SystemTime) {
    let mut fields = common(&s.metadata, true, now);
    fields.push(("Selector", labels_text(&s.spec.selector)));
    fields.push(("Type", format!("{:?}", s.type_())));
    fields.push(("IP", s.spec.cluster_ip.clone().unwrap_or("<none>".into())));
    let slices: Vec<&EndpointSlice> = slices
        .iter()
        .filter_map(|o| match o {
            Object::EndpointSlice(e) => Some(e.as_ref()),
            _ => None,
        })
        .collect();
    for p in &s.spec.ports {
        let protocol = p.protocol.name().to_ascii_uppercase();
        let name = p.name.clone().unwrap_or("<unset>".into());
        fields.push(("Port", format!("{name}  {}/{protocol}", p.port)));
        let target = p
            .target_port
            .clone()
            .unwrap_or(IntOrString::Int(p.port.into()));
        fields.push(("TargetPort", format!("{target}/{protocol}")));
        if let Some(node_port) = p.node_port {
            fields.push(("NodePort", format!("{name}  {node_port}/{protocol}")));
        }
        // An endpoint's port is the one of its slice that has this service port's name.
        let endpoints: Vec<String> = slices
            .iter()
            .flat_map(|slice| {
                let port = slice
                    .ports
                    .iter()
                    .find(|sp| sp.name == p.name && sp.protocol == p.protocol)
                    .map(|sp| sp.port);
                slice
                    .endpoints
                    .iter()
                    .filter(|e| e.conditions.ready)
                    .flat_map(|e| &e.addresses)
                    .filter_map(move |a| port.map(|port| format!("{a}:{port}")))
            })
            .collect();
        fields.push((
            "Endpoints",
            if endpoints.is_empty() {
                "<none>".into()
            } else {
                first_few(&endpoints)
            },
        ));
    }
    fields.push((
        "Session Affinity",
        format!("{:?}", s.spec.session_affinity.unwrap_or_default())
            .replace("ClientIp", "ClientIP"),
    ));
    if s.type_() == ServiceType::NodePort {
        fields.push((
            "External Traffic Policy",
            format!("{:?}", s.spec.external_traffic_policy.unwrap_or_default()),
        ));
    }
    text.fields(0, &fields);
}

fn node(text: &mut Text, n: &Node, pods: &[Object], now: SystemTime) {
    let status = n.status.clone().unwrap_or_default();
    let mut fields = common(&n.metadata, false, now);
    let taints: Vec<String> = n
        .spec
        .taints
        .iter()
        .map(|t| match &t.value {
            Some(v) => format!("{}={v}:{:?}", t.key, t.effect),
            None => format!("{}:{:?}", t.key, t.effect),
        })
        .collect();
    fields.push((
        "Taints",
        if taints.is_empty() {
            "<none>".into()
        } else {
            taints.join("\n")
        },
    ));
    fields.push((
        "Unschedulable",
        n.spec.unschedulable.unwrap_or(false).to_string(),
    ));
    fields.push(("Status", node_status(n)));
    text.fields(0, &fields);
    if status.conditions.is_empty() {
        text.fields(0, &[("Conditions", "<none>".into())]);
    } else {
        text.line(0, "Conditions:");
        let mut table = Table::new(&["Type", "Status", "LastHeartbeatTime", "Reason", "Message"]);
        for c in &status.conditions {
            table.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.last_heartbeat_time.clone().unwrap_or_default(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            ]);
        }
        text.table(2, &table);
    }
    for (title, list) in [
        ("Addresses", None),
        ("Capacity", Some(&status.capacity)),
        ("Allocatable", Some(&status.allocatable)),
    ] {
        let entries: Vec<(&str, String)> = match list {
            None => status
                .addresses
                .iter()
                .map(|a| (a.type_.as_str(), a.address.clone()))
                .collect(),
            Some(list) => list
                .iter()
                .map(|(k, v)| (k.as_str(), v.to_string()))
                .collect(),
        };
        if entries.is_empty() {
            text.fields(0, &[(title, "<none>".into())]);
        } else {
            text.line(0, &format!("{title}:"));
            text.fields(2, &entries);
        }
    }
    text.fields(
        0,
        &[(
            "PodCIDR",
            n.spec.pod_cidr.clone().unwrap_or("<none>".into()),
        )],
    );
    let on_node: Vec<&Pod> = pods
        .iter()
        .filter_map(|o| match o {
            Object::Pod(p) => Some(p.as_ref()),
            _ => None,
        })
        .filter(|p| p.spec.node_name.as_deref() == Some(n.metadata.name.as_str()))
        .filter(|p| !p.is_finished())
        .collect();
    let (cpu, memory) = n.allocatable();
    let share = |used: u64, of: u64| {
        (used * 100)
            .checked_div(of)
            .map_or(String::new(), |p| format!(" ({p}%)"))
    };
    text.line(
        0,
        &format!("Non-terminated Pods:  ({} in total)", on_node.len()),
    );
    if !on_node.is_empty() {
        let mut table = Table::new(&[
            "Namespace",
            "Name",
            "CPU Requests",
            "Memory Requests",
            "Age",
        ]);
        for p in &on_node {
            table.push(vec![
                p.metadata.namespace().to_string(),
                p.metadata.name.clone(),
                format!(
                    "{}m{}",
                    p.reserved_millicores(),
                    share(p.reserved_millicores(), cpu)
                ),
                format!(
                    "{}Mi{}",
                    p.reserved_bytes() >> 20,
                    share(p.reserved_bytes(), memory)
                ),
                age(p.metadata.creation_timestamp.as_deref(), now),
            ]);
        }
        text.table(2, &table);
    }
    let used_cpu: u64 = on_node.iter().map(|p| p.reserved_millicores()).sum();
    let used_memory: u64 = on_node.iter().map(|p| p.reserved_bytes()).sum();
    text.line(0, "Allocated resources:");
    let mut table = Table::new(&["Resource", "Requests"]);
    table.push(vec![
        "cpu".into(),
        format!("{used_cpu}m{}", share(used_cpu, cpu)),
    ]);
    table.push(vec![
        "memory".into(),
        format!("{}Mi{}", used_memory >> 20, share(used_memory, memory)),
    ]);
    text.table(2, &table);
}

fn namespace(text: &mut Text, n: &Namespace, now: SystemTime) {
    let mut fields = common(&n.metadata, false, now);
    fields.push((
        "Status",
        if n.metadata.deletion_timestamp.is_some() {
            "Terminating".into()
        } else {
            "Active".into()
        },
    ));
    text.fields(0, &fields);
}

fn policy_ports(ports: &[NetworkPolicyPort]) -> String {
    if ports.is_empty() {
        return "<any> (all ports)".into();
    }
    ports
        .iter()
        .map(|p| {
            let protocol = p.protocol().name().to_ascii_uppercase();
            match (&p.port, p.end_port) {
                (None, _) => format!("<any>/{protocol}"),
                (Some(port), Some(end)) => format!("{port}-{end}/{protocol}"),
                (Some(port), None) => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn peer(text: &mut Text, indent: usize, p: &NetworkPolicyPeer) {
    let mut fields = Vec::new();
    if let Some(s) = &p.namespace_selector {
        fields.push(("NamespaceSelector", selector_text(s)));
    }
    if let Some(s) = &p.pod_selector {
        fields.push(("PodSelector", selector_text(s)));
    }
    if let Some(b) = &p.ip_block {
        fields.push(("IPBlock", b.cidr.to_string()));
        if !b.except.is_empty() {
            let except: Vec<String> = b.except.iter().map(ToString::to_string).collect();
            fields.push(("Except", except.join(", ")));
        }
    }
    text.fields(indent, &fields);
}

fn network_policy(text: &mut Text, p: &NetworkPolicy, now: SystemTime) {
    text.fields(0, &common(&p.metadata, true, now));
    let spec = &p.spec;
    // Kubernetes' default: Ingress always, Egress when there are egress rules.
    let types = spec.policy_types.clone().unwrap_or_else(|| {
        let mut types = vec![PolicyType::Ingress];
        if !spec.egress.is_empty() {
            types.push(PolicyType::Egress);
        }
        types
    });
    text.line(0, "Spec:");
    text.fields(2, &[("PodSelector", selector_text(&spec.pod_selector))]);
    let rules = [
        (
            PolicyType::Ingress,
            "ingress",
            "From",
            spec.ingress
                .iter()
                .map(|r| (r.ports.as_slice(), r.from.as_slice()))
                .collect::<Vec<_>>(),
        ),
        (
            PolicyType::Egress,
            "egress",
            "To",
            spec.egress
                .iter()
                .map(|r| (r.ports.as_slice(), r.to.as_slice()))
                .collect(),
        ),
    ];
    for (policy_type, name, direction, rules) in rules {
        if !types.contains(&policy_type) {
            text.line(2, &format!("Not affecting {name} traffic"));
            continue;
        }
        text.line(2, &format!("Allowing {name} traffic:"));
        if rules.is_empty() {
            text.line(
                4,
                &format!("<none> (selected pods are isolated for {name})"),
            );
        }
        for (i, (ports, peers)) in rules.iter().enumerate() {
            if i > 0 {
                text.line(4, "----------");
            }
            text.fields(4, &[("Port(s)", policy_ports(ports))]);
            if peers.is_empty() {
                text.fields(4, &[(direction, "<any> (not restricted by peer)".into())]);
            }
            for p in *peers {
                text.line(4, &format!("{direction}:"));
                peer(text, 6, p);
            }
        }
    }
    let names: Vec<String> = types.iter().map(|t| format!("{t:?}")).collect();
    text.fields(2, &[("Policy Types", names.join(", "))]);
}

fn hpa(text: &mut Text, h: &HorizontalPodAutoscaler, now: SystemTime) {
    let status = h.status.clone().unwrap_or_default();
    let target = &h.spec.scale_target_ref;
    let mut fields = common(&h.metadata, true, now);
    fields.push(("Reference", format!("{}/{}", target.kind, target.name)));
    fields.push((
        "Metrics",
        format!(
            "{} (current/target: cpu as a percentage of the pods' requests)",
            hpa_targets(h)
        ),
    ));
    fields.push(("Min replicas", h.min_replicas().to_string()));
    fields.push(("Max replicas", h.spec.max_replicas.to_string()));
    fields.push((
        "Deployment pods",
        format!(
            "{} current / {} desired",
            status.current_replicas, status.desired_replicas
        ),
    ));
    if let Some(t) = &status.last_scale_time {
        fields.push(("Last scaled", t.clone()));
    }
    text.fields(0, &fields);
    text.conditions(&status.conditions);
}

fn endpoint_slice(text: &mut Text, e: &EndpointSlice, now: SystemTime) {
    let mut fields = common(&e.metadata, true, now);
    fields.push(("AddressType", e.address_type.clone()));
    if e.ports.is_empty() {
        fields.push(("Ports", "<unset>".into()));
    }
    if e.endpoints.is_empty() {
        fields.push(("Endpoints", "<none>".into()));
    }
    text.fields(0, &fields);
    if !e.ports.is_empty() {
        text.line(0, "Ports:");
        let mut ports = Table::new(&["Name", "Port", "Protocol"]);
        for p in &e.ports {
            ports.push(vec![
                p.name.clone().unwrap_or("<unset>".into()),
                p.port.to_string(),
                p.protocol.name().to_ascii_uppercase(),
            ]);
        }
        text.table(2, &ports);
    }
    if e.endpoints.is_empty() {
        return;
    }
    text.line(0, "Endpoints:");
    let mut endpoints = Table::new(&[
        "Addresses",
        "Ready",
        "Serving",
        "Terminating",
        "Node",
        "Target",
    ]);
    for ep in &e.endpoints {
        endpoints.push(vec![
            ep.addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            ep.conditions.ready.to_string(),
            ep.conditions.serving.to_string(),
            ep.conditions.terminating.to_string(),
            ep.node_name.clone().unwrap_or("<none>".into()),
            ep.target_ref
                .as_ref()
                .map_or("<none>".into(), |t| format!("{}/{}", t.kind, t.name)),
        ]);
    }
    text.table(2, &endpoints);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-11-22T10:05:00Z").unwrap()
    }

    #[test]
    fn an_unschedulable_pod_says_why() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop",
                "creationTimestamp": "2026-11-22T10:00:00Z", "labels": {"app": "web", "tier": "a"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d9", "uid": "u1", "controller": true}]},
            "spec": {"containers": [{"name": "web", "image": "nginx",
                "ports": [{"name": "http", "containerPort": 8080}],
                "resources": {"requests": {"cpu": "4"}}}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled",
                "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu."}]}
        }))
        .unwrap();
        let mut text = Text::default();
        pod(&mut text, &p, now());
        let text = text.0;
        for expected in [
            "Name:               web-1\n",
            "CreationTimestamp:  2026-11-22T10:00:00Z (5m ago)\n",
            "Labels:             app=web\n                    tier=a\n",
            "Controlled By:      ReplicaSet/web-7d9\n",
            "Node:               <none>\n",
            "Status:             Pending\n",
            "  web:\n    Image:        nginx\n    Ports:        8080/TCP (http)\n    Requests:     cpu: 4\n",
            "Conditions:\n  Type           Status   Reason          Message\n  PodScheduled   False    Unschedulable   0/3 nodes are available: 3 Insufficient cpu.\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
    }

    #[test]
    fn a_service_lists_its_ready_endpoints_per_port() {
        let s: Service = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}]}
        }))
        .unwrap();
        let slice = Object::from_json(
            Kind::EndpointSlice,
            serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-x", "namespace": "shop"},
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [
                    {"addresses": ["10.244.1.5"], "conditions": {"ready": true}},
                    {"addresses": ["10.244.2.9"], "conditions": {"ready": false}}
                ]
            }),
        )
        .unwrap();
        let mut text = Text::default();
        service(&mut text, &s, &[slice], now());
        let text = text.0;
        for expected in [
            "Type:                     NodePort\n",
            "IP:                       10.96.0.10\n",
            "Port:                     http  80/TCP\n",
            "TargetPort:               http/TCP\n",
            "NodePort:                 http  30080/TCP\n",
            "Endpoints:                10.244.1.5:8080\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
    }
}
