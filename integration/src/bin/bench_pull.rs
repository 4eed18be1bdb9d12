//! Benchmark: pull plus unpack of a large multi-layer image into a clean store, berth
//! against Debian's containerd (`ctr image pull`), alternating, in one run.
//!
//! The image (about 230 MB unpacked in four gzip layers: thousands of small files and a
//! few large ones, part compressible, part random) is generated here and uploaded to a
//! real registry (Debian's docker-registry) on 127.0.0.1 in a private network namespace.
//! Each round pulls it with berth's images library into a fresh root, and with `ctr`
//! against a private containerd started with a fresh root, both inside that namespace,
//! alternating who goes first. Prints medians, MB/s and the ratio. Run as root:
//!     cargo run --release -p berth-integration --bin bench_pull -- 5
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_integration::images::{local_config, open_service, Layer, LayerBuilder, TestImage};
use berth_integration::netns::NetNs;
use berth_integration::registry::{in_netns, runtime, Auth, Registry, ADDRESS};
use berth_integration::tempdir::TempDir;

const REFERENCE_PATH: &str = "bench/big:v1";

/// A fast deterministic byte generator (xorshift64*).
struct Bytes(u64);

impl Bytes {
    fn random(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            out.extend_from_slice(&self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// Text-like data that compresses about 3:1.
    fn compressible(&mut self, n: usize) -> Vec<u8> {
        let words: Vec<Vec<u8>> = (0..512).map(|i| format!("word{i:03x} ").into_bytes()).collect();
        let picks = self.random(n / 4);
        let mut out = Vec::with_capacity(n + 16);
        for pick in picks.iter().cycle() {
            if out.len() >= n {
                break;
            }
            out.extend_from_slice(&words[(*pick as usize * 2) % words.len()]);
        }
        out.truncate(n);
        out
    }
}

fn small_files(layer: LayerBuilder, bytes: &mut Bytes, dir: &str, count: usize, size: usize) -> LayerBuilder {
    let mut layer = layer.dir(dir, 0o755);
    for i in 0..count {
        let sub = format!("{dir}/d{:02}", i % 50);
        if i < 50 {
            layer = layer.dir(&sub, 0o755);
        }
        layer = layer.file(&format!("{sub}/f{i:05}"), &bytes.compressible(size), 0o644);
    }
    layer
}

fn big_image() -> TestImage {
    let mut bytes = Bytes(0x9e37_79b9_7f4a_7c15);
    let base = small_files(LayerBuilder::new().busybox(), &mut bytes, "usr", 6000, 4096);
    let random = LayerBuilder::new().dir("blobs", 0o755).file("blobs/random", &bytes.random(70 << 20), 0o644);
    let text = LayerBuilder::new().dir("text", 0o755).file("text/a", &bytes.compressible(60 << 20), 0o644);
    let mixed = small_files(LayerBuilder::new(), &mut bytes, "lib", 4000, 8192).file("lib/big", &bytes.random(40 << 20), 0o644);
    TestImage::new([base, random, text, mixed].into_iter().map(Layer::gzip).collect())
}

fn berth_pull(registry: &Registry) -> Duration {
    let dir = TempDir::new("bench-berth");
    let service = open_service(dir.path(), local_config(""));
    let reference = format!("{ADDRESS}/{REFERENCE_PATH}");
    let started = Instant::now();
    in_netns(&registry.netns, || runtime().block_on(service.pull(&reference, None, None))).expect("berth pull");
    started.elapsed()
}

/// A private containerd with its own root, state and socket, in the namespace.
struct PrivateContainerd {
    dir: TempDir,
    child: Child,
}

impl PrivateContainerd {
    fn start(netns: &NetNs) -> PrivateContainerd {
        let dir = TempDir::new("bench-containerd");
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("containerd config");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.path()))
            .args(["containerd", "-c"])
            .arg(dir.path().join("config.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start containerd");
        let containerd = PrivateContainerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !containerd.ctr(netns, &["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        containerd
    }

    fn ctr(&self, netns: &NetNs, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net={}", netns.path()))
            .arg("ctr")
            .arg("--address")
            .arg(self.dir.path().join("c.sock"))
            .args(["--namespace", "bench"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for sub in ["root", "state"] {
            let _ = Command::new("umount").arg("-R").arg(self.dir.path().join(sub)).stderr(Stdio::null()).status();
        }
    }
}

fn containerd_pull(registry: &Registry) -> Duration {
    let containerd = PrivateContainerd::start(&registry.netns);
    let reference = format!("{ADDRESS}/{REFERENCE_PATH}");
    let started = Instant::now();
    let out = containerd.ctr(&registry.netns, &["image", "pull", "--plain-http", &reference]);
    let took = started.elapsed();
    assert!(out.status.success(), "ctr pull failed: {}", String::from_utf8_lossy(&out.stderr));
    took
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(5);
    let registry = Registry::start(Auth::None);
    let image = big_image();
    let compressed: u64 = image.layers.iter().map(|l| l.blob.len() as u64).sum();
    image.push(&registry, "bench/big", "v1");
    let tar_bytes = uncompressed_size(&image);
    let with_containerd = Path::new("/usr/bin/containerd").exists() && Path::new("/usr/bin/ctr").exists();
    let (mut berth, mut containerd) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 1 && with_containerd {
            containerd.push(containerd_pull(&registry));
        }
        berth.push(berth_pull(&registry));
        if round % 2 == 0 && with_containerd {
            containerd.push(containerd_pull(&registry));
        }
    }
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!("pull + unpack of a {} layer image: {:.0} MB compressed, {:.0} MB unpacked; {rounds} rounds, alternating", image.layers.len(), mb(compressed), mb(tar_bytes));
    let berth_median = median(&mut berth);
    let rate = |time: Duration| (mb(compressed) / time.as_secs_f64(), mb(tar_bytes) / time.as_secs_f64());
    let (berth_in, berth_out) = rate(berth_median);
    println!("berth:      median {:>7.3} s  {berth_in:>6.1} MB/s compressed  {berth_out:>6.1} MB/s unpacked  {berth:?}", berth_median.as_secs_f64());
    if with_containerd {
        let containerd_median = median(&mut containerd);
        let (ctr_in, ctr_out) = rate(containerd_median);
        println!("containerd: median {:>7.3} s  {ctr_in:>6.1} MB/s compressed  {ctr_out:>6.1} MB/s unpacked  {containerd:?}", containerd_median.as_secs_f64());
        println!("ratio berth/containerd: {:.2}", berth_median.as_secs_f64() / containerd_median.as_secs_f64());
    } else {
        println!("containerd: not installed, no comparison");
    }
}

/// The uncompressed size of the image's layers.
fn uncompressed_size(image: &TestImage) -> u64 {
    image
        .layers
        .iter()
        .map(|layer| {
            let mut decoder = flate2::read::GzDecoder::new(layer.blob.as_slice());
            std::io::copy(&mut decoder, &mut std::io::sink()).expect("gunzip")
        })
        .sum()
}
