//! What the pod benchmarks share (`bench_parallel_pods`, `bench_scale`): the bench
//! images, pods on the pod network with one `sleep` container, their start and removal
//! through any CRI server, and Debian's containerd with the CNI bridge plugin as the
//! pod network.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::containerd_cri::CriContainerd;
use crate::cri::{container_config, pod_config};
use crate::tempdir::TempDir;

pub const PAUSE_IMAGE: &str = "docker.io/library/pause:bench";
pub const IMAGE: &str = "docker.io/library/busybox:bench";

/// A benchmark's failure, as the message it ends with.
pub type Outcome<T> = Result<T, String>;

/// What every pod of a run shares: a log directory and the cgroup parent.
pub struct PodSettings {
    pub logs: TempDir,
    pub cgroup_parent: String,
}

impl PodSettings {
    pub fn new(cgroup_parent: &str) -> PodSettings {
        PodSettings { logs: TempDir::new("pod-logs"), cgroup_parent: format!("/{cgroup_parent}") }
    }

    /// A pod on the pod network named `name`.
    pub fn pod(&self, name: &str) -> cri::PodSandboxConfig {
        let log_directory = self.logs.path().join(name);
        std::fs::create_dir_all(&log_directory).expect("mkdir pod log directory");
        let mut config = pod_config(name, &log_directory.display().to_string());
        config.linux = Some(cri::LinuxPodSandboxConfig { cgroup_parent: self.cgroup_parent.clone(), ..Default::default() });
        config
    }

    /// One `sleep` container of the bench image.
    pub fn container(&self) -> cri::ContainerConfig {
        let mut config = container_config("sleeper", &["/bin/sleep", "1000000"]);
        config.image = Some(cri::ImageSpec { image: IMAGE.into(), ..Default::default() });
        config
    }
}

/// A pod with its one container, started.
#[derive(Clone, Debug)]
pub struct StartedPod {
    pub pod: String,
    pub container: String,
}

/// RunPodSandbox, CreateContainer, StartContainer for one pod.
pub async fn start_pod(mut client: RuntimeServiceClient<Channel>, config: cri::PodSandboxConfig, container: cri::ContainerConfig) -> Outcome<StartedPod> {
    let request = cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
    let pod = client.run_pod_sandbox(request).await.map_err(|e| format!("RunPodSandbox: {e}"))?.into_inner().pod_sandbox_id;
    let request = cri::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(container), sandbox_config: Some(config) };
    let id = client.create_container(request).await.map_err(|e| format!("CreateContainer: {e}"))?.into_inner().container_id;
    client.start_container(cri::StartContainerRequest { container_id: id.clone() }).await.map_err(|e| format!("StartContainer: {e}"))?;
    Ok(StartedPod { pod, container: id })
}

/// StopPodSandbox and RemovePodSandbox.
pub async fn remove_pod(mut client: RuntimeServiceClient<Channel>, pod: String) -> Outcome<()> {
    client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.map_err(|e| format!("StopPodSandbox: {e}"))?;
    client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.map_err(|e| format!("RemovePodSandbox: {e}"))?;
    Ok(())
}

/// Awaits every task in order; a panicked task is an error.
pub async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<Outcome<T>>>) -> Vec<Outcome<T>> {
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| Err(format!("task: {e}"))));
    }
    outcomes
}

pub async fn pull(client: &mut ImageServiceClient<Channel>, image: &str) -> Outcome<()> {
    let request = cri::PullImageRequest { image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() };
    client.pull_image(request).await.map_err(|e| format!("PullImage {image}: {e}"))?;
    Ok(())
}

/// The median of `samples` in milliseconds.
pub fn median_ms(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// CPU time the whole machine has spent busy (user, nice, system, irq, softirq, steal;
/// all cores), from `/proc/stat`. The difference across a burst says how much work the
/// burst cost, whichever processes did it.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .map(|line| line.split_whitespace().skip(1).enumerate().filter(|(i, _)| ![3, 4].contains(i)).take(6).filter_map(|(_, v)| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

pub async fn timed<T>(future: impl std::future::Future<Output = T>) -> (T, Duration) {
    let begin = Instant::now();
    let output = future.await;
    (output, begin.elapsed())
}

/// containerd's pod network: Debian's CNI bridge plugin on a bridge and subnet of its own.
fn bridge_conflist(ipam_dir: &std::path::Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "bench-pods",
        "plugins": [{
            "type": "bridge", "bridge": "cni-bench0", "isGateway": true, "ipMasq": false,
            "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.199.0.0/16" }]], "dataDir": ipam_dir.display().to_string() }
        }]
    })
    .to_string()
}

/// containerd 1.6 in the namespace at `netns_path` with the bridge as its pod network,
/// or None (and a line saying so) when it is not installed.
pub fn containerd_with_bridge(netns_path: &str) -> Option<CriContainerd> {
    let Some(containerd) = CriContainerd::start_in(netns_path, PAUSE_IMAGE) else {
        println!("containerd, runc or containerd-shim-runc-v2 is not installed: berth only");
        return None;
    };
    let conflist = bridge_conflist(&containerd.dir.path().join("cni-ipam"));
    std::fs::write(containerd.dir.path().join("cni").join("10-bench.conflist"), conflist).expect("write the CNI config");
    // containerd's CRI plugin picks up a new CNI config within a second or so.
    std::thread::sleep(Duration::from_secs(2));
    Some(containerd)
}

/// Pulls the bench image (and for containerd its sandbox image).
pub async fn pull_bench_images(images: &mut ImageServiceClient<Channel>, with_pause: bool) -> Outcome<()> {
    pull(images, IMAGE).await?;
    if with_pause {
        pull(images, PAUSE_IMAGE).await?;
    }
    Ok(())
}
