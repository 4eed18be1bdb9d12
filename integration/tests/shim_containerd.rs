//! berth-shim under Debian's containerd 1.6 (`containerd.task.v2`): `ctr run` with
//! the berth runtime, output and exit code, `ctr task exec` (with and without a TTY),
//! `kill`, `pause`/`resume` and `metrics`. Skipped when containerd is not installed.

use std::time::Duration;

use berth_integration::containerd::{Containerd, BERTH_RUNTIME, IMAGE};
use berth_integration::shim::eventually;

fn task_status(containerd: &Containerd, id: &str) -> String {
    let listing = containerd.ctr_ok(&["task", "list"]);
    listing.lines().find(|l| l.split_whitespace().next() == Some(id)).and_then(|l| l.split_whitespace().nth(2)).unwrap_or("").to_string()
}

#[test]
fn ctr_run_exec_kill_pause_metrics() {
    // A missing containerd fails the test (.ci/run installs it).
    let containerd = Containerd::start().expect("containerd is installed (.ci/run installs it)");
    containerd.import_busybox();
    let output = containerd.ctr(&["run", "--rm", "--runtime", BERTH_RUNTIME, IMAGE, "berth-run1", "sh", "-c", "echo hello from berth; exit 3"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello from berth\n", "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(3));

    containerd.ctr_ok(&["run", "-d", "--runtime", BERTH_RUNTIME, IMAGE, "berth-run2", "sleep", "100"]);
    assert_eq!(task_status(&containerd, "berth-run2"), "RUNNING");
    let exec = containerd.ctr(&["task", "exec", "--exec-id", "e1", "berth-run2", "sh", "-c", "echo from exec; exit 2"]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "from exec\n");
    assert_eq!(exec.status.code(), Some(2));
    let socket = containerd.socket().display().to_string();
    let tty = std::process::Command::new("timeout")
        .args(["60", "script", "-qec", &format!("ctr -a {socket} -n {} task exec -t --exec-id e2 berth-run2 tty", containerd.namespace), "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    assert!(String::from_utf8_lossy(&tty.stdout).contains("/dev/pts/"), "{}", String::from_utf8_lossy(&tty.stdout));

    containerd.ctr_ok(&["task", "pause", "berth-run2"]);
    assert_eq!(task_status(&containerd, "berth-run2"), "PAUSED");
    containerd.ctr_ok(&["task", "resume", "berth-run2"]);
    assert_eq!(task_status(&containerd, "berth-run2"), "RUNNING");
    let metrics = containerd.ctr_ok(&["task", "metrics", "berth-run2"]);
    assert!(metrics.contains("pids.current") && metrics.contains("memory"), "{metrics}");
    let ps = containerd.ctr_ok(&["task", "ps", "berth-run2"]);
    assert!(ps.lines().count() >= 2, "{ps}");

    containerd.ctr_ok(&["task", "kill", "-s", "SIGKILL", "berth-run2"]);
    assert!(eventually(Duration::from_secs(10), || task_status(&containerd, "berth-run2") == "STOPPED"));
    containerd.ctr_ok(&["task", "delete", "berth-run2"]);
    containerd.ctr_ok(&["containers", "delete", "berth-run2"]);
    let shims = containerd.dir.path().join("shims");
    assert!(eventually(Duration::from_secs(5), || std::fs::read_dir(shims.join("s")).map(|d| d.count() == 0).unwrap_or(true)), "a shim socket is left");
}
