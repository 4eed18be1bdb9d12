//! Resource usage of containers and pods, from the shim's Stats (the cgroup counters
//! as containerd's v1 or v2 Metrics), reduced to what both front doors report.
use containerd_shim_protos::api::StatsRequest;
use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use protobuf::Message;

use super::*;
use crate::snapshot::DiskUsage;
use crate::task::context;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub timestamp_nanos: i64,
    pub cpu_usage_nanos: u64,
    pub memory_usage_bytes: u64,
    pub memory_working_set_bytes: u64,
    pub memory_rss_bytes: u64,
    pub memory_limit_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub processes: u64,
    /// Bytes and inodes used by the container's writable layer.
    pub writable_bytes: u64,
    pub writable_inodes: u64,
}

fn from_v1(metrics: &v1::Metrics) -> Usage {
    let memory = metrics.memory.as_ref();
    let usage = memory.and_then(|m| m.usage.as_ref()).map(|u| u.usage).unwrap_or(0);
    let inactive = memory.map(|m| m.total_inactive_file).unwrap_or(0);
    Usage {
        cpu_usage_nanos: metrics.cpu.as_ref().and_then(|c| c.usage.as_ref()).map(|u| u.total).unwrap_or(0),
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.saturating_sub(inactive),
        memory_rss_bytes: memory.map(|m| m.total_rss).unwrap_or(0),
        memory_limit_bytes: memory.and_then(|m| m.usage.as_ref()).map(|u| u.limit).unwrap_or(0),
        page_faults: memory.map(|m| m.pg_fault).unwrap_or(0),
        major_page_faults: memory.map(|m| m.pg_maj_fault).unwrap_or(0),
        processes: metrics.pids.as_ref().map(|p| p.current).unwrap_or(0),
        ..Usage::default()
    }
}

fn from_v2(metrics: &v2::Metrics) -> Usage {
    let memory = metrics.memory.as_ref();
    let usage = memory.map(|m| m.usage).unwrap_or(0);
    Usage {
        cpu_usage_nanos: metrics.cpu.as_ref().map(|c| c.usage_usec * 1000).unwrap_or(0),
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.saturating_sub(memory.map(|m| m.inactive_file).unwrap_or(0)),
        memory_rss_bytes: memory.map(|m| m.anon).unwrap_or(0),
        memory_limit_bytes: memory.map(|m| m.usage_limit).unwrap_or(0),
        page_faults: memory.map(|m| m.pgfault).unwrap_or(0),
        major_page_faults: memory.map(|m| m.pgmajfault).unwrap_or(0),
        processes: metrics.pids.as_ref().map(|p| p.current).unwrap_or(0),
        ..Usage::default()
    }
}

impl Core {
    /// The container's usage; zero counters for a container that is not running.
    pub async fn container_usage(&self, record: &ContainerRecord) -> CoreResult<Usage> {
        let mut usage = match record.state {
            ContainerState::Running => self.shim_usage(record).await?,
            _ => Usage::default(),
        };
        usage.timestamp_nanos = now_nanos();
        // A walk of the writable layer: on a blocking thread, not on one of the workers.
        let upper = self.writable_layer_dir(&record.snapshot_key);
        let walked = tokio::task::spawn_blocking(move || upper.map(|dir| DiskUsage::of_dir(&dir).unwrap_or_default()).unwrap_or_default()).await;
        let writable = walked.map_err(|e| CoreError::Internal(format!("measuring the writable layer: {e}")))?;
        (usage.writable_bytes, usage.writable_inodes) = (writable.bytes, writable.inodes);
        Ok(usage)
    }

    async fn shim_usage(&self, record: &ContainerRecord) -> CoreResult<Usage> {
        let client = self.shims.client(&record.shim_address).await?;
        let response = client.stats(context(), &StatsRequest { id: record.id.clone(), ..Default::default() }).await?;
        let any = response.stats.as_ref().cloned().unwrap_or_default();
        let decode_error = |e: protobuf::Error| CoreError::Internal(format!("decoding the shim's stats: {e}"));
        Ok(match any.type_url.ends_with("v2.Metrics") {
            true => from_v2(&v2::Metrics::parse_from_bytes(&any.value).map_err(decode_error)?),
            false => from_v1(&v1::Metrics::parse_from_bytes(&any.value).map_err(decode_error)?),
        })
    }

    /// A pod's usage: the sum of its running containers'.
    pub async fn sandbox_usage(&self, namespace: &str, sandbox_id: &str) -> CoreResult<(Usage, Vec<(ContainerRecord, Usage)>)> {
        let mut total = Usage { timestamp_nanos: now_nanos(), ..Usage::default() };
        let mut each = Vec::new();
        for container in self.containers_of_sandbox(namespace, sandbox_id)? {
            let usage = self.container_usage(&container).await.unwrap_or_default();
            total.cpu_usage_nanos += usage.cpu_usage_nanos;
            total.memory_usage_bytes += usage.memory_usage_bytes;
            total.memory_working_set_bytes += usage.memory_working_set_bytes;
            total.memory_rss_bytes += usage.memory_rss_bytes;
            total.page_faults += usage.page_faults;
            total.major_page_faults += usage.major_page_faults;
            total.processes += usage.processes;
            each.push((container, usage));
        }
        Ok((total, each))
    }
}
