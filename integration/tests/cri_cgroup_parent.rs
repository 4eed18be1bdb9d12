//! A pod's cgroup parent: one that berth made for the pod goes with the pod, whatever
//! order its containers are removed in (the runtime removes only what each container
//! made, so the parent's maker, removed first, used to leave it to no one); one that
//! existed before the pod (the kubelet's) is left as it was.

use std::path::PathBuf;

use berth_integration::berthd::cgroup_tree;
use berth_integration::cri::*;
use k8s_cri::v1 as cri;

/// The pod's parent, under the daemon's own cgroup parent.
fn pod_parent(world: &World, name: &str) -> String {
    format!("/{}/{name}", world.daemon.cgroup_parent())
}

/// The parent's directory in every mounted hierarchy.
fn hierarchy_dirs(parent: &str) -> Vec<PathBuf> {
    let relative = parent.trim_start_matches('/');
    std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten().map(|h| h.path().join(relative)).collect()
}

/// Runs a pod under `parent` with two containers; removes the first (the one whose
/// start made the parent) before the pod.
fn run_two_and_remove(world: &World, parent: &str) {
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let mut config = pod_config("parented", "");
        config.linux = Some(cri::LinuxPodSandboxConfig { cgroup_parent: parent.to_string(), ..Default::default() });
        let pod = run_pod(&mut client, &config).await;
        let first = start_container(&mut client, &pod, &config, container_config("first", &["sleep", "1000"])).await;
        let _second = start_container(&mut client, &pod, &config, container_config("second", &["sleep", "1000"])).await;
        let first_dirs = cgroup_tree(&format!("{}/{first}", parent.trim_start_matches('/')));
        assert!(!first_dirs.is_empty(), "the first container has no cgroup under {parent}");
        client.stop_container(cri::StopContainerRequest { container_id: first.clone(), timeout: 0 }).await.expect("stop the first");
        client.remove_container(cri::RemoveContainerRequest { container_id: first }).await.expect("remove the first");
        assert!(hierarchy_dirs(parent).iter().any(|dir| dir.is_dir()), "the parent went while the second container was in it");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}

#[test]
fn a_parent_berth_made_goes_with_the_pod_whatever_the_removal_order() {
    let world = World::new();
    let parent = pod_parent(&world, "pod-made");
    run_two_and_remove(&world, &parent);
    let left: Vec<_> = hierarchy_dirs(&parent).into_iter().filter(|dir| dir.exists()).collect();
    assert!(left.is_empty(), "the pod's cgroup parent is left: {left:?}");
}

#[test]
fn a_parent_that_existed_before_the_pod_is_left() {
    let world = World::new();
    let parent = pod_parent(&world, "pod-given");
    // As the kubelet would, before the pod: the parent in every hierarchy (cpuset's
    // needs its cpus and mems for a child to take processes).
    let mut made = Vec::new();
    for dir in hierarchy_dirs(&parent) {
        let Some(above) = dir.parent() else { continue };
        if std::fs::create_dir_all(&dir).is_ok() {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(value) = std::fs::read_to_string(above.join(file)) {
                    std::fs::write(dir.join(file), value.trim()).expect("cpuset of the given parent");
                }
            }
            made.push(dir);
        }
    }
    run_two_and_remove(&world, &parent);
    let gone: Vec<_> = made.iter().filter(|dir| !dir.exists()).collect();
    for dir in made.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
    assert!(gone.is_empty(), "berth removed a parent it did not make: {gone:?}");
}
