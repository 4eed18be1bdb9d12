//! Container cgroup statistics in the JSON shape of runc's `events --stats` "data"
//! object, converted from libcgroups' statistics.

use std::collections::HashMap;

use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};
use serde::Serialize;

/// `cpu`, `memory`, `pids`, `blkio` and `hugetlb` as runc reports them.
#[derive(Serialize, Debug, Default, Clone)]
pub struct CgroupStats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
    pub hugetlb: HashMap<String, HugetlbStats>,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Serialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub raw: HashMap<String, u64>,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct BlkioStats {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioServiceTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct HugetlbStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn memory_entry(d: &MemoryData) -> MemoryEntry {
    MemoryEntry {
        limit: d.limit,
        usage: d.usage,
        max: d.max_usage,
        failcnt: d.fail_count,
    }
}

fn blkio_entries(v: &[BlkioDeviceStat]) -> Vec<BlkioEntry> {
    v.iter()
        .map(|s| BlkioEntry {
            major: s.major,
            minor: s.minor,
            op: s.op_type.clone().unwrap_or_default(),
            value: s.value,
        })
        .collect()
}

fn blkio(s: &libcgroups::stats::BlkioStats) -> BlkioStats {
    BlkioStats {
        io_service_bytes_recursive: blkio_entries(&s.service_bytes),
        io_serviced_recursive: blkio_entries(&s.serviced),
        io_queued_recursive: blkio_entries(&s.queued),
        io_service_time_recursive: blkio_entries(&s.service_time),
        io_wait_time_recursive: blkio_entries(&s.wait_time),
        io_merged_recursive: blkio_entries(&s.merged),
        io_time_recursive: blkio_entries(&s.time),
        sectors_recursive: blkio_entries(&s.sectors),
    }
}

fn cpu(s: &libcgroups::stats::CpuStats) -> CpuStats {
    let u = &s.usage;
    let t = &s.throttling;
    CpuStats {
        usage: CpuUsage {
            total: u.usage_total,
            percpu: u.per_core_usage_total.clone(),
            percpu_kernel: u.per_core_usage_kernel.clone(),
            percpu_user: u.per_core_usage_user.clone(),
            kernel: u.usage_kernel,
            user: u.usage_user,
        },
        throttling: Throttling {
            periods: t.periods,
            throttled_periods: t.throttled_periods,
            throttled_time: t.throttled_time,
        },
    }
}

impl From<&Stats> for CgroupStats {
    fn from(s: &Stats) -> Self {
        let m = &s.memory;
        CgroupStats {
            cpu: cpu(&s.cpu),
            memory: MemoryStats {
                cache: m.cache,
                usage: memory_entry(&m.memory),
                swap: memory_entry(&m.memswap),
                kernel: memory_entry(&m.kernel),
                kernel_tcp: memory_entry(&m.kernel_tcp),
                raw: m.stats.clone(),
            },
            pids: PidsStats {
                current: s.pids.current,
                limit: s.pids.limit,
            },
            blkio: blkio(&s.blkio),
            hugetlb: s
                .hugetlb
                .iter()
                .map(|(k, v)| {
                    let h = HugetlbStats {
                        usage: v.usage,
                        max: v.max_usage,
                        failcnt: v.fail_count,
                    };
                    (k.clone(), h)
                })
                .collect(),
        }
    }
}
