//! Per-pod locks: pods started at once all come up, each with its own address and its
//! container running; in every pod a container whose own exit races a StopContainer and
//! a RemoveContainer of it (sent together, at staggered instants around the exit) ends
//! removed, both requests succeed, and once the pods are removed the kernel holds
//! nothing of them: no mount, cgroup directory or process.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_integration::berthd::{cgroup_tree, pids_with_cmdline_containing, Berthd};
use berth_integration::cri::*;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

type Client = RuntimeServiceClient<Channel>;

const PODS: usize = 8;

/// Mounts under the daemon's directories, its cgroup directories, and the processes
/// started from them (the daemon itself aside).
fn kernel_view(daemon: &Berthd) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<i32>) {
    let dir = daemon.dir.path().display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mounts = mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).filter(|point| point.contains(&dir)).map(str::to_string).collect();
    // The daemon's cgroup parent itself (made with the first container) aside.
    let parent = daemon.cgroup_parent();
    let cgroups = cgroup_tree(&parent).into_iter().filter(|p| !p.ends_with(&parent)).map(|p| p.display().to_string()).collect();
    let daemon_pid = daemon.child.as_ref().map(|child| child.id() as i32);
    let processes = pids_with_cmdline_containing(&dir).into_iter().filter(|pid| *pid != std::process::id() as i32 && Some(*pid) != daemon_pid).collect();
    (mounts, cgroups, processes)
}

/// Runs pod `index` with a long-running container; (pod, container).
async fn start_pod(mut client: Client, index: usize) -> (String, String) {
    let config = pod_config(&format!("parallel-{index}"), "");
    let pod = run_pod(&mut client, &config).await;
    let container = start_container(&mut client, &pod, &config, container_config("long", &["sleep", "1000"])).await;
    (pod, container)
}

/// Starts a container that exits after a second, then, `delay` later, stops and
/// removes it with two requests sent together.
async fn race_exit_with_stop_and_remove(mut client: Client, pod: String, delay: Duration) -> Result<(), tonic::Status> {
    let config = pod_config("", "");
    let request = cri::CreateContainerRequest { pod_sandbox_id: pod, config: Some(container_config("short", &["sleep", "1"])), sandbox_config: Some(config) };
    let id = client.create_container(request).await?.into_inner().container_id;
    client.start_container(cri::StartContainerRequest { container_id: id.clone() }).await?;
    tokio::time::sleep(delay).await;
    let mut stopper = client.clone();
    let stop = stopper.stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout: 0 });
    let remove = client.remove_container(cri::RemoveContainerRequest { container_id: id });
    let (stopped, removed) = tokio::join!(stop, remove);
    stopped?;
    removed?;
    Ok(())
}

#[test]
fn pods_start_at_once_and_exits_racing_stops_and_removals_leave_nothing() {
    let world = World::new();
    let before = kernel_view(&world.daemon);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    runtime.block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let starts: Vec<_> = (0..PODS).map(|index| tokio::spawn(start_pod(client.clone(), index))).collect();
        let mut pods = Vec::new();
        for start in starts {
            pods.push(start.await.expect("a pod's start"));
        }
        let mut addresses = BTreeSet::new();
        for (pod, container) in &pods {
            assert_eq!(status(&mut client, container).await.state, cri::ContainerState::ContainerRunning as i32);
            let pod_status = client.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: pod.clone(), verbose: false }).await.expect("pod status").into_inner();
            let address = pod_status.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
            assert!(!address.is_empty(), "pod {pod} has no address");
            addresses.insert(address);
        }
        assert_eq!(addresses.len(), PODS, "the pods' addresses: {addresses:?}");
        // Delays from 0.8 s to 1.35 s: some requests come before the exit, some after.
        let races: Vec<_> = pods.iter().enumerate().map(|(i, (pod, _))| tokio::spawn(race_exit_with_stop_and_remove(client.clone(), pod.clone(), Duration::from_millis(800 + 80 * i as u64)))).collect();
        for race in races {
            race.await.expect("a race's task").expect("stop and remove of an exiting container");
        }
        for (pod, long) in &pods {
            let filter = cri::ContainerFilter { pod_sandbox_id: pod.clone(), ..Default::default() };
            let listed = client.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await.expect("list").into_inner().containers;
            let ids: Vec<_> = listed.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids, [long.as_str()], "pod {pod}: only the long-running container is left");
            assert_eq!(status(&mut client, long).await.state, cri::ContainerState::ContainerRunning as i32);
        }
        let removals: Vec<_> = pods
            .iter()
            .map(|(pod, _)| {
                let mut client = client.clone();
                let request = cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() };
                tokio::spawn(async move { client.remove_pod_sandbox(request).await })
            })
            .collect();
        for removal in removals {
            removal.await.expect("a removal's task").expect("remove a pod");
        }
    });
    drop(runtime);
    let after = kernel_view(&world.daemon);
    assert_eq!(after, before, "mounts, cgroups and processes after the pods' removal");
}
