//! How full each pinned map is: the number inspection prints and `/metrics` exports, because
//! a full service or conntrack map is an outage waiting to happen.

use std::path::Path;

use aya::maps::{HashMap, Map, MapData, PerCpuHashMap};
use skiff_common::{
    names, AffinityKey, AffinityValue, Backend, CtKey, CtValue, EndpointInfo, MaglevKey,
    ServiceKey, ServiceValue, SockNatKey, SockNatValue, TrafficCounters,
};

use super::{DataPlaneError, PinLayout};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFullness {
    pub map: &'static str,
    pub entries: u64,
    pub capacity: u64,
}

/// Counts the entries of every hash map pinned under `pin_dir`.
pub fn map_fullness(pin_dir: &Path) -> Result<Vec<MapFullness>, DataPlaneError> {
    let layout = PinLayout::new(pin_dir);
    let mut out = Vec::new();
    for name in names::ALL {
        if name == names::DROP_COUNTERS || name == names::SETTINGS {
            continue; // arrays: always "full", nothing to report
        }
        let data = MapData::from_pin(layout.map(name)).map_err(DataPlaneError::map(name))?;
        let capacity = data
            .info()
            .map_err(DataPlaneError::map(name))?
            .max_entries() as u64;
        let data = Map::from_map_data(data).map_err(DataPlaneError::map(name))?;
        let entries = match name {
            names::ENDPOINTS => count::<u32, EndpointInfo>(data),
            names::POD_TRAFFIC => PerCpuHashMap::<MapData, u32, TrafficCounters>::try_from(data)
                .map(|m| m.keys().count()),
            names::SERVICES => count::<ServiceKey, ServiceValue>(data),
            names::BACKENDS => count::<u32, Backend>(data),
            names::MAGLEV => count::<MaglevKey, u32>(data),
            names::AFFINITY => count::<AffinityKey, AffinityValue>(data),
            names::SOCK_NAT => count::<SockNatKey, SockNatValue>(data),
            names::CONNTRACK => count::<CtKey, CtValue>(data),
            _ => continue,
        }
        .map_err(DataPlaneError::map(name))?;
        out.push(MapFullness {
            map: name,
            entries: entries as u64,
            capacity,
        });
    }
    Ok(out)
}

fn count<K: aya::Pod, V: aya::Pod>(data: Map) -> Result<usize, aya::maps::MapError> {
    let map = HashMap::<MapData, K, V>::try_from(data)?;
    Ok(map.keys().count())
}
