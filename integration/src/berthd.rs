//! Running `berthd` for a test: its own network namespace (entered with nsenter, so
//! the daemon keeps the host's mount namespace and cgroup view), temporary root and
//! state directories, a config file, and a CRI client (tonic over the unix socket).
//! Dropping it stops the daemon, kills what its shims still run, and unmounts what it
//! left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::bins::bin_path;
use crate::netns::NetNs;
use crate::tempdir::TempDir;

pub struct Berthd {
    /// The namespace berthd runs in, when the daemon made it itself.
    pub own_netns: Option<NetNs>,
    pub netns_path: String,
    pub dir: TempDir,
    pub child: Option<Child>,
    pub extra_config: String,
    /// The daemon's executable when not the workspace's `berthd` (a build with other
    /// features, say).
    pub binary: Option<PathBuf>,
    /// Environment variables the next [`Berthd::spawn`] gives the daemon.
    pub env: Vec<(String, String)>,
}

impl Berthd {
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn socket(&self) -> PathBuf {
        self.state().join("berth.sock")
    }
    /// The Docker Engine API socket.
    pub fn docker_socket(&self) -> PathBuf {
        self.state().join("docker.sock")
    }
    /// The daemon's own cgroup parent (named after its directory), removed on drop.
    pub fn cgroup_parent(&self) -> String {
        self.dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("berthd.log")
    }

    /// Starts berthd in a new network namespace, with `extra_config` appended to its
    /// config file.
    pub fn start(extra_config: &str) -> Berthd {
        let netns = NetNs::new();
        crate::command::sh(&format!("nsenter --net={} ip link set lo up", netns.path())).ok();
        let path = netns.path();
        Berthd::start_with(Some(netns), path, extra_config)
    }

    /// Starts berthd in the network namespace at `netns_path` (a registry's, say).
    pub fn start_in(netns_path: &str, extra_config: &str) -> Berthd {
        Berthd::start_with(None, netns_path.to_string(), extra_config)
    }

    fn start_with(own_netns: Option<NetNs>, netns_path: String, extra_config: &str) -> Berthd {
        let mut daemon = Berthd { own_netns, netns_path, dir: TempDir::new("berthd"), child: None, extra_config: extra_config.to_string(), binary: None, env: Vec::new() };
        daemon.spawn();
        daemon
    }

    /// (Re)starts the daemon process on the same directories.
    pub fn spawn(&mut self) {
        let config = self.dir.path().join("config.toml");
        let text = format!(
            "root = \"{}\"\nstate = \"{}\"\ncri_socket = \"{}\"\ndocker_socket = \"{}\"\ncgroup_parent = \"/{}\"\nlog_level = \"debug\"\n{}",
            self.root().display(),
            self.state().display(),
            self.socket().display(),
            self.docker_socket().display(),
            self.cgroup_parent(),
            self.extra_config
        );
        std::fs::write(&config, text).expect("write config.toml");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("berthd log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns_path))
            .arg(self.binary.clone().unwrap_or_else(|| bin_path("berthd")))
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start berthd");
        self.child = Some(child);
        self.wait_for_socket();
    }

    /// Up to a minute: an emulated machine (the cgroup v2 VM lane) starts it in seconds.
    fn wait_for_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() && std::os::unix::net::UnixStream::connect(self.docker_socket()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("berthd did not serve {} in time:\n{}", self.socket().display(), self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILLs the daemon (its shims and containers live on).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILLs the daemon, its shims and every process of its containers: what a power
    /// loss does to the processes (the mounts stay).
    pub fn kill_everything(&mut self) {
        self.kill();
        self.clean_up_processes();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.live_processes() > 0 && Instant::now() < deadline {
            self.clean_up_processes();
        }
    }

    /// Processes of the daemon's shims and containers that are not yet dead.
    fn live_processes(&self) -> usize {
        let marker = self.dir.path().display().to_string();
        let mut pids = pids_with_cmdline_containing(&marker);
        pids.extend(pids_in_cgroup_tree(&self.cgroup_parent()));
        pids.into_iter().filter(|pid| !is_zombie(*pid)).count()
    }

    /// Waits up to `timeout` for the daemon to exit by itself; its exit status.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, and waits for the daemon to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    pub async fn channel(&self) -> Channel {
        unix_channel(self.socket()).await
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }

    /// Kills every process the daemon's shims run and unmounts what is left under the
    /// test's directories.
    fn clean_up_after(&self) {
        self.clean_up_processes();
        unmount_under(self.dir.path());
        remove_cgroup_tree(&self.cgroup_parent());
    }

    fn clean_up_processes(&self) {
        let marker = self.dir.path().display().to_string();
        for pid in pids_with_cmdline_containing(&marker) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        for pid in pids_in_cgroup_tree(&self.cgroup_parent()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        self.stop();
        self.clean_up_after();
    }
}

/// A gRPC channel over the unix socket at `socket` (berthd's, or another CRI server's).
pub async fn unix_channel(socket: PathBuf) -> Channel {
    Endpoint::try_from("http://berth.invalid")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { tokio::net::UnixStream::connect(socket).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
        .unwrap_or_else(|e| panic!("connect to the CRI socket: {e}"))
}

fn is_zombie(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command, which is in parentheses and may hold spaces.
    stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])).unwrap_or(true)
}

pub fn pids_with_cmdline_containing(text: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(text) {
            pids.push(pid);
        }
    }
    pids
}

/// The directories of `/sys/fs/cgroup/*/<name>` and below, parents first.
pub fn cgroup_tree(name: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if name.is_empty() {
        return dirs;
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let mut pending = vec![hierarchy.path().join(name)];
        while let Some(dir) = pending.pop() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                pending.extend(entries.flatten().filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false)).map(|e| e.path()));
                dirs.push(dir);
            }
        }
    }
    dirs
}

/// Every process in the daemon's cgroup tree: its containers.
fn pids_in_cgroup_tree(name: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroup_tree(name)
        .iter()
        .flat_map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Processes whose root directory lies under `dir` (seen from this mount namespace).
pub fn pids_rooted_under(dir: &Path) -> Vec<i32> {
    let marker = dir.display().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(process_root) = std::fs::read_link(entry.path().join("root")) else { continue };
        if process_root.display().to_string().starts_with(&marker) {
            pids.push(pid);
        }
    }
    pids
}

/// Removes `/sys/fs/cgroup/*/<name>` and what is below it, deepest first.
pub fn remove_cgroup_tree(name: &str) {
    for dir in cgroup_tree(name).iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Unmounts (lazily) every mount under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let prefix = dir.display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_string))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}
