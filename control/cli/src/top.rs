//! `skiff top`: the usage node daemons report with their heartbeats.

use anyhow::bail;
use clap::Subcommand;
use skiff_api::{Kind, Node, NodeMetrics, Object};

use crate::{cluster::Ctx, table::Table};

#[derive(Subcommand)]
pub enum TopCommand {
    /// CPU and memory use of each node, also as a share of what it can give pods.
    Nodes,
    /// CPU and memory use of each pod.
    Pods {
        /// Pods of every namespace (adds a NAMESPACE column).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
}

pub async fn run(ctx: &Ctx, command: TopCommand) -> anyhow::Result<()> {
    let samples = ctx.client.node_metrics().await?;
    if samples.is_empty() {
        bail!("no usage reported yet: node daemons report it with their heartbeat");
    }
    let table = match command {
        TopCommand::Nodes => {
            let (nodes, _) = ctx.client.list(Kind::Node, None, None).await?;
            let nodes: Vec<Node> = nodes
                .into_iter()
                .filter_map(|o| match o {
                    Object::Node(n) => Some(*n),
                    _ => None,
                })
                .collect();
            nodes_table(&samples, &nodes)
        }
        TopCommand::Pods { all_namespaces } => {
            let namespace = (!all_namespaces).then_some(ctx.namespace.as_str());
            let table = pods_table(&samples, namespace);
            if table.is_empty() {
                match namespace {
                    Some(ns) => eprintln!("No resources found in {ns} namespace."),
                    None => eprintln!("No resources found"),
                }
                return Ok(());
            }
            table
        }
    };
    print!("{}", table.render());
    Ok(())
}

fn cores(millicores: u64) -> String {
    format!("{millicores}m")
}

fn mebibytes(bytes: u64) -> String {
    format!("{}Mi", bytes / (1 << 20))
}

fn percent(used: u64, of: u64) -> String {
    (used * 100)
        .checked_div(of)
        .map_or("<unknown>".into(), |p| format!("{p}%"))
}

/// One row per node that reported, with its share of the node's allocatable resources.
pub fn nodes_table(samples: &[NodeMetrics], nodes: &[Node]) -> Table {
    let mut samples: Vec<&NodeMetrics> = samples.iter().collect();
    samples.sort_by(|a, b| a.node.cmp(&b.node));
    let mut table = Table::new(&["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]);
    for s in samples {
        let (cpu, memory) = nodes
            .iter()
            .find(|n| n.metadata.name == s.node)
            .map_or((0, 0), Node::allocatable);
        table.push(vec![
            s.node.clone(),
            cores(s.cpu_millicores),
            percent(s.cpu_millicores, cpu),
            mebibytes(s.memory_bytes),
            percent(s.memory_bytes, memory),
        ]);
    }
    table
}

/// One row per pod in `namespace` (all when `None`), sorted by namespace and name.
pub fn pods_table(samples: &[NodeMetrics], namespace: Option<&str>) -> Table {
    let mut pods: Vec<_> = samples
        .iter()
        .flat_map(|s| &s.pods)
        .filter(|p| namespace.is_none_or(|ns| p.namespace == ns))
        .collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut header = vec!["NAME", "CPU(cores)", "MEMORY(bytes)"];
    if namespace.is_none() {
        header.insert(0, "NAMESPACE");
    }
    let mut table = Table::new(&header);
    for p in pods {
        let mut row = vec![
            p.name.clone(),
            cores(p.cpu_millicores),
            mebibytes(p.memory_bytes),
        ];
        if namespace.is_none() {
            row.insert(0, p.namespace.clone());
        }
        table.push(row);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::PodMetrics;

    #[test]
    fn usage_is_shown_against_allocatable() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}
        }))
        .unwrap();
        let pod = |ns: &str, name: &str| PodMetrics {
            namespace: ns.into(),
            name: name.into(),
            cpu_millicores: 5,
            memory_bytes: 3 << 20,
        };
        let samples = [
            NodeMetrics {
                node: "n2".into(),
                cpu_millicores: 100,
                memory_bytes: 1 << 30,
                ..NodeMetrics::default()
            },
            NodeMetrics {
                node: "n1".into(),
                cpu_millicores: 500,
                memory_bytes: 1 << 30,
                pods: vec![pod("shop", "web-1"), pod("default", "db-0")],
                ..NodeMetrics::default()
            },
        ];
        assert_eq!(
            nodes_table(&samples, &[node]).render(),
            "NAME   CPU(cores)   CPU%        MEMORY(bytes)   MEMORY%\n\
             n1     500m         25%         1024Mi          25%\n\
             n2     100m         <unknown>   1024Mi          <unknown>\n"
        );
        assert_eq!(
            pods_table(&samples, Some("shop")).render(),
            "NAME    CPU(cores)   MEMORY(bytes)\nweb-1   5m           3Mi\n"
        );
        assert!(pods_table(&samples, None)
            .render()
            .starts_with("NAMESPACE   NAME    CPU(cores)   MEMORY(bytes)\ndefault     db-0"));
    }
}
