//! CRI pod sandboxes through berthd: run, status, list with filters, stop, remove,
//! idempotence, duplicate names, and the kernel's view of the pod's namespaces.

use std::collections::HashMap;

use berth_integration::berthd::Berthd;
use k8s_cri::v1 as cri;

fn pod_config(name: &str, labels: &[(&str, &str)]) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "default".into(), attempt: 0 }),
        hostname: format!("{name}-host"),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        dns_config: Some(cri::DnsConfig { servers: vec!["192.0.2.53".into()], searches: vec!["svc.test".into()], options: vec!["ndots:2".into()] }),
        ..Default::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio")
}

fn ns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("namespace file").ino()
}

#[test]
fn version_status_and_runtime_config() {
    let daemon = Berthd::start("");
    runtime().block_on(async {
        let mut client = daemon.runtime().await;
        let version = client.version(cri::VersionRequest::default()).await.expect("version").into_inner();
        assert_eq!(version.runtime_name, "berth");
        assert_eq!(version.runtime_api_version, "v1");
        let status = client.status(cri::StatusRequest { verbose: true }).await.expect("status").into_inner();
        let conditions = status.status.expect("status").conditions;
        assert!(conditions.iter().any(|c| c.r#type == "RuntimeReady" && c.status), "{conditions:?}");
        assert!(conditions.iter().any(|c| c.r#type == "NetworkReady" && c.status), "{conditions:?}");
        assert!(status.info.contains_key("config"));
        let config = client.runtime_config(cri::RuntimeConfigRequest {}).await.expect("runtime config").into_inner();
        assert_eq!(config.linux.expect("linux").cgroup_driver, cri::CgroupDriver::Cgroupfs as i32);
    });
}

/// The conditions are checked, not declared: a missing shim makes the runtime not
/// ready, and CNI mode without a configuration (then with one whose plugin is missing,
/// then with a complete one) makes the network not ready until it can serve a pod.
#[test]
fn status_conditions_say_what_is_missing() {
    let conf_dir = berth_integration::tempdir::TempDir::new("cni-conf");
    let bin_dir = berth_integration::tempdir::TempDir::new("cni-bin");
    let extra = format!(
        "shim_binary = \"/nonexistent/berth-shim\"\n[network]\nmode = \"cni\"\ncni_conf_dir = \"{}\"\ncni_bin_dirs = [\"{}\"]\n",
        conf_dir.path().display(),
        bin_dir.path().display()
    );
    let daemon = Berthd::start(&extra);
    runtime().block_on(async {
        let mut client = daemon.runtime().await;
        let conditions = |status: cri::StatusResponse| status.status.expect("status").conditions;
        let find = |conditions: &[cri::RuntimeCondition], kind: &str| conditions.iter().find(|c| c.r#type == kind).cloned().expect(kind);
        let now = conditions(client.status(cri::StatusRequest { verbose: false }).await.expect("status").into_inner());
        let runtime_ready = find(&now, "RuntimeReady");
        assert!(!runtime_ready.status && runtime_ready.message.contains("/nonexistent/berth-shim"), "{runtime_ready:?}");
        let network = find(&now, "NetworkReady");
        assert!(!network.status && network.reason == "NetworkPluginNotReady" && !network.message.is_empty(), "{network:?}");
        let conflist = r#"{"cniVersion": "1.0.0", "name": "test", "plugins": [{"type": "berth-test-plugin"}]}"#;
        std::fs::write(conf_dir.path().join("10-test.conflist"), conflist).expect("conflist");
        let now = conditions(client.status(cri::StatusRequest { verbose: false }).await.expect("status").into_inner());
        let network = find(&now, "NetworkReady");
        assert!(!network.status && network.message.contains("berth-test-plugin"), "{network:?}");
        let plugin = bin_dir.path().join("berth-test-plugin");
        std::fs::write(&plugin, "#!/bin/sh\nexit 1\n").expect("plugin");
        std::fs::set_permissions(&plugin, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755)).expect("chmod");
        let now = conditions(client.status(cri::StatusRequest { verbose: false }).await.expect("status").into_inner());
        assert!(find(&now, "NetworkReady").status, "{now:?}");
    });
}

#[test]
fn sandbox_life_cycle_with_pinned_namespaces() {
    let daemon = Berthd::start("");
    runtime().block_on(async {
        let mut client = daemon.runtime().await;
        // A mapping without a host port (the kubelet sends one per containerPort) is fine.
        let mut config = pod_config("web", &[("app", "web")]);
        config.port_mappings = vec![cri::PortMapping { container_port: 80, ..Default::default() }];
        let request = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        let id = client.run_pod_sandbox(request.clone()).await.expect("run").into_inner().pod_sandbox_id;
        assert_eq!(id.len(), 64);
        // A second pod with the same metadata is refused.
        let duplicate = client.run_pod_sandbox(request).await.expect_err("duplicate");
        assert_eq!(duplicate.code(), tonic::Code::AlreadyExists, "{duplicate:?}");

        let status = client.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: true }).await.expect("status").into_inner();
        let pod = status.status.expect("status");
        assert_eq!(pod.state, cri::PodSandboxState::SandboxReady as i32);
        assert_eq!(pod.metadata.expect("metadata").name, "web");
        assert!(status.info["info"].contains("netns"));

        // The pinned namespaces are real and distinct from the daemon's.
        let netns = daemon.state().join("netns").join(&id);
        let daemon_pid = daemon.child.as_ref().expect("child").id();
        assert_ne!(ns_inode(netns.to_str().unwrap()), ns_inode(&format!("/proc/{daemon_pid}/ns/net")));
        let uts = daemon.state().join("sandboxes").join(&id).join("uts");
        let hostname = std::process::Command::new("nsenter").arg(format!("--uts={}", uts.display())).arg("hostname").output().expect("nsenter");
        assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "web-host");
        let lo = std::process::Command::new("nsenter").arg(format!("--net={}", netns.display())).args(["ip", "-j", "link", "show", "lo"]).output().expect("ip");
        assert!(String::from_utf8_lossy(&lo.stdout).contains("\"UP\""), "{}", String::from_utf8_lossy(&lo.stdout));
        let resolv = std::fs::read_to_string(daemon.state().join("sandboxes").join(&id).join("resolv.conf")).expect("resolv.conf");
        assert_eq!(resolv, "nameserver 192.0.2.53\nsearch svc.test\noptions ndots:2\n");

        // Filters.
        let other = client.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(pod_config("db", &[("app", "db")])), ..Default::default() }).await.expect("run db").into_inner().pod_sandbox_id;
        let by_label = cri::PodSandboxFilter { label_selector: HashMap::from([("app".to_string(), "db".to_string())]), ..Default::default() };
        let items = client.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(by_label) }).await.expect("list").into_inner().items;
        assert_eq!(items.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), vec![other.clone()]);
        let by_prefix = cri::PodSandboxFilter { id: id[..12].to_string(), ..Default::default() };
        let items = client.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(by_prefix) }).await.expect("list").into_inner().items;
        assert_eq!(items.len(), 1);

        // Stop: not ready, network namespace released; stop again is fine.
        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await.expect("stop");
        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await.expect("stop again");
        assert!(!netns.exists());
        let not_ready = cri::PodSandboxFilter { state: Some(cri::PodSandboxStateValue { state: cri::PodSandboxState::SandboxNotready as i32 }), ..Default::default() };
        let items = client.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(not_ready) }).await.expect("list").into_inner().items;
        assert_eq!(items.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), vec![id.clone()]);

        // Remove both; removing again or an unknown pod is fine; status is NotFound.
        for pod in [&id, &other] {
            client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("remove");
        }
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.clone() }).await.expect("remove again");
        let gone = client.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false }).await.expect_err("gone");
        assert_eq!(gone.code(), tonic::Code::NotFound);
        assert!(!daemon.state().join("sandboxes").join(&id).exists());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!mounts.contains(&id), "a mount of the pod is left");
    });
}

#[test]
fn bad_sandbox_requests_get_precise_errors() {
    let daemon = Berthd::start("");
    runtime().block_on(async {
        let mut client = daemon.runtime().await;
        let no_config = client.run_pod_sandbox(cri::RunPodSandboxRequest::default()).await.expect_err("no config");
        assert_eq!(no_config.code(), tonic::Code::InvalidArgument);
        let no_name = cri::PodSandboxConfig { metadata: Some(cri::PodSandboxMetadata::default()), ..Default::default() };
        let error = client.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(no_name), ..Default::default() }).await.expect_err("no name");
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        let handler = cri::RunPodSandboxRequest { config: Some(pod_config("x", &[])), runtime_handler: "kata".into() };
        let error = client.run_pod_sandbox(handler).await.expect_err("unknown handler");
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.message().contains("kata"), "{}", error.message());
        let items = client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.expect("list").into_inner().items;
        assert!(items.is_empty(), "a refused request left a sandbox: {items:?}");
        // A streaming request without a container is refused before any URL is made.
        let exec = client.exec(cri::ExecRequest::default()).await.expect_err("exec");
        assert!(matches!(exec.code(), tonic::Code::InvalidArgument | tonic::Code::NotFound), "{exec:?}");
    });
}

/// Hostname of the pod's UTS namespace, read through its pinned namespace.
fn pod_uts_hostname(daemon: &Berthd, id: &str) -> String {
    let uts = daemon.state().join("sandboxes").join(id).join("uts");
    let output = std::process::Command::new("nsenter").arg(format!("--uts={}", uts.display())).arg("hostname").output().expect("nsenter");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn pod_hostname_defaults_to_the_node_and_a_long_one_is_refused() {
    let daemon = Berthd::start("");
    runtime().block_on(async {
        let mut client = daemon.runtime().await;
        // critest names its pods with long names and sends no hostname: the node's is used.
        let long_name = format!("pod-with-a-name-much-longer-than-the-kernel-allows-for-a-hostname-{}", "x".repeat(20));
        let mut config = pod_config(&long_name, &[]);
        config.hostname = String::new();
        let request = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        let id = client.run_pod_sandbox(request).await.expect("run with no hostname").into_inner().pod_sandbox_id;
        let node = nix::unistd::gethostname().expect("gethostname").to_string_lossy().into_owned();
        assert_eq!(pod_uts_hostname(&daemon, &id), node);
        let file = std::fs::read_to_string(daemon.state().join("sandboxes").join(&id).join("hostname")).expect("hostname file");
        assert_eq!(file.trim(), node, "/etc/hostname of the pod disagrees with its UTS namespace");

        // A hostname over 64 bytes is the caller's error, and nothing is left of it.
        let mut config = pod_config("too-long", &[]);
        config.hostname = "h".repeat(65);
        let error = client.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() }).await.expect_err("long hostname");
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
        assert!(error.message().contains("64"), "{}", error.message());
        let items = client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.expect("list").into_inner().items;
        assert_eq!(items.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), vec![id.clone()]);

        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await.expect("stop");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }).await.expect("remove");
    });
}
