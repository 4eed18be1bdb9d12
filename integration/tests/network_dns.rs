//! The embedded DNS server at 127.0.0.11, driven through the network library as berthd
//! drives it (a multi-threaded runtime whose threads sit in the world's host namespace,
//! standing for berthd's): sandboxes on a user-defined network resolve each other by
//! name, alias, qualified name and `--link` alias with busybox nslookup, curl and
//! getent (through the generated resolv.conf, bind-mounted on /etc/resolv.conf as a
//! container has it); a sandbox on another network does not; other names are forwarded
//! to a test DNS server on 127.0.0.1:53 of the host namespace (the sandboxes' `--dns`);
//! the default bridge gets no server; after a restart resolution works again; after
//! detach the sockets are gone (no listener in the sandbox, fd count back).
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::network::{AttachRequest, CreateNetwork, DnsConfig, LinkAlias, NetworkManager};
use berth::store::Store;
use berth_integration::command::{run_command, CmdOutput};
use berth_integration::dns_responder::{query_tcp, query_udp, time_udp_queries, DnsResponder, Reply};
use berth_integration::networld::*;
use hickory_proto::op::ResponseCode;

const OUTSIDE_NAME: &str = "outside.test";
const OUTSIDE_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// A name whose 60 addresses make an answer over 512 bytes.
const BIG_NAME: &str = "big.test";

fn big_addresses() -> Vec<Ipv4Addr> {
    (1..=60).map(|n| Ipv4Addr::new(10, 98, 0, n)).collect()
}

fn found(addresses: &[Ipv4Addr]) -> Reply {
    Reply { code: ResponseCode::NoError, truncated: false, addresses: addresses.to_vec() }
}

/// The network library on a runtime whose threads are in the world's host namespace.
struct Daemon {
    runtime: tokio::runtime::Runtime,
    manager: Arc<NetworkManager>,
}

impl Daemon {
    fn open(world: &NetWorld) -> Daemon {
        let runtime = world.in_host(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap());
        let (store_path, config, state) = (world.store_path(), world.config(), world.state_dir());
        let opening = runtime.spawn(async move { NetworkManager::open(Store::open(&store_path).unwrap(), config, &state).await.unwrap() });
        let manager = Arc::new(runtime.block_on(opening).unwrap());
        Daemon { runtime, manager }
    }

    /// Runs `work` on the runtime's threads (never on the caller's, which is elsewhere).
    fn run<T, F>(&self, work: impl FnOnce(Arc<NetworkManager>) -> F) -> T
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let task = self.runtime.spawn(work(self.manager.clone()));
        self.runtime.block_on(task).unwrap()
    }
}

fn request(sandbox: &Sandbox, networks: &[&str], aliases: &[&str], links: &[(&str, &str)]) -> AttachRequest {
    AttachRequest {
        sandbox_id: sandbox.id.clone(),
        netns_path: sandbox.path.clone(),
        networks: networks.iter().map(|n| n.to_string()).collect(),
        hostname: sandbox.id.clone(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        links: links.iter().map(|(target, alias)| LinkAlias { target: target.to_string(), alias: alias.to_string() }).collect(),
        files_dir: Some(sandbox.files.clone()),
        dns: Some(DnsConfig { servers: vec!["127.0.0.1".into()], ..Default::default() }),
        ..Default::default()
    }
}

fn nslookup(sandbox: &Sandbox, args: &str) -> CmdOutput {
    in_netns(sandbox.netns(), &format!("busybox nslookup {args} 127.0.0.11"))
}

fn resolves(sandbox: &Sandbox, name: &str, ip: &str) -> bool {
    let out = nslookup(sandbox, name);
    out.stdout.contains(&format!("Address: {ip}"))
}

/// Runs `script` in the sandbox with its resolv.conf on /etc/resolv.conf (the host's
/// /etc/hosts stays, which knows none of the sandboxes: names come from DNS).
fn with_resolv_conf(sandbox: &Sandbox, script: &str) -> CmdOutput {
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!("--net={}", sandbox.netns())).args(["unshare", "-m", "sh", "-c"]).arg(format!(
        "mount --make-rprivate / && mount --bind {} /etc/resolv.conf && {script}",
        sandbox.files.join("resolv.conf").display()
    ));
    run_command(cmd, Duration::from_secs(20))
}

fn listens_on_53(sandbox: &Sandbox) -> bool {
    in_netns(sandbox.netns(), "ss -ltunH").stdout.contains("127.0.0.11:53")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The process's IPv4, IPv6 and netlink sockets (what the network library opens).
fn network_sockets() -> Vec<String> {
    let entries = std::fs::read_dir("/proc/self/fd").unwrap().flatten();
    let domain_of = |fd: i32| {
        let (mut domain, mut len) = (0i32, 4u32);
        let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN, &mut domain as *mut i32 as *mut _, &mut len) };
        (rc == 0).then_some(domain)
    };
    entries
        .filter_map(|e| {
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let domain = domain_of(fd).filter(|d| [libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK].contains(d))?;
            Some(format!("{}: domain {domain}", std::fs::read_link(e.path()).ok()?.display()))
        })
        .collect()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The test's upstream server on 127.0.0.1:53 of the world's host namespace.
fn upstream(world: &NetWorld) -> DnsResponder {
    let (udp, tcp) = world.in_host(|| (UdpSocket::bind("127.0.0.1:53").unwrap(), TcpListener::bind("127.0.0.1:53").unwrap()));
    let mut names = vec![(OUTSIDE_NAME, OUTSIDE_ADDRESS)];
    names.extend(big_addresses().into_iter().map(|ip| (BIG_NAME, ip)));
    DnsResponder::serve(udp, tcp, &names)
}

/// Prints the median and 99th percentile of 2000 lookups one after the other (a
/// figure for the README, not an assertion).
fn report_latency(sandbox: &Sandbox, name: &str) {
    let mut times = time_udp_queries(sandbox.netns(), "127.0.0.11", name, 2000).unwrap();
    let total: Duration = times.iter().sum();
    times.sort();
    let (median, p99) = (times[times.len() / 2], times[times.len() * 99 / 100]);
    println!(
        "embedded DNS, {name}: 2000 sequential UDP queries in {total:?} ({:.0}/s), median {median:?}, p99 {p99:?}",
        2000.0 / total.as_secs_f64()
    );
}

#[test]
fn sandboxes_on_a_user_network_resolve_each_other_through_127_0_0_11() {
    let world = NetWorld::new();
    let (alpha, beta, gamma, plain) = (world.sandbox("alpha"), world.sandbox("beta"), world.sandbox("gamma"), world.sandbox("plain"));
    let responder = upstream(&world);
    let (sockets_before, threads_before) = (network_sockets(), threads());
    let daemon = Daemon::open(&world);
    let requests = [
        request(&alpha, &["app"], &["db"], &[]),
        request(&beta, &["app"], &[], &[("alpha", "primary")]),
        request(&gamma, &["other"], &[], &[]),
        request(&plain, &[], &[], &[]),
    ];
    daemon.run(|manager| async move {
        manager.create_network(&CreateNetwork { name: "app".into(), ..Default::default() }).await.unwrap();
        manager.create_network(&CreateNetwork { name: "other".into(), ..Default::default() }).await.unwrap();
        for request in &requests {
            manager.attach(request).await.unwrap();
        }
    });
    let alpha_ip = "172.18.0.2";

    // The files: the embedded server on user networks, the host's way on the default one.
    let resolv = std::fs::read_to_string(beta.files.join("resolv.conf")).unwrap();
    assert!(resolv.starts_with("nameserver 127.0.0.11\n") && resolv.contains("ndots:0"), "{resolv}");
    let plain_resolv = std::fs::read_to_string(plain.files.join("resolv.conf")).unwrap();
    assert_eq!(plain_resolv, "nameserver 127.0.0.1\n");
    assert!(listens_on_53(&beta) && listens_on_53(&gamma));
    assert!(!listens_on_53(&plain), "the default bridge has no embedded server");

    // Names, aliases, qualified names and the link alias, answered locally.
    let forwarded_before = responder.queries();
    for name in ["alpha", "db", "alpha.app", "ALPHA.app.", "primary"] {
        assert!(resolves(&beta, name, alpha_ip), "{name}: {}", nslookup(&beta, name));
    }
    assert!(resolves(&alpha, "beta", "172.18.0.3") && resolves(&alpha, "alpha", alpha_ip));
    let ptr = nslookup(&beta, "-type=ptr 2.0.18.172.in-addr.arpa");
    assert!(ptr.stdout.contains("name = alpha.app"), "{ptr}");
    assert_eq!(responder.queries(), forwarded_before, "known names never go upstream");
    assert_eq!(query_tcp(beta.netns(), "127.0.0.11", "db").unwrap(), found(&[alpha_ip.parse().unwrap()]));

    // Not on a shared network, or a link alias of someone else: unknown, and forwarded.
    let from_gamma = nslookup(&gamma, "alpha");
    assert!(!from_gamma.stdout.contains(alpha_ip) && from_gamma.stdout.contains("NXDOMAIN"), "{from_gamma}");
    assert!(!resolves(&alpha, "primary", alpha_ip));
    assert!(responder.queries() > forwarded_before);

    // External names through the upstream, over UDP and TCP, from the sandbox's view.
    assert!(resolves(&beta, OUTSIDE_NAME, "10.99.0.1"), "{}", nslookup(&beta, OUTSIDE_NAME));
    assert_eq!(query_tcp(beta.netns(), "127.0.0.11", OUTSIDE_NAME).unwrap(), found(&[OUTSIDE_ADDRESS]));
    // A large answer: truncated over UDP upstream, fetched again over TCP; relayed whole
    // to a client that takes 4096 bytes, truncated to one that takes 512.
    let many = big_addresses();
    assert_eq!(query_udp(beta.netns(), "127.0.0.11", BIG_NAME, Some(4096)).unwrap(), found(&many));
    assert_eq!(query_tcp(beta.netns(), "127.0.0.11", BIG_NAME).unwrap(), found(&many));
    let small = query_udp(beta.netns(), "127.0.0.11", BIG_NAME, None).unwrap();
    assert!(small.truncated && small.addresses.len() < many.len(), "{small:?}");

    // As a container sees it: the C library's resolver through resolv.conf.
    let _httpd = world.httpd(alpha.netns(), 80);
    let fetched = with_resolv_conf(&beta, "getent hosts db && curl -sf -m3 http://alpha/index.html && curl -sf -m3 http://primary/index.html");
    assert!(fetched.success() && fetched.stdout.contains(alpha_ip) && fetched.stdout.contains("hello from berth"), "{fetched}");
    let refused = with_resolv_conf(&gamma, "getent hosts alpha");
    assert!(!refused.success(), "{refused}");

    report_latency(&beta, "db");
    report_latency(&beta, OUTSIDE_NAME);

    // A restart: the servers go with the old daemon and come back with the reconcile.
    drop(daemon);
    assert!(!listens_on_53(&beta));
    let daemon = Daemon::open(&world);
    let live: Vec<String> = ["alpha", "beta", "gamma", "plain"].iter().map(|s| s.to_string()).collect();
    daemon.run(|manager| async move { manager.reconcile(&live).await.unwrap() });
    assert!(resolves(&beta, "db", alpha_ip) && resolves(&beta, OUTSIDE_NAME, "10.99.0.1"));
    assert!(!listens_on_53(&plain));

    // beta leaves: alpha no longer resolves it, beta's sockets are closed.
    daemon.run(|manager| async move { manager.detach("beta").await.unwrap() });
    assert!(!listens_on_53(&beta));
    assert!(!resolves(&alpha, "beta", "172.18.0.3"));
    let fds_running = open_fds();
    daemon.run(|manager| async move {
        for sandbox in ["alpha", "gamma", "plain"] {
            manager.detach(sandbox).await.unwrap();
        }
        manager.remove_network("app").await.unwrap();
        manager.remove_network("other").await.unwrap();
    });
    assert!(!listens_on_53(&alpha) && !listens_on_53(&gamma));
    let deadline = Instant::now() + Duration::from_secs(3);
    while open_fds() > fds_running - 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(open_fds() <= fds_running - 4, "alpha's and gamma's two sockets each are closed: {} -> {}", fds_running, open_fds());
    drop(daemon);
    let deadline = Instant::now() + Duration::from_secs(3);
    while (network_sockets() != sockets_before || threads() > threads_before) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(network_sockets(), sockets_before, "the daemon left sockets open");
    assert!(threads() <= threads_before, "the daemon left threads: {threads_before} -> {}", threads());
}
