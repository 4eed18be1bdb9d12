//! Debian's containerd 1.6 with its CRI plugin and runc, private to one benchmark run:
//! root, state, sockets, runc state and CNI config in a temporary directory, started
//! with nsenter in a given network namespace (the test registry's), pulling docker.io
//! through the registry at 127.0.0.1:5000. Dropping it stops containerd, kills what its
//! shims still run and unmounts what it left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::berthd::{pids_rooted_under, pids_with_cmdline_containing, unix_channel, unmount_under};
use crate::tempdir::TempDir;

pub const CONTAINERD: &str = crate::containerd::CONTAINERD;
pub const RUNC: &str = "/usr/sbin/runc";
pub const RUNC_SHIM: &str = "/usr/bin/containerd-shim-runc-v2";

pub struct CriContainerd {
    pub dir: TempDir,
    pub child: Child,
}

fn config(dir: &Path, sandbox_image: &str) -> String {
    let d = dir.display();
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = []\n\
         [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n\
         [{cri}]\n  sandbox_image = \"{sandbox_image}\"\n  disable_apparmor = true\n  restrict_oom_score_adj = true\n\
         \x20 stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n\
         [{cri}.cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{d}/cni\"\n\
         [{cri}.containerd]\n  default_runtime_name = \"runc\"\n\
         [{cri}.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
         [{cri}.containerd.runtimes.runc.options]\n  Root = \"{d}/runc\"\n  BinaryName = \"{RUNC}\"\n\
         [{cri}.registry.mirrors.\"docker.io\"]\n  endpoint = [\"http://127.0.0.1:5000\"]\n"
    )
}

impl CriContainerd {
    /// Starts containerd in the network namespace at `netns_path`, or None when
    /// containerd or runc is not installed.
    pub fn start_in(netns_path: &str, sandbox_image: &str) -> Option<CriContainerd> {
        if ![CONTAINERD, RUNC, RUNC_SHIM].iter().all(|p| Path::new(p).exists()) {
            return None;
        }
        let dir = TempDir::new("containerd-cri");
        std::fs::create_dir_all(dir.path().join("cni")).expect("mkdir cni");
        std::fs::write(dir.path().join("config.toml"), config(dir.path(), sandbox_image)).expect("write config.toml");
        let child = Command::new("nsenter")
            .arg(format!("--net={netns_path}"))
            .arg(CONTAINERD)
            .arg("-c")
            .arg(dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("containerd.log")).expect("log file"))
            .spawn()
            .expect("spawn containerd");
        let containerd = CriContainerd { dir, child };
        containerd.wait_for_socket();
        Some(containerd)
    }

    fn wait_for_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "containerd did not serve in time:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(unix_channel(self.socket()).await)
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(unix_channel(self.socket()).await)
    }
}

impl Drop for CriContainerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let leftovers = pids_with_cmdline_containing(&self.dir.path().display().to_string());
        for pid in leftovers.into_iter().chain(pids_rooted_under(self.dir.path())) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
        unmount_under(self.dir.path());
    }
}
