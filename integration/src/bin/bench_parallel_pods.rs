//! Pods started in parallel (issue 17, "Parallelism"). Run as root from the workspace:
//!
//!     cargo build --release --workspace --bins && sudo target/release/bench_parallel_pods [ROUNDS]
//!
//! For K = 1, 10, 20 and 50, starts K pods at once, each with its own RunPodSandbox,
//! CreateContainer and StartContainer (one `sleep` container, the pod network: berth's
//! bridge, and for containerd the Debian CNI bridge plugin), and times the wall clock
//! until all K run. berthd and, when installed, Debian's containerd 1.6 with runc run
//! side by side in the test registry's network namespace; each round alternates which
//! goes first. Between rounds every pod is removed (not timed). Prints the median wall
//! time per K and the ratio berth / containerd (target: <= 0.30x for every K).

use std::time::{Duration, Instant};

use berth_integration::containerd_cri::CriContainerd;
use berth_integration::cri::{container_config, pod_config, push_bench_images, World};
use berth_integration::leak::CgroupParent;
use berth_integration::tempdir::{unique_name, TempDir};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const PAUSE_IMAGE: &str = "docker.io/library/pause:bench";
const IMAGE: &str = "docker.io/library/busybox:bench";
const COUNTS: [usize; 4] = [1, 10, 20, 50];

type Outcome<T> = Result<T, String>;

struct Daemon {
    name: &'static str,
    client: RuntimeServiceClient<Channel>,
    /// Wall times per K (same order as COUNTS).
    walls: Vec<Vec<Duration>>,
}

struct Settings {
    logs: TempDir,
    cgroup_parent: String,
}

impl Settings {
    fn pod(&self, name: &str) -> cri::PodSandboxConfig {
        let log_directory = self.logs.path().join(name);
        std::fs::create_dir_all(&log_directory).expect("mkdir pod log directory");
        let mut config = pod_config(name, &log_directory.display().to_string());
        config.linux = Some(cri::LinuxPodSandboxConfig { cgroup_parent: self.cgroup_parent.clone(), ..Default::default() });
        config
    }

    fn container(&self) -> cri::ContainerConfig {
        let mut config = container_config("sleeper", &["/bin/sleep", "1000000"]);
        config.image = Some(cri::ImageSpec { image: IMAGE.into(), ..Default::default() });
        config
    }
}

/// RunPodSandbox, CreateContainer, StartContainer for one pod; its id.
async fn start_pod(mut client: RuntimeServiceClient<Channel>, config: cri::PodSandboxConfig, container: cri::ContainerConfig) -> Outcome<String> {
    let request = cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
    let pod = client.run_pod_sandbox(request).await.map_err(|e| format!("RunPodSandbox: {e}"))?.into_inner().pod_sandbox_id;
    let request = cri::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(container), sandbox_config: Some(config) };
    let id = client.create_container(request).await.map_err(|e| format!("CreateContainer: {e}"))?.into_inner().container_id;
    client.start_container(cri::StartContainerRequest { container_id: id }).await.map_err(|e| format!("StartContainer: {e}"))?;
    Ok(pod)
}

async fn remove_pod(mut client: RuntimeServiceClient<Channel>, pod: String) -> Outcome<()> {
    client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.map_err(|e| format!("StopPodSandbox: {e}"))?;
    client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.map_err(|e| format!("RemovePodSandbox: {e}"))?;
    Ok(())
}

/// Starts `count` pods at once; the wall time until all run. Removes them after.
async fn one_burst(daemon: &Daemon, settings: &Settings, count: usize, round: usize) -> Outcome<Duration> {
    let starts: Vec<_> = (0..count)
        .map(|i| {
            let config = settings.pod(&format!("par-{}-{count}-{round}-{i}", daemon.name));
            tokio::spawn(start_pod(daemon.client.clone(), config, settings.container()))
        })
        .collect();
    let begin = Instant::now();
    let outcomes = futures_join(starts).await;
    let wall = begin.elapsed();
    let pods: Vec<String> = outcomes.iter().filter_map(|o| o.as_ref().ok().cloned()).collect();
    let removals: Vec<_> = pods.into_iter().map(|pod| tokio::spawn(remove_pod(daemon.client.clone(), pod))).collect();
    for outcome in futures_join(removals).await {
        outcome.map_err(|e| format!("{}: {e}", daemon.name))?;
    }
    for outcome in outcomes {
        outcome.map_err(|e| format!("{}: {e}", daemon.name))?;
    }
    Ok(wall)
}

/// Awaits every task in order; a panicked task is an error.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<Outcome<T>>>) -> Vec<Outcome<T>> {
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| Err(format!("task: {e}"))));
    }
    outcomes
}

fn median(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn print_walls(daemons: &[Daemon], rounds: usize) {
    println!("\nK pods started at once (runp + create + start each, pod network), median wall ms over {rounds} rounds:");
    let header: String = daemons.iter().map(|d| format!("{:>12}", d.name)).collect();
    println!("  {:<6}{header}{}", "K", if daemons.len() > 1 { format!("{:>10}", "ratio") } else { String::new() });
    for (slot, count) in COUNTS.iter().enumerate() {
        let medians: Vec<f64> = daemons.iter().map(|d| median(&d.walls[slot])).collect();
        let cells: String = medians.iter().map(|m| format!("{m:>12.1}")).collect();
        let ratio = if medians.len() > 1 { format!("{:>9.2}x", medians[0] / medians[1]) } else { String::new() };
        println!("  {count:<6}{cells}{ratio}");
    }
    if daemons.len() > 1 {
        println!("  (ratio = {} / {}; target <= 0.30x for every K)", daemons[0].name, daemons[1].name);
    }
}

async fn pull(client: &mut k8s_cri::v1::image_service_client::ImageServiceClient<Channel>, image: &str) -> Outcome<()> {
    let request = cri::PullImageRequest { image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() };
    client.pull_image(request).await.map_err(|e| format!("PullImage {image}: {e}"))?;
    Ok(())
}

async fn run(world: &World, containerd: Option<&CriContainerd>, settings: &Settings, rounds: usize) -> Outcome<()> {
    pull(&mut world.daemon.images().await, IMAGE).await?;
    let mut daemons = vec![Daemon { name: "berth", client: world.daemon.runtime().await, walls: vec![Vec::new(); COUNTS.len()] }];
    if let Some(containerd) = containerd {
        let mut images = containerd.images().await;
        pull(&mut images, IMAGE).await?;
        pull(&mut images, PAUSE_IMAGE).await?;
        daemons.push(Daemon { name: "containerd", client: containerd.runtime().await, walls: vec![Vec::new(); COUNTS.len()] });
    }
    for daemon in &daemons {
        one_burst(daemon, settings, 2, usize::MAX).await?;
    }
    for round in 0..rounds {
        for (slot, count) in COUNTS.iter().enumerate() {
            let order: Vec<usize> = (0..daemons.len()).map(|i| (i + round + slot) % daemons.len()).collect();
            for i in order {
                let wall = one_burst(&daemons[i], settings, *count, round).await?;
                daemons[i].walls[slot].push(wall);
            }
        }
    }
    print_walls(&daemons, rounds);
    Ok(())
}

/// containerd's pod network: Debian's CNI bridge plugin on a bridge and subnet of its own.
fn bridge_conflist(ipam_dir: &std::path::Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "bench-parallel",
        "plugins": [{
            "type": "bridge", "bridge": "cni-par0", "isGateway": true, "ipMasq": false,
            "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.199.0.0/16" }]], "dataDir": ipam_dir.display().to_string() }
        }]
    })
    .to_string()
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map(|a| a.parse().expect("ROUNDS is a number")).unwrap_or(3);
    let cgroup_parent = CgroupParent::new(unique_name("bench-par"));
    let world = World::new();
    push_bench_images(&world);
    let containerd = CriContainerd::start_in(&world.registry.netns.path(), PAUSE_IMAGE);
    match &containerd {
        Some(containerd) => {
            let conflist = bridge_conflist(&containerd.dir.path().join("cni-ipam"));
            std::fs::write(containerd.dir.path().join("cni").join("10-bench.conflist"), conflist).expect("write the CNI config");
            // containerd's CRI plugin picks up a new CNI config within a second or so.
            std::thread::sleep(Duration::from_secs(2));
        }
        None => println!("containerd, runc or containerd-shim-runc-v2 is not installed: berth only"),
    }
    let settings = Settings { logs: TempDir::new("par-logs"), cgroup_parent: format!("/{}", cgroup_parent.name()) };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let outcome = runtime.block_on(run(&world, containerd.as_ref(), &settings, rounds));
    if let Err(message) = outcome {
        eprintln!("bench_parallel_pods failed: {message}");
        eprintln!("berthd log: {}", world.daemon.log_path().display());
        drop((containerd, world, settings, cgroup_parent));
        std::process::exit(1);
    }
}
