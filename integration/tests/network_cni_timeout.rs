//! A CNI plugin that hangs is killed at its deadline: ADD fails with a message that
//! says so, in about the deadline, and the plugin's process is gone.
use std::time::{Duration, Instant};

use berth::network::{AttachRequest, NetworkManager, NetworkMode};
use berth::store::Store;
use berth_integration::networld::*;

#[test]
fn a_hung_plugin_is_killed_at_its_deadline() {
    let world = NetWorld::new();
    let conf = world.dir.path().join("cni-conf");
    let bin = world.dir.path().join("cni-bin");
    std::fs::create_dir_all(&conf).expect("conf dir");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let marker = world.dir.path().join("hung-plugin-pid");
    let script = format!("#!/bin/sh\necho $$ > {}\nexec sleep 1000\n", marker.display());
    std::fs::write(bin.join("berth-hang"), script).expect("plugin");
    std::fs::set_permissions(bin.join("berth-hang"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": "hang", "plugins": [{"type": "berth-hang"}]});
    std::fs::write(conf.join("10-hang.conflist"), conflist.to_string()).expect("conflist");
    let (store_path, state) = (world.store_path(), world.state_dir());
    let config = berth::network::NetworkConfig { mode: NetworkMode::Cni, cni_bin_dirs: vec![bin.clone()], cni_timeout_seconds: 2, ..world.config() };
    let pod = world.sandbox("hung");
    let request = AttachRequest { sandbox_id: pod.id.clone(), netns_path: pod.path.clone(), hostname: pod.id.clone(), ..Default::default() };
    let (took, outcome) = world.in_host(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
        rt.block_on(async {
            let manager = NetworkManager::open(Store::open(&store_path).expect("store"), config, &state).await.expect("open");
            let start = Instant::now();
            let outcome = manager.attach(&request).await.map(drop).map_err(|e| e.to_string());
            (start.elapsed(), outcome)
        })
    });
    let error = outcome.expect_err("ADD of a hung plugin succeeded");
    assert!(error.contains("berth-hang") && error.contains("killed"), "{error}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "{took:?}");
    let pid: i32 = std::fs::read_to_string(&marker).expect("the plugin ran").trim().parse().expect("pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    // Dead means gone or a zombie (nothing reaps the test's children here).
    let alive = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z')).unwrap_or(false);
    while alive(pid) {
        assert!(Instant::now() < deadline, "the hung plugin {pid} still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
}
