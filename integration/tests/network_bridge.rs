//! The built-in bridge driver against the kernel: addresses, routes and rules as `ip`
//! and `nft` show them, and real traffic between namespaces (masquerade, published ports
//! from outside, from the host via its address and 127.0.0.1, hairpin), teardown, and
//! IPAM plus rules after a crash and restart.
use berth::network::{AttachRequest, NetworkManager, PortMapping, Protocol};
use berth::store::Store;
use berth_integration::networld::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn request(sandbox: &Sandbox, ports: &[(u16, u16)]) -> AttachRequest {
    AttachRequest {
        sandbox_id: sandbox.id.clone(),
        netns_path: sandbox.path.clone(),
        port_mappings: ports
            .iter()
            .map(|(host, container)| PortMapping {
                protocol: Protocol::Tcp,
                container_port: *container,
                host_port: *host,
                host_ip: None,
            })
            .collect(),
        hostname: sandbox.id.clone(),
        ..Default::default()
    }
}

fn addresses(netns: &str, dev: &str) -> Vec<String> {
    ipv4_addresses(netns, dev)
}

#[test]
fn attach_plumbs_eth0_and_published_ports_work_from_everywhere() {
    let world = NetWorld::new();
    let web = world.sandbox("web");
    let client = world.sandbox("client");
    let host = world.host.path();
    let (store_path, config, state) = (world.store_path(), world.config(), world.state_dir());
    let (mut web_req, client_req) = (request(&web, &[(8080, 80)]), request(&client, &[]));
    web_req.port_mappings.push(PortMapping {
        protocol: Protocol::Udp,
        container_port: 53,
        host_port: 5353,
        host_ip: Some("127.0.0.1".parse().unwrap()),
    });
    let (web_ip, client_ip) = world.in_host(move || {
        runtime().block_on(async {
            let store = Store::open(&store_path).unwrap();
            let manager = NetworkManager::open(store, config, &state).await.unwrap();
            let web = manager.attach(&web_req).await.unwrap();
            let client = manager.attach(&client_req).await.unwrap();
            assert_eq!(manager.ip_of("web").await.unwrap(), web.ip());
            // berth holds the published host ports while the mappings exist.
            assert!(std::net::UdpSocket::bind("127.0.0.1:5353").is_err());
            assert!(std::net::TcpListener::bind("0.0.0.0:8080").is_err());
            (web.ip().unwrap(), client.ip().unwrap())
        })
    });
    assert_eq!(web_ip.to_string(), "172.17.0.2");
    assert_eq!(client_ip.to_string(), "172.17.0.3");

    // The kernel's view.
    assert_eq!(addresses(&host, "docker0"), vec!["172.17.0.1/16"]);
    assert_eq!(addresses(web.netns(), "eth0"), vec!["172.17.0.2/16"]);
    let routes = ip_json(web.netns(), "route show default");
    assert_eq!(routes[0]["gateway"], "172.17.0.1", "{routes}");
    assert_eq!(routes[0]["dev"], "eth0");
    let lo = ip_json(web.netns(), "link show lo");
    assert!(lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{lo}");
    assert_eq!(in_netns(&host, "cat /proc/sys/net/ipv4/ip_forward").stdout.trim(), "1");
    let veth = ip_json(&host, "link show vethac110002");
    assert_eq!(veth[0]["master"], "docker0", "{veth}");
    let dnat = nft_port_rules(&host, "berth");
    assert_eq!(dnat.len(), 2, "{dnat:?}");
    assert!(dnat[0].to_string().contains("\"dnat\"") && dnat[0].to_string().contains("8080"), "{dnat:?}");
    let udp = dnat[1].to_string();
    assert!(udp.contains("127.0.0.1") && udp.contains("5353") && udp.contains("\"port\":53"), "{udp}");

    let _httpd = world.httpd(web.netns(), 80);
    let _outside_httpd = world.httpd(&world.outside.path(), 80);
    let hello = Some("hello from berth\n".to_string());
    // Masquerade: the outside namespace has no route to 172.17/16, so a reply only
    // comes back when the source was rewritten to the host's uplink address.
    assert_eq!(fetch(client.netns(), &format!("http://{OUTSIDE_IP}/index.html")), hello);
    // Published port: from another machine, from the host (uplink and 127.0.0.1),
    // from another container and from the container itself (hairpin).
    assert_eq!(fetch(&world.outside.path(), &format!("http://{HOST_UPLINK}:8080/index.html")), hello);
    assert_eq!(fetch(&host, &format!("http://{HOST_UPLINK}:8080/index.html")), hello);
    assert_eq!(fetch(&host, "http://127.0.0.1:8080/index.html"), hello);
    assert_eq!(fetch(client.netns(), "http://172.17.0.1:8080/index.html"), hello);
    assert_eq!(fetch(web.netns(), &format!("http://{HOST_UPLINK}:8080/index.html")), hello);
    assert_eq!(fetch(client.netns(), "http://172.17.0.2/index.html"), hello);

    // Teardown removes the veth, the interface and the rules; detach is idempotent.
    let (store_path, config, state) = (world.store_path(), world.config(), world.state_dir());
    world.in_host(move || {
        runtime().block_on(async {
            let store = Store::open(&store_path).unwrap();
            let manager = NetworkManager::open(store, config, &state).await.unwrap();
            manager.reconcile(&["web".into(), "client".into()]).await.unwrap();
            manager.detach("web").await.unwrap();
            manager.detach("web").await.unwrap();
            assert_eq!(manager.status("web").await.unwrap(), None);
            manager.detach("client").await.unwrap();
        })
    });
    assert!(in_netns(&host, "ip link show vethac110002").failed().stderr.contains("does not exist"));
    assert!(in_netns(web.netns(), "ip link show eth0").failed().code != 0);
    assert!(nft_port_rules(&host, "berth").is_empty());
    assert_eq!(fetch(&world.outside.path(), &format!("http://{HOST_UPLINK}:8080/index.html")), None);
}

fn open_manager(world: &NetWorld) -> impl FnOnce() -> (tokio::runtime::Runtime, NetworkManager) {
    let (store_path, config, state) = (world.store_path(), world.config(), world.state_dir());
    move || {
        let rt = runtime();
        let manager = rt.block_on(async {
            let store = Store::open(&store_path).unwrap();
            NetworkManager::open(store, config, &state).await.unwrap()
        });
        (rt, manager)
    }
}

#[test]
fn after_a_crash_reconcile_keeps_exactly_what_live_sandboxes_need() {
    let world = NetWorld::new();
    let (a, b, c, d) = (world.sandbox("a"), world.sandbox("b"), world.sandbox("c"), world.sandbox("d"));
    let host = world.host.path();
    let (ra, rb) = (request(&a, &[(8081, 80)]), request(&b, &[(8082, 80)]));
    let open = open_manager(&world);
    world.in_host(move || {
        let (rt, manager) = open();
        rt.block_on(async {
            manager.attach(&ra).await.unwrap();
            manager.attach(&rb).await.unwrap();
        });
        // The daemon dies here: no detach.
    });
    // Sandbox a died with it; its interface is gone, its veth too.
    berth::network::remove_pinned_netns(&a.path).unwrap();
    let (rc, rd) = (request(&c, &[]), request(&d, &[(8081, 80)]));
    let open = open_manager(&world);
    let (ip_c, ip_d) = world.in_host(move || {
        let (rt, manager) = open();
        rt.block_on(async {
            // Before reconcile the dead sandbox's address and port are still held.
            let ip_c = manager.attach(&rc).await.unwrap().ip().unwrap();
            assert!(manager.attach(&rd).await.is_err(), "port 8081 is still a's");
            manager.reconcile(&["b".into(), "c".into()]).await.unwrap();
            let ip_d = manager.attach(&rd).await.unwrap().ip().unwrap();
            (ip_c, ip_d)
        })
    });
    assert_eq!(ip_c.to_string(), "172.17.0.4");
    assert_eq!(ip_d.to_string(), "172.17.0.2", "the dead sandbox's address is free again");
    let dnat = nft_port_rules(&host, "berth");
    assert_eq!(dnat.len(), 2, "one rule per live published port, no duplicates: {dnat:?}");
    assert_eq!(nft_rules(&host, "berth", "postrouting").len(), 3);
    let _httpd_b = world.httpd(b.netns(), 80);
    let _httpd_d = world.httpd(d.netns(), 80);
    let hello = Some("hello from berth\n".to_string());
    assert_eq!(fetch(&world.outside.path(), &format!("http://{HOST_UPLINK}:8082/index.html")), hello);
    assert_eq!(fetch(&world.outside.path(), &format!("http://{HOST_UPLINK}:8081/index.html")), hello);
    let open = open_manager(&world);
    world.in_host(move || {
        let (rt, manager) = open();
        rt.block_on(async {
            manager.reconcile(&[]).await.unwrap();
            assert!(manager.status("b").await.unwrap().is_none());
        })
    });
    assert!(nft_port_rules(&host, "berth").is_empty());
    let links = in_netns(&host, "ip -o link show type veth").ok().stdout;
    assert!(!links.contains("vethac11"), "{links}");
}

/// `(chain, handle)` of every rule in berth's table, and the table's own handle (a new
/// one each time the table is replaced).
fn rule_handles(netns: &str) -> (u64, Vec<(String, u64)>) {
    let ruleset = nft_json(netns);
    let items = ruleset["nftables"].as_array().cloned().unwrap_or_default();
    let table = items.iter().filter_map(|i| i.get("table")).find(|t| t["name"] == "berth").and_then(|t| t["handle"].as_u64()).expect("berth's table");
    let rules = items
        .iter()
        .filter_map(|i| i.get("rule"))
        .filter(|r| r["table"] == "berth")
        .map(|r| (r["chain"].as_str().unwrap_or_default().to_string(), r["handle"].as_u64().unwrap_or_default()))
        .collect();
    (table, rules)
}

#[test]
fn a_port_change_touches_only_its_endpoints_chain_and_a_flushed_table_is_rebuilt() {
    let world = NetWorld::new();
    let (a, b, c) = (world.sandbox("pa"), world.sandbox("pb"), world.sandbox("pc"));
    let host = world.host.path();
    let (ra, rb, rc) = (request(&a, &[(8091, 80)]), request(&b, &[(8092, 80)]), request(&c, &[(8093, 80)]));
    let open = open_manager(&world);
    let (host_for_checks, before) = (host.clone(), std::sync::Arc::new(std::sync::Mutex::new(None)));
    let seen = before.clone();
    world.in_host(move || {
        let (rt, manager) = open();
        rt.block_on(async {
            manager.attach(&ra).await.unwrap();
            *seen.lock().unwrap() = Some(rule_handles(&host_for_checks));
            manager.attach(&rb).await.unwrap();
            manager.detach("pa").await.unwrap();
            let (table, rules) = rule_handles(&host_for_checks);
            let (table_before, rules_before) = seen.lock().unwrap().clone().unwrap();
            assert_eq!(table, table_before, "the table was replaced for a port change");
            let unchanged = |chain: &str| rules.iter().filter(|(c, _)| c == chain).eq(rules_before.iter().filter(|(c, _)| c == chain));
            for chain in ["prerouting", "output", "postrouting", "forward"] {
                assert!(unchanged(chain), "{chain} was rewritten: {rules_before:?} -> {rules:?}");
            }
            assert!(!rules.iter().any(|(c, _)| c == "ports-vethac110002"), "a's chain is gone: {rules:?}");
            assert_eq!(rules.iter().filter(|(c, _)| c == "ports").count(), 1, "one jump, to b: {rules:?}");
            // Someone deletes the table: the next change rebuilds it whole.
            in_netns(&host_for_checks, "nft delete table inet berth").ok();
            manager.attach(&rc).await.unwrap();
            assert_eq!(nft_port_rules(&host_for_checks, "berth").len(), 2, "b's and c's ports");
            assert_eq!(nft_rules(&host_for_checks, "berth", "postrouting").len(), 3);
            manager.detach("pb").await.unwrap();
            manager.detach("pc").await.unwrap();
        })
    });
    assert!(nft_port_rules(&host, "berth").is_empty());
    assert!(nft_rules(&host, "berth", "ports").is_empty());
}
