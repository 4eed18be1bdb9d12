//! Mounts, checked from /proc/self/mountinfo, stat and failing writes inside the
//! container: bind/rbind/ro/nosuid/nodev/noexec, tmpfs size and mode, propagation,
//! readonly root, masked and readonly paths, /dev contents, spec devices, --no-pivot
//! and a mount destination that is a symlink pointing out of the rootfs.

use berth_integration::command::sh;
use berth_integration::spec::add_mount;
use berth_integration::tempdir::TempDir;
use berth_integration::{each_runtime, Bundle};
use serde_json::json;

/// The mountinfo line whose mount point is `target`, from `mountinfo` text.
fn mount_line<'a>(mountinfo: &'a str, target: &str) -> &'a str {
    mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(target))
        .unwrap_or_else(|| panic!("no mount at {target} in:\n{mountinfo}"))
}

/// Per-mount options (field 6) of the mount at `target`.
fn mount_opts(mountinfo: &str, target: &str) -> Vec<String> {
    let line = mount_line(mountinfo, target);
    line.split(' ')
        .nth(5)
        .unwrap_or("")
        .split(',')
        .map(str::to_string)
        .collect()
}

fn host_dir_with_file() -> TempDir {
    let d = TempDir::new("data");
    std::fs::write(d.path().join("file"), "from-host\n").expect("write data file");
    d
}

#[test]
fn bind_mount_shows_host_file() {
    each_runtime("bind_mount_shows_host_file", &[], |rt| {
        let data = host_dir_with_file();
        let mut b = Bundle::new(rt);
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/b", "type": "bind", "source": data.path(), "options": ["bind"] }),
        );
        assert_eq!(b.run_sh("cat /mnt/b/file"), "from-host\n");
    });
}

/// A host tmpfs mounted on `dir/sub`, unmounted on drop.
struct HostSubmount(std::path::PathBuf);

impl Drop for HostSubmount {
    fn drop(&mut self) {
        let _ = sh(&format!("umount {}", self.0.display()));
    }
}

#[test]
fn rbind_carries_submounts_bind_does_not() {
    each_runtime("rbind_carries_submounts_bind_does_not", &[], |rt| {
        let data = host_dir_with_file();
        let sub = data.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir sub");
        sh(&format!("mount -t tmpfs berth-sub {}", sub.display())).ok();
        let _guard = HostSubmount(sub.clone());
        std::fs::write(sub.join("inner"), "inner\n").expect("write inner");
        let mut b = Bundle::new(rt);
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/r", "type": "bind", "source": data.path(), "options": ["rbind"] }),
        );
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/b", "type": "bind", "source": data.path(), "options": ["bind"] }),
        );
        let out = b.run_sh("cat /mnt/r/sub/inner; ls /mnt/b/sub | wc -l");
        assert_eq!(out, "inner\n0\n");
    });
}

#[test]
fn ro_bind_refuses_writes() {
    each_runtime("ro_bind_refuses_writes", &[], |rt| {
        let data = host_dir_with_file();
        let mut b = Bundle::new(rt);
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/ro", "type": "bind", "source": data.path(), "options": ["rbind", "ro"] }),
        );
        let out =
            b.run_sh("grep ' /mnt/ro ' /proc/self/mountinfo; touch /mnt/ro/new 2>&1; echo rc=$?");
        assert!(
            mount_opts(&out, "/mnt/ro").contains(&"ro".to_string()),
            "{out}"
        );
        assert!(
            out.contains("Read-only file system") && !out.contains("rc=0"),
            "{out}"
        );
        assert!(!data.path().join("new").exists());
    });
}

#[test]
fn tmpfs_flags_size_and_mode() {
    each_runtime("tmpfs_flags_size_and_mode", &[], |rt| {
        let mut b = Bundle::new(rt);
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=1770"] }),
        );
        let out = b.run_sh("cat /proc/self/mountinfo; echo STAT $(stat -c %a /mnt/t); cp /bin/busybox /mnt/t/bb; /mnt/t/bb true 2>&1; echo exec=$?");
        let opts = mount_opts(&out, "/mnt/t");
        for flag in ["nosuid", "nodev", "noexec"] {
            assert!(
                opts.contains(&flag.to_string()),
                "{flag} missing: {}",
                mount_line(&out, "/mnt/t")
            );
        }
        let line = mount_line(&out, "/mnt/t");
        assert!(line.contains("size=1024k"), "{line}");
        assert!(out.contains("STAT 1770"), "{out}");
        assert!(
            out.contains("Permission denied") && !out.contains("exec=0"),
            "{out}"
        );
    });
}

#[test]
fn mount_propagation_flags() {
    let known = &[(
        "crun",
        "crun 1.8 leaves a bind mount with rshared private (no shared: peer group)",
    )];
    each_runtime("mount_propagation_flags", known, |rt| {
        let data = host_dir_with_file();
        let mut b = Bundle::new(rt);
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/shared", "type": "bind", "source": data.path(), "options": ["rbind", "rshared"] }),
        );
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/private", "type": "bind", "source": data.path(), "options": ["rbind", "rprivate"] }),
        );
        let out = b.run_sh("cat /proc/self/mountinfo");
        assert!(
            mount_line(&out, "/mnt/shared").contains(" shared:"),
            "{out}"
        );
        let private = mount_line(&out, "/mnt/private");
        assert!(
            !private.contains("shared:") && !private.contains("master:"),
            "{private}"
        );
    });
}

#[test]
fn readonly_root_gives_erofs() {
    each_runtime("readonly_root_gives_erofs", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["root"]["readonly"] = json!(true);
        let out = b.run_sh("touch /newfile 2>&1; echo rc=$?");
        assert!(
            out.contains("Read-only file system") && !out.contains("rc=0"),
            "{out}"
        );
        assert!(!b.rootfs().join("newfile").exists());
    });
}

/// The mountinfo line of `/` in a container with `rootfsPropagation` set to `value`.
fn root_mount_with_propagation(rt: &berth_integration::Runtime, value: &str) -> String {
    let mut b = Bundle::new(rt);
    b.spec["linux"]["rootfsPropagation"] = json!(value);
    let out = b.run_sh("cat /proc/self/mountinfo");
    mount_line(&out, "/").to_string()
}

#[test]
fn rootfs_propagation_shared() {
    let known = &[(
        "runc",
        "runc 1.1 leaves the pivoted root private despite rootfsPropagation shared",
    )];
    each_runtime("rootfs_propagation_shared", known, |rt| {
        let root = root_mount_with_propagation(rt, "shared");
        assert!(root.contains(" shared:"), "{root}");
    });
}

/// rootfsPropagation unbindable (an OCI validation check): the container's root ends up
/// unbindable, which must not stop the runtime from bind-mounting the rootfs first.
#[test]
fn rootfs_propagation_unbindable() {
    let known = &[("runc", "runc 1.1 makes the host's tree unbindable first, then fails to bind the rootfs")];
    each_runtime("rootfs_propagation_unbindable", known, |rt| {
        let root = root_mount_with_propagation(rt, "unbindable");
        assert!(root.contains(" unbindable"), "{root}");
    });
}

#[test]
fn masked_paths_read_nothing() {
    each_runtime("masked_paths_read_nothing", &[], |rt| {
        let mut b = Bundle::new(rt);
        // /proc/kcore and friends do not exist on every kernel: mask rootfs paths too.
        b.spec["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .extend([json!("/etc/passwd"), json!("/var")]);
        std::fs::write(b.rootfs().join("var/secret"), "secret\n").expect("write var/secret");
        // Two masked directories (runtimes may share one empty tmpfs between them):
        // both empty and read-only, even for the container's root.
        let script = "echo passwd=$(wc -c < /etc/passwd); echo var=$(ls -A /var | wc -l); \
            echo keys=$(wc -c < /proc/keys); echo fw=$(ls -A /sys/firmware | wc -l); \
            echo $(grep -c ' /proc/timer_list ' /proc/self/mountinfo); \
            for d in /var /sys/firmware; do touch $d/x 2>/dev/null && echo $d=writable || echo $d=ro; done";
        assert_eq!(b.run_sh(script), "passwd=0\nvar=0\nkeys=0\nfw=0\n1\n/var=ro\n/sys/firmware=ro\n");
    });
}

#[test]
fn readonly_paths_are_read_only() {
    each_runtime("readonly_paths_are_read_only", &[], |rt| {
        let mut b = Bundle::new(rt);
        let out = b.run_sh("cat /proc/self/mountinfo; echo 1 > /proc/sys/kernel/ns_last_pid 2>&1 || echo write-failed");
        for p in ["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"] {
            assert!(
                mount_opts(&out, p).contains(&"ro".to_string()),
                "{p} not ro: {}",
                mount_line(&out, p)
            );
        }
        assert!(out.contains("write-failed"), "{out}");
    });
}

#[test]
fn default_devices_and_dev_symlinks() {
    each_runtime("default_devices_and_dev_symlinks", &[], |rt| {
        let mut b = Bundle::new(rt);
        let devs = "null zero full random urandom tty";
        let script = format!("for d in {devs}; do stat -c '%n %F %t:%T' /dev/$d; done; for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done");
        let out = b.run_sh(&script);
        for want in [
            "/dev/null character special file 1:3",
            "/dev/zero character special file 1:5",
            "/dev/full character special file 1:7",
            "/dev/random character special file 1:8",
            "/dev/urandom character special file 1:9",
            "/dev/tty character special file 5:0",
        ] {
            assert!(out.contains(want), "missing {want:?} in:\n{out}");
        }
        for want in [
            "fd=/proc/self/fd",
            "stdin=/proc/self/fd/0",
            "stdout=/proc/self/fd/1",
            "stderr=/proc/self/fd/2",
            "ptmx=pts/ptmx",
        ] {
            assert!(out.contains(want), "missing {want:?} in:\n{out}");
        }
    });
}

#[test]
fn dev_pts_shm_mqueue_mounted() {
    each_runtime("dev_pts_shm_mqueue_mounted", &[], |rt| {
        let mut b = Bundle::new(rt);
        let out = b.run_sh("cat /proc/self/mountinfo");
        for (target, fstype) in [
            ("/dev", "tmpfs"),
            ("/dev/pts", "devpts"),
            ("/dev/shm", "tmpfs"),
            ("/dev/mqueue", "mqueue"),
        ] {
            let line = mount_line(&out, target);
            assert!(line.contains(&format!(" - {fstype} ")), "{target}: {line}");
        }
    });
}

#[test]
fn spec_device_node() {
    each_runtime("spec_device_node", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["linux"]["devices"] = json!([{ "path": "/dev/berthdev", "type": "c", "major": 1, "minor": 5,
            "fileMode": 0o604, "uid": 1, "gid": 2 }]);
        b.spec["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm" }));
        let out =
            b.run_sh("stat -c '%F %t:%T %a %u %g' /dev/berthdev; head -c 4 /dev/berthdev | wc -c");
        assert_eq!(out, "character special file 1:5 604 1 2\n4\n");
    });
}

#[test]
fn no_pivot_runs() {
    each_runtime("no_pivot_runs", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.set_sh("cat /bin/sh >/dev/null && echo ok");
        let out = b.run(&["--no-pivot"]).ok();
        assert_eq!(out.stdout, "ok\n");
    });
}

#[test]
fn symlinked_mount_destination_stays_inside_rootfs() {
    each_runtime(
        "symlinked_mount_destination_stays_inside_rootfs",
        &[],
        |rt| {
            let outside = TempDir::new("outside");
            let mut b = Bundle::new(rt);
            // rootfs/evil -> ../../../../../../<outside>: resolved naively from the host it
            // escapes the rootfs; resolved inside the rootfs it is <rootfs>/<outside>.
            let target = format!("../../../../../../..{}", outside.path().display());
            std::os::unix::fs::symlink(&target, b.rootfs().join("evil")).expect("symlink");
            let inside = b.rootfs().join(outside.path().strip_prefix("/").unwrap());
            std::fs::create_dir_all(&inside).expect("mkdir target inside rootfs");
            add_mount(
                &mut b.spec,
                json!({ "destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"] }),
            );
            let out = b.run_sh(&format!(
                "stat -f -c %T /evil/; stat -f -c %T {}/",
                outside.path().display()
            ));
            assert_eq!(
                out, "tmpfs\ntmpfs\n",
                "mount did not land inside the rootfs"
            );
            let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            assert!(
                !host.contains(&outside.path().display().to_string()),
                "mounted on the host path"
            );
            assert_eq!(
                std::fs::read_dir(outside.path()).map(|d| d.count()).ok(),
                Some(0),
                "host dir untouched"
            );
        },
    );
}

/// A mount made in the container under a bind mount with `rshared` propagation (and a
/// shared root, as rootfsPropagation asks) appears on the host, whose source directory
/// is a shared mount point.
#[test]
fn bidirectional_propagation_reaches_the_host() {
    let known = &[(
        "crun",
        "the harness runs crun 1.8 under `unshare -m` (for the hybrid cgroup layout), a private mount namespace that cuts propagation to the host",
    )];
    each_runtime("bidirectional_propagation_reaches_the_host", known, |rt| {
        let data = host_dir_with_file();
        let source = data.path().display().to_string();
        let made = sh(&format!("mount --bind {source} {source} && mount --make-shared {source}"));
        assert!(made.success(), "making {source} a shared mount: {made:?}");
        let mut b = Bundle::new(rt);
        b.spec["linux"]["rootfsPropagation"] = json!("rshared");
        for set in ["bounding", "effective", "permitted"] {
            b.spec["process"]["capabilities"][set] = json!(["CAP_SYS_ADMIN"]);
        }
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/shared", "type": "bind", "source": data.path(), "options": ["rbind", "rshared"] }),
        );
        let out = b.run_sh("mkdir -p /mnt/shared/sub && mount -t tmpfs from-container /mnt/shared/sub && echo mounted");
        let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let propagated = host.lines().any(|l| l.split(' ').nth(4) == Some(&format!("{source}/sub")));
        let _ = sh(&format!("umount -l {source}/sub; umount -l {source}"));
        assert!(out.contains("mounted"), "{out}");
        assert!(propagated, "the container's mount did not reach the host");
    });
}

/// `rro`: mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY) makes the submount of an
/// rbind read-only too, where `ro` leaves it writable.
#[test]
fn rro_makes_submounts_read_only() {
    each_runtime("rro_makes_submounts_read_only", &[], |rt| {
        let data = host_dir_with_file();
        let sub = data.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir sub");
        sh(&format!("mount -t tmpfs berth-rro-sub {}", sub.display())).ok();
        let _guard = HostSubmount(sub.clone());
        let mut b = Bundle::new(rt);
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/rro", "type": "bind", "source": data.path(), "options": ["rbind", "rro"] }),
        );
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/ro", "type": "bind", "source": data.path(), "options": ["rbind", "ro"] }),
        );
        let out = b.run_sh(
            "cat /proc/self/mountinfo; touch /mnt/rro/sub/new 2>&1; echo rro=$?; touch /mnt/ro/sub/new; echo ro=$?",
        );
        for target in ["/mnt/rro", "/mnt/rro/sub", "/mnt/ro"] {
            assert!(mount_opts(&out, target).contains(&"ro".to_string()), "{target} not ro: {out}");
        }
        assert!(mount_opts(&out, "/mnt/ro/sub").contains(&"rw".to_string()), "{out}");
        assert!(out.contains("Read-only file system") && out.contains("rro=1") && out.contains("ro=0"), "{out}");
    });
}

/// A directory owned by the host's root, with a file owned by 1000 in it.
fn host_dir_owned_by_root() -> TempDir {
    let d = host_dir_with_file();
    std::fs::write(d.path().join("user-file"), "user\n").expect("write user file");
    std::os::unix::fs::chown(d.path().join("user-file"), Some(1000), Some(1000)).expect("chown user file");
    // The container's root (host uid 100000) must be able to reach the directory.
    sh(&format!("chmod 755 {}", d.path().display())).ok();
    d
}

/// Mount points made beforehand: the root of a new user namespace (host uid 100000)
/// cannot create them in a rootfs the host's root owns.
fn make_mount_points(b: &Bundle, dirs: &[&str]) {
    for dir in dirs {
        std::fs::create_dir_all(b.rootfs().join(dir)).expect("mkdir mount point");
    }
}

/// `idmap` with the container's own mappings (0 -> 100000/200000): files owned by the
/// host's root show as root inside, files owned by 1000 as 1000, and a file the
/// container's root makes lands on the host owned by 0:0. Without the idmap the same
/// directory shows as nobody's (65534).
#[test]
fn idmapped_bind_shows_host_owners_inside_a_user_namespace() {
    let known = &[("runc", "runc 1.1 has no idmapped mounts (runc 1.2 has)")];
    each_runtime("idmapped_bind_shows_host_owners_inside_a_user_namespace", known, |rt| {
        let data = host_dir_owned_by_root();
        let mut b = Bundle::new(rt);
        make_mount_points(&b, &["mnt/id", "mnt/plain"]);
        berth_integration::spec::set_mapped_user_namespace(&mut b.spec);
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/id", "type": "bind", "source": data.path(), "options": ["rbind", "idmap"],
                    "uidMappings": [{ "containerID": 0, "hostID": 100000, "size": 65536 }],
                    "gidMappings": [{ "containerID": 0, "hostID": 200000, "size": 65536 }] }),
        );
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/plain", "type": "bind", "source": data.path(), "options": ["rbind"] }),
        );
        let out = b.run_sh(
            "stat -c %u:%g /mnt/id /mnt/id/file /mnt/id/user-file /mnt/plain/file; \
             echo made > /mnt/id/made; echo rc=$?",
        );
        assert_eq!(out, "0:0\n0:0\n1000:1000\n65534:65534\nrc=0\n", "{}", rt.name());
        let made = std::fs::metadata(data.path().join("made")).expect("file made through the idmapped mount");
        use std::os::unix::fs::MetadataExt;
        assert_eq!((made.uid(), made.gid()), (0, 0), "owner on the host");
    });
}

/// `ridmap` without mappings on the mount uses the container's; the submount of the
/// rbind is idmapped too.
#[test]
fn ridmap_uses_the_container_mappings_for_submounts() {
    let known = &[("runc", "runc 1.1 has no idmapped mounts (runc 1.2 has)"), ("crun", "crun 1.8 has no ridmap")];
    each_runtime("ridmap_uses_the_container_mappings_for_submounts", known, |rt| {
        let data = host_dir_owned_by_root();
        let sub = data.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir sub");
        sh(&format!("mount -t tmpfs -o mode=755 berth-ridmap-sub {}", sub.display())).ok();
        let _guard = HostSubmount(sub.clone());
        std::fs::write(sub.join("inner"), "inner\n").expect("write inner");
        let mut b = Bundle::new(rt);
        make_mount_points(&b, &["mnt/id"]);
        berth_integration::spec::set_mapped_user_namespace(&mut b.spec);
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/id", "type": "bind", "source": data.path(), "options": ["rbind", "ridmap"] }),
        );
        let out = b.run_sh("stat -c %u:%g /mnt/id/file /mnt/id/sub/inner");
        assert_eq!(out, "0:0\n0:0\n", "{}", rt.name());
    });
}

/// An idmap with no mappings anywhere (no user namespace) fails create with a message
/// naming the mount, and leaves nothing behind.
#[test]
fn idmap_without_mappings_is_refused() {
    each_runtime("idmap_without_mappings_is_refused", &[("runc", "runc 1.1 ignores idmap")], |rt| {
        let data = host_dir_with_file();
        let mut b = Bundle::new(rt);
        add_mount(
            &mut b.spec,
            json!({ "destination": "/mnt/id", "type": "bind", "source": data.path(), "options": ["rbind", "idmap"] }),
        );
        b.write_config();
        let out = b.create(&[]).failed();
        if rt.is_berth() {
            assert!(out.stderr.contains("/mnt/id") && out.stderr.contains("uidMappings"), "{out}");
        }
        b.delete_force();
        b.assert_no_leaks();
    });
}

/// berth-runc's annotation `io.github.berth.rootfs.idmap`: a rootfs directory the
/// host's root owns is root's inside a user namespace (0 -> 100000), where it would be
/// nobody's, and a file the container writes there is owned by 0:0 on the host. An
/// overlay rootfs is refused with a clear error (the kernel cannot idmap overlayfs).
/// (runc and crun have no such annotation.)
#[test]
fn idmapped_rootfs() {
    each_runtime("idmapped_rootfs", &[], |rt| {
        if !rt.is_berth() {
            return;
        }
        let mut b = Bundle::new(rt);
        berth_integration::spec::set_mapped_user_namespace(&mut b.spec);
        b.spec["annotations"] = json!({ "io.github.berth.rootfs.idmap": "true" });
        let out = b.run_sh("stat -c %u:%g / /bin/busybox; echo made > /root/made; echo rc=$?");
        assert_eq!(out, "0:0\n0:0\nrc=0\n");
        use std::os::unix::fs::MetadataExt;
        let made = std::fs::metadata(b.rootfs().join("root/made")).expect("file made in the rootfs");
        assert_eq!((made.uid(), made.gid()), (0, 0), "owner on the host");
        let (sub, empty) = (b.dir().join("overlay"), b.dir().join("empty"));
        for dir in [&sub, &empty] {
            std::fs::create_dir(dir).expect("mkdir");
        }
        let lower = format!("{}:{}", b.rootfs().display(), empty.display());
        sh(&format!("mount -t overlay berth-idmap-overlay -o lowerdir={lower} {}", sub.display())).ok();
        let _guard = HostSubmount(sub.clone());
        b.spec["root"]["path"] = json!(sub);
        b.write_config();
        let failed = b.create(&[]).failed();
        assert!(failed.stderr.contains("overlayfs cannot"), "{failed}");
        b.delete_force();
        b.assert_no_leaks();
    });
}
