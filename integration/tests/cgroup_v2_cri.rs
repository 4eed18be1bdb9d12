//! A CRI smoke test through berthd on pure cgroup v2, checked in the container's
//! unified cgroup files: a pod under the kubelet's systemd-style parent
//! (`kubepods-besteffort-pod<uid>.slice`, mapped onto the tree as the cgroupfs driver
//! does); memory, swap, CPU, pids and `memory.oom.group` limits; UpdateContainerResources;
//! ContainerStats against the kernel's counters; the cgroup namespace; an OOM kill of
//! the whole group reported as `OOMKilled`; a privileged container; and every cgroup
//! directory gone after the pod is removed. Needs a pure v2 host: the VM lane runs it
//! (integration/vm/lane.sh); elsewhere each test says it is skipped, and fails if
//! `BERTH_REQUIRE_V2` is set.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use berth_integration::cgroups::{cgroup_dir, on_v2};
use berth_integration::cri::*;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// A pod uid without dashes (a dash nests slices), unique to this process and call.
fn pod_uid() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("berthtest{}x{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// A pod whose cgroup parent is the kubelet's besteffort slice for `uid`.
fn pod_under_slice(name: &str, uid: &str) -> cri::PodSandboxConfig {
    let mut config = pod_config(name, "");
    config.linux = Some(cri::LinuxPodSandboxConfig { cgroup_parent: format!("kubepods-besteffort-pod{uid}.slice"), ..Default::default() });
    config
}

/// The directory the cgroupfs driver gives `kubepods-besteffort-pod<uid>.slice`.
fn slice_dir(uid: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice"))
}

/// berthd's client once busybox is pulled and the pod `config` runs; and the pod's id.
async fn start_pod(world: &World, config: &cri::PodSandboxConfig) -> (RuntimeServiceClient<Channel>, String) {
    let mut client = world.daemon.runtime().await;
    pull(&world.daemon).await;
    let pod = run_pod(&mut client, config).await;
    (client, pod)
}

/// Removes the pod and checks that the slice made for it went with it (berthd's
/// warnings in the message when not).
async fn remove_pod(world: &World, client: &mut RuntimeServiceClient<Channel>, pod: String, uid: &str) {
    client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    if slice_dir(uid).exists() {
        let left: Vec<String> = walkdir_names(&slice_dir(uid));
        let log = world.daemon.log();
        let warnings: Vec<&str> = log.lines().filter(|line| line.contains("WARN") || line.contains("ERROR")).collect();
        panic!("the pod's slice is left: {left:?}\nberthd's warnings:\n{}", warnings.join("\n"));
    }
}

/// The directories at and below `dir` (for a failure's message).
fn walkdir_names(dir: &std::path::Path) -> Vec<String> {
    let mut names = vec![dir.display().to_string()];
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.extend(walkdir_names(&entry.path()));
        }
    }
    names
}

#[track_caller]
fn read(dir: &Path, file: &str) -> String {
    let path = dir.join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())).trim().to_string()
}

fn limited(name: &str, command: &[&str], resources: cri::LinuxContainerResources) -> cri::ContainerConfig {
    let mut config = container_config(name, command);
    config.linux = Some(cri::LinuxContainerConfig { resources: Some(resources), ..Default::default() });
    config
}

fn first_resources() -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        memory_swap_limit_in_bytes: 96 << 20,
        cpu_shares: 512,
        cpu_quota: 50000,
        cpu_period: 100000,
        unified: [("pids.max".to_string(), "64".to_string()), ("memory.oom.group".to_string(), "1".to_string())].into(),
        ..Default::default()
    }
}

/// `usage_usec` of cpu.stat, in nanoseconds.
fn cpu_usage_nanos(dir: &Path) -> u64 {
    let stat = read(dir, "cpu.stat");
    let usec = stat.lines().find_map(|l| l.strip_prefix("usage_usec ")).expect("usage_usec in cpu.stat");
    usec.trim().parse::<u64>().expect("usage_usec") * 1000
}

#[test]
fn limits_updates_stats_and_namespace_in_the_v2_tree() {
    if !on_v2("limits_updates_stats_and_namespace_in_the_v2_tree") {
        return;
    }
    let world = World::new();
    let uid = pod_uid();
    runtime().block_on(async {
        let pod_config = pod_under_slice("v2limits", &uid);
        let (mut client, pod) = start_pod(&world, &pod_config).await;
        let busy = ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1000"];
        let id = start_container(&mut client, &pod, &pod_config, limited("limited", &busy, first_resources())).await;
        let pid = pid_of(&mut client, &id).await;
        let dir = cgroup_dir(pid, "").expect("the container's cgroup2 dir");
        assert_eq!(dir, slice_dir(&uid).join(format!("berth-{id}.scope")), "the slice parent is not mapped as the cgroupfs driver does");
        check_first_limits(&dir);
        check_cgroup_namespace(&mut client, &id).await;
        update_and_check(&mut client, &id, &dir).await;
        check_stats(&mut client, &id, &dir).await;
        remove_pod(&world, &mut client, pod, &uid).await;
        assert!(!dir.exists(), "the container's cgroup is left: {}", dir.display());
    });
}

#[track_caller]
fn check_first_limits(dir: &Path) {
    assert_eq!(read(dir, "memory.max"), (64u64 << 20).to_string());
    assert_eq!(read(dir, "memory.swap.max"), (32u64 << 20).to_string(), "swap limit is memory+swap: 96Mi - 64Mi");
    assert_eq!(read(dir, "cpu.max"), "50000 100000");
    assert_eq!(read(dir, "cpu.weight"), "59", "shares 512 by runc's conversion (1.3.2 and later)");
    assert_eq!(read(dir, "pids.max"), "64");
    assert_eq!(read(dir, "memory.oom.group"), "1");
}

async fn check_cgroup_namespace(client: &mut RuntimeServiceClient<Channel>, id: &str) {
    let out = exec(client, id, &["cat", "/proc/self/cgroup", "/sys/fs/cgroup/memory.max"]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, ["0::/", &(64u64 << 20).to_string()], "the container does not see its own cgroup as /: {text}");
}

async fn update_and_check(client: &mut RuntimeServiceClient<Channel>, id: &str, dir: &Path) {
    let resources = cri::LinuxContainerResources {
        memory_limit_in_bytes: 80 << 20,
        memory_swap_limit_in_bytes: 80 << 20,
        cpu_shares: 2,
        cpu_quota: 20000,
        cpu_period: 100000,
        unified: [("pids.max".to_string(), "32".to_string())].into(),
        ..Default::default()
    };
    let update = cri::UpdateContainerResourcesRequest { container_id: id.into(), linux: Some(resources), ..Default::default() };
    client.update_container_resources(update).await.expect("update resources");
    assert_eq!(read(dir, "memory.max"), (80u64 << 20).to_string());
    assert_eq!(read(dir, "memory.swap.max"), "0", "swap equal to memory means no swap");
    assert_eq!(read(dir, "cpu.max"), "20000 100000");
    assert_eq!(read(dir, "cpu.weight"), "1", "shares 2");
    assert_eq!(read(dir, "pids.max"), "32");
}

async fn check_stats(client: &mut RuntimeServiceClient<Channel>, id: &str, dir: &Path) {
    let before = cpu_usage_nanos(dir);
    let request = cri::ContainerStatsRequest { container_id: id.into() };
    let stats = client.container_stats(request).await.expect("container stats").into_inner().stats.expect("stats");
    let after = cpu_usage_nanos(dir);
    let cpu = stats.cpu.and_then(|c| c.usage_core_nano_seconds).map(|v| v.value).expect("cpu usage");
    assert!(before > 0 && (before..=after).contains(&cpu), "cpu usage {cpu} is not cpu.stat's ({before}..={after})");
    let memory = stats.memory.expect("memory stats");
    let usage = memory.usage_bytes.map(|v| v.value).expect("memory usage");
    let current: u64 = read(dir, "memory.current").parse().expect("memory.current");
    assert!(usage > 0 && usage.abs_diff(current) < (4 << 20), "memory usage {usage} is not memory.current ({current})");
    let working_set = memory.working_set_bytes.map(|v| v.value).expect("working set");
    assert!(working_set > 0 && working_set <= usage, "working set {working_set}, usage {usage}");
    let available = memory.available_bytes.map(|v| v.value).expect("available bytes");
    assert_eq!(available, (80u64 << 20) - working_set, "available is the limit less the working set");
}

#[test]
fn an_oom_kill_takes_the_group_and_is_reported_oom_killed() {
    if !on_v2("an_oom_kill_takes_the_group_and_is_reported_oom_killed") {
        return;
    }
    let world = World::new();
    let uid = pod_uid();
    runtime().block_on(async {
        let pod_config = pod_under_slice("v2oom", &uid);
        let (mut client, pod) = start_pod(&world, &pod_config).await;
        // Only memory.oom.group kills the waiting shell and `sleep` with `tail`: without
        // it the container would keep running.
        let resources = cri::LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            memory_swap_limit_in_bytes: 16 << 20,
            unified: [("memory.oom.group".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let command = ["sh", "-c", "sleep 1000 & busybox tail /dev/zero; wait"];
        let id = start_container(&mut client, &pod, &pod_config, limited("hog", &command, resources)).await;
        let exited = wait_state(&mut client, &id, cri::ContainerState::ContainerExited).await;
        assert_eq!((exited.exit_code, exited.reason.as_str()), (137, "OOMKilled"), "{exited:?}");
        remove_pod(&world, &mut client, pod, &uid).await;
    });
}

/// A privileged container may use any device and has a writable cgroup tree; an
/// ordinary one beside it may not make or use a device outside the defaults.
#[test]
fn a_privileged_container_on_v2() {
    if !on_v2("a_privileged_container_on_v2") {
        return;
    }
    let world = World::new();
    let uid = pod_uid();
    runtime().block_on(async {
        let mut pod_config = pod_under_slice("v2priv", &uid);
        if let Some(linux) = pod_config.linux.as_mut() {
            linux.security_context = Some(cri::LinuxSandboxSecurityContext { privileged: true, ..Default::default() });
        }
        let (mut client, pod) = start_pod(&world, &pod_config).await;
        let mut privileged = container_config("privileged", &["sleep", "1000"]);
        privileged.linux = Some(cri::LinuxContainerConfig { security_context: Some(cri::LinuxContainerSecurityContext { privileged: true, ..Default::default() }), ..Default::default() });
        let privileged = start_container(&mut client, &pod, &pod_config, privileged).await;
        let plain = start_container(&mut client, &pod, &pod_config, container_config("plain", &["sleep", "1000"])).await;
        let script = "busybox mknod /tmp/kmsg c 1 11 && echo berth-v2-privileged >/tmp/kmsg && echo device-ok; \
                      busybox mkdir /sys/fs/cgroup/berth-child && busybox rmdir /sys/fs/cgroup/berth-child && echo cgroup-rw";
        let out = exec(&mut client, &privileged, &["sh", "-c", script]).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("device-ok") && text.contains("cgroup-rw"), "privileged: {text}");
        let out = exec(&mut client, &plain, &["sh", "-c", script]).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("device-ok") && !text.contains("cgroup-rw"), "unprivileged: {text}");
        remove_pod(&world, &mut client, pod, &uid).await;
    });
}
