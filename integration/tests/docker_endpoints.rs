//! Docker endpoints as dockerd holds them, through the real docker CLI: a created
//! container holds no endpoint (no veth, address, IPAM record or nft rule), also
//! across a berthd restart; published ports are checked when a container starts, and
//! against running containers only, with dockerd's message; a refused start leaves the
//! container created and nothing in the kernel. And the cost of `docker network ls`
//! and `network rm` beside many stopped containers.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_integration::berthd::Berthd;
use berth_integration::docker::DockerWorld;

fn inspect(docker: &DockerWorld, format: &str, what: &str) -> String {
    docker.docker(&["inspect", "-f", format, what]).ok().stdout.trim().to_string()
}

fn veth_count(docker: &DockerWorld) -> usize {
    docker.in_netns("ip -o link show type veth").ok().stdout.lines().count()
}

/// The DNAT rules of berth's nft table that mention host port `port`.
fn dnat_rules(docker: &DockerWorld, port: u16) -> Vec<String> {
    let rules = docker.in_netns("nft list table inet berth 2>/dev/null || true").ok().stdout;
    rules.lines().filter(|l| l.contains(&format!("dport {port}")) && l.contains("dnat")).map(|l| l.trim().to_string()).collect()
}

/// The IPAM allocations in the daemon's store (read while it is stopped).
fn ipam_allocations(daemon: &Berthd) -> BTreeSet<String> {
    let store = berth::store::Store::open(&daemon.root().join("meta.redb")).expect("open the daemon's store");
    let table: berth::store::Table<serde_json::Value> = berth::store::Table::new("network.ipam");
    store.list(table).expect("IPAM records").into_iter().map(|(key, owner)| format!("{key} {owner}")).collect()
}

/// The page of busybox httpd behind host port `port`, from berthd's namespace.
fn published_page(docker: &DockerWorld, port: u16) -> String {
    for _ in 0..20 {
        let page = docker.in_netns(&format!("curl -s -m 2 http://127.0.0.1:{port}/hostname || true")).stdout.trim().to_string();
        if !page.is_empty() {
            return page;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    String::new()
}

/// The HTTP status and body of `POST /containers/NAME/start` on berthd's socket.
fn start_over_http(docker: &DockerWorld, name: &str) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "--unix-socket"])
        .arg(docker.socket())
        .arg(format!("http://localhost/v1.50/containers/{name}/start"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

fn assert_nothing_left(docker: &DockerWorld) {
    let links = docker.in_netns("ip -o link show").ok().stdout;
    assert!(!links.contains("br-") && !links.contains("veth"), "links left behind:\n{links}");
    let rules = docker.in_netns("nft list table inet berth 2>/dev/null || true").ok().stdout;
    assert!(!rules.contains("br-") && !rules.contains("dnat to"), "nft rules left behind:\n{rules}");
}

fn httpd(name: &str, publish: &str) -> Vec<String> {
    ["create", "--name", name, "-p", publish, "busybox", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"].iter().map(|s| s.to_string()).collect()
}

/// `docker run FLAG ...` for the arguments of a `create`.
fn run_args(flag: &str, create: &[String]) -> Vec<String> {
    ["run".to_string(), flag.to_string()].into_iter().chain(create[1..].iter().cloned()).collect()
}

fn run(docker: &DockerWorld, args: &[String]) -> berth_integration::command::CmdOutput {
    docker.docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn published_ports_are_taken_at_start_by_running_containers_only() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let port = 18093;
    let publish = format!("{port}:80");
    run(&docker, &httpd("a", &publish)).ok();
    run(&docker, &httpd("b", &publish)).ok();
    assert_eq!(veth_count(&docker), 0, "created containers hold veths");
    assert!(dnat_rules(&docker, port).is_empty(), "created containers hold nft rules: {:?}", dnat_rules(&docker, port));

    docker.docker(&["start", "a"]).ok();
    let a_host = inspect(&docker, "{{.Config.Hostname}}", "a");
    assert_eq!(published_page(&docker, port), a_host, "a's published port does not answer");
    let b_id = inspect(&docker, "{{.Id}}", "b");
    let out = docker.docker(&["start", "b"]);
    let message = format!("Bind for 0.0.0.0:{port} failed: port is already allocated");
    assert!(out.code != 0 && out.stderr.contains("driver failed programming external connectivity on endpoint b (") && out.stderr.contains(&message), "{out}");
    assert!(!out.stderr.contains(&b_id), "the endpoint id is the container's id: {out}");
    let (status, body) = start_over_http(&docker, "b");
    assert_eq!(status, "500", "{body}");
    assert!(body.contains(&message), "{body}");
    assert_eq!(inspect(&docker, "{{.State.Status}} [{{.NetworkSettings.IPAddress}}]", "b"), "created []");
    assert_eq!(veth_count(&docker), 1, "the refused start left a veth");
    assert_eq!(dnat_rules(&docker, port).len(), 1, "{:?}", dnat_rules(&docker, port));
    assert_eq!(published_page(&docker, port), a_host, "the refused start took a's port");

    // `docker run` on a taken port: created and left (without --rm), gone with --rm.
    let out = run(&docker, &run_args("-d", &httpd("c", &publish)));
    assert!(out.code == 125 && out.stderr.contains(&message), "{out}");
    assert_eq!(inspect(&docker, "{{.State.Status}}", "c"), "created");
    let out = run(&docker, &run_args("--rm", &httpd("gone", &publish)));
    assert!(out.code == 125 && out.stderr.contains(&message), "{out}");
    assert!(docker.docker(&["inspect", "--type", "container", "gone"]).code != 0, "a refused run --rm left its container");
    assert_eq!(veth_count(&docker), 1);

    // Once a stops, its port is free: b starts, and a stopped a blocks nothing.
    docker.docker(&["stop", "-t", "0", "a"]).ok();
    docker.docker(&["start", "b"]).ok();
    assert_eq!(published_page(&docker, port), inspect(&docker, "{{.Config.Hostname}}", "b"), "b does not serve the port");
    docker.docker(&["stop", "-t", "0", "b"]).ok();
    run(&docker, &httpd("e", &publish)).ok();
    docker.docker(&["start", "e"]).ok();
    assert_eq!(dnat_rules(&docker, port).len(), 1, "{:?}", dnat_rules(&docker, port));
    docker.docker(&["rm", "-f", "a", "b", "c", "e"]).ok();
    assert_nothing_left(&docker);
}

#[test]
fn created_containers_hold_no_endpoint() {
    let mut docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["network", "create", "--subnet", "10.203.0.0/24", "heldnet"]).ok();
    docker.docker(&["create", "--name", "plain", "busybox", "sleep", "300"]).ok();
    docker.docker(&["create", "--name", "fixed", "--network", "heldnet", "--ip", "10.203.0.9", "-p", "18094:80", "busybox", "sleep", "300"]).ok();
    docker.docker(&["create", "--name", "spare", "--network", "heldnet", "busybox", "sleep", "300"]).ok();
    let check_unplugged = |docker: &DockerWorld, when: &str| {
        assert_eq!(veth_count(docker), 0, "{when}: created containers hold veths");
        assert!(dnat_rules(docker, 18094).is_empty(), "{when}: a created container holds nft rules");
        for name in ["plain", "fixed", "spare"] {
            let shown = inspect(docker, "{{.State.Status}} [{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}]", name);
            assert_eq!(shown, "created []", "{when}: {name}");
        }
    };
    check_unplugged(&docker, "after create");

    docker.world.daemon.stop();
    let ipam = ipam_allocations(&docker.world.daemon);
    assert!(ipam.is_empty(), "created containers hold addresses: {ipam:?}");
    docker.world.daemon.spawn();
    std::thread::sleep(Duration::from_secs(1));
    check_unplugged(&docker, "after a restart");

    docker.docker(&["start", "fixed"]).ok();
    assert_eq!(inspect(&docker, "{{.NetworkSettings.Networks.heldnet.IPAddress}}", "fixed"), "10.203.0.9");
    assert_eq!(veth_count(&docker), 1);
    assert_eq!(dnat_rules(&docker, 18094).len(), 1);
    assert_eq!(inspect(&docker, "{{range .Containers}}{{.Name}} {{end}}", "heldnet"), "fixed", "network inspect lists created containers");
    docker.docker(&["rm", "-f", "plain", "fixed", "spare"]).ok();
    docker.docker(&["network", "rm", "heldnet"]).ok();
    assert_nothing_left(&docker);
    docker.world.daemon.stop();
    assert!(ipam_allocations(&docker.world.daemon).is_empty(), "addresses left behind");
    docker.world.daemon.spawn();
}

fn median_millis(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}

/// Times `docker network ls` and `network rm` beside 50 stopped
/// containers (prints the medians), and checks that none of them holds an endpoint.
#[test]
fn network_calls_beside_many_stopped_containers() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["network", "create", "crowd"]).ok();
    for i in 0..50 {
        let name = format!("stopped{i}");
        docker.docker(&["run", "--name", &name, "--network", if i % 2 == 0 { "crowd" } else { "bridge" }, "busybox", "true"]).ok();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while veth_count(&docker) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(veth_count(&docker), 0, "stopped containers hold veths");
    let mut listing = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        docker.docker(&["network", "ls"]).ok();
        listing.push(started.elapsed());
    }
    let mut removals = Vec::new();
    for _ in 0..21 {
        docker.docker(&["network", "create", "brief"]).ok();
        let started = Instant::now();
        docker.docker(&["network", "rm", "brief"]).ok();
        removals.push(started.elapsed());
    }
    println!("beside 50 stopped containers: docker network ls {:.1} ms, docker network rm {:.1} ms (medians of 21)", median_millis(listing), median_millis(removals));
    let names: Vec<String> = (0..50).map(|i| format!("stopped{i}")).collect();
    let mut rm = vec!["rm".to_string()];
    rm.extend(names);
    run(&docker, &rm).ok();
    docker.docker(&["network", "rm", "crowd"]).ok();
    assert_nothing_left(&docker);
}
