//! A pod's shim killed while berthd runs: berthd notices the closed connection, cleans
//! up (the container's processes are killed, its exit recorded as non-zero with reason
//! `Error`), stop and pod removal succeed, and the pod's other containers start under a
//! new shim. The shim is killed with its container running, paused (frozen cgroup) and
//! with an exec running, and with a second container only created.

use std::time::{Duration, Instant};

use berth_integration::cri::*;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z')).unwrap_or(false)
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    stat.rsplit(')').next().unwrap_or("").split_whitespace().nth(1).expect("ppid").parse().expect("number")
}

fn kill_hard(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
}

/// The pids in the container's cgroup (through the pids or memory controller).
fn cgroup_pids(pid: i32) -> Vec<i32> {
    let dir = berth_integration::cgroups::cgroup_dir(pid, "pids")
        .or_else(|| berth_integration::cgroups::cgroup_dir(pid, ""))
        .expect("the container's cgroup");
    let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn create(pod: &str, pod_config: &cri::PodSandboxConfig, config: cri::ContainerConfig) -> cri::CreateContainerRequest {
    cri::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(pod_config.clone()) }
}

/// With the shim gone, the container is exited (non-zero, `Error`) and its processes
/// are dead, without any request asking for it.
async fn assert_reaped(client: &mut RuntimeServiceClient<Channel>, id: &str, pids: &[i32]) {
    let exited = wait_state(client, id, cri::ContainerState::ContainerExited).await;
    assert!(exited.exit_code == 255 || exited.exit_code == 137, "{exited:?}");
    assert_eq!(exited.reason, "Error", "{exited:?}");
    assert!(exited.finished_at > 0, "{exited:?}");
    for pid in pids {
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(*pid) {
            assert!(Instant::now() < deadline, "process {pid} of the dead shim's container still runs");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[test]
fn a_shim_killed_under_a_running_container_and_a_created_one() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("deadshim", "");
        let pod = run_pod(&mut client, &config).await;
        let running = start_container(&mut client, &pod, &config, container_config("running", &["sleep", "1000"])).await;
        let created = client.create_container(create(&pod, &config, container_config("created", &["sleep", "1000"]))).await.expect("create").into_inner().container_id;
        let pid = pid_of(&mut client, &running).await;
        let shim = parent_of(pid);
        kill_hard(shim);
        assert_reaped(&mut client, &running, &[pid]).await;
        // Stop of the reaped container succeeds and changes nothing.
        client.stop_container(cri::StopContainerRequest { container_id: running.clone(), timeout: 1 }).await.expect("stop after the shim died");
        // The created container starts under a new shim, and runs.
        client.start_container(cri::StartContainerRequest { container_id: created.clone() }).await.expect("start under a new shim");
        let second = pid_of(&mut client, &created).await;
        let new_shim = parent_of(second);
        assert_ne!(new_shim, shim);
        assert!(alive(new_shim));
        let out = exec(&mut client, &created, &["echo", "alive"]).await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "alive\n");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
        assert!(!alive(second));
    });
}

#[test]
fn a_shim_killed_under_a_paused_container() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("frozen", "");
        let pod = run_pod(&mut client, &config).await;
        let id = start_container(&mut client, &pod, &config, container_config("frozen", &["sh", "-c", "sleep 1000 & exec sleep 1000"])).await;
        let pid = pid_of(&mut client, &id).await;
        wait_until("the container's second process", || cgroup_pids(pid).len() == 2);
        let pids = cgroup_pids(pid);
        let freezer = berth_integration::cgroups::cgroup_dir(pid, "freezer").expect("the freezer cgroup").join("freezer.state");
        std::fs::write(&freezer, "FROZEN").expect("freeze");
        wait_until("the container freezes", || std::fs::read_to_string(&freezer).unwrap_or_default().trim() == "FROZEN");
        kill_hard(parent_of(pid));
        assert_reaped(&mut client, &id, &pids).await;
        client.stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout: 1 }).await.expect("stop");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}

#[test]
fn a_shim_killed_during_an_exec() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("execing", "");
        let pod = run_pod(&mut client, &config).await;
        let id = start_container(&mut client, &pod, &config, container_config("execing", &["sleep", "1000"])).await;
        let pid = pid_of(&mut client, &id).await;
        let mut exec_client = client.clone();
        let request = cri::ExecSyncRequest { container_id: id.clone(), cmd: vec!["sleep".into(), "999".into()], timeout: 60 };
        let exec = tokio::spawn(async move { exec_client.exec_sync(request).await });
        let deadline = Instant::now() + Duration::from_secs(20);
        while cgroup_pids(pid).len() < 2 {
            assert!(Instant::now() < deadline, "the exec never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pids = cgroup_pids(pid);
        kill_hard(parent_of(pid));
        // The exec ends (with an error: its shim is gone) instead of hanging.
        let answered = tokio::time::timeout(Duration::from_secs(20), exec).await.expect("the exec hangs after its shim died");
        assert!(answered.expect("join").is_err(), "an exec whose shim died reports success");
        assert_reaped(&mut client, &id, &pids).await;
        client.remove_container(cri::RemoveContainerRequest { container_id: id }).await.expect("remove the container");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}

#[test]
fn stop_right_after_the_shim_died_succeeds() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("stopping", "");
        let pod = run_pod(&mut client, &config).await;
        let id = start_container(&mut client, &pod, &config, container_config("stopping", &["sleep", "1000"])).await;
        let pid = pid_of(&mut client, &id).await;
        kill_hard(parent_of(pid));
        client.stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout: 2 }).await.expect("stop after the shim died");
        assert_reaped(&mut client, &id, &[pid]).await;
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}
