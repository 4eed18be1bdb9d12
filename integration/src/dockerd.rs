//! Debian's dockerd (docker.io 20.10) as a peer for side-by-side benchmarks: its own
//! registry and network namespace ([`Registry::start`], busybox pushed as docker.io's
//! `library/busybox`, reached through `--registry-mirror`), and everything else private
//! under a temporary directory: data root, exec root (so the containerd that dockerd
//! starts and manages keeps its socket and state there), pidfile, API socket, config
//! file, and a cgroup parent of its own. Dropping it removes the containers, stops
//! dockerd, kills what is left of its containerd and shims, unmounts what it mounted
//! and removes its cgroups; the namespace (bridge, veths, iptables rules) goes with the
//! registry.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::berthd::{cgroup_tree, pids_with_cmdline_containing, remove_cgroup_tree, unmount_under};
use crate::cri::busybox_image;
use crate::docker::DockerClient;
use crate::registry::{Auth, Registry, ADDRESS};
use crate::tempdir::{unique_name, TempDir};

pub const DOCKERD: &str = "/usr/sbin/dockerd";

pub struct Dockerd {
    pub registry: Registry,
    pub dir: TempDir,
    pub config_dir: TempDir,
    /// The cgroup parent of its containers, under every hierarchy.
    pub cgroup_parent: String,
    /// Whether `/sys/fs/cgroup/*/docker` existed before (then it is not ours to remove).
    docker_cgroup_existed: bool,
    child: Option<Child>,
}

impl Dockerd {
    /// Whether Debian's dockerd is installed (package docker.io).
    pub fn installed() -> bool {
        Path::new(DOCKERD).exists()
    }

    /// Starts a registry holding busybox and dockerd beside it, and waits until dockerd
    /// answers `docker version`.
    pub fn start() -> Dockerd {
        assert!(Dockerd::installed(), "{DOCKERD} is not installed (Debian's docker.io; deploy/packages.sh bench)");
        let registry = Registry::start(Auth::None);
        busybox_image().push(&registry, "library/busybox", "latest");
        let dir = TempDir::new("dockerd");
        let mut dockerd = Dockerd {
            registry,
            config_dir: TempDir::new("dockerd-cli"),
            cgroup_parent: unique_name("dockerd-cg"),
            docker_cgroup_existed: !cgroup_tree("docker").is_empty(),
            child: None,
            dir,
        };
        dockerd.spawn();
        dockerd.wait_ready();
        dockerd
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        std::fs::write(d.join("daemon.json"), "{}\n").expect("daemon.json");
        let log = std::fs::File::create(d.join("dockerd.log")).expect("dockerd log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.registry.netns.path()))
            .arg(DOCKERD)
            .arg(format!("--config-file={}", d.join("daemon.json").display()))
            .arg(format!("--data-root={}", d.join("data").display()))
            .arg(format!("--exec-root={}", d.join("exec").display()))
            .arg(format!("--pidfile={}", d.join("docker.pid").display()))
            .arg(format!("--host=unix://{}", self.socket().display()))
            .arg(format!("--cgroup-parent=/{}", self.cgroup_parent))
            .arg(format!("--registry-mirror=http://{ADDRESS}"))
            .args(["--storage-driver=overlay2", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        self.child = Some(child);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.docker(&["version"]).success() {
            assert!(Instant::now() < deadline, "dockerd did not start:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Removes every container, then SIGTERMs dockerd and waits for it (20 s at most).
    fn stop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]).stdout;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            self.docker(&args);
        }
        let Some(mut child) = self.child.take() else { return };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Its containerd and shims carry the temporary directory in their command lines.
    fn kill_leftovers(&self) {
        let marker = self.dir.path().display().to_string();
        for _ in 0..50 {
            let pids = pids_with_cmdline_containing(&marker);
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl DockerClient for Dockerd {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }
    fn config_path(&self) -> &Path {
        self.config_dir.path()
    }
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        self.kill_leftovers();
        unmount_under(self.dir.path());
        remove_cgroup_tree(&self.cgroup_parent);
        if !self.docker_cgroup_existed {
            remove_cgroup_tree("docker");
        }
    }
}
