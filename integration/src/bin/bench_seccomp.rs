//! Benchmark: compiling berth's `RuntimeDefault` seccomp profile into a BPF program
//! (what berth-runc does before it clones each container's init), for an unprivileged
//! container and for one with CAP_SYS_ADMIN. Prints the median and worst of N rounds
//! (default 50, or the first argument) and the program's size. No root needed:
//!     cargo run --release -p berth-integration --bin bench_seccomp -- 50

use std::time::{Duration, Instant};

use berth::core::SeccompProfile;
use oci_spec::runtime::LinuxSeccomp;

fn profile(capabilities: &[&str]) -> LinuxSeccomp {
    let capabilities: Vec<String> = capabilities.iter().map(|c| c.to_string()).collect();
    let value = berth::spec::seccomp::seccomp_for(&SeccompProfile::RuntimeDefault, &capabilities).expect("profile").expect("confined");
    serde_json::from_value(value).expect("an OCI seccomp object")
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(50);
    println!("seccomp RuntimeDefault compile, {rounds} rounds (milliseconds)");
    for (what, capabilities) in [("default capabilities", vec!["CAP_CHOWN", "CAP_SETUID"]), ("with CAP_SYS_ADMIN", vec!["CAP_SYS_ADMIN"])] {
        let profile = profile(&capabilities);
        let mut times: Vec<Duration> = Vec::with_capacity(rounds);
        let mut size = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            let program = berth_runtime::seccomp::compile(&profile).expect("compiles");
            times.push(start.elapsed());
            size = program.instructions();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("{what}: median {:.2}, max {:.2}, {size} BPF instructions", ms(times[times.len() / 2]), ms(times[times.len() - 1]));
    }
}
