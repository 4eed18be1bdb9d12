//! Bad input to the network library: each gets its precise error, and the container
//! that was already running keeps its networking (its published port still answers
//! from the outside namespace).
use berth::network::{AttachRequest, CreateNetwork, NetworkError, NetworkManager, PortMapping, Protocol};
use berth::store::Store;
use berth_integration::networld::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn request(sandbox: &Sandbox, networks: &[&str], host_port: Option<u16>) -> AttachRequest {
    AttachRequest {
        sandbox_id: sandbox.id.clone(),
        netns_path: sandbox.path.clone(),
        networks: networks.iter().map(|n| n.to_string()).collect(),
        port_mappings: host_port
            .map(|port| PortMapping { protocol: Protocol::Tcp, container_port: 80, host_port: port, host_ip: None })
            .into_iter()
            .collect(),
        hostname: sandbox.id.clone(),
        ..Default::default()
    }
}

fn net(name: &str, subnet: &str) -> CreateNetwork {
    CreateNetwork { name: name.into(), subnet: Some(subnet.into()), gateway: None, ..Default::default() }
}

#[test]
fn bad_input_gets_precise_errors_and_leaves_running_containers_alone() {
    let world = NetWorld::new();
    let web = world.sandbox("web");
    let (x, y, z) = (world.sandbox("x"), world.sandbox("y"), world.sandbox("z"));
    let host = world.host.path();
    let (store_path, config, state) = (world.store_path(), world.config(), world.state_dir());
    let web_request = request(&web, &[], Some(8080));
    world.in_host(move || {
        runtime().block_on(async {
            let store = Store::open(&store_path).unwrap();
            let manager = NetworkManager::open(store, config, &state).await.unwrap();
            manager.attach(&web_request).await.unwrap();
        })
    });
    let _httpd = world.httpd(web.netns(), 80);
    // Another process holds host port 9090 in the host namespace.
    let _squatter = Server::spawn({
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg(format!("--net={host}")).args(["busybox", "nc", "-l", "-p", "9090"]);
        cmd
    });
    for _ in 0..100 {
        if in_netns(&host, "busybox netstat -ltn | grep -q ':9090 '").success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (store_path, config, state) = (world.store_path(), world.config(), world.state_dir());
    let (rx, ry, rz) = (request(&x, &["n1"], None), request(&y, &[], Some(8080)), request(&z, &[], Some(9090)));
    let (ry_missing, rz_tiny) = (request(&y, &["nope"], None), request(&z, &["tiny"], None));
    let ry_tiny = request(&y, &["tiny"], None);
    world.in_host(move || {
        runtime().block_on(async {
            let store = Store::open(&store_path).unwrap();
            let manager = NetworkManager::open(store, config, &state).await.unwrap();
            manager.reconcile(&["web".into()]).await.unwrap();
            let e = manager.create_network(&net("bad", "10.300.0.0/16")).await.unwrap_err();
            assert!(matches!(e, NetworkError::InvalidArgument(ref m) if m.contains("10.300.0.0/16")), "{e}");
            let e = manager.create_network(&net("up", "192.168.200.0/25")).await.unwrap_err();
            assert!(matches!(e, NetworkError::SubnetOverlap(ref m) if m.contains("host route 192.168.200.0/24")), "{e}");
            manager.create_network(&net("n1", "10.10.0.0/24")).await.unwrap();
            let e = manager.create_network(&net("n2", "10.10.0.128/25")).await.unwrap_err();
            assert!(matches!(e, NetworkError::SubnetOverlap(ref m) if m.contains("overlaps network n1")), "{e}");
            let e = manager.create_network(&net("n1", "10.11.0.0/24")).await.unwrap_err();
            assert!(matches!(e, NetworkError::AlreadyExists { what: "network", .. }), "{e}");
            manager.attach(&rx).await.unwrap();
            let e = manager.remove_network("n1").await.unwrap_err();
            assert!(matches!(e, NetworkError::InUse { ref sandboxes, .. } if sandboxes.iter().any(|s| s == "x")), "{e}");
            let e = manager.attach(&ry).await.unwrap_err();
            assert!(matches!(e, NetworkError::Conflict(ref m) if m.contains("allocated to sandbox web")), "{e}");
            let e = manager.attach(&rz).await.unwrap_err();
            assert!(matches!(e, NetworkError::Conflict(ref m) if m.contains("another process")), "{e}");
            let e = manager.attach(&ry_missing).await.unwrap_err();
            assert!(matches!(e, NetworkError::NotFound { what: "network", .. }), "{e}");
            let e = manager.remove_network("bridge").await.unwrap_err();
            assert!(matches!(e, NetworkError::InvalidArgument(_)), "{e}");
            // A /30 has a single address besides the gateway.
            manager.create_network(&net("tiny", "10.12.0.0/30")).await.unwrap();
            manager.attach(&ry_tiny).await.unwrap();
            let e = manager.attach(&rz_tiny).await.unwrap_err();
            assert!(matches!(e, NetworkError::SubnetFull { .. }), "{e}");
            // Failed attaches left nothing: z and its would-be ports are free.
            assert!(manager.status("z").await.unwrap().is_none());
            for sandbox in ["x", "y", "web"] {
                manager.detach(sandbox).await.unwrap();
            }
            manager.remove_network("n1").await.unwrap();
            manager.remove_network("tiny").await.unwrap();
        })
    });
    let links = in_netns(&host, "ip -o link show").ok().stdout;
    assert!(!links.contains("br-"), "user bridges removed: {links}");
    assert!(in_netns(z.netns(), "ip link show eth0").code != 0);
}

#[test]
fn the_running_container_keeps_working_through_refused_requests() {
    let world = NetWorld::new();
    let (web, other) = (world.sandbox("web"), world.sandbox("other"));
    let (store_path, config, state) = (world.store_path(), world.config(), world.state_dir());
    let (good, clash) = (request(&web, &[], Some(8080)), request(&other, &[], Some(8080)));
    let host = world.host.path();
    world.in_host(move || {
        runtime().block_on(async {
            let store = Store::open(&store_path).unwrap();
            let manager = NetworkManager::open(store, config, &state).await.unwrap();
            manager.attach(&good).await.unwrap();
            let e = manager.attach(&good).await.unwrap_err();
            assert!(matches!(e, NetworkError::AlreadyExists { what: "sandbox network", .. }), "{e}");
            assert!(manager.attach(&clash).await.is_err());
            assert!(manager.create_network(&net("bad", "nonsense")).await.is_err());
        })
    });
    let _httpd = world.httpd(web.netns(), 80);
    let body = fetch(&world.outside.path(), &format!("http://{HOST_UPLINK}:8080/index.html"));
    assert_eq!(body.as_deref(), Some("hello from berth\n"));
    assert_eq!(nft_port_rules(&host, "berth").len(), 1);
}
