//! A runtime killed in the middle of `create` leaves only what `delete --force` can
//! remove: after the crash and the forced delete, no state entry, cgroup directory or
//! process of the container remains (the leak check of `each_runtime` verifies it).

use berth_integration::{each_runtime, Bundle};
use serde_json::json;

/// Kills the runtime itself (the hook's parent) with SIGKILL.
fn killing_hook() -> serde_json::Value {
    json!({ "path": "/bin/sh", "args": ["sh", "-c", "cat >/dev/null; kill -9 $PPID"] })
}

fn crash_during(kind: &str, rt: &berth_integration::Runtime) {
    let mut b = Bundle::new(rt);
    b.spec["hooks"][kind] = json!([killing_hook()]);
    let out = b.create(&[]);
    assert!(!out.success(), "create survived its own SIGKILL: {out:?}");
    b.rt_cmd(&["delete", "--force", b.id()]).ok();
    let listed = b.rt_cmd(&["list", "-q"]).ok();
    assert!(!listed.stdout.contains(b.id()), "{} still listed: {}", b.id(), listed.stdout);
}

/// runc 1.1 and crun 1.8 forget the cgroup of a create that died: their forced delete
/// leaves its directories behind.
const LEAKY: &[berth_integration::Expect] = &[
    ("runc", "delete --force after a crashed create leaves the cgroup directories"),
    ("crun", "delete --force after a crashed create leaves the cgroup directories"),
];

#[test]
fn crash_during_prestart_is_recoverable() {
    each_runtime("crash_during_prestart_is_recoverable", LEAKY, |rt| crash_during("prestart", rt));
}

#[test]
fn crash_during_create_runtime_is_recoverable() {
    each_runtime("crash_during_create_runtime_is_recoverable", LEAKY, |rt| crash_during("createRuntime", rt));
}
