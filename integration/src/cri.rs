//! CRI test fixtures: a registry with a busybox image, berthd in the registry's network
//! namespace reaching it through a mirror, pod and container configs, and waiting.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::berthd::Berthd;
use crate::images::{Layer, LayerBuilder, TestImage};
use crate::registry::{Auth, Registry};

pub const IMAGE: &str = "docker.io/library/busybox:latest";

/// The config lines that send docker.io to the test registry.
pub fn mirror_config() -> String {
    "[registry.\"docker.io\"]\nmirrors = [\"http://127.0.0.1:5000\"]\n".to_string()
}

/// A registry holding busybox as `library/busybox:latest`, and berthd beside it.
pub struct World {
    pub daemon: Berthd,
    pub registry: Registry,
}

impl World {
    pub fn new() -> World {
        World::with_config("")
    }

    pub fn with_config(extra: &str) -> World {
        let registry = Registry::start(Auth::None);
        busybox_image().push(&registry, "library/busybox", "latest");
        let daemon = Berthd::start_in(&registry.netns.path(), &format!("{}{extra}", mirror_config()));
        World { daemon, registry }
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// The busybox applets the tests use, as symlinks.
const APPLETS: &[&str] = &["cat", "echo", "hostname", "httpd", "id", "ipcmk", "ipcs", "mkdir", "nc", "printf", "sleep", "true", "false", "wc", "tr", "ls"];

/// busybox with its applets, /tmp and /etc/group; root user, working directory /work
/// (which no layer has: the runtime must make it).
pub fn busybox_image() -> TestImage {
    busybox_image_with(|layer| layer)
}

/// [`busybox_image`] with more in its layer (`extend` adds it).
pub fn busybox_image_with(extend: impl FnOnce(LayerBuilder) -> LayerBuilder) -> TestImage {
    let mut layer = extend(LayerBuilder::new().busybox().dir("tmp", 0o1777).file("etc/group", b"root:x:0:\nstaff:x:50:\n", 0o644));
    for applet in APPLETS.iter().filter(|a| **a != "ls") {
        layer = layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    let mut image = TestImage::new(vec![Layer::gzip(layer)]);
    let config = &mut image.config["config"];
    if let Some(object) = config.as_object_mut() {
        object.remove("User");
        object.remove("Entrypoint");
        object.remove("Volumes");
    }
    image
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio")
}

pub fn pod_config(name: &str, log_directory: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "test".into(), attempt: 0 }),
        hostname: name.into(),
        log_directory: log_directory.into(),
        ..Default::default()
    }
}

pub fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: IMAGE.into(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

pub async fn pull(daemon: &Berthd) {
    let mut images = daemon.images().await;
    let request = cri::PullImageRequest { image: Some(cri::ImageSpec { image: IMAGE.into(), ..Default::default() }), ..Default::default() };
    images.pull_image(request).await.expect("pull busybox");
}

pub async fn run_pod(client: &mut RuntimeServiceClient<Channel>, config: &cri::PodSandboxConfig) -> String {
    let request = cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
    client.run_pod_sandbox(request).await.expect("run pod").into_inner().pod_sandbox_id
}

/// Creates and starts a container; returns its id.
pub async fn start_container(client: &mut RuntimeServiceClient<Channel>, pod: &str, pod_config: &cri::PodSandboxConfig, config: cri::ContainerConfig) -> String {
    let request = cri::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(pod_config.clone()) };
    let id = client.create_container(request).await.expect("create container").into_inner().container_id;
    client.start_container(cri::StartContainerRequest { container_id: id.clone() }).await.expect("start container");
    id
}

pub async fn status(client: &mut RuntimeServiceClient<Channel>, id: &str) -> cri::ContainerStatus {
    let request = cri::ContainerStatusRequest { container_id: id.into(), verbose: false };
    client.container_status(request).await.expect("container status").into_inner().status.expect("status")
}

/// Waits until the container has the state `state`.
pub async fn wait_state(client: &mut RuntimeServiceClient<Channel>, id: &str, state: cri::ContainerState) -> cri::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let current = status(client, id).await;
        if current.state == state as i32 {
            return current;
        }
        assert!(Instant::now() < deadline, "container {id} never reached {state:?}: {current:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn exec(client: &mut RuntimeServiceClient<Channel>, id: &str, command: &[&str]) -> cri::ExecSyncResponse {
    let request = cri::ExecSyncRequest { container_id: id.into(), cmd: command.iter().map(|s| s.to_string()).collect(), timeout: 10 };
    client.exec_sync(request).await.expect("exec sync").into_inner()
}

/// The init pid of a running container, from its verbose status.
pub async fn pid_of(client: &mut RuntimeServiceClient<Channel>, id: &str) -> i32 {
    let request = cri::ContainerStatusRequest { container_id: id.into(), verbose: true };
    let info = client.container_status(request).await.expect("status").into_inner().info;
    let verbose: serde_json::Value = serde_json::from_str(&info["info"]).expect("verbose info");
    verbose["pid"].as_i64().expect("pid") as i32
}

/// busybox with only `sleep`, whose command sleeps, as `busybox:bench` and
/// `pause:bench`: the benchmarks' container image and containerd's sandbox ("pause")
/// image. (The tests' busybox image carries a hard link whose tar header mode
/// containerd applies to /bin/busybox, leaving it 0644.)
pub fn push_bench_images(world: &World) {
    let layer = LayerBuilder::new().dir("bin", 0o755).file("bin/busybox", &std::fs::read("/bin/busybox").expect("busybox-static"), 0o755).symlink("bin/sleep", "busybox");
    let mut image = TestImage::new(vec![Layer::gzip(layer)]);
    image.config["config"] = serde_json::json!({ "Env": ["PATH=/bin"], "Cmd": ["/bin/sleep", "1000000"], "WorkingDir": "/" });
    image.push(&world.registry, "library/busybox", "bench");
    image.push(&world.registry, "library/pause", "bench");
}
