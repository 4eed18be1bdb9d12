//! The streaming benchmark (issue 16, "Performance"). Run as root from the workspace:
//!
//!     cargo build --release --workspace --bins && sudo target/release/bench_streaming [ROUNDS]
//!
//! berthd and, when installed, Debian's containerd (CRI plugin, runc) run in the test
//! registry's network namespace with one host-network pod each, running `sleep`. For
//! ROUNDS (default 50, alternating which daemon goes first) it times ExecSync of `true`,
//! and a streamed exec of `true`: the Exec RPC, the SPDY/3.1 upgrade of the URL it
//! returns (v4.channel.k8s.io, stdout and stderr streams) and the wait for the exit
//! Status, with the same client for both daemons. It prints medians and ratios.

use std::time::{Duration, Instant};

use berth_integration::containerd_cri::CriContainerd;
use berth_integration::cri::{container_config, pod_config, World};
use berth_integration::images::{Layer, LayerBuilder, TestImage};
use berth_integration::streaming::Command;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const IMAGE: &str = "docker.io/library/busybox:stream-bench";
const PAUSE_IMAGE: &str = "docker.io/library/pause:stream-bench";

type Outcome<T> = Result<T, String>;

struct Daemon {
    name: &'static str,
    client: RuntimeServiceClient<Channel>,
    container: String,
    exec_sync: Vec<Duration>,
    streamed: Vec<Duration>,
}

fn push_images(world: &World) {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static");
    let layer = LayerBuilder::new().dir("bin", 0o755).file("bin/busybox", &busybox, 0o755).symlink("bin/sleep", "busybox").symlink("bin/true", "busybox");
    let mut image = TestImage::new(vec![Layer::gzip(layer)]);
    image.config["config"] = serde_json::json!({ "Env": ["PATH=/bin"], "Cmd": ["/bin/sleep", "1000000"], "WorkingDir": "/" });
    image.push(&world.registry, "library/busybox", "stream-bench");
    image.push(&world.registry, "library/pause", "stream-bench");
}

fn host_network() -> cri::NamespaceOption {
    cri::NamespaceOption { network: cri::NamespaceMode::Node as i32, ..Default::default() }
}

/// Pulls the image and starts one host-network pod with a sleeping container.
async fn prepare(name: &'static str, channel: Channel) -> Outcome<Daemon> {
    let fail = |what: &'static str| move |status: tonic::Status| format!("{name}: {what}: {status}");
    let mut images = k8s_cri::v1::image_service_client::ImageServiceClient::new(channel.clone());
    let mut client = RuntimeServiceClient::new(channel);
    let image = cri::ImageSpec { image: IMAGE.into(), ..Default::default() };
    images.pull_image(cri::PullImageRequest { image: Some(image.clone()), ..Default::default() }).await.map_err(fail("pull"))?;
    let mut pod = pod_config("stream-bench", "");
    pod.hostname = String::new();
    pod.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(host_network()), ..Default::default() }),
        ..Default::default()
    });
    let pod_id = client.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: String::new() }).await.map_err(fail("run pod"))?.into_inner().pod_sandbox_id;
    let mut config = container_config("sleeper", &["/bin/sleep", "1000000"]);
    config.image = Some(image);
    config.log_path = String::new();
    let request = cri::CreateContainerRequest { pod_sandbox_id: pod_id, config: Some(config), sandbox_config: Some(pod) };
    let container = client.create_container(request).await.map_err(fail("create"))?.into_inner().container_id;
    client.start_container(cri::StartContainerRequest { container_id: container.clone() }).await.map_err(fail("start"))?;
    Ok(Daemon { name, client, container, exec_sync: Vec::new(), streamed: Vec::new() })
}

async fn time_exec_sync(daemon: &mut Daemon) -> Outcome<()> {
    let request = cri::ExecSyncRequest { container_id: daemon.container.clone(), cmd: vec!["true".into()], timeout: 10 };
    let begin = Instant::now();
    let reply = daemon.client.exec_sync(request).await.map_err(|s| format!("{}: ExecSync: {s}", daemon.name))?.into_inner();
    daemon.exec_sync.push(begin.elapsed());
    if reply.exit_code != 0 {
        return Err(format!("{}: ExecSync of true exited {}", daemon.name, reply.exit_code));
    }
    Ok(())
}

async fn time_streamed(daemon: &mut Daemon, netns: &str) -> Outcome<()> {
    let request = cri::ExecRequest { container_id: daemon.container.clone(), cmd: vec!["true".into()], stdout: true, stderr: true, ..Default::default() };
    let begin = Instant::now();
    let url = daemon.client.exec(request).await.map_err(|s| format!("{}: Exec: {s}", daemon.name))?.into_inner().url;
    let url = if url.starts_with("http") { url } else { format!("http://127.0.0.1{url}") };
    let (_, _, status) = Command::open(netns, &url, &["error", "stdout", "stderr"]).await.finish().await;
    daemon.streamed.push(begin.elapsed());
    if status["status"] != "Success" {
        return Err(format!("{}: streamed exec of true: {status}", daemon.name));
    }
    Ok(())
}

fn median_ms(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn print(daemons: &[Daemon], rounds: usize) {
    println!("\nCRI exec of `true`, median ms over {rounds} rounds (alternating):");
    let names: Vec<String> = daemons.iter().map(|d| format!("{:>12}", d.name)).collect();
    let ratio = if daemons.len() > 1 { format!("{:>10}", "ratio") } else { String::new() };
    println!("  {:<34}{}{ratio}", "operation", names.join(""));
    let rows: [(&str, fn(&Daemon) -> &Vec<Duration>); 2] = [("ExecSync", |d| &d.exec_sync), ("Exec + SPDY stream to exit status", |d| &d.streamed)];
    for (label, samples) in rows {
        let medians: Vec<f64> = daemons.iter().map(|d| median_ms(samples(d))).collect();
        let cells: Vec<String> = medians.iter().map(|m| format!("{m:>12.2}")).collect();
        let ratio = if medians.len() > 1 { format!("{:>9.2}x", medians[0] / medians[1]) } else { String::new() };
        println!("  {label:<34}{}{ratio}", cells.join(""));
    }
    if daemons.len() > 1 {
        println!("  (ratio = {} / {}; target <= 0.50x)", daemons[0].name, daemons[1].name);
    }
}

async fn run(world: &World, containerd: Option<&CriContainerd>, rounds: usize) -> Outcome<()> {
    let netns = world.registry.netns.path();
    let mut daemons = vec![prepare("berth", world.daemon.channel().await).await?];
    if let Some(containerd) = containerd {
        let channel = berth_integration::berthd::unix_channel(containerd.socket()).await;
        daemons.push(prepare("containerd", channel).await?);
    }
    for round in 0..rounds {
        let count = daemons.len();
        for step in 0..count {
            let daemon = &mut daemons[(round + step) % count];
            time_exec_sync(daemon).await?;
            time_streamed(daemon, &netns).await?;
        }
    }
    print(&daemons, rounds);
    Ok(())
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map(|a| a.parse().expect("ROUNDS is a number")).unwrap_or(50);
    let world = World::new();
    push_images(&world);
    let containerd = CriContainerd::start_in(&world.registry.netns.path(), PAUSE_IMAGE);
    if containerd.is_none() {
        println!("containerd, runc or containerd-shim-runc-v2 is not installed: berth only");
    }
    let outcome = berth_integration::cri::runtime().block_on(run(&world, containerd.as_ref(), rounds));
    if let Err(message) = outcome {
        eprintln!("bench_streaming failed: {message}");
        eprintln!("berthd log: {}", world.daemon.log_path().display());
        // The release profile aborts on panic: clean up before exiting with an error.
        drop((containerd, world));
        std::process::exit(1);
    }
}
