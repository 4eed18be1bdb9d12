//! Requests that reach too far get InvalidArgument (or ResourceExhausted) and leave
//! nothing behind: log paths outside the pod's log directory (absolute, `..`, the
//! reserved annotation, a symlink), ports out of range, unknown protocols and host IPs
//! that do not parse, too many or too big labels, a message over the size limit. And a
//! malformed bundle on disk makes ExecSync fail cleanly instead of crashing berthd.

use berth_integration::cri::*;
use berth_integration::tempdir::TempDir;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

fn create_request(pod: &str, pod_config: &cri::PodSandboxConfig, config: cri::ContainerConfig) -> cri::CreateContainerRequest {
    cri::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(pod_config.clone()) }
}

async fn container_count(client: &mut RuntimeServiceClient<Channel>) -> usize {
    client.list_containers(cri::ListContainersRequest::default()).await.expect("list").into_inner().containers.len()
}

async fn pod_count(client: &mut RuntimeServiceClient<Channel>) -> usize {
    client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.expect("list").into_inner().items.len()
}

#[test]
fn log_paths_must_stay_inside_the_log_directory() {
    let world = World::new();
    let logs = world.daemon.dir.path().join("logs");
    let outside = TempDir::new("outside-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    std::os::unix::fs::symlink(outside.path(), logs.join("link")).expect("symlink");
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("logs", logs.to_str().expect("utf-8"));
        let pod = run_pod(&mut client, &config).await;
        let escape = outside.path().join("escape.log");
        for bad in [escape.display().to_string(), "../escape.log".into(), "a/../../escape.log".into()] {
            let mut container = container_config("bad", &["true"]);
            container.log_path = bad.clone();
            let status = client.create_container(create_request(&pod, &config, container)).await.expect_err(&bad);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}: {status:?}");
            assert!(status.message().contains("log"), "{status:?}");
        }
        let mut annotated = container_config("annotated", &["true"]);
        annotated.log_path = String::new();
        annotated.annotations.insert("io.berth.cri.log-path".into(), escape.display().to_string());
        let status = client.create_container(create_request(&pod, &config, annotated)).await.expect_err("the reserved annotation");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(container_count(&mut client).await, 0, "a refused container was kept");

        // A symlink inside the log directory cannot lead the shim out of it.
        let mut linked = container_config("linked", &["echo", "leaked"]);
        linked.log_path = "link/escape.log".into();
        let id = client.create_container(create_request(&pod, &config, linked)).await.expect("create").into_inner().container_id;
        let started = client.start_container(cri::StartContainerRequest { container_id: id }).await;
        assert!(started.is_err(), "a log behind a symlink was opened");
        assert!(!escape.exists(), "the shim wrote outside the log directory");
        // A plain relative path in a subdirectory works.
        let mut fine = container_config("fine", &["echo", "logged"]);
        fine.log_path = "fine/0.log".into();
        let id = start_container(&mut client, &pod, &config, fine).await;
        wait_state(&mut client, &id, cri::ContainerState::ContainerExited).await;
        let log = std::fs::read_to_string(logs.join("fine/0.log")).expect("the log");
        assert!(log.ends_with(" stdout F logged\n"), "{log}");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}

#[test]
fn bad_port_mappings_labels_and_sizes_are_refused() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        let port = |container_port: i32, host_port: i32, protocol: i32, host_ip: &str| cri::PortMapping { protocol, container_port, host_port, host_ip: host_ip.into() };
        let cases = [
            ("host port out of range", port(80, 65616, 0, "")),
            ("negative host port", port(80, -1, 0, "")),
            ("container port out of range", port(70000, 8080, 0, "")),
            ("unknown protocol", port(80, 8080, 7, "")),
            ("host IP", port(80, 8080, 0, "not-an-ip")),
        ];
        for (what, mapping) in cases {
            let mut config = pod_config("ports", "");
            config.port_mappings = vec![mapping];
            let request = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
            let status = client.run_pod_sandbox(request).await.expect_err(what);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {status:?}");
        }
        let mut crowded = pod_config("labels", "");
        crowded.labels = (0..300).map(|n| (format!("label-{n}"), "x".into())).collect();
        let status = client.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(crowded), runtime_handler: String::new() }).await.expect_err("300 labels");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let mut heavy = pod_config("annotations", "");
        heavy.annotations.insert("big".into(), "x".repeat(300 << 10));
        let status = client.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(heavy), runtime_handler: String::new() }).await.expect_err("300 KiB annotation");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let mut huge = pod_config("huge", "");
        huge.annotations.insert("huge".into(), "x".repeat(17 << 20));
        let refused = client.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(huge), runtime_handler: String::new() }).await;
        assert!(refused.is_err(), "a 17 MiB request was taken");
        // berthd still serves, and nothing was made.
        let mut client = world.daemon.runtime().await;
        assert_eq!(pod_count(&mut client).await, 0);
        let ok = port(80, 8080, cri::Protocol::Udp as i32, "127.0.0.1");
        let mut config = pod_config("good", "");
        config.port_mappings = vec![ok];
        let pod = run_pod(&mut client, &config).await;
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}

#[test]
fn a_malformed_bundle_fails_exec_without_crashing_berthd() {
    let world = World::new();
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        pull(&world.daemon).await;
        let config = pod_config("malformed", "");
        let pod = run_pod(&mut client, &config).await;
        let id = start_container(&mut client, &pod, &config, container_config("malformed", &["sleep", "1000"])).await;
        let bundle = world.daemon.root().join("containers").join(&id).join("config.json");
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle).expect("config.json")).expect("json");
        spec["process"] = serde_json::json!(42);
        std::fs::write(&bundle, serde_json::to_vec(&spec).expect("json")).expect("write");
        let request = cri::ExecSyncRequest { container_id: id.clone(), cmd: vec!["true".into()], timeout: 10 };
        let status = client.exec_sync(request).await.expect_err("exec with a malformed process");
        assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
        assert!(status.message().contains("malformed"), "{status:?}");
        // The daemon is still there.
        let mut client = world.daemon.runtime().await;
        assert_eq!(status_of(&mut client, &id).await, cri::ContainerState::ContainerRunning as i32);
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove the pod");
    });
}

async fn status_of(client: &mut RuntimeServiceClient<Channel>, id: &str) -> i32 {
    status(client, id).await.state
}
