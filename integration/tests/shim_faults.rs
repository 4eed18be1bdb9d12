//! berth-shim under faults: a client that goes away mid-request and reconnects, a
//! container that exits while no client is connected, and a shim killed with SIGKILL
//! (its container is killed and `berth-shim delete` reports it). Run as root.

use std::time::Duration;

use berth_integration::shim::{alive, block_on, ctx, eventually, Shim, ShimBundle};
use containerd_shim_protos::api::*;
use containerd_shim_protos::types::task::Status;

fn create_request(bundle: &ShimBundle) -> CreateTaskRequest {
    CreateTaskRequest { id: bundle.id.clone(), bundle: bundle.path_str(), ..Default::default() }
}

fn id_request<T: Default>(set: impl FnOnce(&mut T)) -> T {
    let mut request = T::default();
    set(&mut request);
    request
}

/// Children of `pid` that are zombies.
fn zombie_children(pid: i32) -> Vec<i32> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str()) {
            zombies.push(child);
        }
    }
    zombies
}

#[test]
fn a_client_killed_mid_wait_can_reconnect() {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let first = shim.client().await;
        first.create(ctx(), &create_request(&bundle)).await.expect("create");
        first.start(ctx(), &id_request(|r: &mut StartRequest| r.id = bundle.id.clone())).await.expect("start");
        let wait_request = id_request(|r: &mut WaitRequest| r.id = bundle.id.clone());
        let waiting = first.wait(ctx(), &wait_request);
        assert!(tokio::time::timeout(Duration::from_millis(200), waiting).await.is_err(), "wait returned early");
        drop(first);
        let second = shim.client().await;
        let state = second.state(ctx(), &id_request(|r: &mut StateRequest| r.id = bundle.id.clone())).await.expect("state");
        assert_eq!(state.status.enum_value_or_default(), Status::RUNNING);
        second.kill(ctx(), &id_request(|r: &mut KillRequest| { r.id = bundle.id.clone(); r.signal = 9; })).await.expect("kill");
        let exit = second.wait(ctx(), &id_request(|r: &mut WaitRequest| r.id = bundle.id.clone())).await.expect("wait");
        assert_eq!(exit.exit_status, 137);
        second.delete(ctx(), &id_request(|r: &mut DeleteRequest| r.id = bundle.id.clone())).await.expect("delete");
    });
}

#[test]
fn an_exit_while_no_client_is_connected_is_kept() {
    let bundle = ShimBundle::new(&["sh", "-c", "sleep 0.3; exit 4"]);
    block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let client = shim.client().await;
        let pid = client.create(ctx(), &create_request(&bundle)).await.expect("create").pid as i32;
        client.start(ctx(), &id_request(|r: &mut StartRequest| r.id = bundle.id.clone())).await.expect("start");
        drop(client);
        assert!(eventually(Duration::from_secs(5), || !alive(pid)), "the container did not exit");
        let record = shim.root.path().join(berth_integration::shim::NAMESPACE).join(&bundle.id).join("exit-init");
        assert!(eventually(Duration::from_secs(2), || record.exists()), "no exit record at {}", record.display());
        assert!(std::fs::read_to_string(&record).unwrap().starts_with("4 "));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let client = shim.client().await;
        let state = client.state(ctx(), &id_request(|r: &mut StateRequest| r.id = bundle.id.clone())).await.expect("state");
        assert_eq!((state.status.enum_value_or_default(), state.exit_status), (Status::STOPPED, 4));
        let exit = client.wait(ctx(), &id_request(|r: &mut WaitRequest| r.id = bundle.id.clone())).await.expect("wait");
        assert_eq!(exit.exit_status, 4);
        assert!(zombie_children(shim.pid()).is_empty(), "the shim left zombies");
        client.delete(ctx(), &id_request(|r: &mut DeleteRequest| r.id = bundle.id.clone())).await.expect("delete");
    });
}

#[test]
fn a_killed_shim_leaves_no_container_behind() {
    let bundle = ShimBundle::new(&["sleep", "100"]);
    let (shim, pid) = block_on(async {
        let shim = Shim::start(bundle.path(), &bundle.id, "");
        let client = shim.client().await;
        let pid = client.create(ctx(), &create_request(&bundle)).await.expect("create").pid as i32;
        client.start(ctx(), &id_request(|r: &mut StartRequest| r.id = bundle.id.clone())).await.expect("start");
        (shim, pid)
    });
    let cgroups: Vec<_> = berth_integration::cgroups::all_cgroup_dirs(pid).into_iter().filter(|d| d.to_string_lossy().contains("berth-test")).collect();
    assert!(!cgroups.is_empty(), "the container has its own cgroups");
    let shim_pid = shim.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(shim_pid)));
    let response = shim.run_delete().expect("berth-shim delete");
    assert_eq!((response.pid as i32, response.exit_status), (pid, 137));
    assert!(eventually(Duration::from_secs(5), || !alive(pid)), "container init {pid} still runs");
    for dir in cgroups {
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&bundle.path_str()), "mounts left behind");
}
