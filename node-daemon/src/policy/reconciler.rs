//! The policy reconciler: the one writer of `IPCACHE`, `POLICY` and the policy revision.
//!
//! It diffs a [`Compiled`] policy against what the kernel holds and writes the difference in
//! an order that never denies a flow allowed both before and after: new allow entries first,
//! then addresses, then selection markers; removals in the reverse order. The revision is
//! bumped last, so established flows are judged again only against the finished state.

use std::collections::BTreeMap;

use skiff_api::Cidr;
use skiff_common::{AddressIdentity, PolicyEntry, POLICY_ENTRY_SELECTED};

use super::compile::{Compiled, PolicyPrefix};
use crate::dataplane::{DataPlaneError, PolicyMaps};

/// What one reconcile pass changed in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyStats {
    pub addresses_written: usize,
    pub addresses_removed: usize,
    pub entries_written: usize,
    pub entries_removed: usize,
    /// The policy revision after the pass.
    pub revision: u32,
}

pub struct PolicyReconciler {
    maps: PolicyMaps,
    addresses: BTreeMap<Cidr, AddressIdentity>,
    entries: BTreeMap<PolicyPrefix, PolicyEntry>,
    revision: u32,
}

impl PolicyReconciler {
    /// Takes ownership of the maps and adopts what they hold.
    pub fn new(maps: PolicyMaps) -> Result<PolicyReconciler, DataPlaneError> {
        let (addresses, entries) = maps.snapshot()?;
        let revision = maps.revision()?;
        Ok(PolicyReconciler {
            addresses,
            entries: entries
                .into_iter()
                .map(|((key, len), entry)| (PolicyPrefix { key, len }, entry))
                .collect(),
            revision,
            maps,
        })
    }

    pub fn revision(&self) -> u32 {
        self.revision
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Brings the kernel to `compiled` (compiled for this node's pods).
    pub fn reconcile(&mut self, compiled: &Compiled) -> Result<PolicyStats, DataPlaneError> {
        let wanted = &compiled.entries;
        let mut stats = PolicyStats::default();
        self.write_entries(wanted, false, &mut stats)?;
        self.write_addresses(&compiled.ipcache, &mut stats)?;
        self.write_entries(wanted, true, &mut stats)?;
        self.remove_entries(wanted, true, &mut stats)?;
        self.remove_addresses(&compiled.ipcache, &mut stats)?;
        self.remove_entries(wanted, false, &mut stats)?;
        let changed = stats.addresses_written
            + stats.addresses_removed
            + stats.entries_written
            + stats.entries_removed
            > 0;
        if changed {
            self.revision = self.revision.wrapping_add(1);
            self.maps.set_revision(self.revision)?;
        }
        stats.revision = self.revision;
        Ok(stats)
    }

    /// Writes the wanted entries that differ: selection markers or allow entries.
    fn write_entries(
        &mut self,
        wanted: &BTreeMap<PolicyPrefix, PolicyEntry>,
        markers: bool,
        stats: &mut PolicyStats,
    ) -> Result<(), DataPlaneError> {
        for (prefix, entry) in wanted {
            if is_marker(entry) == markers && self.entries.get(prefix) != Some(entry) {
                self.maps.set_entry(prefix.key, prefix.len, *entry)?;
                self.entries.insert(*prefix, *entry);
                stats.entries_written += 1;
            }
        }
        Ok(())
    }

    /// Removes the entries (markers or allow entries) no longer wanted.
    fn remove_entries(
        &mut self,
        wanted: &BTreeMap<PolicyPrefix, PolicyEntry>,
        markers: bool,
        stats: &mut PolicyStats,
    ) -> Result<(), DataPlaneError> {
        let stale: Vec<PolicyPrefix> = self
            .entries
            .iter()
            .filter(|(p, e)| is_marker(e) == markers && !wanted.contains_key(p))
            .map(|(p, _)| *p)
            .collect();
        for prefix in stale {
            self.maps.remove_entry(prefix.key, prefix.len)?;
            self.entries.remove(&prefix);
            stats.entries_removed += 1;
        }
        Ok(())
    }

    fn write_addresses(
        &mut self,
        wanted: &BTreeMap<Cidr, AddressIdentity>,
        stats: &mut PolicyStats,
    ) -> Result<(), DataPlaneError> {
        for (cidr, value) in wanted {
            if self.addresses.get(cidr) != Some(value) {
                self.maps.set_address(*cidr, *value)?;
                self.addresses.insert(*cidr, *value);
                stats.addresses_written += 1;
            }
        }
        Ok(())
    }

    fn remove_addresses(
        &mut self,
        wanted: &BTreeMap<Cidr, AddressIdentity>,
        stats: &mut PolicyStats,
    ) -> Result<(), DataPlaneError> {
        let stale: Vec<Cidr> = self
            .addresses
            .keys()
            .filter(|c| !wanted.contains_key(c))
            .copied()
            .collect();
        for cidr in stale {
            self.maps.remove_address(cidr)?;
            self.addresses.remove(&cidr);
            stats.addresses_removed += 1;
        }
        Ok(())
    }
}

fn is_marker(entry: &PolicyEntry) -> bool {
    entry.kind == POLICY_ENTRY_SELECTED
}
