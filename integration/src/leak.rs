//! The leak check run after each test: for a runtime's containers, no state directory
//! entry, no cgroup directory named after their cgroupsPath, and no process in them.

use std::path::Path;

/// Problems left behind by the containers `ids` (state under `root`) and the cgroup
/// names `cgroups`; empty when clean.
pub fn leaks(root: &Path, ids: &[String], cgroups: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for id in ids {
        let p = root.join(id);
        if p.exists() {
            found.push(format!("state entry {} still exists", p.display()));
        }
    }
    for name in cgroups {
        let dirs = cgroup_dirs_named(name);
        found.extend(
            dirs.into_iter()
                .map(|d| format!("cgroup dir {d} still exists")),
        );
        found.extend(
            procs_in_cgroup(name)
                .into_iter()
                .map(|p| format!("process {p} still in cgroup {name}")),
        );
    }
    found
}

/// Removes (deepest first) every cgroup dir named after one of `cgroups`, so that a
/// runtime's leftovers do not outlive the test; returns what could not be removed.
pub fn remove_cgroup_dirs(cgroups: &[String]) -> Vec<String> {
    let mut stuck = Vec::new();
    for name in cgroups {
        let mut dirs = cgroup_dirs_named(name);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for d in dirs {
            if std::fs::remove_dir(&d).is_err() {
                stuck.push(d);
            }
        }
    }
    stuck
}

/// Dirs under /sys/fs/cgroup (6 levels deep) whose name contains `name`.
fn cgroup_dirs_named(name: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    find_dirs_named(Path::new("/sys/fs/cgroup"), name, 6, &mut dirs);
    dirs
}

fn find_dirs_named(dir: &Path, name: &str, depth: u32, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains(name) {
            out.push(path.display().to_string());
        } else if depth > 0 {
            find_dirs_named(&path, name, depth - 1, out);
        }
    }
}

/// Live (not zombie) pids whose /proc/<pid>/cgroup mentions `name`. Zombies are
/// skipped: orphaned container inits are reaped by the machine's pid 1, not by us.
pub fn procs_in_cgroup(name: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .map(|t| t.contains(name))
                .unwrap_or(false)
        })
        .filter(|pid| !pid_gone(*pid))
        .collect()
}

/// True when `pid` is gone (or a zombie).
pub fn pid_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
            .unwrap_or(true),
    }
}

/// A benchmark's cgroup parent: removed (with the empty cgroups left below it) when dropped.
pub struct CgroupParent(String);

impl CgroupParent {
    pub fn new(name: String) -> CgroupParent {
        CgroupParent(name)
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        // What a failed run left below it (containers' cgroups) goes first.
        crate::berthd::remove_cgroup_tree(&self.0);
        let stuck = remove_cgroup_dirs(std::slice::from_ref(&self.0));
        if !stuck.is_empty() {
            println!("cgroups left behind: {stuck:?}");
        }
    }
}
