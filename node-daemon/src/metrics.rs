//! `/metrics` in the Prometheus text format: how full each data-plane map is, what the data
//! plane dropped by reason, allow/deny counts per policy rule, each program's run count and
//! time (kept while the daemon holds BPF stats enabled), and per-pod traffic. Read from the pinned maps,
//! so the numbers describe the kernel's state whichever daemon process pinned it.

use std::path::Path;

use crate::{
    dataplane::{
        map_fullness, pinned_drop_counts, pinned_pod_traffic, pinned_policy_counters,
        DataPlaneError,
    },
    policy::Compiled,
};

/// Renders every metric. Counting a map's entries walks its keys, so a scrape of full
/// 262k-entry maps costs a few hundred milliseconds; scrape every 15 s or more. Rule counters
/// are labelled with the names in `compiled`.
pub fn render(
    pin_dir: &Path,
    compiled: &Compiled,
    programs: &[(&'static str, u32)],
) -> Result<String, DataPlaneError> {
    let mut out = String::new();
    out.push_str("# HELP skiff_program_runs_total Times a data-plane program ran.\n");
    out.push_str("# TYPE skiff_program_runs_total counter\n");
    let mut times = String::new();
    for info in aya::programs::loaded_programs().flatten() {
        let Some((name, _)) = programs.iter().find(|(_, id)| *id == info.id()) else {
            continue;
        };
        out.push_str(&format!(
            "skiff_program_runs_total{{program=\"{name}\"}} {}\n",
            info.run_count()
        ));
        times.push_str(&format!(
            "skiff_program_run_seconds_total{{program=\"{name}\"}} {:.9}\n",
            info.run_time().as_secs_f64()
        ));
    }
    out.push_str("# HELP skiff_program_run_seconds_total Time a data-plane program ran.\n");
    out.push_str("# TYPE skiff_program_run_seconds_total counter\n");
    out.push_str(&times);
    let pods = pinned_pod_traffic(pin_dir)?;
    for (metric, help, pick) in [
        (
            "skiff_pod_sent_packets_total",
            "Packets a local pod sent.",
            0,
        ),
        ("skiff_pod_sent_bytes_total", "Bytes a local pod sent.", 1),
        (
            "skiff_pod_received_packets_total",
            "Packets delivered to a local pod.",
            2,
        ),
        (
            "skiff_pod_received_bytes_total",
            "Bytes delivered to a local pod.",
            3,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {metric} {help}\n# TYPE {metric} counter\n"
        ));
        for (ifindex, ip, t) in &pods {
            let value = [
                t.from_pod_packets,
                t.from_pod_bytes,
                t.to_pod_packets,
                t.to_pod_bytes,
            ][pick];
            out.push_str(&format!(
                "{metric}{{pod_ip=\"{ip}\",ifindex=\"{ifindex}\"}} {value}\n"
            ));
        }
    }
    let fullness = map_fullness(pin_dir)?;
    out.push_str("# HELP skiff_map_entries Entries in a data-plane map.\n");
    out.push_str("# TYPE skiff_map_entries gauge\n");
    for m in &fullness {
        out.push_str(&format!(
            "skiff_map_entries{{map=\"{}\"}} {}\n",
            m.map, m.entries
        ));
    }
    out.push_str("# HELP skiff_map_capacity Maximum entries of a data-plane map.\n");
    out.push_str("# TYPE skiff_map_capacity gauge\n");
    for m in &fullness {
        out.push_str(&format!(
            "skiff_map_capacity{{map=\"{}\"}} {}\n",
            m.map, m.capacity
        ));
    }
    out.push_str("# HELP skiff_drops_total Packets the data plane dropped, by reason.\n");
    out.push_str("# TYPE skiff_drops_total counter\n");
    for (reason, count) in pinned_drop_counts(pin_dir)? {
        out.push_str(&format!(
            "skiff_drops_total{{reason=\"{}\"}} {count}\n",
            reason.label()
        ));
    }
    out.push_str(
        "# HELP skiff_policy_verdicts_total Flows allowed and packets denied, by NetworkPolicy \
         rule (a default deny is counted on the selecting policy's `selection` rule).\n",
    );
    out.push_str("# TYPE skiff_policy_verdicts_total counter\n");
    for (packed, counters) in pinned_policy_counters(pin_dir)? {
        let (policy, rule) = match compiled.rules.get(&packed) {
            Some(info) => {
                let rule = if info.rule.index == skiff_common::RuleRef::SELECTION {
                    format!(
                        "{}:selection",
                        crate::policy::compile::direction_name(info.rule.direction)
                    )
                } else {
                    format!(
                        "{}[{}]",
                        crate::policy::compile::direction_name(info.rule.direction),
                        info.rule.index
                    )
                };
                (info.policy.to_string(), rule)
            }
            // Counters outlive a deleted policy until the map entry is evicted.
            None => continue,
        };
        for (verdict, count) in [("allowed", counters.allowed), ("denied", counters.denied)] {
            out.push_str(&format!(
                "skiff_policy_verdicts_total{{policy=\"{policy}\",rule=\"{rule}\",verdict=\"{verdict}\"}} {count}\n"
            ));
        }
    }
    Ok(out)
}
