//! Docker networking as dockerd behaves beyond the basics, through the real docker CLI:
//! `--link` (the embedded DNS on a user network, the hosts file and variables on the
//! default bridge, inspect, dockerd's errors), stopped containers that give their
//! endpoints back, aliases scoped to one network, and published ports that move to a
//! remaining network when theirs is disconnected. Checked from inside the containers
//! (busybox nslookup, ping, wget), from berthd's namespace (wget, ip, nft), and nothing
//! is left there at the end.
use berth_integration::docker::DockerWorld;

fn inspect(docker: &DockerWorld, format: &str, what: &str) -> String {
    docker.docker(&["inspect", "-f", format, what]).ok().stdout.trim().to_string()
}

fn ip_on(docker: &DockerWorld, container: &str, network: &str) -> String {
    inspect(docker, &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"), container)
}

fn exec_ok(docker: &DockerWorld, container: &str, script: &str) -> bool {
    docker.docker(&["exec", container, "sh", "-c", script]).code == 0
}

fn exec_out(docker: &DockerWorld, container: &str, script: &str) -> String {
    docker.docker(&["exec", container, "sh", "-c", script]).stdout
}

/// The addresses busybox's nslookup gives for `name` (empty when it does not resolve).
fn lookup(docker: &DockerWorld, container: &str, name: &str) -> Vec<String> {
    let out = exec_out(docker, container, &format!("busybox nslookup {name} 2>/dev/null"));
    let answers = out.split_once(&format!("Name:\t{name}")).or_else(|| out.split_once(&format!("Name:   {name}"))).map(|(_, rest)| rest.to_string());
    answers.unwrap_or_default().lines().filter_map(|l| l.trim().strip_prefix("Address:").map(|a| a.trim().to_string())).collect()
}

fn expect_error(docker: &DockerWorld, args: &[&str], message: &str) {
    let out = docker.docker(args);
    assert!(out.code != 0 && out.stderr.contains(message), "{args:?}: {out}");
}

fn assert_nothing_left(docker: &DockerWorld) {
    let links = docker.in_netns("ip -o link show").ok().stdout;
    assert!(!links.contains("br-") && !links.contains("veth"), "links left behind:\n{links}");
    let rules = docker.in_netns("nft list table inet berth 2>/dev/null || true").ok().stdout;
    assert!(!rules.contains("br-") && !rules.contains("dnat to"), "nft rules left behind:\n{rules}");
}

/// A docker world with busybox pulled and these user networks made.
fn world_with_networks(networks: &[&[&str]]) -> DockerWorld {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    for args in networks {
        let mut create = vec!["network", "create"];
        create.extend_from_slice(args);
        docker.docker(&create).ok();
    }
    docker
}

#[test]
fn links_resolve_for_the_linking_container_only() {
    let docker = world_with_networks(&[&["appnet"]]);
    docker.docker(&["run", "-d", "--name", "db", "--network", "appnet", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "web", "--network", "appnet", "--link", "db:primary", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "other", "--network", "appnet", "busybox", "sleep", "300"]).ok();
    let db_ip = ip_on(&docker, "db", "appnet");
    assert_eq!(lookup(&docker, "web", "primary"), [db_ip.clone()], "the link alias does not resolve from the linking container");
    assert!(exec_ok(&docker, "web", "busybox ping -c1 -W2 primary"), "primary is not reachable");
    assert_eq!(lookup(&docker, "other", "primary"), Vec::<String>::new(), "another container resolved the link alias");
    assert_eq!(inspect(&docker, "{{json .HostConfig.Links}} {{json .NetworkSettings.Networks.appnet.Links}}", "web"), r#"null ["db:primary"]"#);

    // The default bridge: the hosts file and the variables, dockerd's inspect form.
    docker.docker(&["run", "-d", "--name", "bdb", "-e", "SECRET=s3", "--expose", "5432", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "bweb", "--link", "bdb:pg", "busybox", "sleep", "300"]).ok();
    let bdb_ip = ip_on(&docker, "bdb", "bridge");
    let bdb_host = inspect(&docker, "{{.Config.Hostname}}", "bdb");
    let hosts = exec_out(&docker, "bweb", "cat /etc/hosts");
    assert!(hosts.lines().any(|l| l == format!("{bdb_ip}\tpg {bdb_host} bdb")), "no link entry for {bdb_ip} in:\n{hosts}");
    assert!(exec_ok(&docker, "bweb", "busybox ping -c1 -W2 pg"), "pg is not reachable");
    let env = exec_out(&docker, "bweb", "env");
    for wanted in ["PG_NAME=/bweb/pg".to_string(), format!("PG_PORT=tcp://{bdb_ip}:5432"), format!("PG_PORT_5432_TCP_ADDR={bdb_ip}"), "PG_PORT_5432_TCP_PROTO=tcp".into(), "PG_ENV_SECRET=s3".into()] {
        assert!(env.lines().any(|l| l == wanted), "no {wanted} in:\n{env}");
    }
    assert_eq!(inspect(&docker, "{{json .HostConfig.Links}}", "bweb"), r#"["/bdb:/bweb/pg"]"#);
    let plain_hosts = exec_out(&docker, "bdb", "cat /etc/hosts");
    assert!(!plain_hosts.contains("pg"), "the linked container got the link too:\n{plain_hosts}");

    expect_error(&docker, &["run", "--rm", "--link", "nosuch:x", "busybox", "true"], "could not get container for nosuch: No such container: nosuch");
    expect_error(&docker, &["run", "--rm", "--network", "appnet", "--link", "nosuch", "busybox", "true"], "could not get container for nosuch");
    expect_error(&docker, &["run", "--rm", "--network", "host", "--link", "bdb", "busybox", "true"], "host type networking can't be used with links");
    assert_eq!(docker.docker(&["ps", "-aq", "--filter", "status=created"]).ok().stdout.trim(), "", "a refused run left a container");
    docker.docker(&["stop", "-t", "0", "bdb"]).ok();
    docker.docker(&["create", "--name", "late", "--link", "bdb:pg", "busybox", "true"]).ok();
    expect_error(&docker, &["start", "late"], "Cannot link to a non running container: /bdb AS /late/pg");

    docker.docker(&["rm", "-f", "db", "web", "other", "bdb", "bweb", "late"]).ok();
    docker.docker(&["network", "rm", "appnet"]).ok();
    assert_nothing_left(&docker);
}

fn veth_count(docker: &DockerWorld) -> usize {
    docker.in_netns("ip -o link show type veth").ok().stdout.lines().count()
}

fn members(docker: &DockerWorld, network: &str) -> String {
    inspect(docker, "{{range .Containers}}{{.Name}} {{end}}", network)
}

#[test]
fn stopped_containers_give_their_endpoints_back() {
    let mut docker = world_with_networks(&[&["--subnet", "10.202.0.0/24", "relnet"]]);
    docker.docker(&["run", "-d", "--name", "keep", "--network", "relnet", "--ip", "10.202.0.50", "--network-alias", "kept", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "peer", "--network", "relnet", "busybox", "sleep", "300"]).ok();
    let veths = veth_count(&docker);
    assert!(exec_ok(&docker, "peer", "busybox ping -c1 -W2 kept"), "the control ping failed");

    docker.docker(&["stop", "-t", "0", "keep"]).ok();
    assert_eq!(veth_count(&docker), veths - 1, "the stopped container kept its veth");
    assert_eq!(members(&docker, "relnet"), "peer", "network inspect lists a stopped container");
    let shown = inspect(&docker, "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}:{{$v.IPAddress}}:{{$v.IPAMConfig.IPv4Address}}:{{$v.Aliases}}{{end}}", "keep");
    assert_eq!(shown, "relnet::10.202.0.50:[kept]", "a stopped container's configured network");
    assert_eq!(lookup(&docker, "peer", "keep"), Vec::<String>::new(), "a stopped container's name still resolves");
    let borrowed = docker.docker(&["run", "--rm", "--network", "relnet", "--ip", "10.202.0.50", "busybox", "busybox", "ip", "-o", "-4", "addr", "show", "eth0"]).ok().stdout;
    assert!(borrowed.contains("10.202.0.50/24"), "the stopped container's address was not given back: {borrowed}");

    // A restart of berthd in between: the start takes the configured address again.
    docker.world.daemon.stop();
    docker.world.daemon.spawn();
    std::thread::sleep(std::time::Duration::from_secs(1));
    docker.docker(&["start", "keep"]).ok();
    assert_eq!(ip_on(&docker, "keep", "relnet"), "10.202.0.50");
    assert_eq!(veth_count(&docker), veths);
    assert!(exec_ok(&docker, "peer", "busybox ping -c1 -W2 kept"), "the started container is not reachable by its alias");
    let listed: Vec<String> = members(&docker, "relnet").split_whitespace().map(str::to_string).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");

    // A network can go while a stopped container is configured on it; its start then fails.
    docker.docker(&["stop", "-t", "0", "keep", "peer"]).ok();
    docker.docker(&["network", "rm", "relnet"]).ok();
    expect_error(&docker, &["start", "keep"], "network relnet not found");
    assert_eq!(inspect(&docker, "{{.State.Status}}", "keep"), "exited");
    // One that exits by itself gives its endpoint back too.
    docker.docker(&["network", "create", "quicknet"]).ok();
    docker.docker(&["run", "--name", "quick", "--network", "quicknet", "busybox", "true"]).ok();
    docker.docker(&["network", "rm", "quicknet"]).ok();
    docker.docker(&["rm", "-f", "keep", "peer", "quick"]).ok();
    assert_nothing_left(&docker);
}

#[test]
fn aliases_answer_on_their_own_network_only() {
    let docker = world_with_networks(&[&["one"], &["two"]]);
    let id = docker.docker(&["run", "-d", "--name", "multi", "--network", "one", "--network-alias", "alias1", "busybox", "sleep", "300"]).ok().stdout.trim().to_string();
    docker.docker(&["network", "connect", "--alias", "alias2", "two", "multi"]).ok();
    docker.docker(&["run", "-d", "--name", "p1", "--network", "one", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "p2", "--network", "two", "busybox", "sleep", "300"]).ok();
    let (on_one, on_two) = (ip_on(&docker, "multi", "one"), ip_on(&docker, "multi", "two"));
    assert_eq!(lookup(&docker, "p1", "alias1"), [on_one.clone()]);
    assert_eq!(lookup(&docker, "p2", "alias2"), [on_two.clone()]);
    assert_eq!(lookup(&docker, "p1", "alias2"), Vec::<String>::new(), "an alias of network two resolved on network one");
    assert_eq!(lookup(&docker, "p2", "alias1"), Vec::<String>::new(), "an alias of network one resolved on network two");
    assert_eq!(lookup(&docker, "p2", "multi"), [on_two], "the name resolves to the address on the peer's network");
    let hosts = exec_out(&docker, "p2", "cat /etc/hosts");
    assert!(!hosts.contains("alias1") && hosts.contains("alias2"), "p2's hosts file:\n{hosts}");

    let short = &id[..12];
    let dns_names = |network: &str| inspect(&docker, &format!("{{{{json (index .NetworkSettings.Networks \"{network}\").DNSNames}}}}"), "multi");
    assert_eq!(dns_names("one"), format!(r#"["multi","alias1","{short}"]"#));
    assert_eq!(dns_names("two"), format!(r#"["multi","alias2","{short}"]"#));
    let aliases = |network: &str| inspect(&docker, &format!("{{{{range (index .NetworkSettings.Networks \"{network}\").Aliases}}}}{{{{.}}}} {{{{end}}}}"), "multi");
    assert!(aliases("one").contains("alias1") && !aliases("one").contains("alias2"), "{}", aliases("one"));
    assert!(aliases("two").contains("alias2") && !aliases("two").contains("alias1"), "{}", aliases("two"));

    docker.docker(&["rm", "-f", "multi", "p1", "p2"]).ok();
    docker.docker(&["network", "rm", "one", "two"]).ok();
    assert_nothing_left(&docker);
}

/// The page of the container's httpd through the published host port, from berthd's
/// namespace (empty when it does not answer within a few tries).
fn published_page(docker: &DockerWorld, port: u16) -> String {
    for _ in 0..20 {
        let page = docker.in_netns(&format!("curl -s -m 2 http://127.0.0.1:{port}/hostname || true")).stdout.trim().to_string();
        if !page.is_empty() {
            return page;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    String::new()
}

fn dnat_target(docker: &DockerWorld, port: u16) -> String {
    let rules = docker.in_netns("nft list table inet berth 2>/dev/null || true").ok().stdout;
    let line = rules.lines().find(|l| l.contains(&format!("dport {port}")) && l.contains("dnat")).unwrap_or("");
    line.split("dnat").nth(1).unwrap_or("").to_string()
}

#[test]
fn published_ports_move_to_a_network_left() {
    let docker = world_with_networks(&[&["carrier"], &["spare"]]);
    let port = 18467;
    let publish = format!("{port}:8080");
    docker.docker(&["run", "-d", "--name", "site", "--network", "carrier", "-p", &publish, "busybox", "busybox", "httpd", "-f", "-p", "8080", "-h", "/etc"]).ok();
    docker.docker(&["network", "connect", "spare", "site"]).ok();
    let hostname = inspect(&docker, "{{.Config.Hostname}}", "site");
    assert_eq!(published_page(&docker, port), hostname, "the control request failed");
    assert!(dnat_target(&docker, port).contains(&ip_on(&docker, "site", "carrier")), "{}", dnat_target(&docker, port));

    docker.docker(&["network", "disconnect", "carrier", "site"]).ok();
    let spare_ip = ip_on(&docker, "site", "spare");
    assert!(dnat_target(&docker, port).contains(&spare_ip), "the ports did not move to spare ({spare_ip}): {}", dnat_target(&docker, port));
    assert_eq!(published_page(&docker, port), hostname, "the published port died with its network");

    docker.docker(&["network", "connect", "carrier", "site"]).ok();
    docker.docker(&["network", "disconnect", "spare", "site"]).ok();
    let carrier_ip = ip_on(&docker, "site", "carrier");
    assert!(dnat_target(&docker, port).contains(&carrier_ip), "the ports did not move back ({carrier_ip}): {}", dnat_target(&docker, port));
    assert_eq!(published_page(&docker, port), hostname, "the published port did not come back");
    assert_eq!(inspect(&docker, "{{json .NetworkSettings.Ports}}", "site"), format!(r#"{{"8080/tcp":[{{"HostIp":"0.0.0.0","HostPort":"{port}"}}]}}"#));

    docker.docker(&["rm", "-f", "site"]).ok();
    docker.docker(&["network", "rm", "carrier", "spare"]).ok();
    assert_nothing_left(&docker);
}
