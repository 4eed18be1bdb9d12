//! Stats for containerd: the container's cgroup counters as containerd's cgroups v1
//! or v2 `Metrics` message. The cgroup is found through the init's /proc/<pid>/cgroup,
//! so this works with whichever cgroup layout the runtime used.

use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use protobuf::well_known_types::any::Any;
use protobuf::MessageField;

use crate::error::{ShimError, ShimResult};
use crate::events::to_any;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn read_u64(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match text.trim() {
        "max" => u64::MAX,
        value => value.parse().unwrap_or(0),
    }
}

/// `key value` lines of a stat file.
fn read_keyed(path: &Path, key: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The directory of `controller` for `pid` ("" for the unified hierarchy).
fn cgroup_dir(pid: i32, controller: &str) -> ShimResult<PathBuf> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| ShimError::io(format!("reading /proc/{pid}/cgroup"), e))?;
    for line in table.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let path = path.trim_start_matches('/');
        if controller.is_empty() && controllers.is_empty() {
            return Ok(Path::new(CGROUP_ROOT).join(path));
        }
        if !controller.is_empty() && controllers.split(',').any(|c| c == controller) {
            return Ok(Path::new(CGROUP_ROOT).join(controllers).join(path));
        }
    }
    Err(ShimError::Precondition(format!("process {pid} has no {controller} cgroup")))
}

/// The Metrics of the cgroup `pid` is in, as an Any.
pub fn collect(pid: i32) -> ShimResult<Any> {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        Ok(to_any(&collect_v2(&cgroup_dir(pid, "")?), "io.containerd.cgroups.v2.Metrics"))
    } else {
        Ok(to_any(&collect_v1(pid)?, "io.containerd.cgroups.v1.Metrics"))
    }
}

fn collect_v2(dir: &Path) -> v2::Metrics {
    let mut metrics = v2::Metrics::new();
    let pids = v2::PidsStat { current: read_u64(&dir.join("pids.current")), limit: read_u64(&dir.join("pids.max")), ..Default::default() };
    metrics.pids = MessageField::some(pids);
    let cpu_stat = dir.join("cpu.stat");
    let mut cpu = v2::CPUStat::new();
    cpu.usage_usec = read_keyed(&cpu_stat, "usage_usec");
    cpu.user_usec = read_keyed(&cpu_stat, "user_usec");
    cpu.system_usec = read_keyed(&cpu_stat, "system_usec");
    cpu.nr_periods = read_keyed(&cpu_stat, "nr_periods");
    cpu.nr_throttled = read_keyed(&cpu_stat, "nr_throttled");
    cpu.throttled_usec = read_keyed(&cpu_stat, "throttled_usec");
    metrics.cpu = MessageField::some(cpu);
    let memory_stat = dir.join("memory.stat");
    let mut memory = v2::MemoryStat::new();
    memory.anon = read_keyed(&memory_stat, "anon");
    memory.file = read_keyed(&memory_stat, "file");
    memory.inactive_file = read_keyed(&memory_stat, "inactive_file");
    memory.pgfault = read_keyed(&memory_stat, "pgfault");
    memory.pgmajfault = read_keyed(&memory_stat, "pgmajfault");
    memory.usage = read_u64(&dir.join("memory.current"));
    memory.usage_limit = read_u64(&dir.join("memory.max"));
    memory.max_usage = read_u64(&dir.join("memory.peak"));
    metrics.memory = MessageField::some(memory);
    let events = dir.join("memory.events");
    let mut memory_events = v2::MemoryEvents::new();
    memory_events.max = read_keyed(&events, "max");
    memory_events.oom = read_keyed(&events, "oom");
    memory_events.oom_kill = read_keyed(&events, "oom_kill");
    metrics.memory_events = MessageField::some(memory_events);
    metrics
}

fn collect_v1(pid: i32) -> ShimResult<v1::Metrics> {
    let mut metrics = v1::Metrics::new();
    if let Ok(dir) = cgroup_dir(pid, "pids") {
        let pids = v1::PidsStat { current: read_u64(&dir.join("pids.current")), limit: read_u64(&dir.join("pids.max")), ..Default::default() };
        metrics.pids = MessageField::some(pids);
    }
    if let Ok(dir) = cgroup_dir(pid, "cpuacct") {
        metrics.cpu = MessageField::some(cpu_v1(&dir));
    }
    let dir = cgroup_dir(pid, "memory")?;
    metrics.memory = MessageField::some(memory_v1(&dir));
    Ok(metrics)
}

fn cpu_v1(dir: &Path) -> v1::CPUStat {
    let ticks = 1_000_000_000 / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64);
    let stat = dir.join("cpuacct.stat");
    let mut usage = v1::CPUUsage::new();
    usage.total = read_u64(&dir.join("cpuacct.usage"));
    usage.user = read_keyed(&stat, "user") * ticks;
    usage.kernel = read_keyed(&stat, "system") * ticks;
    let per_cpu = std::fs::read_to_string(dir.join("cpuacct.usage_percpu")).unwrap_or_default();
    usage.per_cpu = per_cpu.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let mut cpu = v1::CPUStat::new();
    cpu.usage = MessageField::some(usage);
    cpu
}

fn memory_v1(dir: &Path) -> v1::MemoryStat {
    let stat = dir.join("memory.stat");
    let mut memory = v1::MemoryStat::new();
    memory.cache = read_keyed(&stat, "cache");
    memory.rss = read_keyed(&stat, "rss");
    memory.mapped_file = read_keyed(&stat, "mapped_file");
    memory.total_cache = read_keyed(&stat, "total_cache");
    memory.total_rss = read_keyed(&stat, "total_rss");
    memory.inactive_file = read_keyed(&stat, "inactive_file");
    memory.total_inactive_file = read_keyed(&stat, "total_inactive_file");
    memory.pg_fault = read_keyed(&stat, "pgfault");
    memory.pg_maj_fault = read_keyed(&stat, "pgmajfault");
    let mut usage = v1::MemoryEntry::new();
    usage.usage = read_u64(&dir.join("memory.usage_in_bytes"));
    usage.limit = read_u64(&dir.join("memory.limit_in_bytes"));
    usage.max = read_u64(&dir.join("memory.max_usage_in_bytes"));
    usage.failcnt = read_u64(&dir.join("memory.failcnt"));
    memory.usage = MessageField::some(usage);
    memory
}

/// The memory cgroup directory of `pid`, kept so that OOM kills can be counted
/// after the process is gone.
pub fn memory_dir(pid: i32) -> Option<PathBuf> {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        cgroup_dir(pid, "").ok()
    } else {
        cgroup_dir(pid, "memory").ok()
    }
}

/// How many times the kernel's OOM killer acted in a memory cgroup directory.
pub fn oom_kills(dir: &Path) -> u64 {
    let v2 = read_keyed(&dir.join("memory.events"), "oom_kill");
    if v2 > 0 {
        return v2;
    }
    read_keyed(&dir.join("memory.oom_control"), "oom_kill")
}
