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

/// A `sleep` in a new uts namespace of its own, killed on drop.
struct UtsHolder(std::process::Child);

impl UtsHolder {
    fn new() -> UtsHolder {
        let child = std::process::Command::new("unshare")
            .args(["--uts", "sleep", "1000"])
            .spawn()
            .expect("spawning unshare --uts sleep");
        let holder = UtsHolder(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while holder.link() == host_ns("uts") {
            assert!(std::time::Instant::now() < deadline, "unshare --uts did not make a namespace");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        holder
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/uts", self.0.id())
    }

    fn link(&self) -> String {
        std::fs::read_link(self.path()).map(|l| l.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

impl Drop for UtsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// runtime-tools' linux_ns_path: a uts namespace joined by path takes the hostname of
/// config.json (runc and crun set it there).
#[test]
fn join_uts_namespace_by_path_with_hostname() {
    each_runtime("join_uts_namespace_by_path_with_hostname", &[], |rt| {
        let holder = UtsHolder::new();
        let mut b = Bundle::new(rt);
        set_namespace(&mut b.spec, "uts", Some(&holder.path()));
        b.spec["hostname"] = json!("joined-uts");
        let out = b.run_sh("readlink /proc/self/ns/uts; hostname");
        assert_eq!(out, format!("{}\njoined-uts\n", holder.link()));
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        assert_ne!(host.trim(), "joined-uts", "the host's hostname changed");
    });
}

/// runtime-tools' linux_ns_itype: with no mount namespace listed the container runs in
/// the caller's, entered by chroot; berth-runc's delete unmounts what it made there
/// under the rootfs (runc and crun leave those mounts: the guard unmounts them).
#[test]
fn no_mount_namespace_runs_in_the_callers() {
    let known = &[("crun", "the harness runs crun in a private mount namespace of its own (hybrid cgroups)")];
    each_runtime("no_mount_namespace_runs_in_the_callers", known, |rt| {
        let mut b = Bundle::new(rt);
        remove_namespace(&mut b.spec, "mount");
        b.spec["mounts"].as_array_mut().expect("mounts").retain(|m| m["type"] != "cgroup");
        // runc refuses masked and read-only paths without a mount namespace.
        for key in ["maskedPaths", "readonlyPaths"] {
            b.spec["linux"].as_object_mut().expect("linux").remove(key);
        }
        let guard = MountsBelow(b.rootfs().canonicalize().expect("rootfs path"));
        let out = b.run_sh("readlink /proc/self/ns/mnt; ls /proc/self/ns >/dev/null && echo proc-mounted");
        assert_eq!(out, format!("{}\nproc-mounted\n", host_ns("mnt")), "{}", rt.name());
        if rt.is_berth() {
            assert!(guard.points().is_empty(), "mounts left under the rootfs: {:?}", guard.points());
        }
    });
}

/// The mounts at or below a directory in this process's mountinfo; unmounted on drop.
struct MountsBelow(std::path::PathBuf);

impl MountsBelow {
    /// Deepest first.
    fn points(&self) -> Vec<String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let prefix = self.0.to_string_lossy().into_owned();
        let mut found: Vec<String> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
            .map(str::to_string)
            .collect();
        found.sort_by_key(|p| std::cmp::Reverse(p.len()));
        found
    }
}

impl Drop for MountsBelow {
    fn drop(&mut self) {
        for point in self.points() {
            let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
