//! Root test of the container cgroup: create with resources, move a `sleep` in, check
//! the cgroup files, freeze/thaw, stats, pids, update, destroy. Skips when not root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use berth_runtime::cgroups::{CgroupError, CgroupVersion, ContainerCgroup};
use oci_spec::runtime::{LinuxResources, LinuxResourcesBuilder};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    format!("berth-test-{tag}-{}-{n}", std::process::id())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Kills the child and removes the cgroup even when an assertion fails.
struct Guard {
    name: String,
    cg: Option<ContainerCgroup>,
    child: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(cg) = &self.cg {
            let _ = cg.thaw();
            let _ = cg.destroy();
        }
        // Belt and braces: anything left with our unique name, deepest first.
        let out = Command::new("find")
            .args([
                "/sys/fs/cgroup",
                "-depth",
                "-type",
                "d",
                "-name",
                &format!("*{}*", self.name),
            ])
            .output();
        if let Ok(out) = out {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = std::fs::remove_dir(line);
            }
        }
    }
}

fn assert_nothing_left(name: &str) {
    let left = Command::new("find")
        .args(["/sys/fs/cgroup", "-name", name])
        .output()
        .expect("find");
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(left.is_empty(), "left behind: {left}");
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn dir_of(cg: &ContainerCgroup, ctrl: &str) -> PathBuf {
    cg.hierarchies()
        .iter()
        .find(|h| {
            h.controllers.iter().any(|c| c == ctrl) || (ctrl.is_empty() && h.controllers.is_empty())
        })
        .map(|h| h.dir.clone())
        .unwrap_or_else(|| panic!("no {ctrl} hierarchy"))
}

fn resources() -> LinuxResources {
    serde_json::from_str(
        r#"{
        "memory": {"limit": 134217728, "reservation": 67108864, "swappiness": 10,
                   "disableOOMKiller": true},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 64},
        "devices": [{"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
    }"#,
    )
    .expect("resources json")
}

fn check_v1_values(cg: &ContainerCgroup) {
    let mem = dir_of(cg, "memory");
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "134217728");
    assert_eq!(read(&mem.join("memory.soft_limit_in_bytes")), "67108864");
    assert_eq!(read(&mem.join("memory.swappiness")), "10");
    assert!(read(&mem.join("memory.oom_control")).contains("oom_kill_disable 1"));
    let cpu = dir_of(cg, "cpu");
    assert_eq!(read(&cpu.join("cpu.shares")), "512");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&dir_of(cg, "cpuset").join("cpuset.cpus")), "0");
    assert_eq!(read(&dir_of(cg, "pids").join("pids.max")), "64");
    let devices = read(&dir_of(cg, "devices").join("devices.list"));
    assert!(
        !devices.contains("a *:* rwm"),
        "deny-all not applied: {devices}"
    );
    assert!(
        devices.contains("c 1:3 rwm") && devices.contains("c 136:* rwm"),
        "{devices}"
    );
}

fn check_v2_values(cg: &ContainerCgroup) {
    let dir = dir_of(cg, "");
    assert_eq!(read(&dir.join("memory.max")), "134217728");
    assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
    assert_eq!(read(&dir.join("pids.max")), "64");
}

fn check_frozen(cg: &ContainerCgroup) {
    cg.freeze().expect("freeze");
    assert!(cg.is_frozen().expect("is_frozen"));
    match cg.version() {
        CgroupVersion::V1 => {
            assert_eq!(read(&dir_of(cg, "freezer").join("freezer.state")), "FROZEN")
        }
        CgroupVersion::V2 => assert_eq!(read(&dir_of(cg, "").join("cgroup.freeze")), "1"),
    }
    cg.thaw().expect("thaw");
    assert!(!cg.is_frozen().expect("is_frozen"));
}

#[test]
fn container_cgroup_lifecycle() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let name = unique("life");
    let mut g = Guard {
        name: name.clone(),
        cg: None,
        child: None,
    };
    let path = PathBuf::from(format!("/{name}/ctr"));
    let cg = ContainerCgroup::create(Some(&path), &name, Some(&resources())).expect("create");
    assert_eq!(cg.path(), path);
    g.cg = Some(cg.clone());
    let child = Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id() as i32;
    g.child = Some(child);
    cg.add_process(pid).expect("add_process");
    for h in cg.hierarchies() {
        assert!(
            read(&h.dir.join("cgroup.procs"))
                .lines()
                .any(|l| l == pid.to_string()),
            "{:?}",
            h
        );
    }
    match cg.version() {
        CgroupVersion::V1 => check_v1_values(&cg),
        CgroupVersion::V2 => check_v2_values(&cg),
    }
    check_frozen(&cg);
    assert_eq!(cg.pids().expect("pids"), vec![pid]);
    let stats = serde_json::to_value(cg.stats().expect("stats")).expect("stats json");
    assert_eq!(stats["pids"]["current"], 1, "{stats}");
    assert_eq!(stats["pids"]["limit"], 64, "{stats}");
    assert!(
        stats["memory"]["usage"]["limit"].as_u64().is_some(),
        "{stats}"
    );
    let upd: LinuxResources =
        serde_json::from_str(r#"{"pids": {"limit": 32}, "cpu": {"shares": 256}}"#).expect("json");
    cg.update(&upd).expect("update");
    assert_eq!(read(&dir_of(&cg, "pids").join("pids.max")), "32");
    if let Some(mut c) = g.child.take() {
        c.kill().expect("kill sleep");
        c.wait().expect("wait sleep");
    }
    cg.destroy().expect("destroy");
    for dir in cg.created() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(
        cg.created().iter().any(|d| d.ends_with(&name)),
        "parent dir was created and removed"
    );
}

/// Where the runtime finds the hugetlb controller on this host: the unified tree of a
/// pure v2 host (listed in its root's `cgroup.controllers`), a v1 hierarchy, or nowhere
/// (a hybrid host without a v1 hugetlb hierarchy: the runtime uses v1 controllers there).
fn hugetlb_support() -> Option<CgroupVersion> {
    let root = Path::new("/sys/fs/cgroup");
    match std::fs::read_to_string(root.join("cgroup.controllers")) {
        Ok(listed) => listed.split_whitespace().any(|c| c == "hugetlb").then_some(CgroupVersion::V2),
        Err(_) => root.join("hugetlb").exists().then_some(CgroupVersion::V1),
    }
}

/// A 2 MB hugepage limit lands in the file of the layout the host has
/// (`hugetlb.2MB.limit_in_bytes` on v1, `hugetlb.2MB.max` on v2); without the
/// controller, the create fails naming it and leaves no directory.
#[test]
fn hugetlb_limit_is_set_or_refused_clearly() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let name = unique("huge");
    let mut guard = Guard { name: name.clone(), cg: None, child: None };
    let r: LinuxResources =
        serde_json::from_str(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}"#).expect("json");
    let created = ContainerCgroup::create(Some(Path::new(&format!("/{name}"))), &name, Some(&r));
    let Some(version) = hugetlb_support() else {
        let err = created.expect_err("a hugetlb limit without the controller was accepted");
        assert!(matches!(err, CgroupError::ControllerMissing { controller: "hugetlb", .. }), "{err}");
        assert_nothing_left(&name);
        return;
    };
    assert!(Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists(), "the host has hugetlb but no 2 MB pages");
    let cg = guard.cg.insert(created.expect("create with a hugetlb limit"));
    let file = match version {
        CgroupVersion::V1 => dir_of(cg, "hugetlb").join("hugetlb.2MB.limit_in_bytes"),
        CgroupVersion::V2 => dir_of(cg, "").join("hugetlb.2MB.max"),
    };
    assert_eq!(read(&file), "2097152", "{}", file.display());
    cg.destroy().expect("destroy");
    assert_nothing_left(&name);
}

#[test]
fn failure_after_mkdir_removes_what_was_created() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let name = unique("fail");
    let _g = Guard {
        name: name.clone(),
        cg: None,
        child: None,
    };
    let r: LinuxResources = serde_json::from_str(r#"{"cpu": {"cpus": "9999"}}"#).expect("json");
    let res = ContainerCgroup::create(Some(Path::new(&format!("/{name}/a/b"))), &name, Some(&r));
    assert!(res.is_err(), "an impossible cpuset must fail");
    assert_nothing_left(&name);
}

/// Hot-path cost: `cargo test --release -p berth-runtime --test cgroups -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_create_add_destroy() {
    if !is_root() {
        return;
    }
    let name = unique("bench");
    let child = Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id() as i32;
    let mut g = Guard {
        name: name.clone(),
        cg: None,
        child: Some(child),
    };
    let with = LinuxResourcesBuilder::default()
        .build()
        .expect("empty resources");
    let cases = [
        ("no resources", None),
        ("typical resources", Some(resources())),
        ("empty resources", Some(with)),
    ];
    for (label, res) in cases {
        let n = 200;
        let (mut create, mut add, mut destroy) = (0u128, 0u128, 0u128);
        for i in 0..n {
            let p = PathBuf::from(format!("/{name}/c{i}"));
            let t = Instant::now();
            let cg = ContainerCgroup::create(Some(&p), "x", res.as_ref()).expect("create");
            create += t.elapsed().as_micros();
            let t = Instant::now();
            cg.add_process(pid).expect("add");
            add += t.elapsed().as_micros();
            // Move the child back out (to each root) so the directory can go.
            for h in cg.hierarchies() {
                std::fs::write(h.mount.join("cgroup.procs"), pid.to_string()).expect("move back");
            }
            let t = Instant::now();
            cg.destroy().expect("destroy");
            destroy += t.elapsed().as_micros();
        }
        println!(
            "{label}: per container create {} us, add_process {} us, destroy {} us",
            create / n,
            add / n,
            destroy / n
        );
    }
    g.cg = None;
}
