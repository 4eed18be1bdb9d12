//! cgroups, checked in the host's cgroup files of the container init (v1 controller
//! dirs, or the unified dir on v2): memory, cpu, cpuset, pids, blkio weight and
//! throttling on a real device, devices,
//! `update`, `pause`/`resume`, and the dirs being gone after delete.

use std::time::Duration;

use berth_integration::cgroups::{all_cgroup_dirs, cgroup_dir, is_v2, read_cgroup_file};
use berth_integration::{each_runtime, Bundle, Runtime};
use serde_json::{json, Value};

/// Creates and starts a `sleep` container with `resources`, runs `check(bundle, pid)`,
/// then deletes it and checks its cgroup dirs are gone.
fn with_resources(rt: &Runtime, resources: Value, check: impl Fn(&Bundle, i32)) {
    let mut b = Bundle::new(rt);
    for (k, v) in resources.as_object().expect("resources object") {
        b.spec["linux"]["resources"][k] = v.clone();
    }
    let pid = b.create_start();
    check(&b, pid);
    b.delete_force().ok();
    b.assert_no_leaks();
}

#[test]
fn memory_limit() {
    each_runtime("memory_limit", &[], |rt| {
        with_resources(rt, json!({ "memory": { "limit": 67108864 } }), |_, pid| {
            assert_eq!(
                read_cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max"),
                "67108864"
            );
        });
    });
}

#[test]
fn cpu_shares_quota_period() {
    each_runtime("cpu_shares_quota_period", &[], |rt| {
        let cpu = json!({ "cpu": { "shares": 512, "quota": 50000, "period": 100000 } });
        with_resources(rt, cpu, |_, pid| {
            if is_v2() {
                assert_eq!(read_cgroup_file(pid, "cpu", "", "cpu.max"), "50000 100000");
                assert_ne!(read_cgroup_file(pid, "cpu", "", "cpu.weight"), "100");
            } else {
                assert_eq!(read_cgroup_file(pid, "cpu", "cpu.shares", ""), "512");
                assert_eq!(
                    read_cgroup_file(pid, "cpu", "cpu.cfs_quota_us", ""),
                    "50000"
                );
                assert_eq!(
                    read_cgroup_file(pid, "cpu", "cpu.cfs_period_us", ""),
                    "100000"
                );
            }
        });
    });
}

#[test]
fn cpuset_cpus_and_mems() {
    each_runtime("cpuset_cpus_and_mems", &[], |rt| {
        with_resources(
            rt,
            json!({ "cpu": { "cpus": "0", "mems": "0" } }),
            |b, pid| {
                assert_eq!(
                    read_cgroup_file(pid, "cpuset", "cpuset.cpus", "cpuset.cpus"),
                    "0"
                );
                assert_eq!(
                    read_cgroup_file(pid, "cpuset", "cpuset.mems", "cpuset.mems"),
                    "0"
                );
                let out = b
                    .exec(&[], &["grep", "Cpus_allowed_list", "/proc/self/status"])
                    .ok();
                assert!(
                    out.stdout.trim().ends_with("\t0") || out.stdout.trim().ends_with(" 0"),
                    "{out}"
                );
            },
        );
    });
}

#[test]
fn pids_limit() {
    each_runtime("pids_limit", &[], |rt| {
        with_resources(rt, json!({ "pids": { "limit": 64 } }), |_, pid| {
            assert_eq!(read_cgroup_file(pid, "pids", "pids.max", "pids.max"), "64");
        });
    });
}

/// The blkio/io weight file of `pid`'s cgroup that the kernel has, and the weight in it.
fn blkio_weight(pid: i32) -> (&'static str, String) {
    let dir = if is_v2() {
        cgroup_dir(pid, "")
    } else {
        cgroup_dir(pid, "blkio")
    }
    .expect("blkio cgroup dir");
    let files = [
        "blkio.weight",
        "blkio.bfq.weight",
        "io.bfq.weight",
        "io.weight",
    ];
    let (file, text) = files
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok().map(|t| (*f, t)))
        .expect("a blkio weight file");
    // "default 500" (bfq, io.weight) or "500".
    let weight = text.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .last()
        .unwrap_or("")
        .to_string();
    (file, weight)
}

#[test]
fn blkio_weight_is_set() {
    let known = &[(
        "crun",
        "crun 1.8 writes blkio.weight, which a BFQ-only v1 kernel lacks (blkio.bfq.weight)",
    )];
    if !kernel_has_blkio_weight() {
        return blkio_weight_is_refused_cleanly();
    }
    each_runtime("blkio_weight_is_set", known, |rt| {
        with_resources(rt, json!({ "blockIO": { "weight": 500 } }), |_, pid| {
            // io.weight (v2 without BFQ) ranges over [1, 10000]: runc maps 500 to 4950.
            let (file, weight) = blkio_weight(pid);
            let want = if file == "io.weight" { "4950" } else { "500" };
            assert_eq!(weight, want, "{file}");
        });
    });
}

/// Whether the kernel has a blkio weight file (v1 without BFQ or CFQ has none). On v2 the
/// io weight files exist in child cgroups only, when io is enabled for them: assumed.
fn kernel_has_blkio_weight() -> bool {
    let root = std::path::Path::new("/sys/fs/cgroup/blkio");
    is_v2() || ["blkio.weight", "blkio.bfq.weight"].iter().any(|f| root.join(f).exists())
}

/// A block device of this host as (major, minor), from `/sys/block`.
fn some_block_device() -> (u64, u64) {
    let mut devices: Vec<String> = std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("dev")).ok())
        .collect();
    devices.sort();
    let first = devices.first().expect("the host has a block device");
    let (major, minor) = first.trim().split_once(':').expect("major:minor");
    (major.parse().expect("major"), minor.parse().expect("minor"))
}

/// What this kernel offers whatever its I/O scheduler (the weight needs BFQ or CFQ,
/// which this host's may lack): per-device throttling. A read-bps and a write-iops
/// limit on a real device land in the throttle files (v1) or in `io.max` (v2).
#[test]
fn blkio_throttle_is_set_on_a_real_device() {
    let (major, minor) = some_block_device();
    let throttle = json!({ "blockIO": {
        "throttleReadBpsDevice": [{ "major": major, "minor": minor, "rate": 1048576 }],
        "throttleWriteIOPSDevice": [{ "major": major, "minor": minor, "rate": 120 }]
    }});
    each_runtime("blkio_throttle_is_set_on_a_real_device", &[], |rt| {
        with_resources(rt, throttle.clone(), |_, pid| {
            let device = format!("{major}:{minor}");
            if is_v2() {
                let max = read_cgroup_file(pid, "io", "", "io.max");
                assert!(max.contains(&format!("{device} rbps=1048576")) && max.contains("wiops=120"), "{}: {max}", rt.name());
            } else {
                let read_bps = read_cgroup_file(pid, "blkio", "blkio.throttle.read_bps_device", "");
                assert_eq!(read_bps, format!("{device} 1048576"), "{}", rt.name());
                let write_iops = read_cgroup_file(pid, "blkio", "blkio.throttle.write_iops_device", "");
                assert_eq!(write_iops, format!("{device} 120"), "{}", rt.name());
            }
        });
    });
}

/// Without a weight file in the kernel, a weight cannot be applied: berth-runc refuses
/// the container with an error naming the blkio file, and leaves nothing behind.
fn blkio_weight_is_refused_cleanly() {
    let known = &[("crun", "crun 1.8 leaves its cgroup directories after a failed create")];
    each_runtime("blkio_weight_is_refused_cleanly", known, |rt| {
        let mut b = Bundle::new(rt);
        b.spec["linux"]["resources"]["blockIO"] = json!({ "weight": 500 });
        let out = b.create(&[]);
        assert!(!out.success(), "{}: a blkio weight without kernel support was accepted", rt.name());
        // The error names the weight file the kernel lacks (blkio.weight or blkio.bfq.weight).
        assert!(out.stderr.contains("blkio") && out.stderr.contains("weight"), "{}: the error does not name the blkio weight: {}", rt.name(), out.stderr);
        b.delete_force().ok();
        b.assert_no_leaks();
    });
}

/// Adds /dev/berthkmsg (kmsg, 1:11: outside the default allow list, harmless if a
/// write got through) and a rule denying it. /dev/null cannot serve: the runtimes'
/// default rules allow it again after the spec's.
fn deny_kmsg_node(b: &mut Bundle) {
    b.spec["linux"]["devices"] = json!([
        { "path": "/dev/berthkmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666, "uid": 0, "gid": 0 }
    ]);
    b.spec["linux"]["resources"]["devices"]
        .as_array_mut()
        .expect("default device rules")
        .push(json!({ "allow": false, "type": "c", "major": 1, "minor": 11, "access": "rwm" }));
}

#[test]
fn devices_list_on_host() {
    each_runtime("devices_list_on_host", &[], |rt| {
        let mut b = Bundle::new(rt);
        deny_kmsg_node(&mut b);
        let pid = b.create_start();
        if !is_v2() {
            let list = read_cgroup_file(pid, "devices", "devices.list", "");
            assert!(
                !list.contains("a *:* rwm") && !list.contains("c 1:11 "),
                "{list}"
            );
            assert!(list.contains("c 1:5 "), "{list}");
        }
        b.delete_force().ok();
        b.assert_no_leaks();
    });
}

#[test]
fn devices_denied_write_fails() {
    each_runtime("devices_denied_write_fails", &[], |rt| {
        let mut b = Bundle::new(rt);
        deny_kmsg_node(&mut b);
        let out = b
            .run_sh("echo x 2>&1 > /dev/berthkmsg; echo rc=$?; echo y > /dev/zero && echo zero-ok");
        assert!(
            out.contains("Operation not permitted") && !out.contains("rc=0"),
            "{out}"
        );
        assert!(out.contains("zero-ok"), "{out}");
    });
}

#[test]
fn update_changes_limits() {
    each_runtime("update_changes_limits", &[], |rt| {
        let res = json!({ "memory": { "limit": 67108864 }, "pids": { "limit": 64 } });
        with_resources(rt, res, |b, pid| {
            b.update(&["--memory", "134217728", "--pids-limit", "100"])
                .ok();
            assert_eq!(
                read_cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max"),
                "134217728"
            );
            assert_eq!(read_cgroup_file(pid, "pids", "pids.max", "pids.max"), "100");
            let file = b.dir().join("resources.json");
            std::fs::write(&file, r#"{"pids": {"limit": 50}}"#).expect("write resources.json");
            b.update(&["-r", &file.to_string_lossy()]).ok();
            assert_eq!(read_cgroup_file(pid, "pids", "pids.max", "pids.max"), "50");
        });
    });
}

#[test]
fn pause_freezes_resume_thaws() {
    each_runtime("pause_freezes_resume_thaws", &[], |rt| {
        with_resources(rt, json!({}), |b, pid| {
            b.pause().ok();
            assert_eq!(b.status(), "paused");
            let frozen = if is_v2() { "1" } else { "FROZEN" };
            assert_eq!(
                read_cgroup_file(pid, "freezer", "freezer.state", "cgroup.freeze"),
                frozen
            );
            let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(
                st.rsplit_once(") ")
                    .is_some_and(|(_, r)| r.starts_with('S') || r.starts_with('D')),
                "{st}"
            );
            b.resume().ok();
            b.wait_for_status("running", Duration::from_secs(5));
            let thawed = if is_v2() { "0" } else { "THAWED" };
            assert_eq!(
                read_cgroup_file(pid, "freezer", "freezer.state", "cgroup.freeze"),
                thawed
            );
        });
    });
}

#[test]
fn cgroup_dirs_removed_after_delete() {
    each_runtime("cgroup_dirs_removed_after_delete", &[], |rt| {
        let b = Bundle::new(rt);
        let pid = b.create_start();
        let dirs: Vec<_> = all_cgroup_dirs(pid)
            .into_iter()
            .filter(|d| d.to_string_lossy().contains(b.cgroup_name()))
            .collect();
        let want = if is_v2() { 1 } else { 6 };
        assert!(
            dirs.len() >= want,
            "container is in its own cgroups: {dirs:?}"
        );
        b.kill("KILL").ok();
        b.wait_for_status("stopped", Duration::from_secs(10));
        b.delete().ok();
        let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
        assert!(left.is_empty(), "cgroup dirs left: {left:?}");
        b.assert_no_leaks();
    });
}
