//! Docker networks through the real docker CLI: create with subnet, gateway, IP range
//! and labels, ls with filters, inspect with the attached containers, names and aliases
//! resolved between containers of a user network (from inside, with ping and wget),
//! isolation between networks and an internal network without a way out (checked with
//! traffic that must fail), connect and disconnect on running containers, `--ip`,
//! `--network none|host`, Docker's errors, events, prune, and networks and attachments
//! kept across a restart of berthd. The kernel's view (bridges, veths, nft rules) is
//! read in berthd's network namespace, and nothing is left there at the end.
use std::time::Duration;

use berth_integration::docker::DockerWorld;

fn inspect(docker: &DockerWorld, format: &str, what: &str) -> String {
    docker.docker(&["inspect", "-f", format, what]).ok().stdout.trim().to_string()
}

fn ip_on(docker: &DockerWorld, container: &str, network: &str) -> String {
    inspect(docker, &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"), container)
}

fn network_names(docker: &DockerWorld, filter: &[&str]) -> Vec<String> {
    let mut args = vec!["network", "ls", "--format", "{{.Name}}"];
    args.extend_from_slice(filter);
    let mut names: Vec<String> = docker.docker(&args).ok().stdout.lines().map(str::to_string).collect();
    names.sort();
    names
}

fn exec_ok(docker: &DockerWorld, container: &str, script: &str) -> bool {
    docker.docker(&["exec", container, "sh", "-c", script]).code == 0
}

/// The bridges, veths and berth nft rules in berthd's namespace.
fn kernel_view(docker: &DockerWorld) -> (String, String) {
    let links = docker.in_netns("ip -o link show").ok().stdout;
    let rules = docker.in_netns("nft list table inet berth 2>/dev/null || true").ok().stdout;
    (links, rules)
}

fn assert_nothing_left(docker: &DockerWorld) {
    let (links, rules) = kernel_view(docker);
    assert!(!links.contains("br-") && !links.contains("veth"), "links left behind:\n{links}");
    assert!(!rules.contains("br-"), "nft rules left behind:\n{rules}");
}

#[test]
fn user_networks_resolve_names_are_isolated_and_connect_live() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let start = chrono_now();
    let app = docker
        .docker(&["network", "create", "--subnet", "10.201.0.0/24", "--gateway", "10.201.0.1", "--ip-range", "10.201.0.128/25", "--label", "team=a", "appnet"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(app.len(), 64, "{app}");
    docker.docker(&["network", "create", "othernet"]).ok();
    docker.docker(&["network", "create", "--internal", "intnet"]).ok();
    let bridge = format!("br-{}", &app[..12]);
    let (links, _) = kernel_view(&docker);
    assert!(links.contains(&bridge), "no {bridge}:\n{links}");
    let addresses = docker.in_netns(&format!("ip -o -4 addr show {bridge}")).ok().stdout;
    assert!(addresses.contains("10.201.0.1/24"), "{addresses}");

    assert_eq!(network_names(&docker, &["--filter", "type=custom"]), ["appnet", "intnet", "othernet"]);
    assert_eq!(network_names(&docker, &["--filter", "type=builtin"]), ["bridge", "host", "none"]);
    assert_eq!(network_names(&docker, &["--filter", "label=team=a"]), ["appnet"]);
    assert_eq!(network_names(&docker, &["--filter", "driver=null"]), ["none"]);
    let ipam = inspect(&docker, "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}} {{.IPRange}}{{end}} {{.Labels.team}} {{.Internal}}", "appnet");
    assert_eq!(ipam, "10.201.0.0/24 10.201.0.1 10.201.0.128/25 a false");
    assert_eq!(inspect(&docker, "{{.Internal}} {{.Driver}}", "intnet"), "true bridge");

    docker.docker(&["run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www", "busybox", "busybox", "httpd", "-f", "-p", "8080", "-h", "/etc"]).ok();
    docker.docker(&["run", "-d", "--name", "client", "--network", "appnet", "--ip", "10.201.0.200", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "outsider", "--network", "othernet", "busybox", "sleep", "300"]).ok();
    let web_ip = ip_on(&docker, "web", "appnet");
    let last = web_ip.strip_prefix("10.201.0.").and_then(|l| l.parse::<u8>().ok()).unwrap_or(0);
    assert!(last >= 128, "not in the range: {web_ip}");
    assert_eq!(ip_on(&docker, "client", "appnet"), "10.201.0.200");
    let aliases = inspect(&docker, "{{range .NetworkSettings.Networks.appnet.Aliases}}{{.}}{{end}} {{.NetworkSettings.Networks.appnet.NetworkID}}", "web");
    assert_eq!(aliases, format!("www {app}"));
    let members = inspect(&docker, "{{range .Containers}}{{.Name}} {{end}}", "appnet");
    assert!(members.contains("web") && members.contains("client"), "{members}");

    assert!(exec_ok(&docker, "client", "busybox ping -c1 -W2 web"), "web is not reachable by name");
    let page = docker.docker(&["exec", "client", "busybox", "wget", "-qO-", "http://www:8080/hostname"]).ok().stdout;
    assert_eq!(page.trim(), inspect(&docker, "{{.Config.Hostname}}", "web"));
    let outsider_ip = ip_on(&docker, "outsider", "othernet");
    assert!(!exec_ok(&docker, "client", &format!("busybox ping -c1 -W1 {outsider_ip}")), "two networks reached each other");
    assert!(!exec_ok(&docker, "outsider", "busybox ping -c1 -W1 web"), "a name of another network resolved");

    docker.docker(&["network", "connect", "--alias", "bridgehead", "othernet", "client"]).ok();
    assert!(exec_ok(&docker, "client", &format!("busybox ping -c1 -W2 {outsider_ip}")), "connect did not plug othernet in");
    assert!(exec_ok(&docker, "outsider", "busybox ping -c1 -W2 bridgehead && busybox ping -c1 -W2 client"), "the peer's hosts did not learn the new endpoint");
    let eth1 = docker.docker(&["exec", "client", "busybox", "ip", "-o", "-4", "addr", "show", "eth1"]).ok().stdout;
    assert!(eth1.contains(&ip_on(&docker, "client", "othernet")), "{eth1}");
    let twice = docker.docker(&["network", "connect", "othernet", "client"]);
    assert!(twice.code != 0 && twice.stderr.contains("endpoint with name client already exists in network othernet"), "{twice}");
    docker.docker(&["network", "disconnect", "othernet", "client"]).ok();
    assert!(!exec_ok(&docker, "client", "busybox ip link show eth1"), "eth1 stayed");
    assert!(!exec_ok(&docker, "client", &format!("busybox ping -c1 -W1 {outsider_ip}")), "disconnect left a way to othernet");
    assert!(!exec_ok(&docker, "outsider", "busybox ping -c1 -W1 client"), "the peer's hosts still names client");

    internal_network_has_no_way_out(&docker);
    bad_input_gets_dockers_errors(&docker);

    for name in ["web", "client", "outsider", "inner"] {
        docker.docker(&["rm", "-f", name]).ok();
    }
    docker.docker(&["network", "rm", "appnet", "othernet", "intnet"]).ok();
    docker.docker(&["network", "create", "--label", "p=1", "prunable"]).ok();
    docker.docker(&["network", "create", "kept"]).ok();
    let pruned = docker.docker(&["network", "prune", "-f", "--filter", "label=p=1"]).ok().stdout;
    assert!(pruned.contains("prunable") && !pruned.contains("kept"), "{pruned}");
    docker.docker(&["network", "rm", "kept"]).ok();
    assert_eq!(network_names(&docker, &[]), ["bridge", "host", "none"]);
    events_were_published(&docker, start);
    assert_nothing_left(&docker);
}

fn internal_network_has_no_way_out(docker: &DockerWorld) {
    docker.docker(&["run", "-d", "--name", "inner", "--network", "intnet", "busybox", "sleep", "300"]).ok();
    let routes = docker.docker(&["exec", "inner", "busybox", "ip", "route"]).ok().stdout;
    assert!(!routes.contains("default"), "an internal network's container has a default route:\n{routes}");
    // A host address beyond the bridge: reachable from a normal network, not from intnet.
    assert!(exec_ok(docker, "outsider", "busybox ping -c1 -W2 10.201.0.1"), "the control ping failed");
    assert!(!exec_ok(docker, "inner", "busybox ping -c1 -W1 10.201.0.1"), "an internal network has a way out");
    let bridge = format!("br-{}", &inspect(docker, "{{.Id}}", "intnet")[..12]);
    let (_, rules) = kernel_view(docker);
    assert!(rules.contains(&format!("iifname \"{bridge}\" oifname != \"{bridge}\" drop")), "{rules}");
}

fn bad_input_gets_dockers_errors(docker: &DockerWorld) {
    let expect = |args: &[&str], message: &str| {
        let out = docker.docker(args);
        assert!(out.code != 0 && out.stderr.contains(message), "{args:?}: {out}");
    };
    expect(&["network", "rm", "appnet"], "has active endpoints");
    expect(&["network", "create", "appnet"], "network with name appnet already exists");
    expect(&["network", "create", "--subnet", "10.201.0.0/16", "overlapping"], "Pool overlaps with other one on this address space");
    expect(&["network", "connect", "nosuchnet", "client"], "network nosuchnet not found");
    expect(&["run", "--rm", "--network", "nosuchnet", "busybox", "true"], "network nosuchnet not found");
    expect(&["network", "create", "-d", "overlay", "ov"], "plugin \"overlay\" not found");
    expect(&["network", "create", "--ipv6", "six"], "IPv6 is not supported");
    expect(&["network", "rm", "bridge"], "bridge is a pre-defined network and cannot be removed");
    expect(&["run", "--rm", "--network", "appnet", "--ip", "10.201.0.200", "busybox", "true"], "Address already in use");
    expect(&["run", "--rm", "--ip", "172.30.0.9", "busybox", "true"], "user specified IP address is supported on user defined networks only");
    for half_made in ["overlapping", "ov", "six"] {
        assert!(docker.docker(&["network", "inspect", half_made]).code != 0, "{half_made} was made");
    }
    assert_eq!(docker.docker(&["ps", "-aq", "--filter", "status=created"]).ok().stdout.trim(), "", "a refused run left a container");
}

fn chrono_now() -> String {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    seconds.to_string()
}

fn events_were_published(docker: &DockerWorld, since: String) {
    let until = (chrono_now().parse::<u64>().unwrap_or(0) + 1).to_string();
    let events = docker.docker(&["events", "--since", &since, "--until", &until, "--filter", "type=network", "--format", "{{.Action}} {{.Actor.Attributes.name}}"]).ok().stdout;
    for expected in ["create appnet", "connect othernet", "disconnect othernet", "destroy appnet", "destroy prunable"] {
        assert!(events.contains(expected), "no {expected:?} in:\n{events}");
    }
}

#[test]
fn none_host_and_attachments_survive_a_restart() {
    let mut docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let links = docker.docker(&["run", "--rm", "--network", "none", "busybox", "busybox", "ip", "-o", "link"]).ok().stdout;
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:"), "{links}");
    let host_links = docker.docker(&["run", "--rm", "--network", "host", "busybox", "busybox", "ip", "-o", "link"]).ok().stdout;
    assert_eq!(host_links.lines().count(), docker.in_netns("ip -o link").ok().stdout.lines().count(), "{host_links}");
    assert_eq!(inspect(&docker, "{{range $k, $v := .Containers}}{{$k}}{{end}}", "none"), "");

    docker.docker(&["network", "create", "front"]).ok();
    docker.docker(&["network", "create", "back"]).ok();
    docker.docker(&["run", "-d", "--name", "a", "--network", "front", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "b", "--network", "back", "busybox", "sleep", "300"]).ok();
    docker.docker(&["network", "connect", "back", "a"]).ok();
    let joined = docker.docker(&["run", "--rm", "--network", "container:a", "busybox", "sh", "-c", "busybox hostname; busybox ip -o -4 addr show eth0"]).ok().stdout;
    assert!(joined.starts_with(&format!("{}\n", inspect(&docker, "{{.Config.Hostname}}", "a"))), "{joined}");
    assert!(joined.contains(&format!("{}/", ip_on(&docker, "a", "front"))), "container:a is not in a's namespace: {joined}");
    let conflicting = docker.docker(&["run", "--rm", "--network", "container:a", "-p", "8000:80", "busybox", "true"]);
    assert!(conflicting.code != 0 && conflicting.stderr.contains("conflicting options"), "{conflicting}");
    let on_back = docker.docker(&["ps", "--filter", "network=back", "--format", "{{.Names}}"]).ok().stdout;
    let mut on_back: Vec<&str> = on_back.split_whitespace().collect();
    on_back.sort();
    assert_eq!(on_back, ["a", "b"]);
    let before = inspect(&docker, "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}", "a");
    docker.world.daemon.stop();
    docker.world.daemon.spawn();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(network_names(&docker, &["--filter", "type=custom"]), ["back", "front"]);
    let after = inspect(&docker, "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}", "a");
    assert_eq!(after, before);
    assert!(after.contains("back=") && after.contains("front="), "{after}");
    assert!(exec_ok(&docker, "b", "busybox ping -c1 -W2 a"), "the connect did not survive the restart");
    docker.docker(&["network", "disconnect", "back", "a"]).ok();
    assert!(!exec_ok(&docker, "b", "busybox ping -c1 -W1 a"), "disconnect after a restart left the endpoint");
    docker.docker(&["rm", "-f", "a", "b"]).ok();
    docker.docker(&["network", "rm", "front", "back"]).ok();
    assert_nothing_left(&docker);
}
