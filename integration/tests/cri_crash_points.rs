//! berthd killed at every named crash point (`berth::crash::POINTS`) of every operation,
//! then started again: recovery must undo a creation, a start or a pull that was cut
//! short and finish a stop or a removal, so that the kernel's view (mounts, pinned namespaces,
//! cgroup directories in every hierarchy, links, nftables, processes, the daemon's
//! directories and its IPAM records) holds exactly what the records say; a pod and its
//! container that ran before keep running through every crash, and the interrupted
//! operation succeeds when tried again.
//!
//! The daemon under test is a build with the `crash-points` feature, which the normal
//! build leaves out: `cargo build --release --features crash-points --bin berthd
//! --target-dir target/crash` (integration/test.sh does it); `BERTH_CRASH_BERTHD` may
//! name another path.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_integration::berthd::Berthd;
use berth_integration::kernel_view::{crash_berthd, KernelView};
use berth_integration::bins::bin_path;
use berth_integration::cri::*;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

type Client = RuntimeServiceClient<Channel>;

/// The operation a crash point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    RunPod,
    CreateContainer,
    StartContainer,
    StopPod,
    RemoveContainer,
    RemovePod,
    Pull,
}

/// The image whose pull crashes: busybox with a file of its own (no blob in common with
/// the survivor's image).
const CRASH_IMAGE: &str = "docker.io/library/crashpull:latest";

fn operation_of(point: &str) -> Operation {
    match point.split('.').next().unwrap_or_default() {
        "run_pod_sandbox" | "network" => Operation::RunPod,
        "create_container" => Operation::CreateContainer,
        "start_container" => Operation::StartContainer,
        "stop_pod_sandbox" => Operation::StopPod,
        "remove_container" => Operation::RemoveContainer,
        "remove_pod_sandbox" => Operation::RemovePod,
        "pull" => Operation::Pull,
        other => panic!("crash point {point}: no operation {other} in this test"),
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z')).unwrap_or(false)
}

/// The IPAM allocations in the daemon's store (read while it is stopped).
fn ipam_allocations(daemon: &Berthd) -> BTreeSet<String> {
    let store = berth::store::Store::open(&daemon.root().join("meta.redb")).expect("open the daemon's store");
    let table: berth::store::Table<serde_json::Value> = berth::store::Table::new("network.ipam");
    store.list(table).expect("IPAM records").into_iter().map(|(key, owner)| format!("{key} {owner}")).collect()
}

/// The pod whose operations crash: its own network with a host port (nft rules), a
/// shared PID namespace (a berth-pod-init).
fn crash_pod_config() -> cri::PodSandboxConfig {
    let mut config = pod_config("crashing", "");
    config.port_mappings = vec![cri::PortMapping { protocol: cri::Protocol::Tcp as i32, container_port: 80, host_port: 18080, host_ip: String::new() }];
    config
}

fn crash_container_config() -> cri::ContainerConfig {
    container_config("crashing-app", &["sleep", "1000"])
}

async fn pods_named(client: &mut Client, name: &str) -> Vec<cri::PodSandbox> {
    let pods = client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.expect("list pods").into_inner().items;
    pods.into_iter().filter(|p| p.metadata.as_ref().is_some_and(|m| m.name == name)).collect()
}

async fn containers_of(client: &mut Client, pod: &str) -> Vec<cri::Container> {
    let filter = cri::ContainerFilter { pod_sandbox_id: pod.to_string(), ..Default::default() };
    let request = cri::ListContainersRequest { filter: Some(filter) };
    client.list_containers(request).await.expect("list containers").into_inner().containers
}

async fn create(client: &mut Client, pod: &str) -> Result<String, tonic::Status> {
    let request = cri::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(crash_container_config()), sandbox_config: Some(crash_pod_config()) };
    client.create_container(request).await.map(|r| r.into_inner().container_id)
}

/// What a case made before its crashing operation.
#[derive(Default, Clone)]
struct Setup {
    pod: String,
    container: String,
}

async fn set_up(client: &mut Client, operation: Operation) -> Setup {
    if matches!(operation, Operation::RunPod | Operation::Pull) {
        return Setup::default();
    }
    let pod = run_pod(client, &crash_pod_config()).await;
    if operation == Operation::CreateContainer {
        return Setup { pod, container: String::new() };
    }
    let container = create(client, &pod).await.expect("create the crashing pod's container");
    if operation != Operation::StartContainer {
        client.start_container(cri::StartContainerRequest { container_id: container.clone() }).await.expect("start");
    }
    Setup { pod, container }
}

/// Runs the operation; Ok means it completed.
async fn perform(daemon: &Berthd, client: &mut Client, operation: Operation, setup: &Setup) -> Result<(), tonic::Status> {
    match operation {
        Operation::Pull => {
            let request = cri::PullImageRequest { image: Some(cri::ImageSpec { image: CRASH_IMAGE.into(), ..Default::default() }), ..Default::default() };
            daemon.images().await.pull_image(request).await.map(drop)
        }
        Operation::RunPod => {
            let request = cri::RunPodSandboxRequest { config: Some(crash_pod_config()), runtime_handler: String::new() };
            client.run_pod_sandbox(request).await.map(drop)
        }
        Operation::CreateContainer => create(client, &setup.pod).await.map(drop),
        Operation::StartContainer => client.start_container(cri::StartContainerRequest { container_id: setup.container.clone() }).await.map(drop),
        Operation::StopPod => client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: setup.pod.clone() }).await.map(drop),
        Operation::RemoveContainer => client.remove_container(cri::RemoveContainerRequest { container_id: setup.container.clone() }).await.map(drop),
        Operation::RemovePod => client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: setup.pod.clone() }).await.map(drop),
    }
}

/// Right after recovery: the records show the operation undone (creations, starts)
/// or finished (stops, removals), and for an undone one the kernel holds what it held
/// before the operation.
async fn check_settled(client: &mut Client, daemon: &Berthd, operation: Operation, setup: &Setup, before: &KernelView, point: &str) {
    match operation {
        Operation::RunPod => {
            assert!(pods_named(client, "crashing").await.is_empty(), "{point}: the interrupted pod is listed");
        }
        Operation::CreateContainer => {
            assert!(containers_of(client, &setup.pod).await.is_empty(), "{point}: the interrupted container is listed");
        }
        Operation::StartContainer => {
            let current = status(client, &setup.container).await;
            assert_eq!(current.state, cri::ContainerState::ContainerCreated as i32, "{point}: {current:?}");
        }
        Operation::StopPod => {
            let pods = pods_named(client, "crashing").await;
            assert_eq!(pods.len(), 1, "{point}");
            assert_eq!(pods[0].state, cri::PodSandboxState::SandboxNotready as i32, "{point}: the stop was not finished");
            let current = status(client, &setup.container).await;
            assert_eq!(current.state, cri::ContainerState::ContainerExited as i32, "{point}: {current:?}");
            assert!(!daemon.state().join("netns").join(&setup.pod).exists(), "{point}: the stopped pod's netns is still pinned");
        }
        Operation::RemoveContainer => {
            assert!(containers_of(client, &setup.pod).await.is_empty(), "{point}: the removal was not finished");
            assert!(!daemon.root().join("containers").join(&setup.container).exists(), "{point}: the bundle is left");
        }
        Operation::RemovePod => {
            assert!(pods_named(client, "crashing").await.is_empty(), "{point}: the removal was not finished");
        }
        Operation::Pull => {
            assert!(crash_image_status(daemon).await.is_none(), "{point}: the interrupted pull's image is listed");
        }
    }
    if matches!(operation, Operation::RunPod | Operation::CreateContainer | Operation::StartContainer | Operation::Pull) {
        KernelView::take(daemon).assert_same(before, &format!("{point}: after recovery"));
    }
}

async fn crash_image_status(daemon: &Berthd) -> Option<cri::Image> {
    let request = cri::ImageStatusRequest { image: Some(cri::ImageSpec { image: CRASH_IMAGE.into(), ..Default::default() }), verbose: false };
    daemon.images().await.image_status(request).await.expect("image status").into_inner().image
}

/// Tries the operation again (it must succeed), then removes the crashing pod (or the
/// pulled image).
async fn retry_and_clean(daemon: &Berthd, client: &mut Client, operation: Operation, setup: &Setup, point: &str) {
    perform(daemon, client, operation, setup).await.unwrap_or_else(|e| panic!("{point}: retrying the operation: {e}"));
    if operation == Operation::Pull {
        assert!(crash_image_status(daemon).await.is_some(), "{point}: the retried pull's image is not listed");
        let request = cri::RemoveImageRequest { image: Some(cri::ImageSpec { image: CRASH_IMAGE.into(), ..Default::default() }) };
        daemon.images().await.remove_image(request).await.expect("remove the pulled image");
    }
    if operation == Operation::StartContainer {
        let current = status(client, &setup.container).await;
        assert_eq!(current.state, cri::ContainerState::ContainerRunning as i32, "{point}: retried start: {current:?}");
    }
    for pod in pods_named(client, "crashing").await {
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.id }).await.expect("remove the crashing pod");
    }
}

struct Survivor {
    container: String,
    pid: i32,
}

impl Survivor {
    async fn check(&self, client: &mut Client, point: &str) {
        assert!(alive(self.pid), "{point}: the surviving container's process died");
        let current = status(client, &self.container).await;
        assert_eq!(current.state, cri::ContainerState::ContainerRunning as i32, "{point}: {current:?}");
    }
}

fn restart(daemon: &mut Berthd, binary: Option<PathBuf>, point: Option<&str>) {
    daemon.stop();
    daemon.binary = binary;
    daemon.env = point.map(|p| vec![(berth::crash::VARIABLE.to_string(), p.to_string())]).unwrap_or_default();
    daemon.spawn();
}

#[test]
fn a_daemon_killed_at_every_crash_point_recovers_to_a_clean_state() {
    use std::os::unix::process::ExitStatusExt;
    let crash_binary = crash_berthd();
    let mut world = World::new();
    // The crash build's own directory may hold no helpers, or stale ones: both daemons
    // run the workspace's shim and pod init (top-level keys, so before the tables).
    let helpers = format!("shim_binary = {:?}\npod_init_binary = {:?}\n", bin_path("berth-shim"), bin_path("berth-pod-init"));
    world.daemon.extra_config = format!("{helpers}{}", world.daemon.extra_config);
    // Each block gets its own runtime: dropping it closes the block's connections, or
    // the daemon's graceful stop would wait for them.
    busybox_image_with(|layer| layer.file("crash-pull", b"a layer of its own", 0o644)).push(&world.registry, "library/crashpull", "latest");
    let survivor = runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("survivor", "");
        let pod = run_pod(&mut client, &config).await;
        let container = start_container(&mut client, &pod, &config, container_config("survivor-app", &["sleep", "1000"])).await;
        let pid = pid_of(&mut client, &container).await;
        Survivor { container, pid }
    });
    let baseline = KernelView::take(&world.daemon);
    world.daemon.stop();
    let baseline_ipam = ipam_allocations(&world.daemon);
    assert_eq!(baseline_ipam.len(), 1, "the survivor's address: {baseline_ipam:?}");
    let started = Instant::now();
    // The Docker façade's points have their own test (docker_crash_points).
    let points: Vec<&str> = berth::crash::POINTS.iter().copied().filter(|p| !p.starts_with("docker.")).collect();
    for point in &points {
        let operation = operation_of(point);
        restart(&mut world.daemon, Some(crash_binary.clone()), Some(point));
        let (setup, before, outcome) = runtime().block_on(async {
            let mut client = world.daemon.runtime().await;
            let setup = set_up(&mut client, operation).await;
            let before = KernelView::take(&world.daemon);
            let outcome = perform(&world.daemon, &mut client, operation, &setup).await;
            (setup, before, outcome)
        });
        assert!(outcome.is_err(), "{point}: the operation completed: the point was never reached");
        let status = world.daemon.wait_for_exit(Duration::from_secs(20)).unwrap_or_else(|| panic!("{point}: berthd did not die"));
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: berthd ended otherwise: {status:?}");
        restart(&mut world.daemon, None, None);
        runtime().block_on(async {
            let mut client = world.daemon.runtime().await;
            survivor.check(&mut client, point).await;
            check_settled(&mut client, &world.daemon, operation, &setup, &before, point).await;
            retry_and_clean(&world.daemon, &mut client, operation, &setup, point).await;
            survivor.check(&mut client, point).await;
        });
        KernelView::take(&world.daemon).assert_same(&baseline, &format!("{point}: after the retry and the pod's removal"));
        world.daemon.stop();
        assert_eq!(ipam_allocations(&world.daemon), baseline_ipam, "{point}: IPAM records");
    }
    eprintln!("{} crash points in {:.1} s", points.len(), started.elapsed().as_secs_f64());
    restart(&mut world.daemon, None, None);
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        survivor.check(&mut client, "at the end").await;
        for pod in pods_named(&mut client, "survivor").await {
            client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.id }).await.expect("remove the survivor");
        }
    });
}
