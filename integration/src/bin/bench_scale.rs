//! A node at scale (issue 17, "Scale"). Run as root from the workspace:
//!
//!     cargo build --release --workspace --bins && sudo target/release/bench_scale [PODS] [CYCLES]
//!
//! berthd and, when installed, Debian's containerd 1.6 with runc run side by side in
//! the test registry's network namespace (pod network: berth's bridge; for containerd
//! the CNI bridge plugin). With PODS (default 100) running pods on each, each with one
//! `sleep` container, it reports each daemon's RSS and PSS (`/proc/PID/smaps_rollup`)
//! plus the sum over its shims, and the median of 20 ListContainers and ListPodSandbox
//! calls, the daemons alternating. Then berthd is stopped (SIGTERM) and started again:
//! the recovery time runs from the new process's start until the CRI answers and lists
//! every container running. berthd recovers before it binds its socket, asking each
//! container's shim for its state over a new connection, so by then every shim is
//! reconnected; the benchmark also checks that every shim process is the one from
//! before. Last, CYCLES (default 1000) create + start + stop + remove cycles of a
//! container in one pod on berthd, a check that nothing leaked (mounts, cgroup
//! directories, processes, veths, files under the daemon's root and state, records),
//! and berthd's RSS after the churn with nothing running.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_integration::berthd::{cgroup_tree, pids_with_cmdline_containing};
use berth_integration::bins::bin_path;
use berth_integration::containerd_cri::{CriContainerd, RUNC_SHIM};
use berth_integration::cri::{push_bench_images, World};
use berth_integration::leak::{procs_in_cgroup, CgroupParent};
use berth_integration::pod_bench::{containerd_with_bridge, join_all, median_ms, pull_bench_images, remove_pod, start_pod, timed, Outcome, PodSettings, StartedPod};
use berth_integration::proc_memory::{has_children, memory_of, mib, processes_of, Memory};
use berth_integration::tempdir::unique_name;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// How many pods start at once while the benchmark fills a daemon.
const START_BATCH: usize = 10;
const LIST_SAMPLES: usize = 20;
/// How long the daemons settle before memory is read (berthd trims its heap every 5 s).
const SETTLE: Duration = Duration::from_secs(6);

/// One daemon under test.
struct Side {
    name: &'static str,
    client: RuntimeServiceClient<Channel>,
    pid: i32,
    shim_exe: PathBuf,
    /// A shim is this daemon's when its command line contains this.
    shim_marker: String,
    pods: Vec<StartedPod>,
    list_containers: Vec<Duration>,
    list_pods: Vec<Duration>,
}

/// A daemon's memory with its pods running.
struct Footprint {
    daemon: Memory,
    shims: Memory,
    shim_count: usize,
}

impl Side {
    fn footprint(&self) -> Footprint {
        let shims: Vec<i32> = processes_of(&self.shim_exe, &self.shim_marker).into_iter().filter(|pid| has_children(*pid)).collect();
        Footprint { daemon: memory_of(self.pid), shims: shims.iter().map(|pid| memory_of(*pid)).sum(), shim_count: shims.len() }
    }

    fn shim_pids(&self) -> BTreeSet<i32> {
        processes_of(&self.shim_exe, &self.shim_marker).into_iter().collect()
    }
}

/// Starts `count` pods, [`START_BATCH`] at a time.
async fn fill(side: &mut Side, settings: &PodSettings, count: usize) -> Outcome<()> {
    let mut next = 0;
    while next < count {
        let batch: Vec<_> = (next..count.min(next + START_BATCH))
            .map(|i| tokio::spawn(start_pod(side.client.clone(), settings.pod(&format!("scale-{}-{i}", side.name)), settings.container())))
            .collect();
        next += batch.len();
        for outcome in join_all(batch).await {
            side.pods.push(outcome.map_err(|e| format!("{}: {e}", side.name))?);
        }
    }
    Ok(())
}

/// Removes every pod of `side`, [`START_BATCH`] at a time.
async fn empty(side: &mut Side) -> Outcome<()> {
    while !side.pods.is_empty() {
        let batch: Vec<_> = side.pods.drain(..side.pods.len().min(START_BATCH)).map(|p| tokio::spawn(remove_pod(side.client.clone(), p.pod))).collect();
        for outcome in join_all(batch).await {
            outcome.map_err(|e| format!("{}: {e}", side.name))?;
        }
    }
    Ok(())
}

/// Times one ListContainers and one ListPodSandbox, checking they list every pod.
async fn sample_lists(side: &mut Side) -> Outcome<()> {
    let (listed, took) = timed(side.client.list_containers(cri::ListContainersRequest::default())).await;
    let containers = listed.map_err(|e| format!("{}: ListContainers: {e}", side.name))?.into_inner().containers;
    side.list_containers.push(took);
    let (listed, took) = timed(side.client.list_pod_sandbox(cri::ListPodSandboxRequest::default())).await;
    let pods = listed.map_err(|e| format!("{}: ListPodSandbox: {e}", side.name))?.into_inner().items;
    side.list_pods.push(took);
    if containers.len() < side.pods.len() || pods.len() < side.pods.len() {
        return Err(format!("{}: listed {} containers and {} pods of {}", side.name, containers.len(), pods.len(), side.pods.len()));
    }
    Ok(())
}

/// The ids of `wanted` that `client` lists as running.
async fn running_of(client: &mut RuntimeServiceClient<Channel>, wanted: &[StartedPod]) -> Outcome<usize> {
    let listed = client.list_containers(cri::ListContainersRequest::default()).await.map_err(|e| format!("ListContainers: {e}"))?.into_inner().containers;
    let running: BTreeSet<&str> = listed.iter().filter(|c| c.state == cri::ContainerState::ContainerRunning as i32).map(|c| c.id.as_str()).collect();
    Ok(wanted.iter().filter(|p| running.contains(p.container.as_str())).count())
}

/// What restarting berthd with its pods running took.
struct Recovery {
    stop: Duration,
    recover: Duration,
}

/// SIGTERM to berthd, then a new berthd: the time from its start until the CRI lists
/// every container running. Checks that every shim survived and answers through it.
async fn restart_berthd(world: &mut World, side: &mut Side) -> Outcome<Recovery> {
    let shims_before = side.shim_pids();
    let (_, stop) = timed(async { world.daemon.stop() }).await;
    let begin = Instant::now();
    world.daemon.spawn();
    let mut client = world.daemon.runtime().await;
    while running_of(&mut client, &side.pods).await? < side.pods.len() {
        if begin.elapsed() > Duration::from_secs(60) {
            return Err("berth: the containers were not all running a minute after the restart".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recover = begin.elapsed();
    side.client = client;
    side.pid = world.daemon.child.as_ref().map_or(0, |c| c.id() as i32);
    let shims_after = side.shim_pids();
    if shims_after != shims_before {
        return Err(format!("berth: {} shims before the restart, {} after, {} the same", shims_before.len(), shims_after.len(), shims_before.intersection(&shims_after).count()));
    }
    for pod in &side.pods {
        let request = cri::ContainerStatusRequest { container_id: pod.container.clone(), verbose: false };
        let status = side.client.container_status(request).await.map_err(|e| format!("berth: ContainerStatus after the restart: {e}"))?.into_inner().status;
        if status.is_none_or(|s| s.state != cri::ContainerState::ContainerRunning as i32) {
            return Err(format!("berth: container {} is not running after the restart", pod.container));
        }
    }
    Ok(Recovery { stop, recover })
}

/// What the kernel and the daemon's directories hold for berthd: compared before and
/// after the churn.
#[derive(PartialEq, Eq, Debug)]
struct Holdings {
    mounts: BTreeSet<String>,
    cgroup_dirs: BTreeSet<PathBuf>,
    processes: BTreeSet<i32>,
    links: BTreeSet<String>,
    files: BTreeSet<PathBuf>,
    records: (usize, usize),
}

fn files_under(dir: &Path, depth: usize, into: &mut BTreeSet<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        // The events and CRI sockets' directory, logs and the store change in place.
        into.insert(path.clone());
        if depth > 0 && entry.file_type().is_ok_and(|t| t.is_dir()) {
            files_under(&path, depth - 1, into);
        }
    }
}

async fn holdings(world: &World, settings: &PodSettings, client: &mut RuntimeServiceClient<Channel>) -> Outcome<Holdings> {
    let marker = world.daemon.dir.path().display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.contains(&marker)).map(str::to_string).collect();
    let pod_parent = settings.cgroup_parent.trim_start_matches('/');
    let cgroup_dirs = cgroup_tree(pod_parent).into_iter().chain(cgroup_tree(&world.daemon.cgroup_parent())).collect();
    let daemon_pid = world.daemon.child.as_ref().map_or(0, |c| c.id() as i32);
    let mut processes: BTreeSet<i32> = pids_with_cmdline_containing(&marker).into_iter().filter(|pid| *pid != daemon_pid).collect();
    processes.extend(procs_in_cgroup(pod_parent));
    let ip = std::process::Command::new("nsenter").arg(format!("--net={}", world.daemon.netns_path)).args(["ip", "-o", "link"]).output().map_err(|e| format!("ip link: {e}"))?;
    let links = String::from_utf8_lossy(&ip.stdout).lines().filter_map(|l| l.split(':').nth(1)).map(|name| name.trim().to_string()).collect();
    let mut files = BTreeSet::new();
    files_under(&world.daemon.root(), 3, &mut files);
    files_under(&world.daemon.state(), 3, &mut files);
    let containers = client.list_containers(cri::ListContainersRequest::default()).await.map_err(|e| format!("ListContainers: {e}"))?.into_inner().containers.len();
    let pods = client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.map_err(|e| format!("ListPodSandbox: {e}"))?.into_inner().items.len();
    Ok(Holdings { mounts, cgroup_dirs, processes, links, files, records: (containers, pods) })
}

/// Lines telling what `after` holds that `before` did not (and the records' counts).
fn leaks(before: &Holdings, after: &Holdings) -> Vec<String> {
    fn extra<T: Ord + std::fmt::Debug>(what: &str, before: &BTreeSet<T>, after: &BTreeSet<T>) -> Vec<String> {
        after.difference(before).map(|item| format!("{what} {item:?}")).collect()
    }
    let mut found = extra("mount", &before.mounts, &after.mounts);
    found.extend(extra("cgroup directory", &before.cgroup_dirs, &after.cgroup_dirs));
    found.extend(extra("process", &before.processes, &after.processes));
    found.extend(extra("link", &before.links, &after.links));
    found.extend(extra("file", &before.files, &after.files));
    if after.records != before.records {
        found.push(format!("records (containers, pods): {:?} before, {:?} after", before.records, after.records));
    }
    found
}

/// One container created, started, stopped and removed in `pod`, `cycles` times.
async fn churn(side: &mut Side, settings: &PodSettings, cycles: usize) -> Outcome<Duration> {
    let config = settings.pod("scale-churn");
    let started = start_pod(side.client.clone(), config.clone(), settings.container()).await?;
    remove_container(&mut side.client, &started.container).await?;
    let begin = Instant::now();
    for _ in 0..cycles {
        let request = cri::CreateContainerRequest { pod_sandbox_id: started.pod.clone(), config: Some(settings.container()), sandbox_config: Some(config.clone()) };
        let id = side.client.create_container(request).await.map_err(|e| format!("CreateContainer: {e}"))?.into_inner().container_id;
        side.client.start_container(cri::StartContainerRequest { container_id: id.clone() }).await.map_err(|e| format!("StartContainer: {e}"))?;
        remove_container(&mut side.client, &id).await?;
    }
    let took = begin.elapsed();
    remove_pod(side.client.clone(), started.pod).await?;
    Ok(took)
}

async fn remove_container(client: &mut RuntimeServiceClient<Channel>, id: &str) -> Outcome<()> {
    client.stop_container(cri::StopContainerRequest { container_id: id.to_string(), timeout: 0 }).await.map_err(|e| format!("StopContainer: {e}"))?;
    client.remove_container(cri::RemoveContainerRequest { container_id: id.to_string() }).await.map_err(|e| format!("RemoveContainer: {e}"))?;
    Ok(())
}

fn ratio(berth: f64, other: Option<f64>) -> String {
    other.map_or(String::new(), |o| format!("{:>9.3}x", berth / o))
}

fn print_memory(sides: &[Side], footprints: &[Footprint], pods: usize) {
    println!("\n{pods} running pods (one `sleep` container each, pod network); MiB from smaps_rollup:");
    let header: String = sides.iter().map(|s| format!("{:>14}", s.name)).collect();
    println!("  {:<28}{header}{:>10}", "", if sides.len() > 1 { "ratio" } else { "" });
    let rows: [(&str, fn(&Footprint) -> u64); 7] = [
        ("daemon RSS", |f| f.daemon.rss),
        ("daemon RSS, anonymous", |f| f.daemon.anonymous),
        ("daemon PSS", |f| f.daemon.pss),
        ("shims RSS (sum)", |f| f.shims.rss),
        ("shims PSS (sum)", |f| f.shims.pss),
        ("daemon + shims RSS", |f| f.daemon.rss + f.shims.rss),
        ("daemon + shims PSS", |f| f.daemon.pss + f.shims.pss),
    ];
    for (label, value) in rows {
        let values: Vec<f64> = footprints.iter().map(|f| mib(value(f))).collect();
        let cells: String = values.iter().map(|v| format!("{v:>14.1}")).collect();
        println!("  {label:<28}{cells}{}", ratio(values[0], values.get(1).copied()));
    }
    let counts: String = footprints.iter().map(|f| format!("{:>14}", f.shim_count)).collect();
    println!("  {:<28}{counts}", "shim processes");
    println!("  (target: berth's daemon + shims <= 0.15x containerd's; containerd's pause processes not counted)");
}

fn print_lists(sides: &[Side]) {
    println!("\nList latency with the pods running, median ms of {LIST_SAMPLES}:");
    for (label, pick) in [("ListContainers", (|s: &Side| &s.list_containers) as fn(&Side) -> &Vec<Duration>), ("ListPodSandbox", |s: &Side| &s.list_pods)] {
        let values: Vec<f64> = sides.iter().map(|s| median_ms(pick(s))).collect();
        let cells: String = values.iter().map(|v| format!("{v:>14.2}")).collect();
        println!("  {label:<28}{cells}{}", ratio(values[0], values.get(1).copied()));
    }
}

async fn berth_side(world: &World) -> Outcome<Side> {
    pull_bench_images(&mut world.daemon.images().await, false).await?;
    let pid = world.daemon.child.as_ref().map_or(0, |c| c.id() as i32);
    let marker = world.daemon.state().display().to_string();
    Ok(Side { name: "berth", client: world.daemon.runtime().await, pid, shim_exe: bin_path("berth-shim"), shim_marker: marker, pods: Vec::new(), list_containers: Vec::new(), list_pods: Vec::new() })
}

async fn containerd_side(containerd: &CriContainerd) -> Outcome<Side> {
    pull_bench_images(&mut containerd.images().await, true).await?;
    let marker = containerd.dir.path().display().to_string();
    Ok(Side { name: "containerd", client: containerd.runtime().await, pid: containerd.pid(), shim_exe: RUNC_SHIM.into(), shim_marker: marker, pods: Vec::new(), list_containers: Vec::new(), list_pods: Vec::new() })
}

/// Both daemons with `pods` pods: memory, list latencies; then berthd's restart.
async fn at_scale(world: &mut World, sides: &mut [Side], settings: &PodSettings, pods: usize) -> Outcome<()> {
    for side in sides.iter_mut().rev() {
        let (filled, took) = timed(fill(side, settings, pods)).await;
        filled?;
        println!("{}: {pods} pods started ({START_BATCH} at a time) in {:.1} s", side.name, took.as_secs_f64());
    }
    tokio::time::sleep(SETTLE).await;
    let footprints: Vec<Footprint> = sides.iter().map(Side::footprint).collect();
    for round in 0..LIST_SAMPLES {
        for i in 0..sides.len() {
            sample_lists(&mut sides[(i + round) % sides.len()]).await?;
        }
    }
    print_memory(sides, &footprints, pods);
    print_lists(sides);
    for side in sides.iter_mut().skip(1) {
        empty(side).await?;
    }
    let recovery = restart_berthd(world, &mut sides[0]).await?;
    println!("\nberthd restarted with {pods} pods running: SIGTERM to exit {:.0} ms; start to every container listed running {:.0} ms (target < 1000 ms), every shim the same process",
        recovery.stop.as_secs_f64() * 1000.0, recovery.recover.as_secs_f64() * 1000.0);
    empty(&mut sides[0]).await
}

async fn run(world: &mut World, containerd: Option<&CriContainerd>, settings: &PodSettings, pods: usize, cycles: usize) -> Outcome<()> {
    let mut sides = vec![berth_side(world).await?];
    if let Some(containerd) = containerd {
        sides.push(containerd_side(containerd).await?);
    }
    tokio::time::sleep(SETTLE).await;
    let fresh = memory_of(sides[0].pid);
    println!("berthd idle after its first pull: RSS {:.1} MiB (anonymous {:.1}), PSS {:.1} MiB", mib(fresh.rss), mib(fresh.anonymous), mib(fresh.pss));
    at_scale(world, &mut sides, settings, pods).await?;
    let berth = &mut sides[0];
    let before = holdings(world, settings, &mut berth.client).await?;
    let took = churn(berth, settings, cycles).await?;
    tokio::time::sleep(SETTLE).await;
    let after_churn = memory_of(berth.pid);
    let after = holdings(world, settings, &mut berth.client).await?;
    println!("\n{cycles} create + start + stop + remove cycles in one pod: {:.1} s ({:.1} ms per cycle)", took.as_secs_f64(), took.as_secs_f64() * 1000.0 / cycles.max(1) as f64);
    println!("berthd after the churn, nothing running: RSS {:.1} MiB (anonymous {:.1}, the rest its executable and libraries), PSS {:.1} MiB (target RSS <= 15 MiB)",
        mib(after_churn.rss), mib(after_churn.anonymous), mib(after_churn.pss));
    let leaked = leaks(&before, &after);
    if !leaked.is_empty() {
        return Err(format!("the churn left {} things behind:\n  {}", leaked.len(), leaked.join("\n  ")));
    }
    println!("nothing leaked: mounts, cgroup directories, processes, links, files under root and state, records all as before");
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("PODS and CYCLES are numbers"));
    let pods = args.next().unwrap_or(100);
    let cycles = args.next().unwrap_or(1000);
    let cgroup_parent = CgroupParent::new(unique_name("bench-scale"));
    let mut world = World::new();
    push_bench_images(&world);
    let containerd = containerd_with_bridge(&world.registry.netns.path());
    let settings = PodSettings::new(cgroup_parent.name());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let outcome = runtime.block_on(run(&mut world, containerd.as_ref(), &settings, pods, cycles));
    if let Err(message) = outcome {
        eprintln!("bench_scale failed: {message}");
        eprintln!("berthd log: {}", world.daemon.log_path().display());
        drop((containerd, world, settings, cgroup_parent));
        std::process::exit(1);
    }
}
