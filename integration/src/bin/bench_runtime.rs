//! Benchmark: berth-runc against crun and runc, alternating in one run.
//!
//! Times `run` of `/bin/true` (create, start, wait, delete) and `exec` of `/bin/true`
//! into a running container (berth-runc from a writable path and from a read-only
//! mount, as deploy/install.sh installs it; crun; runc), N times each per runtime (default 50, or the first
//! argument), and prints medians and the ratios against crun and runc. A bare
//! `unshare` of five namespaces plus `/bin/true` is timed too, as the kernel's floor.
//!
//! The whole benchmark runs in a private mount namespace where the cgroup2 mount of a
//! hybrid layout is detached, so that Debian's crun runs without a wrapper and every
//! runtime sees the same cgroups, and where /tmp (the runtimes' state roots and the
//! bundles) is a tmpfs, as /run is in production. Run as root:
//!     cargo run --release -p berth-integration --bin bench_runtime -- 50

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_integration::{runtimes, Bundle, Runtime};

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(50);
    enter_private_cgroup_view();
    let runtimes: Vec<Runtime> = runtimes();
    let bundles: Vec<Bundle> = runtimes.iter().map(|rt| Bundle::with_args(rt, &["/bin/true"])).collect();
    bundles.iter().for_each(|b| b.write_config());
    let mut run_times = vec![Vec::new(); runtimes.len()];
    let mut floor = Vec::new();
    for round in 0..rounds {
        // Rotate who goes first: a runtime right after another one meets a warmer kernel.
        for i in rotated(bundles.len(), round) {
            run_times[i].push(time_run(&bundles[i]));
        }
        floor.push(time_command(Command::new("unshare").args(["-fpmiun", "/bin/true"])));
    }
    let exec_times = bench_exec(&runtimes, rounds);
    println!("berth-runc benchmark, {rounds} rounds, alternating runtimes (milliseconds)");
    println!("floor: unshare of 5 namespaces + /bin/true: median {:.2}", median_ms(&mut floor));
    report("run /bin/true (create+start+wait+delete)", &runtimes, &mut run_times);
    report("exec /bin/true into a running container", &runtimes, &mut exec_times.clone());
}

/// A mount namespace of our own in which the hybrid layout's cgroup2 mount is gone.
fn enter_private_cgroup_view() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS): run as root");
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .expect("making / a slave mount");
    let _ = umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH);
    mount(Some("tmpfs"), "/tmp", Some("tmpfs"), MsFlags::empty(), Some("mode=1777"))
        .expect("mounting a tmpfs on /tmp");
}

fn direct(rt: &Runtime) -> Command {
    let mut command = Command::new(rt.program());
    command.arg("--root").arg(rt.root());
    command.stdout(Stdio::null()).stderr(Stdio::inherit());
    command
}

fn time_command(command: &mut Command) -> Duration {
    let start = Instant::now();
    let status = command.status().expect("spawning the benchmarked command");
    let elapsed = start.elapsed();
    assert!(status.success(), "{command:?} failed: {status}");
    elapsed
}

fn time_run(bundle: &Bundle) -> Duration {
    let id = bundle.new_id();
    let mut command = direct(bundle.runtime());
    command.args(["run", "--bundle"]).arg(bundle.dir()).arg(&id);
    time_command(&mut command)
}

/// One long-running container per runtime, then `exec /bin/true` alternating.
fn bench_exec(runtimes: &[Runtime], rounds: usize) -> Vec<Vec<Duration>> {
    let bundles: Vec<Bundle> = runtimes.iter().map(|rt| Bundle::with_args(rt, &["sleep", "1000"])).collect();
    for bundle in &bundles {
        bundle.write_config();
        let mut command = direct(bundle.runtime());
        command.args(["run", "-d", "--bundle"]).arg(bundle.dir()).arg(bundle.id());
        time_command(&mut command);
    }
    let mut times = vec![Vec::new(); runtimes.len()];
    for round in 0..rounds {
        for i in rotated(bundles.len(), round) {
            let mut command = direct(bundles[i].runtime());
            command.args(["exec", bundles[i].id(), "/bin/true"]);
            times[i].push(time_command(&mut command));
        }
    }
    for bundle in &bundles {
        let mut command = direct(bundle.runtime());
        command.args(["delete", "--force", bundle.id()]);
        time_command(&mut command);
    }
    times
}

/// 0..count, starting at round % count.
fn rotated(count: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |i| (i + round) % count)
}

fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples.get(samples.len() / 2).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn report(title: &str, runtimes: &[Runtime], samples: &mut [Vec<Duration>]) {
    println!("\n{title}");
    let medians: Vec<f64> = samples.iter_mut().map(|s| median_ms(s)).collect();
    for (rt, median) in runtimes.iter().zip(&medians) {
        println!("  {:<18} median {median:8.2}", rt.name());
    }
    let median_of = |name: &str| runtimes.iter().position(|r| r.name() == name).map(|i| medians[i]);
    for berth in ["berth-runc", "berth-runc-sealed"] {
        let Some(ours) = median_of(berth) else { continue };
        for peer in ["crun", "runc"] {
            if let Some(other) = median_of(peer) {
                println!("  ratio {berth}/{peer}: {:.2}", ours / other);
            }
        }
    }
}
