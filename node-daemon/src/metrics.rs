//! `/metrics` in the Prometheus text format: how full each data-plane map is, what the data
//! plane dropped by reason, and allow/deny counts per policy rule. Read from the pinned maps,
//! so the numbers describe the kernel's state whichever daemon process pinned it.

use std::path::Path;

use crate::{
    dataplane::{map_fullness, pinned_drop_counts, pinned_policy_counters, DataPlaneError},
    policy::Compiled,
};

/// Renders every metric. Counting a map's entries walks its keys, so a scrape of full
/// 262k-entry maps costs a few hundred milliseconds; scrape every 15 s or more. Rule counters
/// are labelled with the names in `compiled`.
pub fn render(pin_dir: &Path, compiled: &Compiled) -> Result<String, DataPlaneError> {
    let mut out = String::new();
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
