//! berthd killed with SIGKILL and started again: running containers keep running and
//! can be stopped, an exit that happened while the daemon was down has its exit code,
//! a container whose shim was killed is reported exited, and nothing leaks.

use std::time::Duration;

use berth_integration::cri::*;
use k8s_cri::v1 as cri;

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z')).unwrap_or(false)
}

#[test]
fn containers_outlive_a_killed_daemon_and_exits_are_not_lost() {
    let mut world = World::new();
    let (pod, long, short, pid) = runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("survivor", "");
        let pod = run_pod(&mut client, &config).await;
        let long = start_container(&mut client, &pod, &config, container_config("long", &["sleep", "1000"])).await;
        let short = start_container(&mut client, &pod, &config, container_config("short", &["sh", "-c", "sleep 1; exit 7"])).await;
        let pid = pid_of(&mut client, &long).await;
        (pod, long, short, pid)
    });
    world.daemon.kill();
    // The short container exits while no daemon runs.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(alive(pid), "the container died with the daemon");
    world.daemon.spawn();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        let long_status = status(&mut client, &long).await;
        assert_eq!(long_status.state, cri::ContainerState::ContainerRunning as i32);
        let short_status = wait_state(&mut client, &short, cri::ContainerState::ContainerExited).await;
        assert_eq!(short_status.exit_code, 7, "{short_status:?}");
        let pods = client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.expect("pods").into_inner().items;
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].state, cri::PodSandboxState::SandboxReady as i32);
        // Still reachable through its shim: exec and stop work.
        let out = exec(&mut client, &long, &["echo", "still here"]).await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "still here\n");
        client.stop_container(cri::StopContainerRequest { container_id: long.clone(), timeout: 1 }).await.expect("stop");
        assert!(!alive(pid));
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove");
    });
}

#[test]
fn a_killed_shim_is_reported_exited_after_a_restart() {
    let mut world = World::new();
    let (pod, id, pid) = runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("orphan", "");
        let pod = run_pod(&mut client, &config).await;
        let id = start_container(&mut client, &pod, &config, container_config("lonely", &["sleep", "1000"])).await;
        let pid = pid_of(&mut client, &id).await;
        (pod, id, pid)
    });
    world.daemon.kill();
    // Kill the shim serving the pod (the parent of the container's init).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let shim: i32 = stat.rsplit(')').next().unwrap_or("").split_whitespace().nth(1).expect("ppid").parse().expect("number");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::Signal::SIGKILL).expect("kill the shim");
    std::thread::sleep(Duration::from_millis(300));
    world.daemon.spawn();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        let current = wait_state(&mut client, &id, cri::ContainerState::ContainerExited).await;
        assert_ne!(current.exit_code, 0);
        assert!(!alive(pid), "the container of a killed shim still runs");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove");
    });
}
