//! Lifecycle: create/start/state/kill/delete, run (foreground and detached), list, ps,
//! pid-file and the ociVersions accepted.

use std::time::Duration;

use berth_integration::leak::pid_gone;
use berth_integration::{each_runtime, Bundle};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn create_start_kill_delete() {
    each_runtime("create_start_kill_delete", &[], |rt| {
        let b = Bundle::new(rt);
        b.create(&[]).ok();
        let st = b.state();
        assert_eq!(st["status"], "created", "{st}");
        let pid = b.pid();
        assert!(
            pid > 0 && !pid_gone(pid),
            "created container has a live pid: {st}"
        );
        b.start().ok();
        b.wait_for_status("running", WAIT);
        b.kill("KILL").ok();
        b.wait_for_status("stopped", WAIT);
        b.delete().ok();
        assert!(pid_gone(pid), "init pid {pid} gone after delete");
        b.rt_cmd(&["state", b.id()]).failed();
        b.assert_no_leaks();
    });
}

#[test]
fn kill_signal_forms() {
    each_runtime("kill_signal_forms", &[], |rt| {
        for sig in ["SIGKILL", "KILL", "9"] {
            let b = Bundle::new(rt);
            b.create_start();
            b.kill(sig).ok();
            b.wait_for_status("stopped", WAIT);
            b.delete().ok();
            b.assert_no_leaks();
        }
    });
}

#[test]
fn kill_all_stops_every_process() {
    each_runtime("kill_all_stops_every_process", &[], |rt| {
        let mut b = Bundle::new(rt);
        // Without a pid namespace, --all is what reaches the other processes.
        berth_integration::spec::remove_namespace(&mut b.spec, "pid");
        b.set_sh("sleep 100 & sleep 100 & wait");
        let pid = b.create_start();
        std::thread::sleep(Duration::from_millis(200));
        let pids = b.ps_pids();
        assert!(
            pids.len() >= 3 && pids.contains(&pid),
            "ps lists init and children: {pids:?}"
        );
        b.rt_cmd(&["kill", "--all", b.id(), "KILL"]).ok();
        b.wait_for_status("stopped", WAIT);
        for p in &pids {
            let deadline = std::time::Instant::now() + WAIT;
            while !pid_gone(*p) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(pid_gone(*p), "pid {p} still alive after kill --all");
        }
        b.delete().ok();
        b.assert_no_leaks();
    });
}

#[test]
fn run_output_and_exit_code() {
    each_runtime("run_output_and_exit_code", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.set_sh("echo hello-out; echo hello-err >&2; exit 3");
        let out = b.run(&[]);
        assert_eq!(out.code, 3, "{out}");
        assert_eq!(out.stdout, "hello-out\n", "{out}");
        assert!(out.stderr.contains("hello-err"), "{out}");
        b.assert_no_leaks();
        b.set_sh("true");
        assert_eq!(b.run_id(&b.new_id(), &[]).code, 0);
        b.assert_no_leaks();
    });
}

#[test]
fn run_detached() {
    each_runtime("run_detached", &[], |rt| {
        let b = Bundle::new(rt);
        b.run(&["-d"]).ok();
        assert_eq!(b.status(), "running");
        b.delete().failed();
        b.delete_force().ok();
        b.assert_no_leaks();
    });
}

#[test]
fn state_fields() {
    each_runtime("state_fields", &[], |rt| {
        let b = Bundle::new(rt);
        b.create(&[]).ok();
        let st = b.state();
        assert!(
            st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
            "{st}"
        );
        assert_eq!(st["id"], b.id(), "{st}");
        assert_eq!(st["status"], "created", "{st}");
        assert!(st["pid"].as_i64().is_some_and(|p| p > 0), "{st}");
        let bundle = st["bundle"].as_str().unwrap_or_default();
        assert_eq!(
            std::fs::canonicalize(bundle).ok(),
            std::fs::canonicalize(b.dir()).ok(),
            "{st}"
        );
        b.delete_force().ok();
        b.assert_no_leaks();
    });
}

#[test]
fn list_shows_header_and_containers() {
    each_runtime("list_shows_header_and_containers", &[], |rt| {
        let b = Bundle::new(rt);
        b.create(&[]).ok();
        let second = b.new_id();
        b.create_id(&second, &[]).ok();
        let out = b.list().ok();
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        // runc prints "ID ...", crun "NAME ...".
        assert!(
            (lines[0].starts_with("ID") || lines[0].starts_with("NAME"))
                && lines[0].contains("STATUS"),
            "{out}"
        );
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(b.id()) && l.contains("created")),
            "{out}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with(second.as_str())),
            "{out}"
        );
        b.rt_cmd(&["delete", "--force", &second]).ok();
        b.delete_force().ok();
        b.assert_no_leaks();
    });
}

#[test]
fn ps_json_lists_init() {
    each_runtime("ps_json_lists_init", &[], |rt| {
        let b = Bundle::new(rt);
        let pid = b.create_start();
        assert_eq!(b.ps_pids(), vec![pid]);
        b.delete_force().ok();
        b.assert_no_leaks();
    });
}

#[test]
fn pid_file_holds_init_pid() {
    each_runtime("pid_file_holds_init_pid", &[], |rt| {
        let b = Bundle::new(rt);
        let pid_file = b.dir().join("init.pid");
        b.create(&["--pid-file", &pid_file.to_string_lossy()]).ok();
        let text = std::fs::read_to_string(&pid_file).expect("pid file written");
        assert_eq!(
            text.trim().parse::<i32>().ok(),
            Some(b.pid()),
            "pid file {text:?}"
        );
        b.delete_force().ok();
        b.assert_no_leaks();
    });
}

/// crun 1.8 knows spec versions up to 1.1 and refuses newer: "unknown version specified".
const CRUN_OLD_SPEC: &[berth_integration::Expect] = &[(
    "crun",
    "crun 1.8 refuses ociVersion > 1.1: unknown version specified",
)];

fn runs_with_version(rt: &berth_integration::Runtime, version: &str) {
    let mut b = Bundle::new(rt);
    b.spec["ociVersion"] = serde_json::json!(version);
    b.set_sh("echo ok");
    let out = b.run(&[]);
    assert!(
        out.success() && out.stdout == "ok\n",
        "ociVersion {version}: {out}"
    );
    b.assert_no_leaks();
}

#[test]
fn oci_version_1_0_0() {
    each_runtime("oci_version_1_0_0", &[], |rt| {
        runs_with_version(rt, "1.0.0")
    });
}

#[test]
fn oci_version_1_2_0() {
    each_runtime("oci_version_1_2_0", CRUN_OLD_SPEC, |rt| {
        runs_with_version(rt, "1.2.0")
    });
}

#[test]
fn oci_version_1_3_0() {
    each_runtime("oci_version_1_3_0", CRUN_OLD_SPEC, |rt| {
        runs_with_version(rt, "1.3.0")
    });
}

#[test]
fn oci_version_future_1_9_0() {
    each_runtime("oci_version_future_1_9_0", CRUN_OLD_SPEC, |rt| {
        runs_with_version(rt, "1.9.0")
    });
}
