//! Root test of the rootfs module: builds a busybox rootfs, runs prepare/enter/finish in a
//! forked child with new mount and pid namespaces, and checks what busybox sees inside.
//! Skipped when not root. One #[test] only, so that fork happens with no sibling test threads.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use berth_runtime::rootfs::{self, RootfsConfig};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2, fork, ForkResult};

struct Case<'a> {
    name: &'a str,
    spec: serde_json::Value,
    no_pivot: bool,
    cgroupns: bool,
    userns: bool,
    script: &'a str,
}

fn make_bundle(name: &str) -> PathBuf {
    let bundle = std::env::temp_dir().join(format!("berth-rootfs-test-{}-{name}", std::process::id()));
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for tool in ["sh", "cat", "ls", "mount", "readlink", "touch", "echo"] {
        symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    fs::create_dir_all(bundle.join("hostdir")).unwrap();
    fs::write(bundle.join("hostfile"), "from-bundle\n").unwrap();
    // Hostile symlinks: an absolute one to the host's / and a ../ chain.
    symlink("/", rootfs.join("escape")).unwrap();
    symlink("../../../../../../..", rootfs.join("dots")).unwrap();
    bundle
}

fn child_main(bundle: &Path, case: &Case, spec: &oci_spec::runtime::Spec) -> i32 {
    if let Err(e) = std::env::set_current_dir(bundle) {
        println!("chdir: {e}");
        return 1;
    }
    let cfg = RootfsConfig {
        spec,
        rootfs: bundle.join("rootfs"),
        no_pivot: case.no_pivot,
        in_user_namespace: case.userns,
        in_cgroup_namespace: case.cgroupns,
        cgroup_hierarchies: Default::default(),
        idmapped: Default::default(),
    };
    let steps = rootfs::prepare(&cfg, &mut || Ok(())).and_then(|()| rootfs::enter(&cfg)).and_then(|()| rootfs::finish(&cfg));
    if let Err(e) = steps {
        println!("ROOTFS ERROR: {e}");
        return 1;
    }
    let err = std::process::Command::new("/bin/sh").args(["-c", case.script]).status();
    match err {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            println!("exec: {e}");
            1
        }
    }
}

/// Fork; the child unshares mount+pid (+cgroup) namespaces and forks pid 1 of the new ns.
fn run(bundle: &Path, case: &Case) -> (i32, String) {
    let spec: oci_spec::runtime::Spec = serde_json::from_value(case.spec.clone()).unwrap();
    let (rd, wr): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(rd);
            dup2(wr.as_raw_fd(), 1).unwrap();
            dup2(wr.as_raw_fd(), 2).unwrap();
            let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
            if case.cgroupns {
                flags |= CloneFlags::CLONE_NEWCGROUP;
            }
            if case.userns {
                flags |= CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWIPC;
            }
            unshare(flags).unwrap();
            if case.userns {
                map_root_to_root();
            }
            let code = match unsafe { fork() }.unwrap() {
                ForkResult::Child => child_main(bundle, case, &spec),
                ForkResult::Parent { child } => match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, c)) => c,
                    _ => 99,
                },
            };
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut out = String::new();
            fs::File::from(rd).read_to_string(&mut out).unwrap();
            let code = match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, c) => c,
                other => panic!("child: {other:?}"),
            };
            (code, out)
        }
    }
}

/// In a fresh user namespace: map uid/gid 0 to the host's 0 (a self-map needs no privilege).
fn map_root_to_root() {
    fs::write("/proc/self/setgroups", "deny").unwrap();
    fs::write("/proc/self/uid_map", "0 0 1").unwrap();
    fs::write("/proc/self/gid_map", "0 0 1").unwrap();
}

fn mnt(dest: &str, typ: &str, source: &str, opts: &[&str]) -> serde_json::Value {
    serde_json::json!({"destination": dest, "type": typ, "source": source, "options": opts})
}

fn full_spec() -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            mnt("/proc", "proc", "proc", &[]),
            mnt("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
            mnt("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
            mnt("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            mnt("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
            mnt("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
            mnt("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"]),
            mnt("/data", "bind", "hostdir", &["rbind", "ro", "nosuid"]),
            mnt("/etc/hostfile", "bind", "hostfile", &["bind", "ro"]),
            mnt("/escape/berth-hostile-x", "tmpfs", "tmpfs", &["size=1m"]),
            mnt("/dots/berth-hostile-y", "tmpfs", "tmpfs", &["size=1m", "private"]),
        ],
        "linux": {
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 384}],
            "maskedPaths": ["/proc/kcore", "/proc/timer_list", "/sys/firmware", "/proc/berth-nonexistent"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        }
    })
}

const FULL_SCRIPT: &str = "cat /proc/self/mountinfo; echo ---; ls -l /dev; echo ---; \
    readlink /dev/ptmx; readlink /dev/stdin; ls -l /proc/kcore /proc/timer_list; ls /sys/firmware; ls /sys/fs/cgroup; \
    cat /etc/hostfile; \
    touch /data/f && echo DATA-WRITABLE; \
    echo x > /proc/sys/kernel/hostname && echo PROCSYS-WRITABLE; \
    touch /newfile && echo ROOT-WRITABLE; \
    touch /dev/shm/f && echo SHM-WRITABLE; \
    touch /berth-hostile-x/f && echo HOSTILE-X-WRITABLE; \
    echo END";

/// In a user namespace: devices are host binds, sysfs falls back to a bind of /sys, and
/// read-only remounts of binds keep the locked nosuid/nodev/noexec flags.
const USERNS_SCRIPT: &str = "cat /proc/self/mountinfo; ls -l /dev; echo hi > /dev/null && echo NULL-OK; \
    touch /data/f && echo DATA-WRITABLE; echo END";

fn check_userns(out: &str) {
    for want in [" /dev/null ", " /dev/fuse ", " /sys ", " /sys/fs/cgroup/memory ro,", " /data ro,nosuid", "NULL-OK", "END"] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("DATA-WRITABLE"), "{out}");
}

fn check_full(out: &str) {
    let has = |s: &str| out.contains(s);
    for want in [
        " /proc rw", " /dev/pts ", " /dev/mqueue ", " /dev/shm ", " /data ro,nosuid",
        " /etc/hostfile ro", " /berth-hostile-x ", " /berth-hostile-y ", " / ro",
        "null", "crw-------", "ptmx -> pts/ptmx", "fd -> /proc/self/fd", "pts/ptmx", "/proc/self/fd/0",
        "from-bundle", "SHM-WRITABLE", "HOSTILE-X-WRITABLE", "END",
    ] {
        assert!(has(want), "missing {want:?} in:\n{out}");
    }
    for unwanted in ["DATA-WRITABLE", "PROCSYS-WRITABLE", "ROOT-WRITABLE", "ROOTFS ERROR"] {
        assert!(!has(unwanted), "unexpected {unwanted:?} in:\n{out}");
    }
    assert!(out.lines().any(|l| l.contains(" /sys/fs/cgroup") && l.contains(" ro,")), "cgroup not ro:\n{out}");
    assert!(out.lines().any(|l| l.contains(" /proc/sys ro,")), "/proc/sys not ro:\n{out}");
}

fn minimal_spec() -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "mounts": [
            mnt("/proc", "proc", "proc", &[]),
            mnt("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
            mnt("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "ro"]),
        ],
        "linux": {"rootfsPropagation": "rprivate"}
    })
}

#[test]
fn rootfs_in_namespaces() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let cases = [
        Case { name: "full", spec: full_spec(), no_pivot: false, cgroupns: false, userns: false, script: FULL_SCRIPT },
        Case {
            name: "nopivot",
            spec: minimal_spec(),
            no_pivot: true,
            cgroupns: true,
            userns: false,
            script: "cat /proc/self/mountinfo; ls /sys/fs/cgroup; echo END",
        },
        Case { name: "userns", spec: full_spec(), no_pivot: false, cgroupns: false, userns: true, script: USERNS_SCRIPT },
    ];
    for case in &cases {
        let bundle = make_bundle(case.name);
        let (code, out) = run(&bundle, case);
        println!("== {} ==\n{out}", case.name);
        let leaked = ["/berth-hostile-x", "/berth-hostile-y"].iter().any(|p| Path::new(p).exists());
        fs::remove_dir_all(&bundle).unwrap();
        assert!(!leaked, "a hostile mount destination escaped the rootfs");
        assert_eq!(code, 0, "{}: {out}", case.name);
        assert!(out.contains("END"));
        if case.name == "full" {
            check_full(&out);
        } else if case.userns {
            check_userns(&out);
        } else {
            assert!(out.contains(" /sys/fs/cgroup"), "{out}");
        }
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    // Only this test's bundles: other berth tests may run meanwhile.
    let ours = format!("berth-rootfs-test-{}", std::process::id());
    assert!(!mountinfo.contains(&ours), "leaked mounts:\n{mountinfo}");
}
