//! Host-side view of a process's cgroups: which directory under /sys/fs/cgroup holds it
//! for a v1 controller or for the unified (v2) hierarchy, and reading files there.

use std::path::PathBuf;

/// True when /sys/fs/cgroup itself is a cgroup2 mount (pure v2).
pub fn is_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// (mount point, fstype, super options) of every cgroup/cgroup2 mount on the host.
fn cgroup_mounts() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mnt = pre.split(' ').nth(4)?.to_string();
            let mut p = post.split(' ');
            let fstype = p.next()?.to_string();
            let opts = p.nth(1).unwrap_or("").to_string();
            (fstype == "cgroup" || fstype == "cgroup2").then_some((mnt, fstype, opts))
        })
        .collect()
}

/// The host directory of `pid`'s cgroup for v1 `controller` (e.g. "memory"), or for
/// the unified hierarchy when `controller` is "" .
pub fn cgroup_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })?;
    let mount = cgroup_mounts().into_iter().find(|(_, fstype, opts)| {
        if controller.is_empty() {
            fstype == "cgroup2"
        } else {
            fstype == "cgroup" && opts.split(',').any(|o| o == controller)
        }
    })?;
    Some(PathBuf::from(mount.0).join(rel.trim_start_matches('/')))
}

/// Reads a cgroup file of `pid`: on v2 `v2_file` in the unified dir, else `v1_file` in
/// the `controller` dir. Returns the trimmed content.
#[track_caller]
pub fn read_cgroup_file(pid: i32, controller: &str, v1_file: &str, v2_file: &str) -> String {
    let (dir, file) = if is_v2() {
        (cgroup_dir(pid, ""), v2_file)
    } else {
        (cgroup_dir(pid, controller), v1_file)
    };
    let dir = dir.unwrap_or_else(|| panic!("pid {pid} has no {controller} cgroup"));
    let path = dir.join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Every host cgroup directory of `pid` (v1 controllers and unified), for checking
/// later that they are gone.
pub fn all_cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut dirs = Vec::new();
    for line in text.lines() {
        let ctrls = line.split(':').nth(1).unwrap_or("");
        let ctrl = ctrls.split(',').next().unwrap_or("");
        if ctrl.starts_with("name=") {
            continue;
        }
        if let Some(d) = cgroup_dir(pid, ctrl) {
            if d.parent().is_some() && !d.ends_with("cgroup") {
                dirs.push(d);
            }
        }
    }
    dirs
}

/// For tests of pure cgroup v2: true on a v2 host; elsewhere false after saying that
/// `test` is skipped, or a panic when the VM lane asked for v2 with `BERTH_REQUIRE_V2`.
pub fn on_v2(test: &str) -> bool {
    if is_v2() {
        return true;
    }
    assert!(std::env::var_os("BERTH_REQUIRE_V2").is_none(), "{test}: BERTH_REQUIRE_V2 is set but /sys/fs/cgroup is not cgroup2");
    eprintln!("{test}: skipped, the host is not pure cgroup v2 (run integration/vm/run.sh integration/vm/lane.sh)");
    false
}
