//! The `ENDPOINTS` and `POD_TRAFFIC` maps: which host-side veths belong to local pods, and
//! what each pod sent and received.

use std::net::Ipv4Addr;

use aya::{
    maps::{HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues},
    util::nr_cpus,
    Ebpf,
};
use skiff_common::{names, DropReason, EndpointInfo, TrafficCounters};

use super::{ignore_missing, DataPlaneError};

/// Traffic of one pod, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointTraffic {
    pub from_pod_packets: u64,
    pub from_pod_bytes: u64,
    pub to_pod_packets: u64,
    pub to_pod_bytes: u64,
}

/// Writer of the endpoint maps, borrowed from a [`super::DataPlane`].
pub struct Endpoints<'a> {
    endpoints: HashMap<&'a mut MapData, u32, EndpointInfo>,
    traffic: PerCpuHashMap<&'a mut MapData, u32, TrafficCounters>,
}

impl<'a> Endpoints<'a> {
    pub(super) fn new(ebpf: &'a mut Ebpf) -> Result<Self, DataPlaneError> {
        let [endpoints, traffic] = ebpf.maps_disjoint_mut([names::ENDPOINTS, names::POD_TRAFFIC]);
        let endpoints = endpoints.ok_or(DataPlaneError::MissingMap(names::ENDPOINTS))?;
        let traffic = traffic.ok_or(DataPlaneError::MissingMap(names::POD_TRAFFIC))?;
        Ok(Endpoints {
            endpoints: HashMap::try_from(endpoints)
                .map_err(DataPlaneError::map(names::ENDPOINTS))?,
            traffic: PerCpuHashMap::try_from(traffic)
                .map_err(DataPlaneError::map(names::POD_TRAFFIC))?,
        })
    }

    /// Registers a local pod behind the veth `ifindex`, with zeroed counters.
    pub fn upsert(&mut self, ifindex: u32, pod_ip: Ipv4Addr) -> Result<(), DataPlaneError> {
        let cpus = nr_cpus().map_err(|(_, e)| DataPlaneError::Cpus(e))?;
        let zero = PerCpuValues::try_from(vec![TrafficCounters::default(); cpus])
            .map_err(DataPlaneError::Cpus)?;
        // BPF_NOEXIST: re-registering a pod keeps the counters it already has.
        match self.traffic.insert(ifindex, zero, BPF_NOEXIST) {
            Ok(()) => {}
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(DataPlaneError::map(names::POD_TRAFFIC)(e)),
        }
        let info = EndpointInfo {
            ipv4: u32::from(pod_ip).to_be(),
            flags: 0,
        };
        self.endpoints
            .insert(ifindex, info, 0)
            .map_err(DataPlaneError::map(names::ENDPOINTS))
    }

    pub fn remove(&mut self, ifindex: u32) -> Result<(), DataPlaneError> {
        // The endpoint goes first, so the programs stop counting before the counters vanish.
        ignore_missing(self.endpoints.remove(&ifindex))
            .map_err(DataPlaneError::map(names::ENDPOINTS))?;
        ignore_missing(self.traffic.remove(&ifindex))
            .map_err(DataPlaneError::map(names::POD_TRAFFIC))?;
        Ok(())
    }

    /// Counters of the pod behind `ifindex`, summed over CPUs.
    pub fn traffic(&self, ifindex: u32) -> Result<EndpointTraffic, DataPlaneError> {
        let per_cpu = self
            .traffic
            .get(&ifindex, 0)
            .map_err(DataPlaneError::map(names::POD_TRAFFIC))?;
        Ok(sum_traffic(&per_cpu))
    }
}

fn sum_traffic(per_cpu: &PerCpuValues<TrafficCounters>) -> EndpointTraffic {
    per_cpu
        .iter()
        .fold(EndpointTraffic::default(), |sum, cpu| EndpointTraffic {
            from_pod_packets: sum.from_pod_packets + cpu.from_pod_packets,
            from_pod_bytes: sum.from_pod_bytes + cpu.from_pod_bytes,
            to_pod_packets: sum.to_pod_packets + cpu.to_pod_packets,
            to_pod_bytes: sum.to_pod_bytes + cpu.to_pod_bytes,
        })
}

/// Every local pod of a node's pinned data plane: veth ifindex, address and traffic.
pub fn pinned_pod_traffic(
    pin_dir: &std::path::Path,
) -> Result<Vec<(u32, Ipv4Addr, EndpointTraffic)>, DataPlaneError> {
    let open = |name: &'static str| -> Result<aya::maps::Map, DataPlaneError> {
        let data = MapData::from_pin(super::PinLayout::new(pin_dir).map(name))
            .map_err(DataPlaneError::map(name))?;
        aya::maps::Map::from_map_data(data).map_err(DataPlaneError::map(name))
    };
    let endpoints: HashMap<MapData, u32, EndpointInfo> = HashMap::try_from(open(names::ENDPOINTS)?)
        .map_err(DataPlaneError::map(names::ENDPOINTS))?;
    let traffic: PerCpuHashMap<MapData, u32, TrafficCounters> =
        PerCpuHashMap::try_from(open(names::POD_TRAFFIC)?)
            .map_err(DataPlaneError::map(names::POD_TRAFFIC))?;
    let mut pods = Vec::new();
    for entry in endpoints.iter() {
        let (ifindex, info) = entry.map_err(DataPlaneError::map(names::ENDPOINTS))?;
        let counters = traffic
            .get(&ifindex, 0)
            .map(|per_cpu| sum_traffic(&per_cpu))
            .unwrap_or_default();
        pods.push((ifindex, Ipv4Addr::from(u32::from_be(info.ipv4)), counters));
    }
    pods.sort_by_key(|(ifindex, _, _)| *ifindex);
    Ok(pods)
}

/// Map update flag from the kernel's uapi: create the element only if it does not exist.
const BPF_NOEXIST: u64 = 1;

pub(super) fn drop_counts(ebpf: &Ebpf) -> Result<Vec<(DropReason, u64)>, DataPlaneError> {
    let map = ebpf
        .map(names::DROP_COUNTERS)
        .ok_or(DataPlaneError::MissingMap(names::DROP_COUNTERS))?;
    let counters: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(map).map_err(DataPlaneError::map(names::DROP_COUNTERS))?;
    sum_drops(&counters)
}

/// Drop counters of a node's pinned data plane (for metrics and inspection).
pub fn pinned_drop_counts(
    pin_dir: &std::path::Path,
) -> Result<Vec<(DropReason, u64)>, DataPlaneError> {
    let name = names::DROP_COUNTERS;
    let data = MapData::from_pin(super::PinLayout::new(pin_dir).map(name))
        .map_err(DataPlaneError::map(name))?;
    let map = aya::maps::Map::from_map_data(data).map_err(DataPlaneError::map(name))?;
    let counters: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(map).map_err(DataPlaneError::map(name))?;
    sum_drops(&counters)
}

fn sum_drops<T: std::borrow::Borrow<MapData>>(
    counters: &PerCpuArray<T, u64>,
) -> Result<Vec<(DropReason, u64)>, DataPlaneError> {
    DropReason::ALL
        .iter()
        .map(|reason| {
            let per_cpu = counters
                .get(&reason.index(), 0)
                .map_err(DataPlaneError::map(names::DROP_COUNTERS))?;
            Ok((*reason, per_cpu.iter().sum()))
        })
        .collect()
}
