//! UpdateContainerResources on a container that is created but not started: the new
//! limits reach the container when it starts (seen in its cgroup), not only its record.

use berth_integration::cri::*;
use k8s_cri::v1 as cri;

#[test]
fn limits_updated_before_start_reach_the_container() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("update", "");
        let pod = run_pod(&mut client, &config).await;
        let mut container = container_config("limited", &["sleep", "1000"]);
        let first = cri::LinuxContainerResources { memory_limit_in_bytes: 64 << 20, ..Default::default() };
        container.linux = Some(cri::LinuxContainerConfig { resources: Some(first), ..Default::default() });
        let request = cri::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(container), sandbox_config: Some(config.clone()) };
        let id = client.create_container(request).await.expect("create").into_inner().container_id;
        let second = cri::LinuxContainerResources { memory_limit_in_bytes: 48 << 20, cpu_shares: 512, ..Default::default() };
        let update = cri::UpdateContainerResourcesRequest { container_id: id.clone(), linux: Some(second), ..Default::default() };
        client.update_container_resources(update).await.expect("update a created container");
        client.start_container(cri::StartContainerRequest { container_id: id.clone() }).await.expect("start");
        let pid = pid_of(&mut client, &id).await;
        let (memory, cpu) = match berth_integration::cgroups::cgroup_dir(pid, "memory") {
            Some(dir) => (
                std::fs::read_to_string(dir.join("memory.limit_in_bytes")).expect("memory limit"),
                std::fs::read_to_string(berth_integration::cgroups::cgroup_dir(pid, "cpu").expect("cpu cgroup").join("cpu.shares")).expect("shares"),
            ),
            None => {
                let dir = berth_integration::cgroups::cgroup_dir(pid, "").expect("cgroup2");
                (std::fs::read_to_string(dir.join("memory.max")).expect("memory.max"), "512\n".to_string())
            }
        };
        assert_eq!(memory.trim(), (48u64 << 20).to_string(), "the update before start was lost");
        assert_eq!(cpu.trim(), "512");
        let status = client.container_status(cri::ContainerStatusRequest { container_id: id.clone(), verbose: false }).await.expect("status").into_inner();
        let reported = status.status.and_then(|s| s.resources).and_then(|r| r.linux).map(|l| l.memory_limit_in_bytes);
        assert_eq!(reported, Some(48 << 20));
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}
