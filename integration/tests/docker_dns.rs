//! The embedded DNS server through the real docker CLI: on a user network a container's
//! resolv.conf names 127.0.0.11, and from inside it `nslookup` finds peers by container
//! name and network alias, not containers of another network; other names go to the
//! container's `--dns` server (a responder this test runs on 127.0.0.1 in berthd's
//! network namespace); `docker network connect` starts the server for a container of
//! the default bridge; resolution works again after berthd restarts; the default bridge
//! keeps the host's resolvers.
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::Duration;

use berth_integration::dns_responder::DnsResponder;
use berth_integration::docker::DockerWorld;

/// Binds the responder's sockets on 127.0.0.1:53 inside berthd's network namespace.
fn responder_in(docker: &DockerWorld, names: &[(&str, Ipv4Addr)]) -> DnsResponder {
    let netns = docker.netns();
    let (udp, tcp) = std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).expect("open berthd's netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        (UdpSocket::bind("127.0.0.1:53").expect("bind udp"), TcpListener::bind("127.0.0.1:53").expect("bind tcp"))
    })
    .join()
    .expect("binding thread");
    DnsResponder::serve(udp, tcp, names)
}

/// The addresses `nslookup NAME 127.0.0.11` prints for `name` inside `container`
/// (None when the lookup fails).
fn lookup(docker: &DockerWorld, container: &str, name: &str) -> Option<Vec<String>> {
    let out = docker.docker(&["exec", container, "busybox", "nslookup", name, "127.0.0.11"]);
    if out.code != 0 {
        return None;
    }
    let answers = out.stdout.split(&format!("Name:\t{name}")).skip(1).flat_map(|part| part.lines().filter_map(|l| l.strip_prefix("Address: ")).map(str::to_string).collect::<Vec<_>>()).collect();
    Some(answers)
}

fn ip_on(docker: &DockerWorld, container: &str, network: &str) -> String {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    docker.docker(&["inspect", "-f", &format, container]).ok().stdout.trim().to_string()
}

#[test]
fn containers_on_a_user_network_resolve_each_other_through_127_0_0_11() {
    let mut docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let upstream = responder_in(&docker, &[("outside.example", Ipv4Addr::new(192, 0, 2, 7))]);
    docker.docker(&["network", "create", "app"]).ok();
    docker.docker(&["network", "create", "other"]).ok();
    docker.docker(&["run", "-d", "--name", "web", "--network", "app", "--network-alias", "frontend", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "client", "--network", "app", "--dns", "127.0.0.1", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "stranger", "--network", "other", "busybox", "sleep", "300"]).ok();
    docker.docker(&["run", "-d", "--name", "plain", "busybox", "sleep", "300"]).ok();

    let resolv = docker.docker(&["exec", "client", "cat", "/etc/resolv.conf"]).ok().stdout;
    assert!(resolv.lines().any(|l| l.trim() == "nameserver 127.0.0.11"), "{resolv}");
    let web = ip_on(&docker, "web", "app");
    assert_eq!(lookup(&docker, "client", "web"), Some(vec![web.clone()]));
    assert_eq!(lookup(&docker, "client", "frontend"), Some(vec![web.clone()]));
    assert_eq!(lookup(&docker, "client", "stranger"), None, "a container of another network resolved");
    let ping = docker.docker(&["exec", "client", "busybox", "ping", "-c1", "-W2", "web"]);
    assert_eq!(ping.code, 0, "{ping}");

    let before = upstream.queries();
    assert_eq!(lookup(&docker, "client", "outside.example"), Some(vec!["192.0.2.7".to_string()]));
    assert!(upstream.queries() > before, "the external name was not forwarded to the --dns server");
    assert_eq!(lookup(&docker, "client", "nowhere.example"), None);

    let plain_resolv = docker.docker(&["exec", "plain", "cat", "/etc/resolv.conf"]).ok().stdout;
    assert!(!plain_resolv.contains("127.0.0.11"), "the default bridge got the embedded server: {plain_resolv}");
    docker.docker(&["network", "connect", "app", "plain"]).ok();
    let connected_resolv = docker.docker(&["exec", "plain", "cat", "/etc/resolv.conf"]).ok().stdout;
    assert!(connected_resolv.contains("nameserver 127.0.0.11"), "{connected_resolv}");
    assert_eq!(lookup(&docker, "plain", "web"), Some(vec![web.clone()]));
    assert_eq!(lookup(&docker, "web", "plain"), Some(vec![ip_on(&docker, "plain", "app")]));

    docker.world.daemon.stop();
    docker.world.daemon.spawn();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lookup(&docker, "client", "web"), Some(vec![web]), "no resolution after berthd's restart");

    docker.docker(&["network", "disconnect", "app", "plain"]).ok();
    assert_eq!(lookup(&docker, "web", "plain"), None, "a disconnected container still resolves");
    docker.docker(&["rm", "-f", "web", "client", "stranger", "plain"]).ok();
    docker.docker(&["network", "rm", "app", "other"]).ok();
    let left = docker.in_netns("ip -o link show").ok().stdout;
    assert!(!left.contains("br-") && !left.contains("veth"), "links left behind:\n{left}");
}
