//! The shim benchmark (issue 3, "Memory and speed"). Run as root from the workspace:
//!
//!     cargo build --release -p berth-runtime -p berth-shim
//!     cargo run --release -p berth-integration --bin bench_shim [-- COUNT]
//!
//! It measures `target/shim/berth-shim` (the static build, see the README) when that
//! exists, else `target/release/berth-shim`; `BERTH_SHIM_BIN` overrides.
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

/// Pids of the processes running `exe`. berth-shim runs from a detached read-only mount
/// of its binary (its `/proc/PID/exe` reads `/`), so its `argv[0]` is compared too.
fn processes_of(exe: &Path) -> Vec<i32> {
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let argv0 = |pid: i32| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let first = cmdline.split(|b| *b == 0).next().unwrap_or_default().to_vec();
        std::fs::canonicalize(String::from_utf8_lossy(&first).as_ref()).ok()
    };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let by_exe = std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe);
        if by_exe || argv0(pid).is_some_and(|p| p == exe) {
            pids.push(pid);
        }
    }
    pids
}

/// RSS in KiB of one process split into its executable's mappings, other files, and
/// anonymous memory (from `/proc/PID/smaps`; the first mapping is the executable).
fn breakdown(pid: i32) -> (u64, u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut exe_inode, mut inode, mut sums) = (None, String::new(), (0, 0, 0));
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first().is_some_and(|f| f.contains('-') && !f.ends_with(':')) {
            inode = fields.get(4).unwrap_or(&"0").to_string();
            exe_inode.get_or_insert_with(|| inode.clone());
        } else if fields.first() == Some(&"Rss:") {
            let kib: u64 = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            match inode.as_str() {
                "0" => sums.2 += kib,
                i if Some(i) == exe_inode.as_deref() => sums.0 += kib,
                _ => sums.1 += kib,
            }
        }
    }
    sums
}

/// How long the shims idle before they are measured: `BENCH_SHIM_SETTLE` seconds, 2 by
/// default (long enough for the idle release, one second after the last create/start).
fn settle_seconds() -> u64 {
    std::env::var("BENCH_SHIM_SETTLE").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
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
    std::thread::sleep(Duration::from_secs(settle_seconds()));
    let pids = processes_of(shim_exe);
    let (rss, pss) = pids.iter().map(|pid| memory_of(*pid)).fold((0, 0), |(r, p), (r2, p2)| (r + r2, p + p2));
    if let Some(pid) = pids.first() {
        let (exe, libs, anon) = breakdown(*pid);
        println!("  one {runtime} shim: RSS = executable {exe} KiB + libraries {libs} KiB + anonymous {anon} KiB");
        if let Some(dir) = std::env::var_os("BENCH_SHIM_SMAPS") {
            let _ = std::fs::copy(format!("/proc/{pid}/smaps"), Path::new(&dir).join(format!("{runtime}.smaps")));
        }
    }
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
fn time_library(runtime: &berth_runtime::Runtime) -> Duration {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    let null = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map(Into::into).expect("/dev/null");
    let stdio = berth_runtime::ProcessStdio { stdin: null(), stdout: null(), stderr: null() };
    let options = berth_runtime::CreateOptions { id: bundle.id.clone(), bundle: bundle.path().into(), stdio: Some(stdio), ..Default::default() };
    let begin = Instant::now();
    runtime.create(&options).expect("create");
    runtime.start(&bundle.id).expect("start");
    let elapsed = begin.elapsed();
    runtime.delete(&bundle.id, true).expect("delete");
    while let Ok(status) = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
    elapsed
}

/// `berth-runc create` + `berth-runc start`.
fn time_cli(root: &Path) -> Duration {
    let runc = |args: &[&str]| {
        let status = std::process::Command::new(bin_path("berth-runc")).arg("--root").arg(root).args(args)
            .stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).status().expect("berth-runc");
        assert!(status.success(), "berth-runc {args:?}");
    };
    let bundle = ShimBundle::new(&["sleep", "100"]);
    let begin = Instant::now();
    runc(&["create", "--bundle", &bundle.path_str(), &bundle.id]);
    runc(&["start", &bundle.id]);
    let elapsed = begin.elapsed();
    runc(&["delete", "--force", &bundle.id]);
    elapsed
}

/// Create + Start (then kill, wait, delete) of one container through `client`.
async fn shim_round(client: &containerd_shim_protos::shim_async::TaskClient, bundle: &ShimBundle) -> Duration {
    let request = CreateTaskRequest { id: bundle.id.clone(), bundle: bundle.path_str(), ..Default::default() };
    let begin = Instant::now();
    client.create(ctx(), &request).await.expect("create");
    client.start(ctx(), &StartRequest { id: bundle.id.clone(), ..Default::default() }).await.expect("start");
    let elapsed = begin.elapsed();
    client.kill(ctx(), &KillRequest { id: bundle.id.clone(), signal: 9, ..Default::default() }).await.expect("kill");
    client.wait(ctx(), &WaitRequest { id: bundle.id.clone(), ..Default::default() }).await.expect("wait");
    client.delete(ctx(), &DeleteRequest { id: bundle.id.clone(), ..Default::default() }).await.expect("delete");
    elapsed
}

/// `berth-shim start`, then Create + Start RPCs in that new shim (its first container,
/// as containerd does it) and again in the same, now warm, shim.
fn time_shim() -> [Duration; 4] {
    let bundles: Vec<ShimBundle> = (0..3).map(|_| ShimBundle::new(&["sleep", "100"])).collect();
    let begin = Instant::now();
    let shim = Shim::start(bundles[0].path(), &bundles[0].id, "");
    let launch = begin.elapsed();
    let (cold, warm, released) = block_on(async {
        let client = shim.client().await;
        let cold = shim_round(&client, &bundles[0]).await;
        let warm = shim_round(&client, &bundles[1]).await;
        // Past the shim's idle release (berth-shim's idle.rs): its code is mapped again.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        (cold, warm, shim_round(&client, &bundles[2]).await)
    });
    [cold, warm, released, launch]
}

/// The three ways, interleaved round by round so that machine load affects them alike.
fn latency_benchmark(rounds: usize) {
    let root = berth_integration::tempdir::TempDir::new("benchroot");
    let runtime = berth_runtime::Runtime::new(&root.path().join("library"));
    let (mut library, mut cli, mut shim) = (Vec::new(), Vec::new(), [(); 4].map(|_| Vec::new()));
    for _ in 0..rounds {
        library.push(time_library(&runtime));
        cli.push(time_cli(&root.path().join("cli")));
        for (samples, sample) in shim.iter_mut().zip(time_shim()) {
            samples.push(sample);
        }
    }
    let ms = |samples: Vec<Duration>| median(samples).as_secs_f64() * 1e3;
    let [cold, warm, released, launch] = shim;
    println!("create+start to a running process (median of {rounds}, interleaved):");
    println!("  runtime library in-process:        {:7.2} ms", ms(library));
    println!("  berth-runc create + start:         {:7.2} ms", ms(cli));
    println!("  berth-shim Create + Start RPCs, first container of a new shim: {:7.2} ms", ms(cold));
    println!("  berth-shim Create + Start RPCs, same shim again:               {:7.2} ms", ms(warm));
    println!("  berth-shim Create + Start RPCs, same shim after 1.5 s idle:    {:7.2} ms", ms(released));
    println!("  (berth-shim start, launching the shim: {:.2} ms)", ms(launch));
}

/// Prefers the static build in `target/shim` (see the README).
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
    latency_benchmark(20);
}
