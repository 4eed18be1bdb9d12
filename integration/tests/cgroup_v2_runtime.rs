//! What pure cgroup v2 changes for an OCI runtime, checked in the unified tree against
//! every runtime of the matrix: a cgroupsPath under a parent (made, delegated, removed),
//! the eBPF device program allowing exactly the spec's devices, `cpu.weight` from
//! shares, `memory.swap.max` from the swap limit, `io.weight` and `io.max`, and the
//! cgroup namespace. Needs a pure v2 host: the VM lane (integration/vm/lane.sh) runs
//! it; elsewhere each test says it is skipped, and fails if `BERTH_REQUIRE_V2` is set.

use berth_integration::cgroups::{cgroup_dir, on_v2};
use berth_integration::{each_runtime, Bundle, Runtime};
use serde_json::{json, Value};

/// Runs `body` against every runtime (`known` failing as listed), on a pure v2 host.
fn each_runtime_on_v2(test: &str, known: &[berth_integration::Expect], body: impl Fn(&Runtime)) {
    if on_v2(test) {
        each_runtime(test, known, body);
    }
}

/// Starts a `sleep` container with `resources` merged into the spec's, gives `check`
/// its unified cgroup dir, then deletes it and checks that nothing is left.
fn in_v2_cgroup(rt: &Runtime, resources: Value, check: impl Fn(&Bundle, &std::path::Path)) {
    let mut b = Bundle::new(rt);
    for (k, v) in resources.as_object().expect("resources object") {
        b.spec["linux"]["resources"][k] = v.clone();
    }
    let pid = b.create_start();
    let dir = cgroup_dir(pid, "").expect("the container's cgroup2 dir");
    check(&b, &dir);
    b.delete_force().ok();
    b.assert_no_leaks();
}

#[track_caller]
fn read(dir: &std::path::Path, file: &str) -> String {
    let path = dir.join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())).trim().to_string()
}

const OLD_LINEAR_SHARES: (&str, &str) = ("runc", "Debian's runc 1.1 converts shares linearly (512 -> 20); runc 1.3.2 and later use the quadratic fit (512 -> 59)");
const OLD_LINEAR_SHARES_CRUN: (&str, &str) = ("crun", "crun 1.8 converts shares linearly (512 -> 20), as runc did before 1.3.2");

#[test]
fn cgroups_path_under_a_parent_is_made_delegated_and_removed() {
    let known = &[("runc", "runc removes only the leaf, not the parent it made"), ("crun", "crun removes only the leaf, not the parent it made")];
    each_runtime_on_v2("v2_cgroups_path_under_a_parent", known, |rt| {
        let mut b = Bundle::new(rt);
        let path = format!("/{}/leaf", b.cgroup_name());
        b.spec["linux"]["cgroupsPath"] = json!(path);
        b.spec["linux"]["resources"]["pids"] = json!({ "limit": 20 });
        let pid = b.create_start();
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/pid/cgroup");
        assert_eq!(own.trim(), format!("0::{path}"), "the container is not in its cgroupsPath");
        let parent = std::path::Path::new("/sys/fs/cgroup").join(b.cgroup_name());
        let delegated = read(&parent, "cgroup.subtree_control");
        for controller in ["memory", "pids", "cpu"] {
            assert!(delegated.split(' ').any(|c| c == controller), "{controller} not enabled for the leaf: {delegated}");
        }
        assert_eq!(read(&parent.join("leaf"), "pids.max"), "20");
        b.delete_force().ok();
        assert!(!parent.join("leaf").exists(), "the leaf cgroup is left");
        assert!(!parent.exists(), "the parent cgroup the runtime made is left");
        b.assert_no_leaks();
    });
}

/// Device nodes outside every runtime's default list (1:11 kmsg, 1:12 and 1:13 which no
/// driver serves), and rules allowing only writes to kmsg and reads of 1:12.
fn exact_device_rules(b: &mut Bundle) {
    let node = |path: &str, minor: u32| json!({ "path": path, "type": "c", "major": 1, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0 });
    b.spec["linux"]["devices"] = json!([node("/dev/berthkmsg", 11), node("/dev/berth12", 12), node("/dev/berth13", 13)]);
    b.spec["linux"]["resources"]["devices"] = json!([
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "c", "major": 1, "minor": 11, "access": "w" },
        { "allow": true, "type": "c", "major": 1, "minor": 12, "access": "r" }
    ]);
}

#[test]
fn the_device_program_allows_exactly_the_spec_devices() {
    each_runtime_on_v2("v2_device_program_is_exact", &[], |rt| {
        let mut b = Bundle::new(rt);
        exact_device_rules(&mut b);
        // A device the program lets through reaches its driver: 1:12 has none (ENXIO).
        let script = "try() { if eval \"$2\" 2>/tmp/e; then echo \"$1=ok\"; else echo \"$1=$(cat /tmp/e)\"; fi; }; \
            try kmsg-write 'echo berth-device-test >/dev/berthkmsg'; \
            try kmsg-read 'head -c1 /dev/berthkmsg >/dev/null'; \
            try c12-read 'head -c1 /dev/berth12 >/dev/null'; \
            try c12-write 'echo x >/dev/berth12'; \
            try c13-read 'head -c1 /dev/berth13 >/dev/null'; \
            try null-write 'echo x >/dev/null'";
        let out = b.run_sh(script);
        let verdict = |name: &str| out.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).unwrap_or("(missing)").to_string();
        assert_eq!(verdict("kmsg-write"), "ok", "{out}");
        assert_eq!(verdict("null-write"), "ok", "{out}");
        assert!(verdict("c12-read").contains("No such device"), "the allowed read did not reach the driver: {out}");
        for denied in ["kmsg-read", "c12-write", "c13-read"] {
            assert!(verdict(denied).contains("Operation not permitted"), "{denied} was not denied: {out}");
        }
        b.delete_force().ok();
        b.assert_no_leaks();
    });
}

#[test]
fn cpu_weight_from_shares_as_runc_converts() {
    each_runtime_on_v2("v2_cpu_weight_from_shares", &[OLD_LINEAR_SHARES, OLD_LINEAR_SHARES_CRUN], |rt| {
        let cpu = json!({ "cpu": { "shares": 512, "quota": 25000, "period": 50000 } });
        in_v2_cgroup(rt, cpu, |_, dir| {
            assert_eq!(read(dir, "cpu.weight"), "59", "shares 512");
            assert_eq!(read(dir, "cpu.max"), "25000 50000");
        });
    });
}

#[test]
fn memory_swap_max_is_the_swap_limit_less_the_memory_limit() {
    each_runtime_on_v2("v2_memory_swap_max", &[], |rt| {
        let memory = json!({ "memory": { "limit": 64u64 << 20, "swap": 96u64 << 20 } });
        in_v2_cgroup(rt, memory, |b, dir| {
            assert_eq!(read(dir, "memory.max"), (64u64 << 20).to_string());
            assert_eq!(read(dir, "memory.swap.max"), (32u64 << 20).to_string());
            // The swap limit equal to the memory limit means no swap at all.
            b.update(&["--memory", &(80u64 << 20).to_string(), "--memory-swap", &(80u64 << 20).to_string()]).ok();
            assert_eq!(read(dir, "memory.max"), (80u64 << 20).to_string());
            assert_eq!(read(dir, "memory.swap.max"), "0");
        });
    });
}

/// The first loop device's major:minor (7:0), or a panic saying how to get one.
fn loop_device() -> (u64, u64) {
    let dev = std::fs::read_to_string("/sys/block/loop0/dev").expect("/sys/block/loop0 (the VM lane loads the loop module)");
    let (major, minor) = dev.trim().split_once(':').expect("major:minor");
    (major.parse().expect("major"), minor.parse().expect("minor"))
}

#[test]
fn io_weight_and_io_max() {
    each_runtime_on_v2("v2_io_weight_and_io_max", &[], |rt| {
        let (major, minor) = loop_device();
        let io = json!({ "blockIO": {
            "weight": 300,
            "throttleReadBpsDevice": [{ "major": major, "minor": minor, "rate": 1048576 }],
            "throttleWriteIOPSDevice": [{ "major": major, "minor": minor, "rate": 100 }]
        } });
        in_v2_cgroup(rt, io, |_, dir| {
            // With BFQ the weight goes as is; without, io.weight gets runc's linear
            // mapping of [10, 1000] onto [1, 10000].
            match std::fs::read_to_string(dir.join("io.bfq.weight")) {
                Ok(bfq) => assert!(bfq.lines().next().is_some_and(|l| l.ends_with(" 300")), "io.bfq.weight: {bfq}"),
                Err(_) => assert_eq!(read(dir, "io.weight").lines().next(), Some("default 2930")),
            }
            let max = read(dir, "io.max");
            assert_eq!(max, format!("{major}:{minor} rbps=1048576 wbps=max riops=max wiops=100"));
        });
    });
}

#[test]
fn the_container_sees_its_own_cgroup_as_the_root() {
    each_runtime_on_v2("v2_cgroup_namespace", &[], |rt| {
        let mut b = Bundle::new(rt);
        berth_integration::spec::set_namespace(&mut b.spec, "cgroup", None);
        b.spec["linux"]["resources"]["memory"] = json!({ "limit": 50331648 });
        let out = b.run_sh("cat /proc/self/cgroup; cat /sys/fs/cgroup/memory.max; grep -c . /sys/fs/cgroup/cgroup.procs");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.first().copied(), Some("0::/"), "{out}");
        assert_eq!(lines.get(1).copied(), Some("50331648"), "/sys/fs/cgroup is not the container's cgroup: {out}");
        b.delete_force().ok();
        b.assert_no_leaks();
    });
}
