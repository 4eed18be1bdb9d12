//! Benchmark: network setup plus teardown of one container, berth's built-in bridge
//! driver against the CNI chain bridge + host-local + portmap (Debian's
//! containernetworking-plugins, with loopback for lo, as containerd runs it), both
//! driven through `berth::network::NetworkManager`, alternating, N rounds (default 50,
//! or the first argument). Each round publishes one TCP port. The sandbox namespaces
//! are made outside the timing. Everything happens in private network namespaces (a
//! "host" one, where the bridges and rules live, and the sandboxes'); the metadata
//! store and the CNI state sit in a `/tmp/berth-test-*` directory. Run as root:
//!     cargo run --release -p berth-integration --bin bench_network -- 50

use std::time::{Duration, Instant};

use berth::network::{AttachRequest, NetworkManager, NetworkMode, PortMapping, Protocol};
use berth::store::Store;
use berth_integration::networld::NetWorld;

const CONFLIST: &str = r#"{"cniVersion": "1.0.0", "name": "benchnet", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "DATADIR"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}"#;

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(50);
    let world = NetWorld::new();
    let conf_dir = world.dir.path().join("cni-conf");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let conflist = CONFLIST.replace("DATADIR", world.dir.path().join("cni-ipam").to_str().unwrap());
    std::fs::write(conf_dir.join("10-bench.conflist"), conflist).unwrap();
    let (dir, state, config) = (world.dir.path().to_path_buf(), world.state_dir(), world.config());
    let (builtin, cni) = world.in_host(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = Store::open(&dir.join("bridge.redb")).unwrap();
            let bridge = NetworkManager::open(store, config.clone(), &state).await.unwrap();
            let cni_config = berth::network::NetworkConfig { mode: NetworkMode::Cni, ..config };
            let cni = NetworkManager::open(Store::open(&dir.join("cni.redb")).unwrap(), cni_config, &state).await.unwrap();
            let managers = [bridge, cni];
            let mut times = [Vec::new(), Vec::new()];
            for round in 0..rounds + 2 {
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for which in order {
                    let elapsed = one_container(&managers[which], &state, round, which).await;
                    if round >= 2 {
                        times[which].push(elapsed); // two warm-up rounds
                    }
                }
            }
            let [bridge, cni] = times;
            (bridge, cni)
        })
    });
    report(rounds, builtin, cni);
}

/// Attach plus detach of one fresh sandbox; the namespace is made and removed untimed.
async fn one_container(manager: &NetworkManager, state: &std::path::Path, round: usize, which: usize) -> Duration {
    let id = format!("bench-{which}-{round}");
    let pin = berth::network::netns_pin_path(state, &id);
    berth::network::create_pinned_netns(&pin).unwrap();
    let request = AttachRequest {
        sandbox_id: id.clone(),
        netns_path: pin.clone(),
        port_mappings: vec![PortMapping { protocol: Protocol::Tcp, container_port: 80, host_port: 8100, host_ip: None }],
        hostname: id.clone(),
        ..Default::default()
    };
    let start = Instant::now();
    manager.attach(&request).await.unwrap();
    manager.detach(&id).await.unwrap();
    let elapsed = start.elapsed();
    berth::network::remove_pinned_netns(&pin).unwrap();
    elapsed
}

fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}

fn report(rounds: usize, mut builtin: Vec<Duration>, mut cni: Vec<Duration>) {
    let (b, c) = (median_ms(&mut builtin), median_ms(&mut cni));
    let p90 = |t: &[Duration]| t[t.len() * 9 / 10].as_secs_f64() * 1000.0;
    println!("network setup + teardown per container, {rounds} rounds, alternating (milliseconds)");
    println!("built-in bridge driver      median {b:7.2}  p90 {:7.2}", p90(&builtin));
    println!("CNI bridge+host-local+portmap median {c:7.2}  p90 {:7.2}", p90(&cni));
    println!("ratio built-in / CNI: {:.3}", b / c);
}
