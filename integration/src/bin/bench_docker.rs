//! The Docker façade benchmark (issues 15 and 19, "Performance"), berthd beside Debian's
//! dockerd 20.10. Run as root from the workspace:
//!
//!     cargo build --release --workspace --bins && sudo target/release/bench_docker [ROUNDS]
//!
//! The same docker CLI drives berthd ([`DockerWorld`]) and dockerd ([`Dockerd`]), each in
//! its own network namespace beside its own registry holding busybox. For ROUNDS
//! (default 10) it times `docker run --rm busybox true`, create + start + `rm -f`,
//! `exec true`, 10 concurrent `run --rm`, `docker network create` + `rm`, `run --rm` on
//! a user-defined network, and `docker compose up -d` + `down -v` of the compose test
//! project; each operation runs on both daemons in turn, the order flipping every round,
//! and the medians and their ratio berthd/dockerd are printed; then the daemons' RSS,
//! idle. Without docker.io installed, berthd alone is timed.
//!
//! `bench_docker ROUNDS exec` times only the steps of `docker exec` on both daemons:
//! the CLI alone (`docker --version`), `docker ps -q`, `exec -d box true` and
//! `exec box true`.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_integration::compose::{compose, install_plugin, project_dir, push_image, Compose, COMPOSE_FILE};
use berth_integration::docker::{DockerClient, DockerWorld};
use berth_integration::dockerd::Dockerd;
use berth_integration::CmdOutput;

/// Set when a command failed: the bench goes on (a panic would abort without cleaning
/// up, since the workspace builds with `panic = "abort"`) and exits 1 at the end.
static FAILED: AtomicBool = AtomicBool::new(false);

trait Checked {
    fn checked(self) -> CmdOutput;
}

impl Checked for CmdOutput {
    /// Reports a failed command and marks the run failed.
    fn checked(self) -> CmdOutput {
        if !self.success() {
            eprintln!("bench_docker: {self}");
            FAILED.store(true, Ordering::Relaxed);
        }
        self
    }
}

/// The operations timed, in the order of a round.
const OPERATIONS: [&str; 7] = [
    "run --rm busybox true",
    "create + start + rm -f",
    "exec true",
    "10 concurrent run --rm",
    "network create + rm",
    "run --rm on a user network",
    "compose up -d + down -v",
];

/// The steps of `docker exec`, timed by `bench_docker ROUNDS exec`.
const EXEC_STEPS: [&[&str]; 4] = [&["--version"], &["ps", "-q"], &["exec", "-d", "bench-exec", "true"], &["exec", "bench-exec", "true"]];

/// Times [`EXEC_STEPS`] on both daemons, alternating, and prints the medians.
fn bench_exec_steps(rounds: usize, clients: &[&dyn DockerClient]) {
    let mut samples = vec![vec![Vec::new(); EXEC_STEPS.len()]; clients.len()];
    for round in 0..rounds {
        for (step, args) in EXEC_STEPS.iter().enumerate() {
            for offset in 0..clients.len() {
                let side = (round + offset) % clients.len();
                let started = Instant::now();
                clients[side].docker(args).checked();
                samples[side][step].push(started.elapsed());
            }
        }
    }
    println!("docker exec steps, {rounds} rounds, medians in ms (load: {})", uptime());
    println!("  {:<33} {:>10} {:>10}", "step", "berthd", "dockerd");
    for (step, args) in EXEC_STEPS.iter().enumerate() {
        let medians: Vec<String> = samples.iter().map(|side| format!("{:>10.1}", median_ms(&side[step]).unwrap_or(f64::NAN))).collect();
        println!("  docker {:<26} {}", args.join(" "), medians.join(" "));
    }
}

fn exit_status() -> std::process::ExitCode {
    if FAILED.load(Ordering::Relaxed) {
        eprintln!("bench_docker: some commands failed (above); their times are in the medians");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

/// One daemon under test, ready for the operations.
struct Side<'a> {
    client: &'a dyn DockerClient,
    project: PathBuf,
    samples: Vec<Vec<Duration>>,
}

impl<'a> Side<'a> {
    /// Pulls the images and makes the long-lived container, network and compose project.
    fn prepare(client: &'a dyn DockerClient) -> Side<'a> {
        client.docker(&["pull", "-q", "busybox"]).checked();
        client.docker(&["run", "-d", "--name", "bench-exec", "busybox", "sleep", "100000"]).checked();
        client.docker(&["network", "create", "bench-net"]).checked();
        install_plugin(client);
        push_image(client);
        client.docker(&["pull", "-q", "busybox:compose"]).checked();
        let project = project_dir(client, COMPOSE_FILE);
        Side { client, project, samples: vec![Vec::new(); OPERATIONS.len()] }
    }

    fn run(&mut self, operation: usize) {
        let started = Instant::now();
        perform(self.client, &self.project, operation);
        self.samples[operation].push(started.elapsed());
    }

    fn clean_up(&self) {
        self.client.docker(&["rm", "-f", "bench-exec"]).checked();
        self.client.docker(&["network", "rm", "bench-net"]).checked();
    }
}

/// Runs operation number `operation` of [`OPERATIONS`] once; any failure ends the bench.
fn perform(docker: &dyn DockerClient, project: &Path, operation: usize) {
    match operation {
        0 => drop(docker.docker(&["run", "--rm", "busybox", "true"]).checked()),
        1 => {
            let id = docker.docker(&["create", "busybox", "sleep", "100"]).checked().stdout.trim().to_string();
            docker.docker(&["start", &id]).checked();
            docker.docker(&["rm", "-f", &id]).checked();
        }
        2 => drop(docker.docker(&["exec", "bench-exec", "true"]).checked()),
        3 => concurrent_runs(docker, 10),
        4 => {
            docker.docker(&["network", "create", "bench-round"]).checked();
            docker.docker(&["network", "rm", "bench-round"]).checked();
        }
        5 => drop(docker.docker(&["run", "--rm", "--network", "bench-net", "busybox", "true"]).checked()),
        _ => {
            compose(docker, Compose::V2, project, &["up", "-d"]).checked();
            compose(docker, Compose::V2, project, &["down", "-v"]).checked();
        }
    }
}

fn concurrent_runs(docker: &dyn DockerClient, count: usize) {
    let children: Vec<_> = (0..count).map(|_| docker.command(&["run", "--rm", "busybox", "true"]).spawn().expect("spawn docker")).collect();
    for mut child in children {
        if !child.wait().map(|status| status.success()).unwrap_or(false) {
            eprintln!("bench_docker: a concurrent `docker run --rm` failed");
            FAILED.store(true, Ordering::Relaxed);
        }
    }
}

fn median_ms(samples: &[Duration]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).map(|d| d.as_secs_f64() * 1e3)
}

/// `field` of /proc/PID/status, in KiB (VmRSS, RssAnon, RssFile).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn rss(pid: u32) -> String {
    format!("{} KiB (anon {} KiB, file {} KiB)", status_kib(pid, "VmRSS"), status_kib(pid, "RssAnon"), status_kib(pid, "RssFile"))
}

/// The containerd that dockerd started (its command line names dockerd's exec root).
fn managed_containerd(dockerd: &Dockerd) -> Option<u32> {
    let marker = dockerd.dir.path().display().to_string();
    berth_integration::berthd::pids_with_cmdline_containing(&marker).into_iter().find(|pid| {
        std::fs::read_link(format!("/proc/{pid}/exe")).map(|exe| exe.ends_with("containerd")).unwrap_or(false)
    }).map(|pid| pid as u32)
}

fn print_table(rounds: usize, berth: &Side, peer: Option<&Side>) {
    println!("docker CLI 28.2, {rounds} rounds, medians in ms (load: {})", uptime());
    println!("  {:<28} {:>10} {:>10} {:>8}", "operation", "berthd", "dockerd", "ratio");
    for (index, name) in OPERATIONS.iter().enumerate() {
        let ours = median_ms(&berth.samples[index]).unwrap_or(f64::NAN);
        let theirs = peer.and_then(|p| median_ms(&p.samples[index]));
        let (theirs_text, ratio_text) = match theirs {
            Some(theirs) => (format!("{theirs:.1}"), format!("{:.2}x", ours / theirs)),
            None => ("-".to_string(), "-".to_string()),
        };
        println!("  {name:<28} {ours:>10.1} {theirs_text:>10} {ratio_text:>8}");
    }
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn main() -> std::process::ExitCode {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(10);
    let berth_world = DockerWorld::new();
    let dockerd = Dockerd::installed().then(Dockerd::start);
    if dockerd.is_none() {
        eprintln!("bench_docker: {} is not installed, timing berthd alone", berth_integration::dockerd::DOCKERD);
    }
    let berth_pid = berth_world.world.daemon.child.as_ref().map(|c| c.id()).unwrap_or(0);
    let mut berth = Side::prepare(&berth_world);
    let mut peer = dockerd.as_ref().map(|d| Side::prepare(d));
    if std::env::args().nth(2).as_deref() == Some("exec") {
        let mut clients: Vec<&dyn DockerClient> = vec![&berth_world];
        clients.extend(dockerd.as_ref().map(|d| d as &dyn DockerClient));
        bench_exec_steps(rounds, &clients);
        berth.clean_up();
        peer.iter().for_each(Side::clean_up);
        return exit_status();
    }
    std::thread::sleep(Duration::from_secs(6));
    let idle_at_start = rss(berth_pid);
    for round in 0..rounds {
        for operation in 0..OPERATIONS.len() {
            match (&mut peer, round % 2) {
                (Some(peer), 1) => {
                    peer.run(operation);
                    berth.run(operation);
                }
                (Some(peer), _) => {
                    berth.run(operation);
                    peer.run(operation);
                }
                (None, _) => berth.run(operation),
            }
        }
    }
    berth.clean_up();
    peer.iter().for_each(Side::clean_up);
    std::thread::sleep(Duration::from_secs(6));
    print_table(rounds, &berth, peer.as_ref());
    println!("  berthd RSS, idle after the pull: {idle_at_start}");
    println!("  berthd RSS, idle after the runs: {}", rss(berth_pid));
    if let Some(dockerd) = &dockerd {
        println!("  dockerd RSS, idle after the runs: {}", rss(dockerd.pid().unwrap_or(0)));
        if let Some(containerd) = managed_containerd(dockerd) {
            println!("  its containerd RSS, idle after the runs: {}", rss(containerd));
        }
    }
    exit_status()
}
