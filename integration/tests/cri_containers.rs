//! The CRI container life cycle through berthd, with a busybox image pulled from a real
//! registry: two containers sharing their pod's network and IPC, the CRI log file,
//! ExecSync, stop with a grace period, status, resources, stats, events, and removal.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use berth_integration::cri::*;
use k8s_cri::v1 as cri;
use tokio_stream::StreamExt;

fn ns_inode(path: &str) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}")).ino()
}

#[test]
fn a_pod_with_two_containers_sharing_network_and_ipc() {
    let world = World::new();
    let logs = world.daemon.dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        let mut events = client.get_container_events(cri::GetEventsRequest {}).await.expect("events").into_inner();
        pull(&world.daemon).await;
        let pod_config = pod_config("shared", logs.to_str().unwrap());
        let pod = run_pod(&mut client, &pod_config).await;
        let server = start_container(&mut client, &pod, &pod_config, container_config("server", &["sh", "-c", "mkdir -p /www && echo hello from the pod > /www/index.html; echo started; echo oops >&2; exec httpd -f -p 8080 -h /www"])).await;
        let client_container = start_container(&mut client, &pod, &pod_config, container_config("client", &["sleep", "1000"])).await;

        // The same network and IPC namespace, the pod's pinned ones.
        let (a, b) = (pid_of(&mut client, &server).await, pid_of(&mut client, &client_container).await);
        let netns = world.daemon.state().join("netns").join(&pod);
        for kind in ["net", "ipc", "uts"] {
            assert_eq!(ns_inode(&format!("/proc/{a}/ns/{kind}")), ns_inode(&format!("/proc/{b}/ns/{kind}")), "{kind}");
        }
        assert_eq!(ns_inode(&format!("/proc/{a}/ns/net")), ns_inode(netns.to_str().unwrap()));
        // By default (pid mode POD) they also share the pod's PID namespace.
        assert_eq!(ns_inode(&format!("/proc/{a}/ns/pid")), ns_inode(&format!("/proc/{b}/ns/pid")));

        // The client reaches the server over the pod's loopback.
        let mut fetched = cri::ExecSyncResponse::default();
        for _ in 0..50 {
            fetched = exec(&mut client, &client_container, &["sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080"]).await;
            if fetched.exit_code == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = String::from_utf8_lossy(&fetched.stdout).into_owned();
        assert!(page.starts_with("HTTP/1.") && page.ends_with("\r\n\r\nhello from the pod\n"), "{page:?}");
        // A POSIX message queue and a /dev/shm file made in one container are seen in
        // the other (same IPC namespace, the pod's shared shm).
        let made = exec(&mut client, &server, &["sh", "-c", ": > /dev/mqueue/berth-queue && echo shared > /dev/shm/note"]).await;
        assert_eq!(made.exit_code, 0, "{made:?}");
        let seen = exec(&mut client, &client_container, &["sh", "-c", "ls /dev/mqueue; cat /dev/shm/note"]).await;
        assert_eq!(String::from_utf8_lossy(&seen.stdout), "berth-queue\nshared\n", "{seen:?}");
        // Hostname and DNS files.
        let hostname = exec(&mut client, &server, &["hostname"]).await;
        assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "shared");

        // The CRI log: stdout and stderr lines, in the kubelet's format.
        let log = std::fs::read_to_string(logs.join("server.log")).expect("server log");
        let lines: Vec<&str> = log.lines().collect();
        assert!(lines.iter().any(|l| l.ends_with(" stdout F started")), "{log}");
        assert!(lines.iter().any(|l| l.ends_with(" stderr F oops")), "{log}");
        let first = lines[0];
        let time = first.split(' ').next().expect("time");
        assert!(time.len() >= 20 && time.ends_with('Z') && time.contains('T'), "{first}");

        // Stop both, remove the pod; the events stream saw the whole life cycle.
        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("stop pod");
        let stopped = status(&mut client, &server).await;
        assert_eq!(stopped.state, cri::ContainerState::ContainerExited as i32);
        assert!(stopped.finished_at >= stopped.started_at && stopped.started_at > 0);
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("remove pod");
        let listed = client.list_containers(cri::ListContainersRequest::default()).await.expect("list").into_inner().containers;
        assert!(listed.is_empty(), "{listed:?}");
        let mut seen = Vec::new();
        while seen.len() < 8 {
            match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
                Ok(Some(Ok(event))) => seen.push((event.container_id, event.container_event_type)),
                _ => break,
            }
        }
        for kind in [cri::ContainerEventType::ContainerCreatedEvent, cri::ContainerEventType::ContainerStartedEvent, cri::ContainerEventType::ContainerStoppedEvent, cri::ContainerEventType::ContainerDeletedEvent] {
            assert!(seen.iter().any(|(id, t)| id == &server && *t == kind as i32), "{kind:?} missing: {seen:?}");
        }
        let bundle = world.daemon.root().join("containers").join(&server);
        assert!(!bundle.exists(), "bundle left: {:?} {}", std::fs::read_dir(&bundle).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()), std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().filter(|l| l.contains(&server)).collect::<Vec<_>>().join("\n"));
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!mounts.contains(&server) && !mounts.contains(&pod), "a mount is left");
    });
}

#[test]
fn exec_sync_stop_timeout_status_resources_and_stats() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let pod_config = pod_config("worker", "");
        let pod = run_pod(&mut client, &pod_config).await;
        let mut config = container_config("stubborn", &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]);
        config.labels.insert("tier".into(), "back".into());
        config.envs.push(cri::KeyValue { key: "GREETING".into(), value: "hi there".into() });
        config.linux = Some(cri::LinuxContainerConfig { resources: Some(cri::LinuxContainerResources { memory_limit_in_bytes: 64 << 20, ..Default::default() }), ..Default::default() });
        let id = start_container(&mut client, &pod, &pod_config, config).await;

        // ExecSync: stdout and stderr apart, the exit code, the container's environment.
        let out = exec(&mut client, &id, &["sh", "-c", "echo $GREETING; echo to-err >&2; exit 3"]).await;
        assert_eq!((String::from_utf8_lossy(&out.stdout).as_ref(), String::from_utf8_lossy(&out.stderr).as_ref(), out.exit_code), ("hi there\n", "to-err\n", 3));
        // The image's working directory, which no layer has, was made.
        let cwd = exec(&mut client, &id, &["sh", "-c", "pwd"]).await;
        assert_eq!(String::from_utf8_lossy(&cwd.stdout), "/work\n");
        let slow = cri::ExecSyncRequest { container_id: id.clone(), cmd: vec!["sleep".into(), "30".into()], timeout: 1 };
        let timed_out = client.exec_sync(slow).await.expect_err("timeout");
        assert_eq!(timed_out.code(), tonic::Code::DeadlineExceeded, "{timed_out:?}");

        // The memory limit is in the container's cgroup; an update changes it.
        let pid = pid_of(&mut client, &id).await;
        let memory_limit = || {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
            let v1 = cgroup.lines().find_map(|l| l.split(':').nth(1).filter(|c| c.split(',').any(|c| c == "memory")).map(|_| l.split(':').nth(2).unwrap_or("").to_string()));
            match v1 {
                Some(path) => std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")).expect("limit").trim().parse::<u64>().expect("number"),
                None => {
                    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::")).expect("v2 path");
                    std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).expect("max").trim().parse::<u64>().expect("number")
                }
            }
        };
        assert_eq!(memory_limit(), 64 << 20);
        let update = cri::UpdateContainerResourcesRequest { container_id: id.clone(), linux: Some(cri::LinuxContainerResources { memory_limit_in_bytes: 96 << 20, ..Default::default() }), ..Default::default() };
        client.update_container_resources(update).await.expect("update");
        assert_eq!(memory_limit(), 96 << 20);
        let current = status(&mut client, &id).await;
        assert_eq!(current.resources.expect("resources").linux.expect("linux").memory_limit_in_bytes, 96 << 20);

        // Stats: the container's memory is counted.
        let stats = client.container_stats(cri::ContainerStatsRequest { container_id: id.clone() }).await.expect("stats").into_inner().stats.expect("stats");
        assert!(stats.memory.expect("memory").working_set_bytes.expect("working set").value > 0);
        let listed = client.list_container_stats(cri::ListContainerStatsRequest { filter: Some(cri::ContainerStatsFilter { label_selector: [("tier".to_string(), "back".to_string())].into(), ..Default::default() }) }).await.expect("list stats").into_inner().stats;
        assert_eq!(listed.len(), 1);
        let pod_stats = client.pod_sandbox_stats(cri::PodSandboxStatsRequest { pod_sandbox_id: pod.clone() }).await.expect("pod stats").into_inner();
        assert_eq!(pod_stats.stats.expect("stats").linux.expect("linux").containers.len(), 1);

        // Stop: SIGTERM is ignored, so SIGKILL after the 1 s grace period.
        let started = std::time::Instant::now();
        client.stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout: 1 }).await.expect("stop");
        assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
        let stopped = status(&mut client, &id).await;
        assert_eq!((stopped.state, stopped.exit_code), (cri::ContainerState::ContainerExited as i32, 137));
        assert_eq!(stopped.image.expect("image").image, IMAGE);
        assert!(stopped.image_ref.contains("sha256:"), "{}", stopped.image_ref);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        // Stopping and removing again are not errors.
        client.stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.expect("stop again");
        client.remove_container(cri::RemoveContainerRequest { container_id: id.clone() }).await.expect("remove");
        client.remove_container(cri::RemoveContainerRequest { container_id: id.clone() }).await.expect("remove again");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove pod");
    });
}

#[test]
fn bad_container_requests_leave_nothing_behind() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let pod_config = pod_config("strict", "");
        let pod = run_pod(&mut client, &pod_config).await;
        let create = |pod: &str, config: cri::ContainerConfig| cri::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(pod_config.clone()) };
        let error = client.create_container(create("no-such-pod", container_config("a", &["true"]))).await.expect_err("unknown pod");
        assert_eq!(error.code(), tonic::Code::NotFound);
        let mut missing_image = container_config("b", &["true"]);
        missing_image.image = Some(cri::ImageSpec { image: "docker.io/library/nothere:1".into(), ..Default::default() });
        let error = client.create_container(create(&pod, missing_image)).await.expect_err("missing image");
        assert_eq!(error.code(), tonic::Code::NotFound, "{error:?}");
        let mut bad_user = container_config("c", &["true"]);
        bad_user.linux = Some(cri::LinuxContainerConfig { security_context: Some(cri::LinuxContainerSecurityContext { run_as_username: "nobody-here".into(), ..Default::default() }), ..Default::default() });
        let error = client.create_container(create(&pod, bad_user)).await.expect_err("unknown user");
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
        assert!(error.message().contains("nobody-here"), "{}", error.message());
        let mut group_only = container_config("c2", &["true"]);
        group_only.linux = Some(cri::LinuxContainerConfig { security_context: Some(cri::LinuxContainerSecurityContext { run_as_group: Some(cri::Int64Value { value: 1002 }), ..Default::default() }), ..Default::default() });
        let error = client.create_container(create(&pod, group_only)).await.expect_err("group without user");
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
        let mut image_volume = container_config("c3", &["true"]);
        image_volume.mounts = vec![cri::Mount { container_path: "/mnt".into(), readonly: true, image: Some(cri::ImageSpec { image: IMAGE.into(), ..Default::default() }), ..Default::default() }];
        let error = client.create_container(create(&pod, image_volume)).await.expect_err("image volume");
        assert_eq!(error.code(), tonic::Code::Unimplemented, "{error:?}");
        let ok = client.create_container(create(&pod, container_config("d", &["sleep", "100"]))).await.expect("create").into_inner().container_id;
        let duplicate = client.create_container(create(&pod, container_config("d", &["sleep", "100"]))).await.expect_err("duplicate");
        assert_eq!(duplicate.code(), tonic::Code::AlreadyExists);
        // A command that does not exist: StartContainer fails, the container is exited.
        let broken = client.create_container(create(&pod, container_config("e", &["/no/such/binary"]))).await.expect("create").into_inner().container_id;
        let error = client.start_container(cri::StartContainerRequest { container_id: broken.clone() }).await.expect_err("start");
        assert!(error.message().contains("/no/such/binary"), "{error:?}");
        let failed = status(&mut client, &broken).await;
        assert_eq!(failed.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!(failed.reason, "StartError");
        // Only the good and the broken container exist; the good one still starts.
        let listed = client.list_containers(cri::ListContainersRequest::default()).await.expect("list").into_inner().containers;
        assert_eq!(listed.len(), 2, "{listed:?}");
        client.start_container(cri::StartContainerRequest { container_id: ok.clone() }).await.expect("start");
        let again = client.start_container(cri::StartContainerRequest { container_id: ok.clone() }).await.expect_err("start twice");
        assert_eq!(again.code(), tonic::Code::FailedPrecondition);
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove pod");
        let left = std::fs::read_dir(world.daemon.root().join("containers")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "bundles left behind");
    });
}

#[test]
fn a_container_killed_for_memory_is_reported_oom_killed() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let pod_config = pod_config("oom", "");
        let pod = run_pod(&mut client, &pod_config).await;
        // `tail` keeps the whole of a file without newlines in memory.
        let mut config = container_config("hog", &["busybox", "tail", "/dev/zero"]);
        let limits = cri::LinuxContainerResources { memory_limit_in_bytes: 16 << 20, memory_swap_limit_in_bytes: 16 << 20, ..Default::default() };
        config.linux = Some(cri::LinuxContainerConfig { resources: Some(limits), ..Default::default() });
        let id = start_container(&mut client, &pod, &pod_config, config).await;
        let exited = wait_state(&mut client, &id, cri::ContainerState::ContainerExited).await;
        assert_eq!((exited.exit_code, exited.reason.as_str()), (137, "OOMKilled"), "{exited:?}");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove pod");
    });
}

#[test]
fn mount_propagation_both_ways_and_host_to_container() {
    let world = World::new();
    let shared = world.daemon.dir.path().join("shared");
    std::fs::create_dir_all(&shared).expect("shared dir");
    let source = shared.display().to_string();
    let made = std::process::Command::new("sh").arg("-c").arg(format!("mount --bind {source} {source} && mount --make-shared {source}")).status().expect("sh");
    assert!(made.success(), "making {source} a shared mount");
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let pod_config = pod_config("propagation", "");
        let pod = run_pod(&mut client, &pod_config).await;
        let with_mount = |name: &str, propagation: cri::MountPropagation, privileged: bool| {
            let mut config = container_config(name, &["sleep", "1000"]);
            config.mounts = vec![cri::Mount { container_path: "/mnt/shared".into(), host_path: source.clone(), propagation: propagation as i32, ..Default::default() }];
            let security = cri::LinuxContainerSecurityContext { privileged, ..Default::default() };
            config.linux = Some(cri::LinuxContainerConfig { security_context: Some(security), ..Default::default() });
            config
        };
        let both = start_container(&mut client, &pod, &pod_config, with_mount("both", cri::MountPropagation::PropagationBidirectional, true)).await;
        let down = start_container(&mut client, &pod, &pod_config, with_mount("down", cri::MountPropagation::PropagationHostToContainer, false)).await;
        // A mount made in the bidirectional container reaches the host, and from there
        // the host-to-container one.
        let mounted = exec(&mut client, &both, &["sh", "-c", "mkdir -p /mnt/shared/sub && busybox mount -t tmpfs from-container /mnt/shared/sub && echo hi > /mnt/shared/sub/note"]).await;
        assert_eq!(mounted.exit_code, 0, "{mounted:?}");
        let host = std::fs::read_to_string(shared.join("sub/note")).unwrap_or_default();
        let seen = exec(&mut client, &down, &["cat", "/mnt/shared/sub/note"]).await;
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove pod");
        let _ = std::process::Command::new("sh").arg("-c").arg(format!("umount -l {source}/sub; umount -l {source}")).status();
        assert_eq!(host, "hi\n", "the container's mount did not reach the host");
        assert_eq!(String::from_utf8_lossy(&seen.stdout), "hi\n", "the host's mount did not reach the host-to-container mount: {seen:?}");
    });
}
