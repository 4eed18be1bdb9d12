//! Driving `berth-shim` the way containerd does: `start` in a bundle with its own shim
//! root (`BERTH_SHIM_ROOT`), a ttrpc Task client on the printed address, an events
//! service standing in for containerd's that records what the shim publishes, and
//! `delete` after a shim died.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{create_events, Events, TaskClient};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::empty::Empty;
use protobuf::Message;
use ttrpc::asynchronous::TtrpcContext;

use crate::bins::bin_path;
use crate::rootfs::build_rootfs;
use crate::spec::default_spec;
use crate::tempdir::{unique_name, TempDir};

pub const NAMESPACE: &str = "berth-test";

/// The berth-shim binary under test: `$BERTH_SHIM_BIN`, else the built one.
pub fn shim_binary() -> PathBuf {
    std::env::var_os("BERTH_SHIM_BIN").map(PathBuf::from).unwrap_or_else(|| bin_path("berth-shim"))
}

/// A single-threaded tokio runtime for one test.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(future)
}

/// Events the shim published: (topic, event).
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<(String, Any)>>>);

impl EventLog {
    pub fn topics(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|(topic, _)| topic.clone()).collect()
    }

    pub fn events(&self) -> Vec<(String, Any)> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until `topic` has been seen, returning its last event.
    pub async fn wait_for(&self, topic: &str, timeout: Duration) -> Option<Any> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some((_, any)) = self.0.lock().unwrap().iter().rev().find(|(t, _)| t == topic) {
                return Some(any.clone());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

struct Collector(EventLog);

#[async_trait]
impl Events for Collector {
    async fn forward(&self, _: &TtrpcContext, request: ForwardRequest) -> ttrpc::Result<Empty> {
        if let Some(envelope) = request.envelope.as_ref() {
            let event = envelope.event.as_ref().cloned().unwrap_or_default();
            self.0 .0.lock().unwrap().push((envelope.topic.clone(), event));
        }
        Ok(Empty::new())
    }
}

/// A stand-in for containerd's ttrpc events service.
pub struct EventServer {
    pub path: PathBuf,
    pub log: EventLog,
    _server: ttrpc::asynchronous::Server,
}

impl EventServer {
    /// Must be called inside the test's tokio runtime.
    pub async fn start(dir: &Path) -> EventServer {
        let path = dir.join("events.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind the events socket");
        let log = EventLog::default();
        let mut server = ttrpc::asynchronous::Server::new()
            .add_listener(listener.into())
            .register_service(create_events(Arc::new(Collector(log.clone()))));
        server.start().await.expect("start the events server");
        EventServer { path, log, _server: server }
    }
}

/// A bundle for the shim: busybox rootfs and a default config running `args`.
pub struct ShimBundle {
    pub dir: TempDir,
    pub id: String,
    pub spec: serde_json::Value,
}

impl ShimBundle {
    pub fn new(args: &[&str]) -> ShimBundle {
        let dir = TempDir::new("shimbundle");
        build_rootfs(&dir.path().join("rootfs"));
        let id = unique_name("shim");
        let spec = default_spec(args, &format!("/{}", unique_name("cg")));
        let bundle = ShimBundle { dir, id, spec };
        bundle.write_config();
        bundle
    }

    pub fn write_config(&self) {
        let text = serde_json::to_string_pretty(&self.spec).expect("serialize spec");
        std::fs::write(self.dir.path().join("config.json"), text).expect("write config.json");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> String {
        self.path().display().to_string()
    }
}

/// One shim daemon started with `berth-shim start`, in its own shim root.
pub struct Shim {
    pub root: TempDir,
    pub address: String,
    pub events_address: String,
    pub bundle: PathBuf,
    pub id: String,
}

impl Shim {
    fn command(&self, action: &str) -> Command {
        let mut command = Command::new(shim_binary());
        command
            .args(["-namespace", NAMESPACE, "-address", "/run/berth-test-daemon.sock", "-publish-binary", "/bin/false"])
            .args(["-id", &self.id, "-bundle", &self.bundle.display().to_string(), action])
            .current_dir(&self.bundle)
            .env("BERTH_SHIM_ROOT", self.root.path())
            .env("TTRPC_ADDRESS", &self.events_address)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `berth-shim start` for `id` in `bundle`; `events` is the TTRPC_ADDRESS.
    pub fn start(bundle: &Path, id: &str, events: &str) -> Shim {
        let mut shim = Shim {
            root: TempDir::new("shimroot"),
            address: String::new(),
            events_address: events.to_string(),
            bundle: bundle.to_path_buf(),
            id: id.to_string(),
        };
        shim.address = shim.run_start();
        shim
    }

    /// `berth-shim start` again (same root): the address it prints.
    pub fn run_start(&self) -> String {
        let output = self.command("start").output().expect("run berth-shim start");
        assert!(output.status.success(), "berth-shim start: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf-8 address").trim().to_string()
    }

    /// `berth-shim delete`, decoding the DeleteResponse it prints.
    pub fn run_delete(&self) -> Result<DeleteResponse, String> {
        let output = self.command("delete").output().expect("run berth-shim delete");
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        DeleteResponse::parse_from_bytes(&output.stdout).map_err(|e| e.to_string())
    }

    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(self.address.trim_start_matches("unix://"))
    }

    /// A ttrpc Task client on the shim's socket.
    pub async fn client(&self) -> TaskClient {
        let stream = tokio::net::UnixStream::connect(self.socket_path()).await.expect("connect to the shim");
        TaskClient::new(ttrpc::asynchronous::Client::new(stream.into()))
    }

    /// The shim daemon's pid, as recorded in the bundle.
    pub fn pid(&self) -> i32 {
        std::fs::read_to_string(self.bundle.join("shim.pid")).expect("shim.pid").trim().parse().expect("pid")
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.bundle.join("shim.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        let _ = self.command("delete").stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// A ttrpc context with a 10 s deadline.
pub fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(10_000_000_000)
}

/// Waits until `check` holds, polling every 10 ms, up to `timeout`.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}

/// A FIFO in `dir` and a thread reading it to EOF (what containerd does with stdout).
pub fn fifo_reader(dir: &Path, name: &str) -> (String, std::thread::JoinHandle<String>) {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let reader_path = path.clone();
    let handle = std::thread::spawn(move || {
        use std::io::Read;
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&reader_path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    });
    (path.display().to_string(), handle)
}

/// A FIFO in `dir` that the test writes to (a process's stdin).
pub fn fifo_writer_path(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    path.display().to_string()
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}
