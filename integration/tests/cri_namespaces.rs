//! Pod-level namespace options through berthd, seen from the kernel: a pod whose
//! containers share one PID namespace (held by berth-pod-init, which is pid 1 there),
//! a container with a PID namespace of its own inside such a pod, the end of the pod's
//! init, and a privileged container's host devices.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use berth_integration::cri::*;
use k8s_cri::v1 as cri;

fn ns_inode(path: &str) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}")).ino()
}

fn with_pid_mode(mut config: cri::ContainerConfig, mode: cri::NamespaceMode) -> cri::ContainerConfig {
    let linux = config.linux.get_or_insert_with(Default::default);
    let security = linux.security_context.get_or_insert_with(Default::default);
    security.namespace_options = Some(cri::NamespaceOption { pid: mode as i32, ..Default::default() });
    config
}

/// The pod's init as its verbose status reports it.
async fn pod_init_of(client: &mut k8s_cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>, pod: &str) -> serde_json::Value {
    let request = cri::PodSandboxStatusRequest { pod_sandbox_id: pod.into(), verbose: true };
    let info = client.pod_sandbox_status(request).await.expect("pod status").into_inner().info;
    let verbose: serde_json::Value = serde_json::from_str(&info["info"]).expect("verbose info");
    verbose["podInit"].clone()
}

async fn pod_state(client: &mut k8s_cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>, pod: &str) -> i32 {
    let request = cri::PodSandboxStatusRequest { pod_sandbox_id: pod.into(), verbose: false };
    client.pod_sandbox_status(request).await.expect("pod status").into_inner().status.expect("status").state
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).unwrap_or_default().trim().to_string()
}

#[test]
fn containers_of_a_pod_share_its_pid_namespace() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("pidshare", "");
        let pod = run_pod(&mut client, &config).await;
        let init = pod_init_of(&mut client, &pod).await;
        let init_pid = init["pid"].as_u64().expect("the pod has an init") as u32;
        let pinned = init["pinned"].as_str().expect("pinned").to_string();
        assert_eq!(ns_inode(&format!("/proc/{init_pid}/ns/pid")), ns_inode(&pinned));
        assert_eq!(status_field(init_pid, "CapEff"), "0000000000000000");
        assert_eq!(status_field(init_pid, "NoNewPrivs"), "1");

        let first = start_container(&mut client, &pod, &config, container_config("first", &["sleep", "1001"])).await;
        let second = start_container(&mut client, &pod, &config, container_config("second", &["sleep", "1002"])).await;
        let alone = with_pid_mode(container_config("alone", &["sleep", "1003"]), cri::NamespaceMode::Container);
        let alone = start_container(&mut client, &pod, &config, alone).await;
        let (a, b, c) = (pid_of(&mut client, &first).await, pid_of(&mut client, &second).await, pid_of(&mut client, &alone).await);
        let pod_ns = ns_inode(&pinned);
        assert_eq!(ns_inode(&format!("/proc/{a}/ns/pid")), pod_ns);
        assert_eq!(ns_inode(&format!("/proc/{b}/ns/pid")), pod_ns);
        assert_ne!(ns_inode(&format!("/proc/{c}/ns/pid")), pod_ns);

        // Inside: pid 1 is the pod's init, and each container sees the other's process.
        let seen = exec(&mut client, &second, &["sh", "-c", "cat /proc/1/comm; cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).await;
        let seen = String::from_utf8_lossy(&seen.stdout).into_owned();
        assert!(seen.starts_with("berth-pod-init\n"), "{seen}");
        assert!(seen.contains("sleep 1001") && seen.contains("sleep 1002") && !seen.contains("sleep 1003"), "{seen}");
        // The init's root is empty: the pod's containers cannot reach the host through it.
        let root = exec(&mut client, &first, &["sh", "-c", "echo /proc/1/root/* /proc/1/root/.[!.]*"]).await;
        assert_eq!(String::from_utf8_lossy(&root.stdout), "/proc/1/root/* /proc/1/root/.[!.]*\n", "{root:?}");
        let own = exec(&mut client, &alone, &["cat", "/proc/1/cmdline"]).await;
        assert_eq!(String::from_utf8_lossy(&own.stdout), "sleep\u{0}1003\u{0}");

        // Stopping the pod ends its init; removing it leaves no mount.
        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("stop pod");
        assert_eq!(pod_state(&mut client, &pod).await, cri::PodSandboxState::SandboxNotready as i32);
        // (Once killed it may stay a zombie a while, until the host's init reaps it.)
        let state = std::fs::read_to_string(format!("/proc/{init_pid}/stat")).unwrap_or_default();
        let zombie = state.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        let same = std::fs::metadata(format!("/proc/{init_pid}/ns/pid")).is_ok_and(|m| m.ino() == pod_ns);
        assert!(zombie || !same, "the pod's init still runs: {state}");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("remove pod");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!mounts.contains(&pod), "a mount of the pod is left");
    });
}

#[test]
fn a_pod_whose_init_dies_is_not_ready_and_a_pod_without_sharing_has_no_init() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("initdies", "");
        let pod = run_pod(&mut client, &config).await;
        let first = start_container(&mut client, &pod, &config, container_config("first", &["sleep", "1000"])).await;
        let init_pid = pod_init_of(&mut client, &pod).await["pid"].as_u64().expect("init") as i32;
        assert_eq!(pod_state(&mut client, &pod).await, cri::PodSandboxState::SandboxReady as i32);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(init_pid), nix::sys::signal::Signal::SIGKILL).expect("kill init");
        // The kernel ends every process of the namespace; the container is reported exited.
        let exited = wait_state(&mut client, &first, cri::ContainerState::ContainerExited).await;
        assert_eq!(exited.exit_code, 137, "{exited:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pod_state(&mut client, &pod).await != cri::PodSandboxState::SandboxNotready as i32 {
            assert!(Instant::now() < deadline, "the pod stays ready without its init");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("remove pod");

        // Containers in their own PID namespaces: the pod has no init at all.
        let mut own = pod_config("ownpids", "");
        let security = cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption { pid: cri::NamespaceMode::Container as i32, ..Default::default() }),
            ..Default::default()
        };
        own.linux = Some(cri::LinuxPodSandboxConfig { security_context: Some(security), ..Default::default() });
        let pod = run_pod(&mut client, &own).await;
        assert!(pod_init_of(&mut client, &pod).await.is_null());
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove pod");
    });
}

/// A character device of the host that no container gets by default.
fn a_host_only_device() -> Option<String> {
    ["/dev/kmsg", "/dev/mem", "/dev/loop-control", "/dev/fuse", "/dev/net/tun"]
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type())))
        .map(str::to_string)
}

#[test]
fn a_privileged_container_gets_the_hosts_devices() {
    let Some(device) = a_host_only_device() else {
        eprintln!("no host-only character device on this machine: nothing to check");
        return;
    };
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let mut config = pod_config("privdev", "");
        let privileged = cri::LinuxSandboxSecurityContext { privileged: true, ..Default::default() };
        config.linux = Some(cri::LinuxPodSandboxConfig { security_context: Some(privileged), ..Default::default() });
        let pod = run_pod(&mut client, &config).await;
        let mut wanted = container_config("privileged", &["sleep", "1000"]);
        wanted.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext { privileged: true, ..Default::default() }),
            ..Default::default()
        });
        let privileged = start_container(&mut client, &pod, &config, wanted).await;
        let plain = start_container(&mut client, &pod, &config, container_config("plain", &["sleep", "1000"])).await;
        let probe = format!("test -c {device} && echo present || echo absent");
        let seen = exec(&mut client, &privileged, &["sh", "-c", &probe]).await;
        assert_eq!(String::from_utf8_lossy(&seen.stdout), "present\n", "{device} in the privileged container: {seen:?}");
        let seen = exec(&mut client, &plain, &["sh", "-c", &probe]).await;
        assert_eq!(String::from_utf8_lossy(&seen.stdout), "absent\n", "{device} in a plain container: {seen:?}");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove pod");
    });
}

/// With the systemd cgroup driver the kubelet names a pod's cgroup parent as a slice:
/// the container's cgroup is that slice's path plus a scope of its own, and removing
/// the pod removes what the container made.
#[test]
fn a_systemd_slice_parent_is_expanded_to_its_path() {
    let world = World::with_config("cgroup_driver = \"systemd\"\n");
    let unique = format!("berthtest{}", std::process::id());
    let slice = format!("{unique}-podx.slice");
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let mut config = pod_config("sliced", "");
        config.linux = Some(cri::LinuxPodSandboxConfig { cgroup_parent: slice.clone(), ..Default::default() });
        let pod = run_pod(&mut client, &config).await;
        let id = start_container(&mut client, &pod, &config, container_config("app", &["sleep", "1000"])).await;
        let pid = pid_of(&mut client, &id).await;
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
        let expected = format!("/{unique}.slice/{slice}/berth-{id}.scope");
        assert!(cgroups.lines().any(|l| l.ends_with(&expected)), "{expected} not in:\n{cgroups}");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove pod");
        let left: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|controller| controller.path().join(format!("{unique}.slice")))
            .filter(|dir| dir.exists())
            .map(|dir| dir.display().to_string())
            .collect();
        for dir in &left {
            let _ = std::process::Command::new("sh").arg("-c").arg(format!("find {dir} -depth -type d -exec rmdir {{}} \\;")).status();
        }
        assert!(left.is_empty(), "cgroups left: {left:?}");
    });
}
