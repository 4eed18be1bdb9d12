//! Hooks: every kind writes the state it gets on stdin to a file (checked for id and
//! pid), in the order of the lifecycle; a hook that outlives its timeout fails the
//! operation and leaves nothing behind.

use std::time::Duration;

use berth_integration::spec::add_mount;
use berth_integration::tempdir::TempDir;
use berth_integration::{each_runtime, Bundle};
use serde_json::{json, Value};

const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook that saves its stdin to `<dir>/<kind>.json` (`dir` is bind-mounted at the
/// same path inside the container, so hooks run in either namespace can write there).
fn saving_hook(dir: &std::path::Path, kind: &str) -> Value {
    json!({ "path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{kind}.json", dir.display())] })
}

fn read_state(dir: &std::path::Path, kind: &str) -> Value {
    let path = dir.join(format!("{kind}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{kind} hook did not run ({}: {e})", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{kind} hook got no JSON state ({e}): {text:?}"))
}

/// Runs a container through create/start/kill/delete with every hook kind saving its
/// state; returns (dir holding the states, container init pid, id).
fn run_with_all_hooks(rt: &berth_integration::Runtime) -> (TempDir, i32, String) {
    let out = TempDir::new("hooks");
    let mut b = Bundle::new(rt);
    add_mount(
        &mut b.spec,
        json!({ "destination": out.path(), "type": "bind", "source": out.path(), "options": ["rbind"] }),
    );
    for kind in KINDS {
        b.spec["hooks"][kind] = json!([saving_hook(out.path(), kind)]);
    }
    b.create(&[]).ok();
    let pid = b.pid();
    for kind in ["createRuntime", "createContainer"] {
        assert!(
            out.path().join(format!("{kind}.json")).exists(),
            "{kind} ran by create"
        );
    }
    assert!(
        !out.path().join("startContainer.json").exists(),
        "startContainer waits for start"
    );
    b.start().ok();
    b.kill("KILL").ok();
    b.wait_for_status("stopped", Duration::from_secs(10));
    b.delete().ok();
    b.assert_no_leaks();
    (out, pid, b.id().to_string())
}

#[test]
fn every_hook_gets_the_state() {
    each_runtime("every_hook_gets_the_state", &[], |rt| {
        let (out, pid, id) = run_with_all_hooks(rt);
        for kind in KINDS {
            let st = read_state(out.path(), kind);
            assert_eq!(st["id"], id.as_str(), "{kind}: {st}");
            if ["prestart", "createRuntime", "poststart"].contains(&kind) {
                assert_eq!(st["pid"].as_i64(), Some(pid as i64), "{kind}: {st}");
            }
        }
    });
}

#[test]
fn container_hooks_get_host_pid() {
    let known = &[
        (
            "runc",
            "runc 1.1 gives createContainer/startContainer the pid seen inside the container (1)",
        ),
        (
            "crun",
            "crun 1.8 gives createContainer/startContainer pid 0",
        ),
    ];
    each_runtime("container_hooks_get_host_pid", known, |rt| {
        let (out, pid, _) = run_with_all_hooks(rt);
        for kind in ["createContainer", "startContainer"] {
            let st = read_state(out.path(), kind);
            assert_eq!(st["pid"].as_i64(), Some(pid as i64), "{kind}: {st}");
        }
    });
}

#[test]
fn hook_timeout_fails_create() {
    each_runtime("hook_timeout_fails_create", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["hooks"]["createRuntime"] =
            json!([{ "path": "/bin/sleep", "args": ["sleep", "20"], "timeout": 1 }]);
        let started = std::time::Instant::now();
        let out = b.create(&[]).failed();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timeout not enforced: {out}"
        );
        assert!(!out.stderr.is_empty(), "{out}");
        b.delete_force();
        b.assert_no_leaks();
    });
}

#[test]
fn failing_prestart_hook_fails_create() {
    each_runtime("failing_prestart_hook_fails_create", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["hooks"]["prestart"] = json!([{ "path": "/bin/false", "args": ["false"] }]);
        let out = b.create(&[]).failed();
        assert!(!out.stderr.is_empty(), "{out}");
        b.delete_force();
        b.assert_no_leaks();
    });
}

/// runtime-tools' hooks_stdin: a prestart hook reads the status `created` (poststart
/// `running`, poststop a status), with the annotations of config.json.
#[test]
fn prestart_hook_sees_created() {
    let known = &[("runc", "runc 1.1 gives prestart hooks the status creating")];
    each_runtime("prestart_hook_sees_created", known, |rt| {
        let (out, _, _) = run_with_all_hooks(rt);
        assert_eq!(read_state(out.path(), "prestart")["status"], "created");
        assert_eq!(read_state(out.path(), "poststart")["status"], "running");
        assert!(read_state(out.path(), "poststop")["status"].is_string());
    });
}
