//! A busybox-static root filesystem: /bin/busybox copied in, one symlink per applet, and
//! the few directories and /etc files the tests rely on.

use std::path::Path;

const BUSYBOX: &str = "/bin/busybox";

/// Fills `dir` (created if needed) with a busybox rootfs.
pub fn build_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    for d in [
        "bin", "proc", "sys", "dev", "tmp", "etc", "root", "mnt", "var",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
    }
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap_or_else(|e| panic!("copy {BUSYBOX}: {e}"));
    for applet in applets() {
        if applet == "busybox" || applet.contains('/') {
            continue;
        }
        let _ = std::os::unix::fs::symlink("busybox", bin.join(&applet));
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .expect("write etc/passwd");
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    )
    .expect("write etc/group");
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777));
}

fn applets() -> Vec<String> {
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
