//! HostConfig options beside the network, with the real docker CLI, checked through the
//! kernel's view from inside the container: `--add-host` (and `host-gateway`) in the
//! hosts file, `--dns-search` alone keeping a nameserver, `--pid host` and `--ipc host`
//! (the namespace inodes equal the host's), `--shm-size` (the tmpfs size in
//! /proc/mounts), `--group-add` by number and by name (`Groups:` in /proc/self/status),
//! and `--cap-drop ALL --cap-add X` keeping X. Refusals: an unsupported `--pid` mode and a
//! malformed `--add-host` get a 400 and leave no container.
use berth_integration::docker::DockerWorld;

fn namespace_of_this_process(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}")).expect("ns link").display().to_string()
}

fn inside(docker: &DockerWorld, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    docker.docker(&args).ok().stdout
}

#[test]
fn hosts_dns_namespaces_shm_groups_and_capabilities() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();

    let gateway = docker.docker(&["network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"]).ok().stdout.trim().to_string();
    let hosts = inside(&docker, &["--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway", "--add-host", "v6=[fd00::7]"], "cat /etc/hosts");
    for wanted in ["10.1.2.3\tdb".to_string(), format!("{gateway}\tgw"), "fd00::7\tv6".to_string()] {
        assert!(hosts.lines().any(|l| l == wanted), "{wanted:?} missing from\n{hosts}");
    }

    let resolv = inside(&docker, &["--dns-search", "example.test", "--dns-option", "ndots:2"], "cat /etc/resolv.conf");
    assert!(resolv.lines().any(|l| l == "search example.test"), "{resolv}");
    assert!(resolv.lines().any(|l| l == "options ndots:2"), "{resolv}");
    assert!(resolv.lines().any(|l| l.starts_with("nameserver ")), "search alone keeps the host's servers:\n{resolv}");

    for kind in ["pid", "ipc"] {
        let own = inside(&docker, &[], &format!("readlink /proc/self/ns/{kind}"));
        let host = inside(&docker, &[&format!("--{kind}"), "host"], &format!("readlink /proc/self/ns/{kind}"));
        assert_eq!(host.trim(), namespace_of_this_process(kind), "--{kind} host");
        assert_ne!(own.trim(), namespace_of_this_process(kind), "a {kind} namespace of its own by default");
    }

    let shm = inside(&docker, &["--shm-size", "16m"], "grep ' /dev/shm ' /proc/mounts");
    assert!(shm.contains("size=16384k"), "{shm}");
    let default_shm = inside(&docker, &[], "grep ' /dev/shm ' /proc/mounts");
    assert!(default_shm.contains("size=65536k"), "{default_shm}");

    let groups = inside(&docker, &["--group-add", "4242", "--group-add", "staff"], "grep ^Groups: /proc/self/status");
    assert_eq!(groups.split_whitespace().skip(1).collect::<Vec<_>>(), ["50", "4242"], "{groups}");

    let caps = inside(&docker, &["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"], "grep ^CapEff: /proc/self/status");
    assert_eq!(caps.split_whitespace().nth(1), Some("0000000000000400"), "only CAP_NET_BIND_SERVICE (bit 10): {caps}");
}

#[test]
fn unsupported_and_malformed_options_are_refused_whole() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let joined = docker.docker(&["run", "--name", "joiner", "--pid", "container:other", "busybox", "true"]).failed();
    assert!(joined.stderr.contains("--pid mode \"container:other\""), "{joined}");
    let malformed = docker.docker(&["create", "--name", "badhost", "--add-host", "db:not-an-address", "busybox", "true"]);
    assert!(!malformed.success(), "{malformed}");
    let uts = docker.docker(&["create", "--name", "uts", "--uts", "host", "busybox", "true"]).failed();
    assert!(uts.stderr.contains("--uts"), "{uts}");
    let left = docker.docker(&["ps", "-a", "-q"]).ok();
    assert!(left.stdout.trim().is_empty(), "a refused create left {left}");
}
