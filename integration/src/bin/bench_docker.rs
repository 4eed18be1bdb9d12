//! The Docker façade benchmark (issue 15, "Performance"). Run as root from the workspace:
//!
//!     cargo build --release --workspace --bins && sudo target/release/bench_docker [ROUNDS]
//!
//! Drives berthd through the real docker CLI, in the test registry's network namespace,
//! with busybox pulled from that registry. For ROUNDS (default 10) it times
//! `docker run --rm busybox true`, create + start + `rm -f`, `exec true`, 10
//! concurrent `run --rm`, `docker network create` + `rm`, and `docker run --rm` on a
//! user-defined network, `docker compose up -d` + `down -v` of the compose test project
//! (`berth_integration::compose`, compose v2 as the CLI plugin), and prints medians; then berthd's RSS, idle with the façade
//! serving. Debian's dockerd is not on this machine (docker.io is not installed), so
//! no side-by-side run is made; the dockerd 20.10 figures are printed beside.
use std::time::{Duration, Instant};

use berth_integration::compose::{compose, install_plugin, project_dir, push_image, Compose, COMPOSE_FILE};
use berth_integration::docker::DockerWorld;

fn timed(docker: &DockerWorld, args: &[&str]) -> Duration {
    let started = Instant::now();
    docker.docker(args).ok();
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// `field` of /proc/PID/status, in KiB (VmRSS, RssAnon, RssFile).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// berthd's RSS after `settle` idle, with its anonymous and file-backed parts.
fn idle_rss(pid: u32, settle: Duration) -> String {
    std::thread::sleep(settle);
    format!("{} KiB (anon {} KiB, file {} KiB)", status_kib(pid, "VmRSS"), status_kib(pid, "RssAnon"), status_kib(pid, "RssFile"))
}

fn concurrent_runs(docker: &DockerWorld, count: usize) -> Duration {
    let started = Instant::now();
    let children: Vec<_> = (0..count).map(|_| docker.command(&["run", "--rm", "busybox", "true"]).spawn().expect("spawn docker")).collect();
    for mut child in children {
        assert!(child.wait().expect("wait docker").success(), "a concurrent run failed");
    }
    started.elapsed()
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(10);
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let pid = docker.world.daemon.child.as_ref().map(|c| c.id()).unwrap_or(0);
    let idle_at_start = idle_rss(pid, Duration::from_secs(6));
    docker.docker(&["run", "-d", "--name", "bench-exec", "busybox", "sleep", "100000"]).ok();
    docker.docker(&["network", "create", "bench-net"]).ok();
    let (mut run, mut lifecycle, mut exec, mut concurrent) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut network, mut run_on_network, mut project) = (Vec::new(), Vec::new(), Vec::new());
    install_plugin(&docker);
    push_image(&docker);
    let project_dir = project_dir(&docker, COMPOSE_FILE);
    docker.docker(&["pull", "-q", "busybox:compose"]).ok();
    for _ in 0..rounds {
        run.push(timed(&docker, &["run", "--rm", "busybox", "true"]));
        let started = Instant::now();
        let id = docker.docker(&["create", "busybox", "sleep", "100"]).ok().stdout.trim().to_string();
        docker.docker(&["start", &id]).ok();
        docker.docker(&["rm", "-f", &id]).ok();
        lifecycle.push(started.elapsed());
        exec.push(timed(&docker, &["exec", "bench-exec", "true"]));
        concurrent.push(concurrent_runs(&docker, 10));
        let started = Instant::now();
        docker.docker(&["network", "create", "bench-round"]).ok();
        docker.docker(&["network", "rm", "bench-round"]).ok();
        network.push(started.elapsed());
        run_on_network.push(timed(&docker, &["run", "--rm", "--network", "bench-net", "busybox", "true"]));
        let started = Instant::now();
        compose(&docker, Compose::V2, &project_dir, &["up", "-d"]).ok();
        compose(&docker, Compose::V2, &project_dir, &["down", "-v"]).ok();
        project.push(started.elapsed());
    }
    docker.docker(&["rm", "-f", "bench-exec"]).ok();
    docker.docker(&["network", "rm", "bench-net"]).ok();
    let idle_after = idle_rss(pid, Duration::from_secs(6));
    println!("docker CLI against berthd, {rounds} rounds, medians (dockerd 20.10 on this machine per issue 15):");
    println!("  run --rm busybox true        {:>8.1} ms   (dockerd ~330 ms)", median(run).as_secs_f64() * 1e3);
    println!("  create + start + rm -f       {:>8.1} ms", median(lifecycle).as_secs_f64() * 1e3);
    println!("  exec true                    {:>8.1} ms   (dockerd ~65 ms)", median(exec).as_secs_f64() * 1e3);
    println!("  10 concurrent run --rm       {:>8.1} ms", median(concurrent).as_secs_f64() * 1e3);
    println!("  network create + rm          {:>8.1} ms", median(network).as_secs_f64() * 1e3);
    println!("  run --rm on a user network   {:>8.1} ms", median(run_on_network).as_secs_f64() * 1e3);
    println!("  compose up -d + down -v      {:>8.1} ms   (2 services, healthcheck at 1 s)", median(project).as_secs_f64() * 1e3);
    println!("  berthd RSS, idle after the pull: {idle_at_start}");
    println!("  berthd RSS, idle after the runs: {idle_after} (dockerd ~76 MB)");
}
