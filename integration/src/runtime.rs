//! The runtimes under test (berth-runc, runc, crun): how to invoke each, with its own
//! temporary `--root` state directory. `BERTH_TEST_RUNTIMES=runc,crun` narrows the set.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bins::bin_path;
use crate::tempdir::TempDir;

/// Every runtime name this harness knows.
/// berth-runc-sealed is the same berth-runc run from a read-only mount, as
/// deploy/install.sh installs it: no sealing, no handed-over init (see
/// [`crate::bins::sealed_bin_path`]).
pub const ALL_RUNTIMES: [&str; 4] = ["berth-runc", "berth-runc-sealed", "runc", "crun"];

/// One runc-compatible runtime and its private state directory.
pub struct Runtime {
    name: String,
    program: PathBuf,
    /// crun (Debian 1.8) refuses the hybrid cgroup layout: run it in a private mount
    /// namespace with the unified hierarchy unmounted.
    crun_wrap: bool,
    state: TempDir,
    /// Container ids and cgroup names used with this runtime, for the leak check.
    tracked: RefCell<(Vec<String>, Vec<String>)>,
}

impl Runtime {
    /// The runtime called `name` if its binary exists on this machine.
    pub fn find(name: &str) -> Option<Runtime> {
        let program = match name {
            "berth-runc" => bin_path("berth-runc"),
            "berth-runc-sealed" => crate::bins::sealed_bin_path("berth-runc")?,
            "runc" => which("runc")?,
            "crun" => which("crun")?,
            other => panic!("unknown runtime {other:?} (known: {ALL_RUNTIMES:?})"),
        };
        if !program.exists() {
            return None;
        }
        let crun_wrap = name == "crun" && hybrid_cgroups();
        Some(Runtime {
            name: name.to_string(),
            program,
            crun_wrap,
            state: TempDir::new(&format!("state-{name}")),
            tracked: RefCell::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_berth(&self) -> bool {
        self.name.starts_with("berth-runc")
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The `--root` state directory.
    pub fn root(&self) -> &Path {
        self.state.path()
    }

    /// Remembers a container id for the leak check.
    pub fn track_id(&self, id: &str) {
        self.tracked.borrow_mut().0.push(id.to_string());
    }

    /// Remembers a cgroup name for the leak check.
    pub fn track_cgroup(&self, name: &str) {
        self.tracked.borrow_mut().1.push(name.to_string());
    }

    /// What every container used with this runtime left behind (empty when clean).
    pub fn leaks(&self) -> Vec<String> {
        let t = self.tracked.borrow();
        crate::leak::leaks(self.root(), &t.0, &t.1)
    }

    /// Removes leftover cgroup dirs of the tracked containers, then forgets the
    /// tracked ids and cgroups (after a leak check).
    pub fn untrack_all(&self) {
        let mut t = self.tracked.borrow_mut();
        for dir in crate::leak::remove_cgroup_dirs(&t.1) {
            eprintln!("warning: could not remove leftover cgroup {dir}");
        }
        t.0.clear();
        t.1.clear();
    }

    /// A command invoking this runtime with `--root` and then `args`.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = if self.crun_wrap {
            let mut c = Command::new("unshare");
            c.args([
                "-m",
                "sh",
                "-c",
                "umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"",
            ]);
            c.arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        };
        cmd.arg("--root").arg(self.root());
        for a in args {
            cmd.arg(a.as_ref());
        }
        cmd
    }
}

/// The runtimes to test: `BERTH_TEST_RUNTIMES` (comma separated) or every known
/// runtime. Each must exist: a missing one fails the test rather than leaving it to
/// pass having run nothing.
pub fn runtimes() -> Vec<Runtime> {
    match std::env::var("BERTH_TEST_RUNTIMES") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                Runtime::find(n).unwrap_or_else(|| {
                    panic!("runtime {n} asked for in BERTH_TEST_RUNTIMES is not installed/built")
                })
            })
            .collect(),
        _ => ALL_RUNTIMES
            .iter()
            .map(|n| {
                Runtime::find(n).unwrap_or_else(|| {
                    panic!("runtime {n} is not installed/built (.ci/run installs runc and crun; BERTH_TEST_RUNTIMES picks fewer)")
                })
            })
            .collect(),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// True on a hybrid layout: cgroup2 at /sys/fs/cgroup/unified and v1 controllers.
pub fn hybrid_cgroups() -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let unified = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.get(4) == Some(&"/sys/fs/cgroup/unified") && l.contains(" - cgroup2 ")
    });
    unified && Path::new("/sys/fs/cgroup/memory").is_dir()
}
