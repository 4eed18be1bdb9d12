//! What the kernel and a daemon's directories hold of one berthd's objects (mounts,
//! cgroup directories, links and nftables in its namespace, processes, entries of its
//! state and root), taken before and after an operation that a crash cut short, so a
//! crash test can say exactly what recovery left behind; and the crash-point build.
use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::berthd::{cgroup_tree, pids_with_cmdline_containing, Berthd};
use crate::command::sh;

/// berthd built with the `crash-points` feature (`BERTH_CRASH_BERTHD` may name another).
pub fn crash_berthd() -> PathBuf {
    let path = std::env::var_os("BERTH_CRASH_BERTHD").map(PathBuf::from).unwrap_or_else(|| {
        let release = crate::bins::bin_dir();
        release.parent().expect("target dir").join("crash/release/berthd")
    });
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --release --features crash-points --bin berthd --target-dir target/crash`",
        path.display()
    );
    path
}

/// What the kernel and the daemon's directories hold of this daemon's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelView {
    mounts: BTreeSet<String>,
    cgroups: BTreeSet<String>,
    links: BTreeSet<String>,
    nft: String,
    processes: BTreeSet<i32>,
    entries: BTreeSet<String>,
}

impl KernelView {
    pub fn take(daemon: &Berthd) -> KernelView {
        let dir = daemon.dir.path().display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let mounts = mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).filter(|point| point.contains(&dir)).map(str::to_string).collect();
        let cgroups = cgroup_tree(&daemon.cgroup_parent()).into_iter().map(|p| p.display().to_string()).collect();
        let links = sh(&format!("nsenter --net={} ip -o link show", daemon.netns_path)).ok().stdout;
        let links = links.lines().filter_map(|line| line.split(": ").nth(1)).map(|name| name.split('@').next().unwrap_or(name).to_string()).collect();
        let nft = sh(&format!("nsenter --net={} nft list ruleset", daemon.netns_path)).ok().stdout;
        // The daemon itself aside (the one that crashed and the one that recovered differ).
        let daemon_pid = daemon.child.as_ref().map(|child| child.id() as i32);
        let others = |pid: &i32| *pid != std::process::id() as i32 && Some(*pid) != daemon_pid;
        let processes = pids_with_cmdline_containing(&dir).into_iter().filter(others).collect();
        let mut entries = BTreeSet::new();
        let places: [(std::path::PathBuf, &str); 8] = [(daemon.state(), "netns"), (daemon.state(), "sandboxes"), (daemon.root(), "containers"), (daemon.root(), "snapshots"), (daemon.root(), "content/ingest"), (daemon.root(), "content/blobs/sha256"), (daemon.root(), "docker"), (daemon.state(), "docker")];
        for (base, sub) in places {
            for entry in std::fs::read_dir(base.join(sub)).into_iter().flatten().flatten() {
                entries.insert(format!("{sub}/{}", entry.file_name().to_string_lossy()));
            }
        }
        KernelView { mounts, cgroups, links, nft, processes, entries }
    }

    /// Asserts that nothing differs from `expected`, naming what does.
    pub fn assert_same(&self, expected: &KernelView, context: &str) {
        let diff = |name: &str, now: &BTreeSet<String>, then: &BTreeSet<String>| {
            let extra: Vec<_> = now.difference(then).collect();
            let missing: Vec<_> = then.difference(now).collect();
            (!extra.is_empty() || !missing.is_empty()).then(|| format!("{name}: extra {extra:?}, missing {missing:?}"))
        };
        let as_text = |pids: &BTreeSet<i32>| pids.iter().map(|p| format!("{p} {}", cmdline(*p))).collect::<BTreeSet<_>>();
        let problems: Vec<String> = [
            diff("mounts", &self.mounts, &expected.mounts),
            diff("cgroups", &self.cgroups, &expected.cgroups),
            diff("links", &self.links, &expected.links),
            diff("processes", &as_text(&self.processes), &as_text(&expected.processes)),
            diff("entries", &self.entries, &expected.entries),
            (self.nft != expected.nft).then(|| format!("nft ruleset:\n{}\nexpected:\n{}", self.nft, expected.nft)),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert!(problems.is_empty(), "{context}: the kernel's view differs:\n{}", problems.join("\n"));
    }
}

pub fn cmdline(pid: i32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ")
}
