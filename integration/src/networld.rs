//! A private network world for the network library's tests: a namespace standing for
//! the host (the code under test runs on a thread that `setns`ed into it), an
//! "outside" namespace joined to it by a veth pair (uplink 192.168.200.1/24 <->
//! 192.168.200.2/24), sandbox namespaces pinned by berth's own helpers, and busybox
//! servers and clients run with `nsenter --net`. All of it goes away on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::command::{run_command, sh, CmdOutput};
use crate::netns::NetNs;
use crate::tempdir::TempDir;

pub const HOST_UPLINK: &str = "192.168.200.1";
pub const OUTSIDE_IP: &str = "192.168.200.2";

pub struct NetWorld {
    pub host: NetNs,
    pub outside: NetNs,
    pub dir: TempDir,
}

impl NetWorld {
    pub fn new() -> NetWorld {
        let host = NetNs::new();
        let outside = NetNs::new();
        let dir = TempDir::new("net");
        let (h, o) = (host.name(), outside.name());
        sh(&format!(
            "ip -n {h} link set lo up && ip -n {o} link set lo up && \
             ip -n {h} link add uplink type veth peer name uplink netns {o} && \
             ip -n {h} addr add {HOST_UPLINK}/24 dev uplink && ip -n {h} link set uplink up && \
             ip -n {o} addr add {OUTSIDE_IP}/24 dev uplink && ip -n {o} link set uplink up"
        ))
        .ok();
        std::fs::write(dir.path().join("index.html"), "hello from berth\n").unwrap();
        NetWorld { host, outside, dir }
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("meta.redb")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A config whose CNI cache lives in the world's directory.
    pub fn config(&self) -> berth::network::NetworkConfig {
        berth::network::NetworkConfig {
            cni_cache_dir: self.dir.path().join("cni-cache"),
            cni_conf_dir: self.dir.path().join("cni-conf"),
            ..Default::default()
        }
    }

    /// A pinned sandbox namespace, made with berth's helper.
    pub fn sandbox(&self, id: &str) -> Sandbox {
        let path = berth::network::netns_pin_path(&self.state_dir(), id);
        berth::network::create_pinned_netns(&path).expect("pin netns");
        Sandbox { id: id.to_string(), path, files: self.dir.path().join("files").join(id) }
    }

    /// Runs `body` on a thread inside the host namespace with a current-thread runtime.
    pub fn in_host<T: Send + 'static>(&self, body: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.host.path();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open host netns");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns host");
            body()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// A busybox httpd serving the world's index.html on `port` inside `netns`.
    pub fn httpd(&self, netns: &str, port: u16) -> Server {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={netns}"))
            .args(["busybox", "httpd", "-f", "-p", &port.to_string(), "-h"])
            .arg(self.dir.path());
        let server = Server::spawn(cmd);
        for _ in 0..100 {
            let probe = in_netns(netns, &format!("busybox netstat -ltn | grep -q ':{port} '"));
            if probe.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Default for NetWorld {
    fn default() -> Self {
        NetWorld::new()
    }
}

/// A pinned sandbox namespace; unpinned on drop.
pub struct Sandbox {
    pub id: String,
    pub path: PathBuf,
    pub files: PathBuf,
}

impl Sandbox {
    pub fn netns(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = berth::network::remove_pinned_netns(&self.path);
    }
}

/// A background process killed on drop.
pub struct Server {
    child: Child,
}

impl Server {
    pub fn spawn(mut cmd: Command) -> Server {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        Server { child: cmd.spawn().expect("spawn server") }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a shell snippet inside the network namespace at `netns` (a path).
pub fn in_netns(netns: &str, script: &str) -> CmdOutput {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={netns}")).args(["sh", "-c", script]);
    run_command(cmd, Duration::from_secs(20))
}

/// An HTTP GET of `url` from `netns` (curl: Debian's static busybox wget crashes in
/// its resolver): the body, or None when it failed.
pub fn fetch(netns: &str, url: &str) -> Option<String> {
    let out = in_netns(netns, &format!("curl -sf -m 3 {url}"));
    out.success().then_some(out.stdout)
}

/// Runs `script` in `netns` with `files/hosts` bind-mounted on /etc/hosts (a private
/// mount namespace), as a container that bind-mounts berth's files sees it.
pub fn with_hosts_file(netns: &str, files: &Path, script: &str) -> CmdOutput {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={netns}")).args(["unshare", "-m", "sh", "-c"]).arg(format!(
        "mount --make-rprivate / && mount --bind {} /etc/hosts && {script}",
        files.join("hosts").display()
    ));
    run_command(cmd, Duration::from_secs(20))
}

/// `ip -j <args>` in `netns`, parsed.
pub fn ip_json(netns: &str, args: &str) -> serde_json::Value {
    let out = in_netns(netns, &format!("ip -j {args}")).ok();
    serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The IPv4 `address/prefix`es of `dev` in `netns`, as `ip` shows them.
pub fn ipv4_addresses(netns: &str, dev: &str) -> Vec<String> {
    let links = ip_json(netns, &format!("addr show dev {dev}"));
    links[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or_default(), a["prefixlen"]))
        .collect()
}

/// `nft -j list ruleset` in `netns`, parsed.
pub fn nft_json(netns: &str) -> serde_json::Value {
    let out = in_netns(netns, "nft -j list ruleset").ok();
    serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The DNAT rules of published ports in `table` (in the endpoints' `ports-*` chains),
/// as nft's JSON expression lists.
pub fn nft_port_rules(netns: &str, table: &str) -> Vec<serde_json::Value> {
    let ruleset = nft_json(netns);
    let items = ruleset["nftables"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .filter_map(|item| item.get("rule").cloned())
        .filter(|rule| rule["table"] == table && rule["chain"].as_str().is_some_and(|c| c.starts_with("ports-")))
        .map(|rule| rule["expr"].clone())
        .collect()
}

/// Rules of `chain` in `table`, as nft's JSON expression lists.
pub fn nft_rules(netns: &str, table: &str, chain: &str) -> Vec<serde_json::Value> {
    let ruleset = nft_json(netns);
    let items = ruleset["nftables"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .filter_map(|item| item.get("rule").cloned())
        .filter(|rule| rule["table"] == table && rule["chain"] == chain)
        .map(|rule| rule["expr"].clone())
        .collect()
}
