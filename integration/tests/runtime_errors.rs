//! Bad input: each case exits non-zero, says on stderr what is wrong (naming the
//! field, path or id) and leaves nothing behind (no state entry, cgroup or process).

use berth_integration::spec::set_namespace;
use berth_integration::{each_runtime, Bundle, CmdOutput};
use serde_json::json;

/// Asserts `out` failed with a message on stderr containing one of `needles`
/// (case-insensitive).
#[track_caller]
fn fails_naming(out: CmdOutput, needles: &[&str]) {
    let out = out.failed();
    let err = out.stderr.to_lowercase();
    assert!(
        needles.iter().any(|n| err.contains(&n.to_lowercase())),
        "stderr names none of {needles:?}: {out}"
    );
}

#[test]
fn invalid_json_config() {
    each_runtime(
        "invalid_json_config",
        &[(
            "runc",
            "runc 1.1 says only \"unexpected EOF\", naming neither config.json nor JSON",
        )],
        |rt| {
            let b = Bundle::new(rt);
            b.write_raw_config("{ \"ociVersion\": \"1.0.2\", \"process\": ");
            let out = b.rt_cmd(&["create", "--bundle", &b.dir().to_string_lossy(), b.id()]);
            fails_naming(out, &["config.json", "json"]);
            b.assert_no_leaks();
        },
    );
}

#[test]
fn missing_rootfs() {
    each_runtime("missing_rootfs", &[], |rt| {
        let b = Bundle::new(rt);
        std::fs::remove_dir_all(b.rootfs()).expect("remove rootfs");
        fails_naming(b.create(&[]), &["rootfs"]);
        b.assert_no_leaks();
    });
}

#[test]
fn nonexistent_executable() {
    each_runtime("nonexistent_executable", &[], |rt| {
        let b = Bundle::with_args(rt, &["/no/such-binary"]);
        let created = b.create(&[]);
        let out = if created.success() {
            b.start()
        } else {
            created
        };
        fails_naming(out, &["such-binary"]);
        b.delete_force();
        b.assert_no_leaks();
    });
}

#[test]
fn unknown_signal_name() {
    each_runtime(
        "unknown_signal_name",
        &[("crun", "crun 1.8 kill exits 0 for an unknown signal name")],
        |rt| {
            let b = Bundle::new(rt);
            b.create_start();
            fails_naming(b.kill("SIGBERTHFOO"), &["berthfoo"]);
            assert_eq!(b.status(), "running", "container unaffected");
            b.delete_force().ok();
            b.assert_no_leaks();
        },
    );
}

#[test]
fn duplicate_id() {
    each_runtime(
        "duplicate_id",
        &[(
            "runc",
            "runc 1.1 says \"container with given ID already exists\" without the id",
        )],
        |rt| {
            let b = Bundle::new(rt);
            b.create(&[]).ok();
            let pid = b.pid();
            fails_naming(b.create(&[]), &[b.id()]);
            assert_eq!(b.pid(), pid, "first container untouched");
            assert_eq!(b.status(), "created");
            b.delete_force().ok();
            b.assert_no_leaks();
        },
    );
}

#[test]
fn nonexistent_id() {
    each_runtime(
        "nonexistent_id",
        &[(
            "runc",
            "runc 1.1 says \"container does not exist\" without the id",
        )],
        |rt| {
            let b = Bundle::new(rt);
            let id = b.new_id();
            for args in [
                vec!["state", &id],
                vec!["start", &id],
                vec!["kill", &id, "KILL"],
                vec!["delete", &id],
            ] {
                fails_naming(b.rt_cmd(&args), &[&id]);
            }
            b.assert_no_leaks();
        },
    );
}

#[test]
fn user_namespace_without_mappings() {
    each_runtime(
        "user_namespace_without_mappings",
        &[(
            "crun",
            "crun 1.8 fails later, at the devpts mount, without naming the missing mappings",
        )],
        |rt| {
            let mut b = Bundle::new(rt);
            set_namespace(&mut b.spec, "user", None);
            fails_naming(b.create(&[]), &["mapping", "uidMappings"]);
            b.assert_no_leaks();
        },
    );
}

#[test]
fn namespace_listed_twice() {
    each_runtime(
        "namespace_listed_twice",
        &[("crun", "crun 1.8 accepts a namespace type listed twice")],
        |rt| {
            let mut b = Bundle::new(rt);
            b.spec["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "type": "network" }));
            fails_naming(b.create(&[]), &["network", "namespace"]);
            b.assert_no_leaks();
        },
    );
}

#[test]
fn relative_cwd_is_refused() {
    each_runtime(
        "relative_cwd_is_refused",
        &[("crun", "crun 1.8 accepts a relative process.cwd")],
        |rt| {
            let mut b = Bundle::new(rt);
            b.spec["process"]["cwd"] = json!("relative/dir");
            fails_naming(b.create(&[]), &["cwd", "relative/dir"]);
            b.assert_no_leaks();
        },
    );
}
