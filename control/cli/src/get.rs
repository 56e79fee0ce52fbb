//! `skiff get`: tables like kubectl's, or the objects as JSON/YAML in Kubernetes' shape, so
//! scripts written for kubectl (`jq '.items[].status.podIP'`) keep working.

use std::time::SystemTime;

use anyhow::bail;
use clap::ValueEnum;
use serde::Serialize;
use skiff_api::{
    apps::PodTemplateSpec, core::ContainerStatus, service::SERVICE_NAME_LABEL, Kind, Object,
};

use crate::{
    cluster::{Ctx, Reported},
    kinds::{labels_text, none_if_empty, resource, selector_text, targets},
    table::{age, Table},
};

#[derive(clap::Args)]
#[command(
    long_about = "Show objects: a table per kind, or the objects themselves.\n\n\
    KIND is a plural, singular or short name (pods, po, deployments, deploy, services, svc, \
    replicasets, rs, endpointslices, eps, networkpolicies, netpol, hpa, nodes, no, \
    namespaces, ns).\n\n\
    Examples:\n  \
    skiff get pods\n  \
    skiff get deploy web -o yaml\n  \
    skiff get pods -A -l app=web -o wide\n  \
    skiff get svc -n shop -o json | jq -r '.items[].spec.clusterIP'\n  \
    skiff get pods -w"
)]
pub struct GetArgs {
    /// KIND [NAME]... or KIND/NAME...
    #[arg(required = true, value_name = "KIND [NAME]")]
    targets: Vec<String>,
    /// Objects of every namespace (adds a NAMESPACE column).
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Only objects whose labels match: `app=web`, `tier!=db`, `env in (a,b)`, `canary`,
    /// `!canary`, comma-separated (all must hold).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub(crate) selector: Option<String>,
    /// A table (wide: more columns), the objects as yaml or json, or KIND/NAME lines.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    output: Option<Output>,
    /// After the list, print every change as it happens (Ctrl-C stops).
    #[arg(short = 'w', long)]
    watch: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

pub async fn run(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let groups = targets(&args.targets)?;
    let named = groups.iter().any(|(_, names)| !names.is_empty());
    if named && args.selector.is_some() {
        bail!("give names or a selector (-l), not both");
    }
    if named && args.all_namespaces {
        bail!("names are looked up in one namespace: drop -A and pass -n NAMESPACE");
    }
    if args.watch && groups.len() > 1 {
        bail!("--watch follows one kind at a time");
    }
    let output = args.output;
    let now = SystemTime::now();
    let mut failed = false;
    let mut all = Vec::new();
    let mut printed_table = false;
    for (kind, names) in &groups {
        let scope = (!args.all_namespaces).then_some(ctx.namespace.as_str());
        let (objects, revision) = if names.is_empty() {
            ctx.client
                .list(*kind, scope, args.selector.as_deref())
                .await?
        } else {
            let mut objects = Vec::new();
            for name in names {
                match ctx.client.get(*kind, &ctx.namespace, name).await {
                    Ok(object) => objects.push(object),
                    Err(e) => {
                        ctx.report(&e.into());
                        failed = true;
                    }
                }
            }
            // Watching from the newest write among them misses no later change.
            let newest = objects.iter().filter_map(|o| o.metadata().revision()).max();
            (objects, newest.unwrap_or(0).to_string())
        };
        let with_namespace = args.all_namespaces && kind.namespaced();
        let mut widths = Vec::new();
        match output {
            None | Some(Output::Wide) => {
                if objects.is_empty() {
                    if names.is_empty() {
                        eprintln!("{}", nothing_found(*kind, scope));
                    }
                } else {
                    if printed_table {
                        println!();
                    }
                    let table = table(*kind, &objects, output.is_some(), with_namespace, now);
                    print!("{}", table.render());
                    widths = table.widths();
                    printed_table = true;
                }
            }
            Some(Output::Name) => {
                for o in &objects {
                    println!("{}", name_of(o));
                }
            }
            // A watch prints objects one by one, as it will print their changes.
            Some(format @ (Output::Json | Output::Yaml)) if args.watch => {
                for o in &objects {
                    print!("{}", document(format, o));
                }
            }
            Some(Output::Json | Output::Yaml) => all.extend(objects),
        }
        if args.watch {
            return watch(ctx, *kind, scope, &args, names, &revision, widths).await;
        }
    }
    if let Some(format @ (Output::Json | Output::Yaml)) = output {
        // One name asked, one object shown (as kubectl): `get deploy web -o json | jq .spec`.
        let single = groups.len() == 1 && groups[0].1.len() == 1;
        match (single, all.as_slice()) {
            (true, [object]) => print!("{}", encode(format, object)),
            (true, []) => {}
            _ => print!("{}", encode(format, &ListOut::new(&all))),
        }
    }
    if failed {
        return Err(Reported.into());
    }
    Ok(())
}

fn nothing_found(kind: Kind, scope: Option<&str>) -> String {
    match scope {
        Some(ns) if kind.namespaced() => format!("No resources found in {ns} namespace."),
        _ => "No resources found".into(),
    }
}

/// A list in Kubernetes' shape, items in their fields' usual order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: serde_json::Value,
    items: &'a [Object],
}

impl<'a> ListOut<'a> {
    pub fn new(items: &'a [Object]) -> ListOut<'a> {
        ListOut {
            api_version: "v1",
            kind: "List",
            metadata: serde_json::json!({"resourceVersion": ""}),
            items,
        }
    }
}

pub fn encode(format: Output, value: &impl Serialize) -> String {
    match format {
        Output::Yaml => serde_yaml::to_string(value).expect("API objects serialize"),
        _ => serde_json::to_string_pretty(value).expect("API objects serialize") + "\n",
    }
}

/// One object of a stream: YAML documents are separated by `---`.
fn document(format: Output, object: &Object) -> String {
    match format {
        Output::Yaml => format!("---\n{}", encode(format, object)),
        _ => encode(format, object),
    }
}

/// Prints changes after `revision` until the server ends the stream or Ctrl-C. A table
/// continues in the columns printed so far (`widths`; none yet: the first row brings the
/// header).
async fn watch(
    ctx: &Ctx,
    kind: Kind,
    scope: Option<&str>,
    args: &GetArgs,
    names: &[String],
    revision: &str,
    mut widths: Vec<usize>,
) -> anyhow::Result<()> {
    let mut stream = ctx
        .client
        .watch(kind, scope, args.selector.as_deref(), Some(revision))
        .await?;
    let with_namespace = args.all_namespaces && kind.namespaced();
    while let Some(event) = stream.next().await? {
        let Ok(object) = Object::from_json(kind, event.object) else {
            continue;
        };
        if !names.is_empty() && !names.contains(&object.metadata().name) {
            continue;
        }
        let text = match args.output {
            None | Some(Output::Wide) => {
                let wide = args.output.is_some();
                let table = table(kind, &[object], wide, with_namespace, SystemTime::now());
                if widths.is_empty() {
                    widths = table.widths();
                    table.render()
                } else {
                    table.render_rows(&widths)
                }
            }
            Some(Output::Name) => format!("{}\n", name_of(&object)),
            Some(format) => document(format, &object),
        };
        print!("{text}");
    }
    Ok(())
}

/// The table of some objects of one kind.
pub fn table(
    kind: Kind,
    objects: &[Object],
    wide: bool,
    with_namespace: bool,
    now: SystemTime,
) -> Table {
    let mut header = columns(kind, wide);
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let mut table = Table::new(&header);
    for object in objects {
        let mut cells = row(object, wide, now);
        if with_namespace {
            cells.insert(0, object.metadata().namespace().to_string());
        }
        table.push(cells);
    }
    table
}

fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    let (mut columns, extra): (Vec<&str>, &[&str]) = match kind {
        Kind::Pod => (
            vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["IP", "NODE"],
        ),
        Kind::Node => (vec!["NAME", "STATUS", "AGE", "INTERNAL-IP"], &["POD-CIDR"]),
        Kind::Deployment => (
            vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::ReplicaSet => (
            vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::Service => (
            vec!["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"],
            &["SELECTOR"],
        ),
        Kind::EndpointSlice => (
            vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            &[],
        ),
        Kind::NetworkPolicy => (vec!["NAME", "POD-SELECTOR", "AGE"], &[]),
        Kind::HorizontalPodAutoscaler => (
            vec![
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE",
            ],
            &[],
        ),
        Kind::Namespace => (vec!["NAME", "STATUS", "AGE"], &[]),
    };
    if wide {
        columns.extend(extra);
    }
    columns
}

fn row(object: &Object, wide: bool, now: SystemTime) -> Vec<String> {
    let meta = object.metadata();
    let age = age(meta.creation_timestamp.as_deref(), now);
    let name = meta.name.clone();
    let (mut cells, extra) = match object {
        Object::Pod(p) => {
            let statuses = container_statuses(p);
            let ready = statuses.iter().filter(|c| c.ready).count();
            let restarts: u32 = statuses.iter().map(|c| c.restart_count).sum();
            (
                vec![
                    name,
                    format!("{ready}/{}", p.spec.containers.len()),
                    pod_status(p),
                    restarts.to_string(),
                    age,
                ],
                vec![
                    p.ip().map_or("<none>".into(), |ip| ip.to_string()),
                    p.spec.node_name.clone().unwrap_or("<none>".into()),
                ],
            )
        }
        Object::Node(n) => (
            vec![
                name,
                node_status(n),
                age,
                n.internal_ip().map_or("<none>".into(), |ip| ip.to_string()),
            ],
            vec![n.spec.pod_cidr.clone().unwrap_or("<none>".into())],
        ),
        Object::Deployment(d) => {
            let status = d.status.clone().unwrap_or_default();
            (
                vec![
                    name,
                    format!("{}/{}", status.ready_replicas, d.replicas()),
                    status.updated_replicas.to_string(),
                    status.available_replicas.to_string(),
                    age,
                ],
                template_columns(&d.spec.template, selector_text(&d.spec.selector)),
            )
        }
        Object::ReplicaSet(r) => {
            let status = r.status.clone().unwrap_or_default();
            (
                vec![
                    name,
                    r.spec.replicas.to_string(),
                    status.replicas.to_string(),
                    status.ready_replicas.to_string(),
                    age,
                ],
                template_columns(&r.spec.template, selector_text(&r.spec.selector)),
            )
        }
        Object::Service(s) => (
            vec![
                name,
                format!("{:?}", s.type_()),
                s.spec.cluster_ip.clone().unwrap_or("<none>".into()),
                service_ports(s),
                age,
            ],
            vec![labels_text(&s.spec.selector)],
        ),
        Object::EndpointSlice(e) => {
            let ports: Vec<String> = e.ports.iter().map(|p| p.port.to_string()).collect();
            let addresses: Vec<String> = e
                .endpoints
                .iter()
                .flat_map(|ep| &ep.addresses)
                .map(ToString::to_string)
                .collect();
            (
                vec![
                    name,
                    e.address_type.clone(),
                    unset_if_empty(ports.join(",")),
                    unset_if_empty(first_few(&addresses)),
                    age,
                ],
                vec![],
            )
        }
        Object::NetworkPolicy(p) => (vec![name, selector_text(&p.spec.pod_selector), age], vec![]),
        Object::HorizontalPodAutoscaler(h) => {
            let status = h.status.clone().unwrap_or_default();
            let target = &h.spec.scale_target_ref;
            (
                vec![
                    name,
                    format!("{}/{}", target.kind, target.name),
                    hpa_targets(h),
                    h.min_replicas().to_string(),
                    h.spec.max_replicas.to_string(),
                    status.current_replicas.to_string(),
                    age,
                ],
                vec![],
            )
        }
        Object::Namespace(_) => (
            vec![
                name,
                if meta.deletion_timestamp.is_some() {
                    "Terminating".into()
                } else {
                    "Active".into()
                },
                age,
            ],
            vec![],
        ),
    };
    if wide {
        cells.extend(extra);
    }
    cells
}

fn container_statuses(pod: &skiff_api::Pod) -> &[ContainerStatus] {
    pod.status
        .as_ref()
        .map_or(&[], |s| s.container_statuses.as_slice())
}

/// kubectl's STATUS: `Terminating` while a delete is under way, else the reason a container
/// waits or ended with (`CrashLoopBackOff`), else the pod's reason (`Unschedulable`,
/// `NodeLost`), else its phase.
pub fn pod_status(pod: &skiff_api::Pod) -> String {
    if pod.is_terminating() {
        return "Terminating".into();
    }
    let container_reason = container_statuses(pod).iter().find_map(|c| {
        let state = c.state.as_ref()?;
        ["waiting", "terminated"]
            .iter()
            .find_map(|s| state.get(s)?.get("reason")?.as_str())
            .filter(|r| !r.is_empty())
            .map(str::to_string)
    });
    let pod_reason = pod.status.as_ref().and_then(|s| s.reason.clone());
    container_reason
        .or(pod_reason)
        .unwrap_or_else(|| format!("{:?}", pod.phase()))
}

/// `Ready`, `NotReady` or `Unknown` (heartbeats stopped), plus `SchedulingDisabled`.
pub fn node_status(node: &skiff_api::Node) -> String {
    let mut status = match node.ready_condition().map(|c| c.status.as_str()) {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if node.spec.unschedulable == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// `80/TCP`, `80:30080/TCP` (with a node port), comma-separated.
pub fn service_ports(service: &skiff_api::Service) -> String {
    let ports: Vec<String> = service
        .spec
        .ports
        .iter()
        .map(|p| {
            let protocol = p.protocol.name().to_ascii_uppercase();
            match p.node_port {
                Some(node_port) => format!("{}:{node_port}/{protocol}", p.port),
                None => format!("{}/{protocol}", p.port),
            }
        })
        .collect();
    none_if_empty(ports.join(","))
}

/// `cpu: 40%/50%`: current utilisation over the target.
pub fn hpa_targets(hpa: &skiff_api::HorizontalPodAutoscaler) -> String {
    let Some(target) = hpa.cpu_target() else {
        return "<none>".into();
    };
    let current = hpa
        .status
        .as_ref()
        .and_then(|s| s.current_cpu_utilization_percentage)
        .map_or("<unknown>".into(), |c| format!("{c}%"));
    format!("cpu: {current}/{target}%")
}

fn template_columns(template: &PodTemplateSpec, selector: String) -> Vec<String> {
    let containers = &template.spec.containers;
    vec![
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        containers
            .iter()
            .map(|c| c.image.as_deref().unwrap_or("<none>"))
            .collect::<Vec<_>>()
            .join(","),
        selector,
    ]
}

/// The first three, then how many more (kubectl's ENDPOINTS column).
pub fn first_few(items: &[String]) -> String {
    let shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    match items.len() {
        0..=3 => shown,
        n => format!("{shown} + {} more...", n - 3),
    }
}

fn unset_if_empty(text: String) -> String {
    if text.is_empty() {
        "<unset>".into()
    } else {
        text
    }
}

/// The EndpointSlices of a service, by their service-name label.
pub fn service_selector(service: &str) -> String {
    format!("{SERVICE_NAME_LABEL}={service}")
}

/// `deployment.apps/web`, as `get -o name` prints an object.
pub fn name_of(object: &Object) -> String {
    format!("{}/{}", resource(object.kind()), object.metadata().name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn object(kind: Kind, value: serde_json::Value) -> Object {
        Object::from_json(kind, value).unwrap()
    }

    fn at(seconds_after_creation: u64) -> SystemTime {
        humantime::parse_rfc3339("2026-11-22T10:00:00Z").unwrap()
            + Duration::from_secs(seconds_after_creation)
    }

    fn meta(name: &str) -> serde_json::Value {
        serde_json::json!({
            "name": name, "namespace": "shop", "creationTimestamp": "2026-11-22T10:00:00Z"
        })
    }

    #[test]
    fn pods_show_readiness_status_and_placement() {
        let running = object(
            Kind::Pod,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": meta("web-1"),
                "spec": {"containers": [{"name": "web", "image": "nginx"}], "nodeName": "n1"},
                "status": {"phase": "Running", "podIP": "10.244.1.5",
                    "containerStatuses": [{"name": "web", "ready": true, "restartCount": 2}]}
            }),
        );
        let unschedulable = object(
            Kind::Pod,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": meta("web-2"),
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
                "status": {"phase": "Pending", "reason": "Unschedulable"}
            }),
        );
        let mut deleting = running.clone();
        deleting.metadata_mut().name = "web-3".into();
        deleting.metadata_mut().deletion_timestamp = Some("2026-11-22T10:01:00Z".into());
        let table = table(
            Kind::Pod,
            &[running, unschedulable, deleting],
            true,
            true,
            at(3 * 60 + 5),
        );
        assert_eq!(
            table.render(),
            "\
NAMESPACE   NAME    READY   STATUS          RESTARTS   AGE   IP           NODE
shop        web-1   1/1     Running         2          3m    10.244.1.5   n1
shop        web-2   0/1     Unschedulable   0          3m    <none>       <none>
shop        web-3   1/1     Terminating     2          3m    10.244.1.5   n1
"
        );
    }

    #[test]
    fn deployments_services_and_hpas_read_like_kubectl() {
        let deployment = object(
            Kind::Deployment,
            serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web"),
                "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
                "status": {"replicas": 4, "updatedReplicas": 3, "readyReplicas": 2,
                    "availableReplicas": 2}
            }),
        );
        assert_eq!(
            table(Kind::Deployment, &[deployment], false, false, at(7200)).render(),
            "NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    2/4     3            2           2h\n"
        );
        let service = object(
            Kind::Service,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Service", "metadata": meta("web"),
                "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "nodePort": 30080},
                              {"name": "dns", "port": 53, "protocol": "UDP"}]}
            }),
        );
        assert_eq!(
            table(Kind::Service, &[service], true, false, at(5)).render(),
            "NAME   TYPE       CLUSTER-IP   PORT(S)               AGE   SELECTOR\n\
             web    NodePort   10.96.0.10   80:30080/TCP,53/UDP   5s    app=web\n"
        );
        let hpa = object(
            Kind::HorizontalPodAutoscaler,
            serde_json::json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": meta("web"),
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                    "maxReplicas": 10,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50}}}]}
            }),
        );
        assert_eq!(
            table(
                Kind::HorizontalPodAutoscaler,
                &[hpa],
                false,
                false,
                at(4 * 86_400)
            )
            .render(),
            "NAME   REFERENCE        TARGETS              MINPODS   MAXPODS   REPLICAS   AGE\n\
             web    Deployment/web   cpu: <unknown>/50%   1         10        0          4d\n"
        );
    }

    #[test]
    fn endpoint_slices_show_a_few_addresses() {
        let slice = object(
            Kind::EndpointSlice,
            serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": meta("web-abc"), "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": (1..=5).map(|i| serde_json::json!({
                    "addresses": [format!("10.244.0.{i}")], "conditions": {"ready": true}
                })).collect::<Vec<_>>()
            }),
        );
        let text = table(Kind::EndpointSlice, &[slice], false, false, at(1)).render();
        assert!(
            text.ends_with(
                "IPv4          8080    10.244.0.1,10.244.0.2,10.244.0.3 + 2 more...   1s\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn several_objects_print_as_a_kubernetes_list() {
        let ns = object(
            Kind::Namespace,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        );
        let json: serde_json::Value =
            serde_json::from_str(&encode(Output::Json, &ListOut::new(&[ns.clone(), ns]))).unwrap();
        assert_eq!(json["kind"], "List");
        assert_eq!(json["apiVersion"], "v1");
        assert_eq!(json["items"][1]["metadata"]["name"], "shop");
        assert_eq!(
            name_of(
                &Object::from_json(
                    Kind::Deployment,
                    serde_json::json!({
                        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"selector": {}, "template": {"spec": {"containers": []}}}
                    })
                )
                .unwrap()
            ),
            "deployment.apps/web"
        );
    }
}
