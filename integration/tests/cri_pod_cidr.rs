//! The kubelet's pod CIDR (UpdateRuntimeConfig) in bridge mode: it becomes the pod
//! network's subnet (the bridge's address, the pods' addresses as `ip` shows them inside
//! their namespaces, the masquerade rule), it survives a daemon restart, a change is
//! refused while pods hold addresses of the old subnet, and it is applied once they are
//! gone; bad CIDRs are InvalidArgument.

use berth_integration::berthd::Berthd;
use berth_integration::networld::{ipv4_addresses as addresses, nft_json};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio")
}

fn pod_config(name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "default".into(), attempt: 0 }),
        hostname: name.into(),
        ..Default::default()
    }
}

async fn set_cidr(client: &mut RuntimeServiceClient<Channel>, cidr: &str) -> Result<(), tonic::Status> {
    let network_config = Some(cri::NetworkConfig { pod_cidr: cidr.into(), ..Default::default() });
    let request = cri::UpdateRuntimeConfigRequest { runtime_config: Some(cri::RuntimeConfig { network_config, ..Default::default() }) };
    client.update_runtime_config(request).await.map(|_| ())
}

async fn run_pod(client: &mut RuntimeServiceClient<Channel>, name: &str) -> String {
    let request = cri::RunPodSandboxRequest { config: Some(pod_config(name)), runtime_handler: String::new() };
    client.run_pod_sandbox(request).await.expect("run pod").into_inner().pod_sandbox_id
}

async fn remove_pod(client: &mut RuntimeServiceClient<Channel>, id: &str) {
    client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.into() }).await.expect("stop pod");
    client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.into() }).await.expect("remove pod");
}

/// The pod's eth0 address seen inside its namespace, checked against the CRI status.
async fn pod_address(client: &mut RuntimeServiceClient<Channel>, daemon: &Berthd, id: &str) -> String {
    let netns = daemon.state().join("netns").join(id);
    let inside = addresses(netns.to_str().expect("path"), "eth0");
    assert_eq!(inside.len(), 1, "eth0 of pod {id}: {inside:?}");
    let status = client.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: false }).await.expect("status");
    let reported = status.into_inner().status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
    assert_eq!(inside[0].split('/').next(), Some(reported.as_str()), "CRI reports another address");
    inside[0].clone()
}

fn masquerades(daemon: &Berthd, subnet: &str) -> bool {
    nft_json(&daemon.netns_path).to_string().contains(&format!("\"{subnet}\""))
}

#[test]
fn the_pod_cidr_becomes_the_pod_subnet_and_survives_a_restart() {
    let mut daemon = Berthd::start("");
    let first = runtime().block_on(async {
        let mut client = daemon.runtime().await;
        let bad = set_cidr(&mut client, "10.77.3.0/33").await.expect_err("a bad CIDR is refused");
        assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
        set_cidr(&mut client, "10.77.3.0/24").await.expect("set the pod CIDR");
        assert_eq!(addresses(&daemon.netns_path, "docker0"), ["10.77.3.1/24"]);
        assert!(masquerades(&daemon, "10.77.3.0"), "{}", nft_json(&daemon.netns_path));
        let first = run_pod(&mut client, "first").await;
        assert_eq!(pod_address(&mut client, &daemon, &first).await, "10.77.3.2/24");
        // The same CIDR again (the kubelet sends it at each start) changes nothing.
        set_cidr(&mut client, "10.77.3.0/24").await.expect("the same CIDR again");
        let refused = set_cidr(&mut client, "10.88.5.0/24").await.expect_err("a change while a pod holds an address");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("10.77.3.0/24") && refused.message().contains("remove them"), "{refused:?}");
        assert_eq!(addresses(&daemon.netns_path, "docker0"), ["10.77.3.1/24"], "a refused change left traces");
        first
    });
    daemon.stop();
    daemon.spawn();
    runtime().block_on(async {
        let mut client = daemon.runtime().await;
        let second = run_pod(&mut client, "second").await;
        assert_eq!(pod_address(&mut client, &daemon, &second).await, "10.77.3.3/24", "the CIDR was lost in the restart");
        assert_eq!(addresses(&daemon.netns_path, "docker0"), ["10.77.3.1/24"]);
        remove_pod(&mut client, &first).await;
        remove_pod(&mut client, &second).await;
        set_cidr(&mut client, "10.88.5.0/24").await.expect("a change once no pod holds an address");
        assert_eq!(addresses(&daemon.netns_path, "docker0"), ["10.88.5.1/24"]);
        assert!(masquerades(&daemon, "10.88.5.0") && !masquerades(&daemon, "10.77.3.0"), "{}", nft_json(&daemon.netns_path));
        let third = run_pod(&mut client, "third").await;
        assert_eq!(pod_address(&mut client, &daemon, &third).await, "10.88.5.2/24");
        remove_pod(&mut client, &third).await;
    });
}
