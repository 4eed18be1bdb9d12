//! A CNI plugin that hangs is killed at its deadline: ADD fails with a message that
//! says so, in about the deadline, and the plugin's process is gone. While it hangs,
//! other pods are attached and detached: no lock is held across a plugin run.
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

/// Writes a plugin that hangs on ADD for `hung_id` only, and otherwise answers at once
/// with an address; returns the configuration dir and the plugin dir.
fn selective_plugin(world: &NetWorld, hung_id: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let conf = world.dir.path().join("cni-conf");
    let bin = world.dir.path().join("cni-bin");
    std::fs::create_dir_all(&conf).expect("conf dir");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let result = r#"{"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "x"}], "ips": [{"address": "10.99.0.5/24", "interface": 0}]}"#;
    let script = format!(
        "#!/bin/sh\ncat > /dev/null\nif [ \"$CNI_COMMAND\" = ADD ] && [ \"$CNI_CONTAINERID\" = {hung_id} ]; then exec sleep 1000; fi\n[ \"$CNI_COMMAND\" = ADD ] && echo '{result}'\nexit 0\n"
    );
    std::fs::write(bin.join("berth-some"), script).expect("plugin");
    std::fs::set_permissions(bin.join("berth-some"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": "some", "plugins": [{"type": "berth-some"}]});
    std::fs::write(conf.join("10-some.conflist"), conflist.to_string()).expect("conflist");
    (conf, bin)
}

#[test]
fn other_pods_are_served_while_a_plugin_hangs() {
    let world = NetWorld::new();
    let (hung, quick) = (world.sandbox("hangs"), world.sandbox("quick"));
    let (_conf, bin) = selective_plugin(&world, &hung.id);
    let (store_path, state) = (world.store_path(), world.state_dir());
    let config = berth::network::NetworkConfig { mode: NetworkMode::Cni, cni_bin_dirs: vec![bin], cni_timeout_seconds: 4, ..world.config() };
    let request = |pod: &Sandbox| AttachRequest { sandbox_id: pod.id.clone(), netns_path: pod.path.clone(), hostname: pod.id.clone(), ..Default::default() };
    let (hung_request, quick_request) = (request(&hung), request(&quick));
    let (hung_outcome, quick_took) = world.in_host(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
        rt.block_on(async {
            let manager = NetworkManager::open(Store::open(&store_path).expect("store"), config, &state).await.expect("open");
            let hanging = async { manager.attach(&hung_request).await.map(drop).map_err(|e| e.to_string()) };
            let meanwhile = async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let start = Instant::now();
                let attached = manager.attach(&quick_request).await.expect("attach while another plugin hangs");
                assert_eq!(attached.ip().map(|ip| ip.to_string()).as_deref(), Some("10.99.0.5"));
                manager.detach(&quick_request.sandbox_id).await.expect("detach while another plugin hangs");
                start.elapsed()
            };
            tokio::join!(hanging, meanwhile)
        })
    });
    assert!(quick_took < Duration::from_secs(2), "the other pod waited for the hung plugin: {quick_took:?}");
    let error = hung_outcome.expect_err("ADD of a hung plugin succeeded");
    assert!(error.contains("killed"), "{error}");
}
