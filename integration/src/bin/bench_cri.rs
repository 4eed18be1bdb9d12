//! The CRI benchmark (issue 6, "Performance"). Run as root from the workspace:
//!
//!     cargo build --release --workspace --bins && sudo target/release/bench_cri [ROUNDS]
//!
//! Drives berthd and, when installed, Debian's containerd 1.6 with runc (its CRI plugin)
//! through the same tonic CRI client, both in the test registry's network namespace and
//! pulling the same busybox from it. Pods use the host network (NamespaceMode NODE) on
//! both sides, so no CNI plugin or bridge is timed. For ROUNDS (default 20, alternating
//! which daemon goes first) it times RunPodSandbox, CreateContainer, StartContainer,
//! StopContainer (timeout 0), RemoveContainer, StopPodSandbox and RemovePodSandbox, and
//! prints medians and ratios. Then it reports each daemon's idle RSS and the memory per
//! running single-container pod: daemon growth plus the shims' RSS (and PSS), over K pods.

use std::path::PathBuf;
use std::time::Duration;

use berth_integration::bins::bin_path;
use berth_integration::containerd_cri::{CriContainerd, RUNC_SHIM};
use berth_integration::cri::{container_config, pod_config, push_bench_images, World};
use berth_integration::leak::CgroupParent;
use berth_integration::pod_bench::{median_ms, timed};
use berth_integration::proc_memory::{has_children, memory_of, mib, processes_of, Memory};
use berth_integration::tempdir::{unique_name, TempDir};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const PAUSE_IMAGE: &str = "docker.io/library/pause:bench";
const IMAGE: &str = "docker.io/library/busybox:bench";
const PODS_FOR_MEMORY: usize = 5;
const STEPS: [&str; 7] = ["RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"];

/// One daemon under test, with what the benchmark needs to know about it.
struct Daemon {
    name: &'static str,
    client: RuntimeServiceClient<Channel>,
    pid: i32,
    shim_exe: PathBuf,
    /// A shim process is counted only if its command line contains this (empty: any).
    shim_marker: String,
    samples: Vec<Vec<Duration>>,
    idle: Memory,
}

/// The settings every pod of the run shares.
struct PodSettings {
    logs: TempDir,
    cgroup_parent: String,
}

impl PodSettings {
    fn host_network() -> cri::NamespaceOption {
        cri::NamespaceOption { network: cri::NamespaceMode::Node as i32, pid: cri::NamespaceMode::Pod as i32, ipc: cri::NamespaceMode::Pod as i32, ..Default::default() }
    }

    fn pod(&self, name: &str) -> cri::PodSandboxConfig {
        let log_directory = self.logs.path().join(name);
        std::fs::create_dir_all(&log_directory).expect("mkdir pod log directory");
        let mut config = pod_config(name, &log_directory.display().to_string());
        // Host network means the host's UTS namespace: no hostname of the pod's own.
        config.hostname = String::new();
        let security_context = cri::LinuxSandboxSecurityContext { namespace_options: Some(Self::host_network()), ..Default::default() };
        config.linux = Some(cri::LinuxPodSandboxConfig { cgroup_parent: self.cgroup_parent.clone(), security_context: Some(security_context), ..Default::default() });
        config
    }

    fn container(&self) -> cri::ContainerConfig {
        let mut config = container_config("sleeper", &["/bin/sleep", "1000000"]);
        config.image = Some(cri::ImageSpec { image: IMAGE.into(), ..Default::default() });
        let security_context = cri::LinuxContainerSecurityContext { namespace_options: Some(Self::host_network()), ..Default::default() };
        config.linux = Some(cri::LinuxContainerConfig { security_context: Some(security_context), ..Default::default() });
        config
    }
}

type Outcome<T> = Result<T, String>;

/// Turns a failed RPC into the message the run ends with.
fn failed(daemon: &'static str, rpc: &'static str) -> impl Fn(tonic::Status) -> String {
    move |status| format!("{daemon}: {rpc}: {status}")
}

/// A running pod with its one container.
struct RunningPod {
    pod: String,
    container: String,
}

/// RunPodSandbox, CreateContainer, StartContainer; the pod and the three times.
async fn start_pod(daemon: &mut Daemon, settings: &PodSettings, name: &str) -> Outcome<(RunningPod, [Duration; 3])> {
    let what = daemon.name;
    let config = settings.pod(name);
    let request = cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
    let (reply, run) = timed(daemon.client.run_pod_sandbox(request)).await;
    let pod = reply.map_err(failed(what, "RunPodSandbox"))?.into_inner().pod_sandbox_id;
    let request = cri::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(settings.container()), sandbox_config: Some(config) };
    let (reply, create) = timed(daemon.client.create_container(request)).await;
    let container = reply.map_err(failed(what, "CreateContainer"))?.into_inner().container_id;
    let request = cri::StartContainerRequest { container_id: container.clone() };
    let (reply, start) = timed(daemon.client.start_container(request)).await;
    reply.map_err(failed(what, "StartContainer"))?;
    Ok((RunningPod { pod, container }, [run, create, start]))
}

/// StopContainer (timeout 0), RemoveContainer, StopPodSandbox, RemovePodSandbox; the four times.
async fn tear_down(daemon: &mut Daemon, running: RunningPod) -> Outcome<[Duration; 4]> {
    let what = daemon.name;
    let client = &mut daemon.client;
    let request = cri::StopContainerRequest { container_id: running.container.clone(), timeout: 0 };
    let (reply, stop) = timed(client.stop_container(request)).await;
    reply.map_err(failed(what, "StopContainer"))?;
    let request = cri::RemoveContainerRequest { container_id: running.container };
    let (reply, remove) = timed(client.remove_container(request)).await;
    reply.map_err(failed(what, "RemoveContainer"))?;
    let request = cri::StopPodSandboxRequest { pod_sandbox_id: running.pod.clone() };
    let (reply, stop_pod) = timed(client.stop_pod_sandbox(request)).await;
    reply.map_err(failed(what, "StopPodSandbox"))?;
    let request = cri::RemovePodSandboxRequest { pod_sandbox_id: running.pod };
    let (reply, remove_pod) = timed(client.remove_pod_sandbox(request)).await;
    reply.map_err(failed(what, "RemovePodSandbox"))?;
    Ok([stop, remove, stop_pod, remove_pod])
}

/// One full pod lifecycle, its seven times recorded.
async fn one_round(daemon: &mut Daemon, settings: &PodSettings, round: usize) -> Outcome<()> {
    let name = format!("bench-{}-{round}", daemon.name);
    let (running, starting) = start_pod(daemon, settings, &name).await?;
    let stopping = tear_down(daemon, running).await?;
    for (step, time) in starting.into_iter().chain(stopping).enumerate() {
        daemon.samples[step].push(time);
    }
    Ok(())
}

async fn bench_lifecycle(daemons: &mut [Daemon], settings: &PodSettings, rounds: usize) -> Outcome<()> {
    for daemon in daemons.iter_mut() {
        let name = format!("warmup-{}", daemon.name);
        let (running, _) = start_pod(daemon, settings, &name).await?;
        tear_down(daemon, running).await?;
    }
    for round in 0..rounds {
        let count = daemons.len();
        for i in (0..count).map(|i| (i + round) % count) {
            one_round(&mut daemons[i], settings, round).await?;
        }
    }
    Ok(())
}

async fn pull(images: &mut ImageServiceClient<Channel>, what: &'static str, image: &str) -> Outcome<()> {
    let request = cri::PullImageRequest { image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() };
    images.pull_image(request).await.map_err(failed(what, "PullImage"))?;
    Ok(())
}

/// Memory per running pod: K single-container pods, then (daemon growth + shims) / K.
struct PodMemory {
    daemon_growth: Memory,
    shims: Memory,
    shim_count: usize,
    /// Shims of this daemon with no child (serving no container), not counted.
    idle_shims: usize,
}

async fn measure_pods(daemon: &mut Daemon, settings: &PodSettings) -> Outcome<PodMemory> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = memory_of(daemon.pid);
    let mut running = Vec::new();
    for i in 0..PODS_FOR_MEMORY {
        running.push(start_pod(daemon, settings, &format!("memory-{}-{i}", daemon.name)).await?.0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = memory_of(daemon.pid);
    let (shim_pids, idle): (Vec<i32>, Vec<i32>) =
        processes_of(&daemon.shim_exe, &daemon.shim_marker).into_iter().partition(|pid| has_children(*pid));
    let shims = shim_pids.iter().map(|pid| memory_of(*pid)).fold(Memory::default(), |a, b| a + b);
    for pod in running {
        tear_down(daemon, pod).await?;
    }
    let growth = Memory { rss: after.rss.saturating_sub(before.rss), pss: after.pss.saturating_sub(before.pss), anonymous: after.anonymous.saturating_sub(before.anonymous) };
    Ok(PodMemory { daemon_growth: growth, shims, shim_count: shim_pids.len(), idle_shims: idle.len() })
}

/// Per-round sums of the first three steps (pod + container start).
fn start_totals(daemon: &Daemon) -> Vec<Duration> {
    (0..daemon.samples[0].len()).map(|r| daemon.samples[0][r] + daemon.samples[1][r] + daemon.samples[2][r]).collect()
}

fn print_times(daemons: &[Daemon], rounds: usize) {
    println!("\nCRI round trips, median ms over {rounds} rounds (host network, one `sleep` container per pod):");
    let header: Vec<String> = daemons.iter().map(|d| format!("{:>12}", d.name)).collect();
    let ratio_header = if daemons.len() > 1 { format!("{:>10}", "ratio") } else { String::new() };
    println!("  {:<28}{}{ratio_header}", "RPC", header.join(""));
    let mut rows: Vec<(String, Vec<f64>)> = STEPS.iter().enumerate().map(|(i, step)| (step.to_string(), daemons.iter().map(|d| median_ms(&d.samples[i])).collect())).collect();
    rows.push(("pod + container start".into(), daemons.iter().map(|d| median_ms(&start_totals(d))).collect()));
    for (label, medians) in rows {
        let cells: Vec<String> = medians.iter().map(|m| format!("{m:>12.2}")).collect();
        let ratio = if medians.len() > 1 { format!("{:>9.2}x", medians[0] / medians[1]) } else { String::new() };
        println!("  {label:<28}{}{ratio}", cells.join(""));
    }
    if daemons.len() > 1 {
        println!("  (ratio = {} / {}; target for pod + container start: <= 0.30x)", daemons[0].name, daemons[1].name);
    }
}

fn print_memory(daemon: &Daemon, pods: &PodMemory) {
    let per_pod = |growth: u64, shims: u64| mib(growth + shims) / PODS_FOR_MEMORY as f64;
    println!("  {}: idle RSS {:.1} MiB (PSS {:.1} MiB)", daemon.name, mib(daemon.idle.rss), mib(daemon.idle.pss));
    println!("    {PODS_FOR_MEMORY} running pods: daemon growth RSS {:.1} MiB (PSS {:.1}), {} shim processes RSS {:.1} MiB (PSS {:.1})",
        mib(pods.daemon_growth.rss), mib(pods.daemon_growth.pss), pods.shim_count, mib(pods.shims.rss), mib(pods.shims.pss));
    println!("    per running pod: RSS {:.2} MiB, PSS {:.2} MiB",
        per_pod(pods.daemon_growth.rss, pods.shims.rss), per_pod(pods.daemon_growth.pss, pods.shims.pss));
    if pods.idle_shims > 0 {
        println!("    ({} more shim processes of this daemon serve no container: not counted)", pods.idle_shims);
    }
}

async fn berth_daemon(world: &World) -> Outcome<Daemon> {
    let pid = world.daemon.child.as_ref().expect("berthd runs").id() as i32;
    let mut images = world.daemon.images().await;
    let idle = memory_of(pid);
    pull(&mut images, "berth", IMAGE).await?;
    let client = world.daemon.runtime().await;
    Ok(Daemon { name: "berth", client, pid, shim_exe: bin_path("berth-shim"), shim_marker: world.daemon.state().display().to_string(), samples: vec![Vec::new(); STEPS.len()], idle })
}

async fn containerd_daemon(containerd: &CriContainerd) -> Outcome<Daemon> {
    let mut images = containerd.images().await;
    let idle = memory_of(containerd.pid());
    pull(&mut images, "containerd", IMAGE).await?;
    pull(&mut images, "containerd", PAUSE_IMAGE).await?;
    let client = containerd.runtime().await;
    let marker = containerd.dir.path().display().to_string();
    Ok(Daemon { name: "containerd", client, pid: containerd.pid(), shim_exe: RUNC_SHIM.into(), shim_marker: marker, samples: vec![Vec::new(); STEPS.len()], idle })
}

async fn run(world: &World, containerd: Option<&CriContainerd>, settings: &PodSettings, rounds: usize) -> Outcome<()> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut daemons = vec![berth_daemon(world).await?];
    if let Some(containerd) = containerd {
        daemons.push(containerd_daemon(containerd).await?);
    }
    bench_lifecycle(&mut daemons, settings, rounds).await?;
    print_times(&daemons, rounds);
    println!("\nMemory (daemon idle after start-up, before any pull; per pod = (daemon growth + all shims) / {PODS_FOR_MEMORY}):");
    for daemon in daemons.iter_mut() {
        let pods = measure_pods(daemon, settings).await?;
        print_memory(daemon, &pods);
    }
    println!("  targets: berthd idle RSS <= 15 MiB; <= 2 MiB per running single-container pod");
    Ok(())
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map(|a| a.parse().expect("ROUNDS is a number")).unwrap_or(20);
    let cgroup_parent = CgroupParent::new(unique_name("bench-cri"));
    let world = World::new();
    push_bench_images(&world);
    let containerd = CriContainerd::start_in(&world.registry.netns.path(), PAUSE_IMAGE);
    if containerd.is_none() {
        println!("containerd, runc or containerd-shim-runc-v2 is not installed: berth only");
    }
    let settings = PodSettings { logs: TempDir::new("cri-logs"), cgroup_parent: format!("/{}", cgroup_parent.name()) };
    let outcome = berth_integration::cri::runtime().block_on(run(&world, containerd.as_ref(), &settings, rounds));
    if let Err(message) = outcome {
        eprintln!("bench_cri failed: {message}");
        if let Some(containerd) = &containerd {
            eprintln!("containerd log (tail):\n{}", tail(&containerd.log(), 20));
        }
        eprintln!("berthd log: {}", world.daemon.log_path().display());
        // The release profile aborts on panic: clean up before exiting with an error.
        drop((containerd, world, settings, cgroup_parent));
        std::process::exit(1);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
