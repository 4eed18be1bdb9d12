//! The shim benchmark (issue 3, "Memory and speed"). Run as root from the workspace:
//!
//!     cargo build --release -p berth-runtime && cargo build --profile shim -p berth-shim
//!     cargo run --release -p berth-integration --bin bench_shim [-- COUNT]
//!
//! 1. Starts COUNT (default 20) idle containers (`sleep`) through a private containerd
//!    with berth-shim, then with containerd-shim-runc-v2 when it is installed, and
//!    prints the shims' RSS (and PSS) per container and the ratio.
//! 2. Times Create+Start to a running process: the runtime library alone, berth-runc
//!    create+start, and through a running berth-shim's ttrpc API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_integration::bins::bin_path;
use berth_integration::containerd::{Containerd, BERTH_RUNTIME, IMAGE, RUNC_RUNTIME};
use berth_integration::shim::{block_on, ctx, Shim, ShimBundle};
use containerd_shim_protos::api::{CreateTaskRequest, DeleteRequest, KillRequest, StartRequest, WaitRequest};

/// (rss, pss) in KiB of one process.
fn memory_of(pid: i32) -> (u64, u64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// Pids of the processes running `exe`.
fn processes_of(exe: &Path) -> Vec<i32> {
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if std::fs::read_link(format!("/proc/{pid}/exe")).map(|p| p == exe).unwrap_or(false) {
            pids.push(pid);
        }
    }
    pids
}

struct MemoryResult {
    shims: usize,
    rss_kib: u64,
    pss_kib: u64,
}

fn measure_runtime(containerd: &Containerd, runtime: &str, shim_exe: &Path, count: usize) -> MemoryResult {
    let ids: Vec<String> = (0..count).map(|i| format!("bench-{}-{i}", runtime.split('.').nth(2).unwrap_or("x"))).collect();
    for id in &ids {
        containerd.ctr_ok(&["run", "-d", "--runtime", runtime, IMAGE, id, "sleep", "100000"]);
    }
    std::thread::sleep(Duration::from_secs(2));
    let pids = processes_of(shim_exe);
    let (rss, pss) = pids.iter().map(|pid| memory_of(*pid)).fold((0, 0), |(r, p), (r2, p2)| (r + r2, p + p2));
    for id in &ids {
        let _ = containerd.ctr(&["task", "kill", "-s", "SIGKILL", id]);
    }
    std::thread::sleep(Duration::from_millis(500));
    for id in &ids {
        let _ = containerd.ctr(&["task", "delete", "--force", id]);
        let _ = containerd.ctr(&["containers", "delete", id]);
    }
    MemoryResult { shims: pids.len(), rss_kib: rss, pss_kib: pss }
}

fn memory_benchmark(count: usize) {
    let Some(containerd) = Containerd::start() else {
        println!("containerd is not installed: memory benchmark skipped");
        return;
    };
    containerd.import_busybox();
    let berth = measure_runtime(&containerd, BERTH_RUNTIME, &berth_integration::shim::shim_binary(), count);
    let per = |_: &MemoryResult, v: u64| v as f64 / count as f64 / 1024.0;
    println!("berth-shim: {count} containers, {} shim processes: RSS {:.2} MiB/container, PSS {:.2} MiB/container",
        berth.shims, per(&berth, berth.rss_kib), per(&berth, berth.pss_kib));
    let runc_shim = PathBuf::from("/usr/bin/containerd-shim-runc-v2");
    if runc_shim.exists() {
        let runc = measure_runtime(&containerd, RUNC_RUNTIME, &runc_shim, count);
        println!("containerd-shim-runc-v2: {count} containers, {} shim processes: RSS {:.2} MiB/container, PSS {:.2} MiB/container",
            runc.shims, per(&runc, runc.rss_kib), per(&runc, runc.pss_kib));
        println!("ratio runc-v2 / berth-shim: RSS {:.1}x, PSS {:.1}x",
            runc.rss_kib as f64 / berth.rss_kib.max(1) as f64, runc.pss_kib as f64 / berth.pss_kib.max(1) as f64);
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Create+start with the runtime library in this (single-threaded) process.
fn time_library(rounds: usize) -> Duration {
    let root = berth_integration::tempdir::TempDir::new("benchroot");
    let runtime = berth_runtime::Runtime::new(root.path());
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let bundle = ShimBundle::new(&["sleep", "100"]);
        let null = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map(Into::into);
        let stdio = berth_runtime::ProcessStdio { stdin: null().unwrap(), stdout: null().unwrap(), stderr: null().unwrap() };
        let options = berth_runtime::CreateOptions { id: bundle.id.clone(), bundle: bundle.path().into(), stdio: Some(stdio), ..Default::default() };
        let begin = Instant::now();
        runtime.create(&options).expect("create");
        runtime.start(&bundle.id).expect("start");
        samples.push(begin.elapsed());
        runtime.delete(&bundle.id, true).expect("delete");
        let _ = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
    median(samples)
}

/// `berth-runc create` + `berth-runc start`.
fn time_cli(rounds: usize) -> Duration {
    let root = berth_integration::tempdir::TempDir::new("benchroot");
    let runc = |args: &[&str]| {
        let status = std::process::Command::new(bin_path("berth-runc")).arg("--root").arg(root.path()).args(args)
            .stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).status().expect("berth-runc");
        assert!(status.success(), "berth-runc {args:?}");
    };
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let bundle = ShimBundle::new(&["sleep", "100"]);
        let begin = Instant::now();
        runc(&["create", "--bundle", &bundle.path_str(), &bundle.id]);
        runc(&["start", &bundle.id]);
        samples.push(begin.elapsed());
        runc(&["delete", "--force", &bundle.id]);
    }
    median(samples)
}

/// Create + Start RPCs to a running berth-shim, and `berth-shim start` itself.
fn time_shim(rounds: usize) -> (Duration, Duration) {
    let (mut rpc, mut launch) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let bundle = ShimBundle::new(&["sleep", "100"]);
        let begin = Instant::now();
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        launch.push(begin.elapsed());
        block_on(async {
            let client = shim.client().await;
            let request = CreateTaskRequest { id: bundle.id.clone(), bundle: bundle.path_str(), ..Default::default() };
            let begin = Instant::now();
            client.create(ctx(), &request).await.expect("create");
            client.start(ctx(), &StartRequest { id: bundle.id.clone(), ..Default::default() }).await.expect("start");
            rpc.push(begin.elapsed());
            client.kill(ctx(), &KillRequest { id: bundle.id.clone(), signal: 9, ..Default::default() }).await.expect("kill");
            client.wait(ctx(), &WaitRequest { id: bundle.id.clone(), ..Default::default() }).await.expect("wait");
            client.delete(ctx(), &DeleteRequest { id: bundle.id.clone(), ..Default::default() }).await.expect("delete");
        });
    }
    (median(rpc), median(launch))
}

/// Prefers the size-optimised build (`cargo build --profile shim -p berth-shim`).
fn choose_shim_binary() {
    let optimised = bin_path("berth-shim").parent().and_then(|d| d.parent()).map(|t| t.join("shim/berth-shim"));
    if std::env::var_os("BERTH_SHIM_BIN").is_none() {
        if let Some(path) = optimised.filter(|p| p.exists()) {
            std::env::set_var("BERTH_SHIM_BIN", path);
        }
    }
    println!("berth-shim binary: {}", berth_integration::shim::shim_binary().display());
}

fn main() {
    choose_shim_binary();
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    memory_benchmark(count);
    let rounds = 10;
    let library = time_library(rounds);
    let cli = time_cli(rounds);
    let (rpc, launch) = time_shim(rounds);
    println!("create+start to a running process (median of {rounds}):");
    println!("  runtime library in-process:        {:7.2} ms", library.as_secs_f64() * 1e3);
    println!("  berth-runc create + start:         {:7.2} ms", cli.as_secs_f64() * 1e3);
    println!("  berth-shim Create + Start RPCs:    {:7.2} ms", rpc.as_secs_f64() * 1e3);
    println!("  (berth-shim start, launching the shim: {:.2} ms)", launch.as_secs_f64() * 1e3);
}
