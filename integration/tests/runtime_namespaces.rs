//! Namespaces, checked through the kernel's view: own pid 1, hostname/domainname,
//! namespace links differing from the host's, only `lo` in a new netns, cgroupns root,
//! user namespace maps, and joining existing namespaces by path.

use berth_integration::netns::NetNs;
use berth_integration::spec::{remove_namespace, set_mapped_user_namespace, set_namespace};
use berth_integration::{each_runtime, Bundle};
use serde_json::json;

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .expect("host ns link")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn pid_namespace_own_pid_is_1() {
    each_runtime("pid_namespace_own_pid_is_1", &[], |rt| {
        let mut b = Bundle::new(rt);
        assert_eq!(b.run_sh("echo $$").trim(), "1");
    });
}

#[test]
fn uts_namespace_hostname_and_domainname() {
    let known = &[(
        "runc",
        "runc 1.1 ignores the spec's domainname (supported from runc 1.2)",
    )];
    each_runtime("uts_namespace_hostname_and_domainname", known, |rt| {
        let mut b = Bundle::new(rt);
        b.spec["hostname"] = json!("berth-host");
        b.spec["domainname"] = json!("berth.example");
        let out = b.run_sh("hostname; cat /proc/sys/kernel/domainname");
        assert_eq!(out, "berth-host\nberth.example\n");
    });
}

#[test]
fn new_namespaces_differ_from_host() {
    each_runtime("new_namespaces_differ_from_host", &[], |rt| {
        let mut b = Bundle::new(rt);
        set_namespace(&mut b.spec, "cgroup", None);
        let kinds = ["pid", "net", "ipc", "uts", "mnt", "cgroup"];
        let script: String = kinds
            .iter()
            .map(|k| format!("readlink /proc/self/ns/{k}; "))
            .collect();
        let out = b.run_sh(&script);
        let links: Vec<&str> = out.lines().collect();
        assert_eq!(links.len(), kinds.len(), "{out}");
        for (k, link) in kinds.iter().zip(links) {
            assert_ne!(link, host_ns(k), "{k} namespace is the host's");
        }
    });
}

#[test]
fn net_namespace_has_only_lo() {
    each_runtime("net_namespace_has_only_lo", &[], |rt| {
        let mut b = Bundle::new(rt);
        let out = b.run_sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
        assert_eq!(out, "lo\n");
    });
}

#[test]
fn cgroup_namespace_root_is_slash() {
    each_runtime("cgroup_namespace_root_is_slash", &[], |rt| {
        let mut b = Bundle::new(rt);
        set_namespace(&mut b.spec, "cgroup", None);
        let out = b.run_sh("cat /proc/self/cgroup");
        assert!(
            out.lines().count() > 0 && out.lines().all(|l| l.ends_with(":/")),
            "{out}"
        );
    });
}

/// The host's cgroup v1 hierarchy directories under /sys/fs/cgroup (empty on v2).
fn host_v1_hierarchies() -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mountinfo
        .lines()
        .filter(|l| l.split(" - ").nth(1).is_some_and(|fs| fs.starts_with("cgroup ")))
        .filter_map(|l| l.split(' ').nth(4)?.strip_prefix("/sys/fs/cgroup/").map(str::to_string))
        .collect()
}

#[test]
fn cgroup_mounts_are_rooted_at_the_container() {
    each_runtime("cgroup_mounts_are_rooted_at_the_container", &[], |rt| {
        let mut b = Bundle::new(rt);
        set_namespace(&mut b.spec, "cgroup", None);
        b.spec["linux"]["resources"]["memory"] = json!({ "limit": 67108864 });
        let hierarchies = host_v1_hierarchies();
        if hierarchies.is_empty() {
            let out = b.run_sh("wc -l < /sys/fs/cgroup/cgroup.procs; cat /sys/fs/cgroup/memory.max");
            assert_eq!(out, "2\n67108864\n", "{}: the cgroup2 mount is not the container's", rt.name());
            return;
        }
        let out = b.run_sh(
            "ls /sys/fs/cgroup; echo limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); \
             echo procs=$(wc -l < /sys/fs/cgroup/pids/cgroup.procs)",
        );
        for name in &hierarchies {
            assert!(out.lines().any(|l| l == name), "{}: /sys/fs/cgroup/{name} missing: {out}", rt.name());
        }
        // The sh and the wc reading the file: rooted at the container's cgroup, not the host's.
        assert!(out.contains("limit=67108864\n") && out.ends_with("procs=2\n"), "{}: {out}", rt.name());
    });
}

#[test]
fn user_namespace_with_mappings() {
    each_runtime("user_namespace_with_mappings", &[], |rt| {
        let mut b = Bundle::new(rt);
        set_mapped_user_namespace(&mut b.spec);
        let out = b.run_sh("cat /proc/self/uid_map /proc/self/gid_map; id -u");
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(
            words,
            ["0", "100000", "65536", "0", "200000", "65536", "0"],
            "{out}"
        );
    });
}

#[test]
fn join_network_namespace_by_path() {
    each_runtime("join_network_namespace_by_path", &[], |rt| {
        let ns = NetNs::new();
        let mut b = Bundle::new(rt);
        set_namespace(&mut b.spec, "network", Some(&ns.path()));
        assert_eq!(b.run_sh("readlink /proc/self/ns/net").trim(), ns.link());
    });
}

#[test]
fn join_other_container_ipc_namespace() {
    each_runtime("join_other_container_ipc_namespace", &[], |rt| {
        let first = Bundle::new(rt);
        let pid = first.create_start();
        let want = std::fs::read_link(format!("/proc/{pid}/ns/ipc")).expect("ipc link");
        let mut second = Bundle::new(rt);
        set_namespace(
            &mut second.spec,
            "ipc",
            Some(&format!("/proc/{pid}/ns/ipc")),
        );
        let out = second.run_sh("readlink /proc/self/ns/ipc");
        assert_eq!(out.trim(), want.to_string_lossy());
        first.delete_force().ok();
        first.assert_no_leaks();
    });
}

#[test]
fn no_uts_namespace_shares_host() {
    each_runtime("no_uts_namespace_shares_host", &[], |rt| {
        let mut b = Bundle::new(rt);
        remove_namespace(&mut b.spec, "uts");
        b.spec.as_object_mut().unwrap().remove("hostname");
        assert_eq!(
            b.run_sh("readlink /proc/self/ns/uts").trim(),
            host_ns("uts")
        );
    });
}
