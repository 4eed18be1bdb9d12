//! The memory of processes as the benchmarks report it: RSS and PSS from
//! `/proc/PID/smaps_rollup`, and the processes of a runtime's shims.

use std::path::Path;

/// RSS, PSS and the anonymous part of the RSS (heap, stacks; the rest maps files:
/// the executable and libraries) in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    pub pss: u64,
    pub anonymous: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;
    fn add(self, other: Memory) -> Memory {
        Memory { rss: self.rss + other.rss, pss: self.pss + other.pss, anonymous: self.anonymous + other.anonymous }
    }
}

impl std::iter::Sum for Memory {
    fn sum<I: Iterator<Item = Memory>>(memories: I) -> Memory {
        memories.fold(Memory::default(), |a, b| a + b)
    }
}

/// The RSS and PSS of `pid` (zero when it is gone).
pub fn memory_of(pid: i32) -> Memory {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| rollup.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0);
    Memory { rss: field("Rss:"), pss: field("Pss:"), anonymous: field("Anonymous:") }
}

/// KiB as MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Pids running `exe` (by path, or by name: a shim may run from a copy or memfd) whose
/// command line contains `marker`.
pub fn processes_of(exe: &Path, marker: &str) -> Vec<i32> {
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let by_name = exe.file_name().is_some_and(|name| name.to_string_lossy().chars().take(15).eq(comm.trim_end().chars()));
        let runs_exe = by_name || std::fs::read_link(format!("/proc/{pid}/exe")).map(|p| p == exe).unwrap_or(false);
        let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).into_owned();
        if runs_exe && cmdline.contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether any thread of `pid` has a child process (a shim's container init).
pub fn has_children(pid: i32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    tasks.into_iter().any(|task| std::fs::read_to_string(task.path().join("children")).is_ok_and(|c| !c.trim().is_empty()))
}
