//! Pods started in parallel (issue 17, "Parallelism"). Run as root from the workspace:
//!
//!     cargo build --release --workspace --bins && sudo target/release/bench_parallel_pods [ROUNDS] [K...]
//!
//! For each K (default 1, 10, 20 and 50), starts K pods at once, each with its own RunPodSandbox,
//! CreateContainer and StartContainer (one `sleep` container, the pod network: berth's
//! bridge, and for containerd the Debian CNI bridge plugin), and times the wall clock
//! until all K run. berthd and, when installed, Debian's containerd 1.6 with runc run
//! side by side in the test registry's network namespace; each round alternates which
//! goes first. Between rounds every pod is removed (not timed). Prints the median wall
//! time per K and the ratio berth / containerd (target: <= 0.30x for every K).

use std::time::{Duration, Instant};

use berth_integration::containerd_cri::CriContainerd;
use berth_integration::cri::{push_bench_images, World};
use berth_integration::leak::CgroupParent;
use berth_integration::pod_bench::{containerd_with_bridge, join_all, machine_busy, median_ms, pull_bench_images, remove_pod, start_pod, Outcome, PodSettings};
use berth_integration::tempdir::unique_name;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const DEFAULT_COUNTS: [usize; 4] = [1, 10, 20, 50];

struct Daemon {
    name: &'static str,
    client: RuntimeServiceClient<Channel>,
    /// Wall times per K (in the order of the K values asked for).
    walls: Vec<Vec<Duration>>,
    /// The machine's busy CPU time during each burst, per K.
    busy: Vec<Vec<Duration>>,
}

/// Starts `count` pods at once; the wall time until all run, and the CPU time the
/// machine was busy meanwhile. Removes them after.
async fn one_burst(daemon: &Daemon, settings: &PodSettings, count: usize, round: usize) -> Outcome<(Duration, Duration)> {
    let starts: Vec<_> = (0..count)
        .map(|i| {
            let config = settings.pod(&format!("par-{}-{count}-{round}-{i}", daemon.name));
            tokio::spawn(start_pod(daemon.client.clone(), config, settings.container()))
        })
        .collect();
    let begin = Instant::now();
    let busy_before = machine_busy();
    let outcomes = join_all(starts).await;
    let wall = begin.elapsed();
    let busy = machine_busy().saturating_sub(busy_before);
    let pods: Vec<String> = outcomes.iter().filter_map(|o| o.as_ref().ok().map(|started| started.pod.clone())).collect();
    let removals: Vec<_> = pods.into_iter().map(|pod| tokio::spawn(remove_pod(daemon.client.clone(), pod))).collect();
    for outcome in join_all(removals).await {
        outcome.map_err(|e| format!("{}: {e}", daemon.name))?;
    }
    for outcome in outcomes {
        outcome.map_err(|e| format!("{}: {e}", daemon.name))?;
    }
    Ok((wall, busy))
}

fn print_walls(daemons: &[Daemon], counts: &[usize], rounds: usize) {
    println!("\nK pods started at once (runp + create + start each, pod network), median wall ms over {rounds} rounds:");
    let header: String = daemons.iter().map(|d| format!("{:>12}", d.name)).collect();
    println!("  {:<6}{header}{}", "K", if daemons.len() > 1 { format!("{:>10}", "ratio") } else { String::new() });
    for (slot, count) in counts.iter().enumerate() {
        let medians: Vec<f64> = daemons.iter().map(|d| median_ms(&d.walls[slot])).collect();
        let cells: String = medians.iter().map(|m| format!("{m:>12.1}")).collect();
        let ratio = if medians.len() > 1 { format!("{:>9.2}x", medians[0] / medians[1]) } else { String::new() };
        println!("  {count:<6}{cells}{ratio}");
    }
    if daemons.len() > 1 {
        println!("  (ratio = {} / {}; target <= 0.30x for every K)", daemons[0].name, daemons[1].name);
    }
    println!("\nThe machine's busy CPU time per pod during a burst (all cores, every process), median ms:");
    for (slot, count) in counts.iter().enumerate() {
        let cells: String = daemons.iter().map(|d| format!("{:>12.1}", median_ms(&d.busy[slot]) / *count as f64)).collect();
        println!("  {count:<6}{cells}");
    }
}

async fn run(world: &World, containerd: Option<&CriContainerd>, settings: &PodSettings, rounds: usize, counts: &[usize]) -> Outcome<()> {
    pull_bench_images(&mut world.daemon.images().await, false).await?;
    let mut daemons = vec![Daemon { name: "berth", client: world.daemon.runtime().await, walls: vec![Vec::new(); counts.len()], busy: vec![Vec::new(); counts.len()] }];
    if let Some(containerd) = containerd {
        pull_bench_images(&mut containerd.images().await, true).await?;
        daemons.push(Daemon { name: "containerd", client: containerd.runtime().await, walls: vec![Vec::new(); counts.len()], busy: vec![Vec::new(); counts.len()] });
    }
    for daemon in &daemons {
        one_burst(daemon, settings, 2, usize::MAX).await?;
    }
    for round in 0..rounds {
        for (slot, count) in counts.iter().enumerate() {
            let order: Vec<usize> = (0..daemons.len()).map(|i| (i + round + slot) % daemons.len()).collect();
            for i in order {
                let (wall, busy) = one_burst(&daemons[i], settings, *count, round).await?;
                daemons[i].walls[slot].push(wall);
                daemons[i].busy[slot].push(busy);
            }
        }
    }
    print_walls(&daemons, counts, rounds);
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("ROUNDS and K are numbers"));
    let rounds = args.next().unwrap_or(3);
    let mut counts: Vec<usize> = args.collect();
    if counts.is_empty() {
        counts = DEFAULT_COUNTS.to_vec();
    }
    let cgroup_parent = CgroupParent::new(unique_name("bench-par"));
    let world = World::new();
    push_bench_images(&world);
    // BENCH_BERTH_ONLY=1 leaves containerd out (for profiling berth alone).
    let containerd = if std::env::var_os("BENCH_BERTH_ONLY").is_some() { None } else { containerd_with_bridge(&world.registry.netns.path()) };
    let settings = PodSettings::new(cgroup_parent.name());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let outcome = runtime.block_on(run(&world, containerd.as_ref(), &settings, rounds, &counts));
    if let Err(message) = outcome {
        eprintln!("bench_parallel_pods failed: {message}");
        eprintln!("berthd log: {}", world.daemon.log_path().display());
        drop((containerd, world, settings, cgroup_parent));
        std::process::exit(1);
    }
}
