//! User-defined bridge networks: containers on the same one reach each other by name
//! (`ping` and an HTTP fetch through the generated hosts file, bind-mounted on
//! /etc/hosts as a container has it), different networks are isolated from each other
//! and from the default bridge, and a container on two networks has eth0 and eth1.
use berth::network::{AttachRequest, CreateNetwork, NetworkManager};
use berth::store::Store;
use berth_integration::networld::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn request(sandbox: &Sandbox, networks: &[&str], aliases: &[&str]) -> AttachRequest {
    AttachRequest {
        sandbox_id: sandbox.id.clone(),
        netns_path: sandbox.path.clone(),
        networks: networks.iter().map(|n| n.to_string()).collect(),
        hostname: sandbox.id.clone(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        files_dir: Some(sandbox.files.clone()),
        ..Default::default()
    }
}

fn can_ping(netns: &str, ip: &str) -> bool {
    in_netns(netns, &format!("busybox ping -c1 -W1 {ip}")).success()
}

#[test]
fn containers_on_a_user_network_resolve_each_other_and_networks_are_isolated() {
    let world = NetWorld::new();
    let (alpha, beta, gamma) = (world.sandbox("alpha"), world.sandbox("beta"), world.sandbox("gamma"));
    let (delta, multi) = (world.sandbox("delta"), world.sandbox("multi"));
    let requests = [
        request(&alpha, &["app"], &["db"]),
        request(&beta, &["app"], &[]),
        request(&gamma, &[], &[]),
        request(&delta, &["other"], &[]),
        request(&multi, &["app", "other"], &[]),
    ];
    let (store_path, config, state) = (world.store_path(), world.config(), world.state_dir());
    let ips = world.in_host(move || {
        runtime().block_on(async {
            let manager = NetworkManager::open(Store::open(&store_path).unwrap(), config, &state).await.unwrap();
            let app = CreateNetwork { name: "app".into(), ..Default::default() };
            let other = CreateNetwork { name: "other".into(), ..Default::default() };
            let app = manager.create_network(&app).await.unwrap();
            manager.create_network(&other).await.unwrap();
            assert_eq!(app.subnet.to_string(), "172.18.0.0/24");
            let mut ips = Vec::new();
            for request in &requests {
                let attachment = manager.attach(request).await.unwrap();
                ips.push(attachment.interfaces.iter().map(|i| i.ip.to_string()).collect::<Vec<_>>());
            }
            ips
        })
    });
    assert_eq!(ips[0], vec!["172.18.0.2"]);
    assert_eq!(ips[3], vec!["172.18.1.2"]);
    assert_eq!(ips[4], vec!["172.18.0.4", "172.18.1.3"]);
    assert_eq!(ip_json(multi.netns(), "addr show dev eth1")[0]["addr_info"][0]["local"], "172.18.1.3");

    let hosts = std::fs::read_to_string(beta.files.join("hosts")).unwrap();
    assert!(hosts.contains("172.18.0.2\talpha db\n"), "{hosts}");
    assert!(hosts.contains("172.18.0.3\tbeta\n"), "{hosts}");
    assert!(std::fs::read_to_string(beta.files.join("hostname")).unwrap() == "beta\n");
    assert!(std::fs::read_to_string(beta.files.join("resolv.conf")).unwrap().contains("nameserver"));

    let _httpd = world.httpd(alpha.netns(), 80);
    let by_name = with_hosts_file(beta.netns(), &beta.files, "busybox ping -c1 -W2 alpha && curl -sf -m3 http://db/index.html");
    assert!(by_name.success() && by_name.stdout.contains("hello from berth"), "{by_name}");
    let from_multi = with_hosts_file(multi.netns(), &multi.files, "busybox ping -c1 -W2 alpha && busybox ping -c1 -W2 delta");
    assert!(from_multi.success(), "{from_multi}");
    // The default bridge and the other network cannot reach the app network.
    assert!(!can_ping(gamma.netns(), "172.18.0.2"));
    assert!(!can_ping(delta.netns(), "172.18.0.2"));
    assert!(can_ping(delta.netns(), "172.18.1.3"));

    // beta leaves: alpha's hosts file (same inode) forgets it; then the network goes.
    let (store_path, config, state) = (world.store_path(), world.config(), world.state_dir());
    let alpha_hosts = alpha.files.join("hosts");
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&alpha_hosts).unwrap());
    world.in_host(move || {
        runtime().block_on(async {
            let manager = NetworkManager::open(Store::open(&store_path).unwrap(), config, &state).await.unwrap();
            manager.reconcile(&["alpha".into(), "beta".into(), "gamma".into(), "delta".into(), "multi".into()]).await.unwrap();
            manager.detach("beta").await.unwrap();
            let hosts = std::fs::read_to_string(&alpha_hosts).unwrap();
            assert!(!hosts.contains("beta"), "{hosts}");
            assert_eq!(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&alpha_hosts).unwrap()), inode);
            for sandbox in ["alpha", "gamma", "delta", "multi"] {
                manager.detach(sandbox).await.unwrap();
            }
            manager.remove_network("app").await.unwrap();
            manager.remove_network("other").await.unwrap();
            assert_eq!(manager.list_networks().await.unwrap().len(), 1);
        })
    });
    let links = in_netns(&world.host.path(), "ip -o link show").ok().stdout;
    assert!(!links.contains("br-") && !links.contains("vethac12"), "{links}");
}
