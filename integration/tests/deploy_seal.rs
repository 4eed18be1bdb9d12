//! deploy/seal-binaries, which deploy/install.sh runs at boot: berth-runc and
//! berth-shim end up on read-only bind mounts of themselves, a write through the path
//! is refused, the runtime still runs, and `unmount` takes the mounts off again. All
//! inside a private mount namespace, so nothing reaches the host's mount table.

use berth_integration::bins::bin_path;
use berth_integration::command::sh;
use berth_integration::tempdir::TempDir;

#[test]
fn seal_binaries_mounts_them_read_only_and_unmounts() {
    let dir = TempDir::new("seal");
    let bin = dir.path().display().to_string();
    std::fs::copy(bin_path("berth-runc"), dir.path().join("berth-runc")).expect("copy berth-runc");
    std::fs::copy("/bin/true", dir.path().join("berth-shim")).expect("copy a stand-in berth-shim");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/seal-binaries");
    let script = script.display();
    let out = sh(&format!(
        "unshare -m --propagation private sh -c '\
           set -e; {script} mount {bin}; {script} mount {bin}; \
           for f in berth-runc berth-shim; do \
             grep -c \" {bin}/$f \" /proc/self/mountinfo; \
             findmnt -n -o OPTIONS {bin}/$f | cut -d, -f1; \
             (echo x >> {bin}/$f) 2>/dev/null && echo $f=written || echo $f=refused; \
           done; \
           {bin}/berth-runc features > /dev/null && echo runs; \
           {script} unmount {bin}; \
           mountpoint -q {bin}/berth-runc && echo still-mounted || echo unmounted'"
    ));
    let out = out.ok();
    assert_eq!(
        out.stdout,
        "1\nro\nberth-runc=refused\n1\nro\nberth-shim=refused\nruns\nunmounted\n",
        "{out}"
    );
}
