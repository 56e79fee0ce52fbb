//! The policy maps (`IPCACHE`, `POLICY`, the policy revision in `SETTINGS`): typed access for
//! the policy reconciler, which owns them; `POLICY_COUNTERS` for inspection; and the
//! `FLOW_EVENTS` ring buffer for the flow reader.

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path};

use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    Array, MapData, PerCpuHashMap, RingBuf,
};
use skiff_api::Cidr;
use skiff_common::{names, settings, AddressIdentity, PolicyCounters, PolicyEntry, PolicyKey};

use super::DataPlaneError;

/// `IPCACHE` and `POLICY` as (prefix, value) pairs.
pub type PolicyMapsSnapshot = (
    BTreeMap<Cidr, AddressIdentity>,
    BTreeMap<(PolicyKey, u32), PolicyEntry>,
);

pub struct PolicyMaps {
    ipcache: LpmTrie<MapData, u32, AddressIdentity>,
    policy: LpmTrie<MapData, PolicyKey, PolicyEntry>,
    settings: Array<MapData, u64>,
}

impl PolicyMaps {
    pub(super) fn from_maps(
        ipcache: aya::maps::Map,
        policy: aya::maps::Map,
        settings: MapData,
    ) -> Result<Self, DataPlaneError> {
        Ok(PolicyMaps {
            ipcache: LpmTrie::try_from(ipcache).map_err(DataPlaneError::map(names::IPCACHE))?,
            policy: LpmTrie::try_from(policy).map_err(DataPlaneError::map(names::POLICY))?,
            settings: Array::try_from(aya::maps::Map::Array(settings))
                .map_err(DataPlaneError::map(names::SETTINGS))?,
        })
    }

    /// Reads both tries back (startup adoption).
    pub fn snapshot(&self) -> Result<PolicyMapsSnapshot, DataPlaneError> {
        let mut ipcache = BTreeMap::new();
        for entry in self.ipcache.iter() {
            let (key, value) = entry.map_err(DataPlaneError::map(names::IPCACHE))?;
            let addr = Ipv4Addr::from(u32::from_be(key.data()));
            ipcache.insert(Cidr::new(addr, key.prefix_len() as u8), value);
        }
        let mut policy = BTreeMap::new();
        for entry in self.policy.iter() {
            let (key, value) = entry.map_err(DataPlaneError::map(names::POLICY))?;
            policy.insert((key.data(), key.prefix_len()), value);
        }
        Ok((ipcache, policy))
    }

    pub fn set_address(
        &mut self,
        cidr: Cidr,
        value: AddressIdentity,
    ) -> Result<(), DataPlaneError> {
        self.ipcache
            .insert(&ipcache_key(cidr), value, 0)
            .map_err(DataPlaneError::map(names::IPCACHE))
    }

    pub fn remove_address(&mut self, cidr: Cidr) -> Result<(), DataPlaneError> {
        self.ipcache
            .remove(&ipcache_key(cidr))
            .map_err(DataPlaneError::map(names::IPCACHE))
    }

    pub fn set_entry(
        &mut self,
        key: PolicyKey,
        len: u32,
        entry: PolicyEntry,
    ) -> Result<(), DataPlaneError> {
        self.policy
            .insert(&Key::new(len, key), entry, 0)
            .map_err(DataPlaneError::map(names::POLICY))
    }

    pub fn remove_entry(&mut self, key: PolicyKey, len: u32) -> Result<(), DataPlaneError> {
        self.policy
            .remove(&Key::new(len, key))
            .map_err(DataPlaneError::map(names::POLICY))
    }

    /// The kernel's own longest-prefix answer for a full key.
    pub fn lookup(&self, key: PolicyKey) -> Option<PolicyEntry> {
        self.policy
            .get(&Key::new(skiff_common::prefix::PORT, key), 0)
            .ok()
    }

    pub fn revision(&self) -> Result<u32, DataPlaneError> {
        self.settings
            .get(&settings::POLICY_REVISION, 0)
            .map(|r| r as u32)
            .map_err(DataPlaneError::map(names::SETTINGS))
    }

    pub fn set_revision(&mut self, revision: u32) -> Result<(), DataPlaneError> {
        self.settings
            .set(settings::POLICY_REVISION, revision as u64, 0)
            .map_err(DataPlaneError::map(names::SETTINGS))
    }
}

fn ipcache_key(cidr: Cidr) -> Key<u32> {
    Key::new(cidr.len as u32, u32::from(cidr.addr).to_be())
}

/// Allow/deny counters by packed rule reference, summed over CPUs, from a node's pins.
pub fn pinned_policy_counters(
    pin_dir: &Path,
) -> Result<BTreeMap<u32, PolicyCounters>, DataPlaneError> {
    let path = super::PinLayout::new(pin_dir).map(names::POLICY_COUNTERS);
    let data = MapData::from_pin(&path).map_err(DataPlaneError::map(names::POLICY_COUNTERS))?;
    let map: PerCpuHashMap<MapData, u32, PolicyCounters> =
        PerCpuHashMap::try_from(aya::maps::Map::PerCpuHashMap(data))
            .map_err(DataPlaneError::map(names::POLICY_COUNTERS))?;
    let mut out = BTreeMap::new();
    for entry in map.iter() {
        let (rule, per_cpu) = entry.map_err(DataPlaneError::map(names::POLICY_COUNTERS))?;
        let mut sum = PolicyCounters::default();
        for c in per_cpu.iter() {
            sum.allowed += c.allowed;
            sum.denied += c.denied;
        }
        out.insert(rule, sum);
    }
    Ok(out)
}

/// The flow event ring buffer, for its one reader.
pub type FlowEvents = RingBuf<MapData>;

pub(super) fn flow_events(map: aya::maps::Map) -> Result<FlowEvents, DataPlaneError> {
    RingBuf::try_from(map).map_err(DataPlaneError::map(names::FLOW_EVENTS))
}
