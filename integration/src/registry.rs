//! A real registry for image tests: Debian's `docker-registry` on 127.0.0.1:5000 inside
//! a network namespace the test made, without auth, with htpasswd basic auth, or with
//! bearer tokens from [`crate::token_server`]. Test content is uploaded with `curl`
//! over the registry's HTTP API, independently of berth's own push. Also
//! [`in_netns`], to run test code (and the code under test) inside that namespace.
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::command::{run_command, CmdOutput};
use crate::netns::NetNs;
use crate::tempdir::TempDir;

pub const REGISTRY: &str = "/usr/bin/docker-registry";
pub const ADDRESS: &str = "127.0.0.1:5000";

/// How the registry checks clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic { username: String, password: String },
    /// Bearer tokens from a token server on 127.0.0.1:5001 that accepts these credentials.
    Token { username: String, password: String },
}

pub struct Registry {
    pub netns: NetNs,
    pub dir: TempDir,
    pub auth: Auth,
    child: Option<Child>,
    token_server: Option<crate::token_server::TokenServer>,
}

/// Runs `body` on a fresh thread that has joined `netns` (threads it starts, such as a
/// tokio runtime's, are in it too).
pub fn in_netns<T: Send>(netns: &NetNs, body: impl FnOnce() -> T + Send) -> T {
    let path = netns.path();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let file = std::fs::File::open(&path).expect("open the netns");
                let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
                body()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A multi-threaded tokio runtime (build it inside [`in_netns`]).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn config_yaml(dir: &Path, auth: &Auth) -> String {
    let d = dir.display();
    let auth_section = match auth {
        Auth::None => String::new(),
        Auth::Basic { .. } => format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {d}/htpasswd\n"),
        Auth::Token { .. } => format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:5001/token\n    service: berth-test-registry\n    \
             issuer: berth-test-issuer\n    rootcertbundle: {d}/token.crt\n"
        ),
    };
    format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n  \
         delete:\n    enabled: true\nhttp:\n  addr: {ADDRESS}\n  secret: berth-test\n{auth_section}"
    )
}

impl Registry {
    /// Starts a registry in a new network namespace. A missing registry fails the test
    /// (.ci/run installs Debian's docker-registry): no image test passes having run
    /// nothing.
    pub fn start(auth: Auth) -> Registry {
        assert!(Path::new(REGISTRY).exists(), "{REGISTRY} is not installed (Debian's docker-registry; .ci/run installs it)");
        let netns = NetNs::new();
        crate::command::sh(&format!("nsenter --net={} ip link set lo up", netns.path())).ok();
        let dir = TempDir::new("registry");
        let token_server = match &auth {
            Auth::Basic { username, password } => {
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                std::fs::write(dir.path().join("htpasswd"), format!("{username}:{hash}\n")).expect("htpasswd");
                None
            }
            Auth::Token { username, password } => Some(crate::token_server::TokenServer::start(&netns, dir.path(), username, password)),
            Auth::None => None,
        };
        std::fs::write(dir.path().join("config.yml"), config_yaml(dir.path(), &auth)).expect("config.yml");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.path()))
            .args([REGISTRY, "serve"])
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let registry = Registry { netns, dir, auth, child: Some(child), token_server };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.curl(&["-o", "/dev/null", "-w", "%{http_code}", &format!("http://{ADDRESS}/v2/")]);
            if out.success() && matches!(out.stdout.trim(), "200" | "401") {
                return;
            }
            assert!(Instant::now() < deadline, "registry did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Runs curl inside the namespace, without credentials.
    pub fn curl(&self, args: &[&str]) -> CmdOutput {
        self.curl_as(None, args)
    }

    /// Runs curl inside the namespace, with credentials for `repository` when given.
    pub fn curl_as(&self, repository: Option<&str>, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.path())).args(["curl", "-sS", "--max-time", "30"]);
        match (&self.auth, repository) {
            (Auth::None, _) | (_, None) => {}
            (Auth::Basic { username, password }, Some(_)) => {
                cmd.arg("-u").arg(format!("{username}:{password}"));
            }
            (Auth::Token { .. }, Some(repository)) => {
                let token = self.token_server.as_ref().expect("token server").admin_token(repository);
                cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
            }
        }
        cmd.args(args);
        run_command(cmd, Duration::from_secs(60))
    }

    /// Uploads a blob (monolithic upload) and returns its digest.
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = crate::images::sha256(bytes);
        let file = self.dir.path().join(format!("upload-{}", &digest[7..]));
        std::fs::write(&file, bytes).expect("write upload file");
        let start = self.curl_as(Some(repository), &["-X", "POST", "-D", "-", "-o", "/dev/null", &format!("http://{ADDRESS}/v2/{repository}/blobs/uploads/")]).ok();
        let location = start
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("Location: ").or_else(|| line.strip_prefix("location: ")))
            .unwrap_or_else(|| panic!("no upload location: {start}"))
            .trim()
            .to_string();
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let url = if url.starts_with("http") { url } else { format!("http://{ADDRESS}{url}") };
        let data = format!("@{}", file.display());
        let done = self.curl_as(Some(repository), &["-X", "PUT", "-f", "-H", "Content-Type: application/octet-stream", "--data-binary", &data, &url]);
        assert!(done.success(), "blob upload failed: {done}");
        std::fs::remove_file(&file).ok();
        digest
    }

    /// Uploads a manifest (or index) under `reference` (a tag or its digest).
    pub fn push_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let file = self.dir.path().join("manifest-upload");
        std::fs::write(&file, bytes).expect("write manifest file");
        let data = format!("@{}", file.display());
        let url = format!("http://{ADDRESS}/v2/{repository}/manifests/{reference}");
        let out = self.curl_as(Some(repository), &["-X", "PUT", "-H", &format!("Content-Type: {media_type}"), "--data-binary", &data, "-w", "%{http_code}", &url]);
        assert!(out.success() && out.stdout.ends_with("201"), "manifest upload failed: {out}");
    }

    /// Whether the registry has a blob in a repository.
    pub fn has_blob(&self, repository: &str, digest: &str) -> bool {
        let out = self.curl_as(Some(repository), &["-I", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{ADDRESS}/v2/{repository}/blobs/{digest}")]);
        out.stdout.trim() == "200"
    }

    /// The file in the registry's storage that holds a blob (to corrupt it on purpose).
    pub fn blob_data_path(&self, digest: &str) -> std::path::PathBuf {
        let hex = &digest[7..];
        self.dir.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.token_server.take();
    }
}
