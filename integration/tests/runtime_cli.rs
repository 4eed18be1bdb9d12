//! The informational commands: `spec` writes a default config.json that the runtime
//! itself can run, and `features` describes what the runtime supports.

use berth_integration::{each_runtime, Bundle};
use serde_json::Value;

#[test]
fn spec_writes_a_runnable_default() {
    each_runtime("spec_writes_a_runnable_default", &[], |rt| {
        let mut b = Bundle::new(rt);
        std::fs::remove_file(b.dir().join("config.json")).ok();
        b.rt_cmd(&["spec"]).ok();
        let text = std::fs::read_to_string(b.dir().join("config.json")).expect("spec wrote config.json");
        let mut spec: Value = serde_json::from_str(&text).expect("config.json is JSON");
        assert!(spec["ociVersion"].as_str().is_some_and(|v| v.starts_with("1.")), "{spec}");
        assert_eq!(spec["root"]["path"], "rootfs");
        // Run it as written, but without a terminal and in this test's cgroup.
        spec["process"]["terminal"] = Value::Bool(false);
        spec["process"]["args"] = serde_json::json!(["sh", "-c", "echo ran-from-default-spec"]);
        spec["linux"]["cgroupsPath"] = b.spec["linux"]["cgroupsPath"].clone();
        b.spec = spec;
        assert_eq!(b.run_ok(), "ran-from-default-spec\n");
        let again = b.rt_cmd(&["spec"]);
        assert!(!again.success(), "spec over an existing config.json must fail");
    });
}

#[test]
fn features_describe_the_runtime() {
    let known = &[("crun", "crun 1.8 has no features command")];
    each_runtime("features_describe_the_runtime", known, |rt| {
        let b = Bundle::new(rt);
        let out = b.rt_cmd(&["features"]).ok();
        let features: Value = serde_json::from_str(&out.stdout).expect("features prints JSON");
        assert!(features["ociVersionMin"].as_str().is_some(), "{features}");
        let namespaces = features["linux"]["namespaces"].as_array().expect("linux.namespaces");
        assert!(namespaces.iter().any(|n| n == "user"), "{features}");
        assert!(features["linux"]["seccomp"]["enabled"] == true, "{features}");
    });
}

/// `run` in the foreground passes SIGTERM on to the container and exits with its code.
#[test]
fn run_forwards_sigterm() {
    each_runtime("run_forwards_sigterm", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.set_sh("trap 'exit 7' TERM; while true; do sleep 0.1; done");
        b.write_config();
        let mut command = rt.command(&["run", "--bundle"]);
        command.arg(b.dir()).arg(b.id());
        command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        let mut child = command.spawn().expect("spawning run");
        b.wait_for_status("running", std::time::Duration::from_secs(10));
        // The trap is set once sh runs its first command; give it a moment.
        std::thread::sleep(std::time::Duration::from_millis(300));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .expect("signalling the runtime");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for run") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("run did not end after SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(7), "{status:?}");
    });
}

/// `--log FILE --log-format json` writes errors as JSON lines with level and msg.
#[test]
fn errors_are_logged_as_json() {
    each_runtime("errors_are_logged_as_json", &[], |rt| {
        let b = Bundle::new(rt);
        let log = b.dir().join("runtime-log.json");
        let log_arg = log.to_string_lossy().into_owned();
        let out = b.rt_cmd(&["--log", &log_arg, "--log-format", "json", "state", "berth-test-no-such-container"]);
        assert!(!out.success());
        let text = std::fs::read_to_string(&log).expect("the log file was written");
        let line: Value = text.lines().filter_map(|l| serde_json::from_str(l).ok()).last().expect("a JSON line");
        assert_eq!(line["level"], "error", "{text}");
        assert!(line["msg"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
    });
}

/// `features` lists the recursive options (`rro` among them, as runc 1.1+ does) and
/// idmapped mounts (`idmap`, `ridmap`, `linux.mountExtensions.idmap`, as runc 1.2 does).
#[test]
fn features_report_rro_and_idmap() {
    let known = &[
        ("crun", "crun 1.8 has no features command"),
        ("runc", "runc 1.1 reports rro but has no idmapped mounts"),
    ];
    each_runtime("features_report_rro_and_idmap", known, |rt| {
        let b = Bundle::new(rt);
        let out = b.rt_cmd(&["features"]).ok();
        let features: Value = serde_json::from_str(&out.stdout).expect("features prints JSON");
        let options = features["mountOptions"].as_array().expect("mountOptions");
        for name in ["rro", "rnosuid", "idmap", "ridmap"] {
            assert!(options.iter().any(|o| o == name), "{name} missing: {features}");
        }
        assert_eq!(features["linux"]["mountExtensions"]["idmap"]["enabled"], true, "{features}");
    });
}
