//! A private containerd 1.6 for tests and benchmarks: its own root, state and sockets
//! in a temporary directory, the CRI plugin disabled, `containerd-shim-berth-v2` on its
//! PATH (a link to the built berth-shim), and a busybox image built from
//! /bin/busybox and imported as a docker-archive tarball.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::rootfs::build_rootfs;
use crate::tempdir::TempDir;

pub const CONTAINERD: &str = "/usr/bin/containerd";
pub const IMAGE: &str = "berth.test/busybox:latest";
pub const BERTH_RUNTIME: &str = "io.containerd.berth.v2";
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";

pub struct Containerd {
    pub dir: TempDir,
    /// The containerd namespace the tests use (its cgroup parent is removed at the end).
    pub namespace: String,
    child: Child,
}

fn config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n"
    )
}

impl Containerd {
    /// Starts containerd, or None when it is not installed.
    pub fn start() -> Option<Containerd> {
        if !Path::new(CONTAINERD).exists() {
            return None;
        }
        let dir = TempDir::new("containerd");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        std::os::unix::fs::symlink(crate::shim::shim_binary(), bin.join("containerd-shim-berth-v2")).expect("link the shim");
        std::fs::write(dir.path().join("config.toml"), config(dir.path())).expect("write config.toml");
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let child = Command::new(CONTAINERD)
            .arg("-c")
            .arg(dir.path().join("config.toml"))
            .env("PATH", path)
            .env("BERTH_SHIM_ROOT", dir.path().join("shims"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("containerd.log")).expect("log file"))
            .spawn()
            .expect("spawn containerd");
        let containerd = Containerd { dir, namespace: crate::tempdir::unique_name("ns"), child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !containerd.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not start: {}", containerd.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(containerd)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr` against this containerd (60 s at most).
    pub fn ctr(&self, args: &[&str]) -> Output {
        let socket = self.socket().display().to_string();
        Command::new("timeout")
            .args(["60", "ctr", "-a", &socket, "-n", &self.namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// Like `ctr`, failing the test unless it succeeds; returns stdout.
    #[track_caller]
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let output = self.ctr(args);
        assert!(output.status.success(), "ctr {args:?}: {}{}", String::from_utf8_lossy(&output.stderr), self.log_tail());
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().rev().take(15).collect();
        format!("\ncontainerd log:\n{}", lines.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }

    /// Builds the busybox image as a docker-archive tarball and imports it.
    pub fn import_busybox(&self) {
        let dir = self.dir.path().join("image");
        build_rootfs(&dir.join("rootfs"));
        let sh = |script: &str| {
            let status = Command::new("sh").arg("-c").arg(script).current_dir(&dir).status().expect("sh");
            assert!(status.success(), "{script}");
        };
        sh("tar -C rootfs -cf layer.tar .");
        let sum = Command::new("sha256sum").arg("layer.tar").current_dir(&dir).output().expect("sha256sum");
        let digest = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap_or_default().to_string();
        let config = serde_json::json!({
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            "os": "linux",
            "config": { "Env": ["PATH=/bin"], "Cmd": ["sh"] },
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{digest}")] }
        });
        std::fs::write(dir.join("config.json"), config.to_string()).expect("write image config");
        let manifest = serde_json::json!([{ "Config": "config.json", "RepoTags": [IMAGE], "Layers": ["layer.tar"] }]);
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("write manifest");
        sh("tar -cf image.tar manifest.json config.json layer.tar");
        let tarball = dir.join("image.tar").display().to_string();
        self.ctr_ok(&["image", "import", &tarball]);
    }

    /// Kills and removes every task and container left.
    pub fn remove_all(&self) {
        let listing = String::from_utf8_lossy(&self.ctr(&["containers", "list", "-q"]).stdout).into_owned();
        for id in listing.lines().filter(|l| !l.is_empty()) {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["task", "delete", "--force", id]);
            let _ = self.ctr(&["containers", "delete", id]);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.remove_all();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        // Snapshot mounts that containerd may leave under its root.
        let root = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut targets: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&root)).collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for target in targets {
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
        }
        remove_namespace_cgroups(&self.namespace);
    }
}

/// containerd puts a namespace's containers under a `/<namespace>` cgroup.
fn remove_namespace_cgroups(namespace: &str) {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for entry in entries.flatten() {
        let _ = std::fs::remove_dir(entry.path().join(namespace));
    }
}
