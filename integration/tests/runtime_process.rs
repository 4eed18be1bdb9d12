//! The container process: args, env, cwd, user and groups, umask, capabilities,
//! noNewPrivileges, rlimits, oomScoreAdj, terminal over --console-socket, sysctls and
//! seccomp, each read back from /proc/self inside the container.

use std::time::Duration;

use berth_integration::spec::{set_mapped_user_namespace, set_seccomp_denying};
use berth_integration::{each_runtime, Bundle, ConsoleSocket};
use serde_json::json;

/// The value of `Key:` in /proc/self/status text.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
}

#[test]
fn args_are_passed_verbatim() {
    each_runtime("args_are_passed_verbatim", &[], |rt| {
        let b = Bundle::with_args(rt, &["echo", "a  b", "c"]);
        assert_eq!(b.run_ok(), "a  b c\n");
    });
}

#[test]
fn env_and_cwd() {
    each_runtime("env_and_cwd", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
        b.spec["process"]["cwd"] = json!("/tmp");
        assert_eq!(b.run_sh("echo \"$FOO\"; pwd"), "bar baz\n/tmp\n");
    });
}

#[test]
fn user_group_and_additional_gids() {
    each_runtime("user_group_and_additional_gids", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["process"]["user"] = json!({ "uid": 1000, "gid": 1001, "additionalGids": [10, 20] });
        let out = b.run_sh("id -u; id -g; grep Groups: /proc/self/status");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..2], ["1000", "1001"], "{out}");
        let groups: Vec<&str> = status_field(&out, "Groups").split_whitespace().collect();
        assert!(groups.contains(&"10") && groups.contains(&"20"), "{out}");
    });
}

#[test]
fn umask_is_applied() {
    each_runtime("umask_is_applied", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["process"]["user"]["umask"] = json!(0o027);
        assert_eq!(
            b.run_sh("umask; touch /tmp/f; stat -c %a /tmp/f"),
            "0027\n640\n"
        );
    });
}

/// Gives the process CAP_CHOWN and CAP_NET_RAW in all five sets and checks that those
/// are all it has.
fn assert_only_chown_and_net_raw(b: &mut Bundle) {
    let caps = json!(["CAP_CHOWN", "CAP_NET_RAW"]);
    b.spec["process"]["capabilities"] = json!({ "bounding": caps, "effective": caps,
        "permitted": caps, "inheritable": caps, "ambient": caps });
    let out = b.run_sh("cat /proc/self/status");
    // CAP_CHOWN = bit 0, CAP_NET_RAW = bit 13.
    for key in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(status_field(&out, key), "0000000000002001", "{key}");
    }
}

#[test]
fn capabilities_sets() {
    each_runtime("capabilities_sets", &[], |rt| assert_only_chown_and_net_raw(&mut Bundle::new(rt)));
}

/// A new user namespace starts with a full bounding set, whatever the runtime held:
/// the spec's must still be all that is left.
#[test]
fn capabilities_sets_in_a_user_namespace() {
    each_runtime("capabilities_sets_in_a_user_namespace", &[], |rt| {
        let mut b = Bundle::new(rt);
        set_mapped_user_namespace(&mut b.spec);
        assert_only_chown_and_net_raw(&mut b);
    });
}

#[test]
fn no_new_privileges() {
    each_runtime("no_new_privileges", &[], |rt| {
        let mut b = Bundle::new(rt);
        assert_eq!(
            status_field(&b.run_sh("cat /proc/self/status"), "NoNewPrivs"),
            "1"
        );
        b.spec["process"]["noNewPrivileges"] = json!(false);
        assert_eq!(
            status_field(&b.run_sh("cat /proc/self/status"), "NoNewPrivs"),
            "0"
        );
    });
}

#[test]
fn rlimits() {
    each_runtime("rlimits", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["process"]["rlimits"] =
            json!([{ "type": "RLIMIT_NOFILE", "hard": 600, "soft": 512 }]);
        assert_eq!(b.run_sh("ulimit -n; ulimit -Hn"), "512\n600\n");
    });
}

#[test]
fn oom_score_adj() {
    each_runtime("oom_score_adj", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["process"]["oomScoreAdj"] = json!(500);
        assert_eq!(b.run_sh("cat /proc/self/oom_score_adj"), "500\n");
    });
}

#[test]
fn terminal_over_console_socket() {
    each_runtime("terminal_over_console_socket", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["process"]["terminal"] = json!(true);
        b.set_sh("tty; echo hello-tty");
        let console = ConsoleSocket::new(b.dir());
        b.run(&["-d", "--console-socket", &console.path_str()]).ok();
        let out = console.output(Duration::from_secs(10));
        assert!(
            out.contains("/dev/pts/0") && out.contains("hello-tty"),
            "{out:?}"
        );
        b.wait_for_status("stopped", Duration::from_secs(10));
        b.delete().ok();
        b.assert_no_leaks();
    });
}

#[test]
fn sysctls() {
    each_runtime("sysctls", &[], |rt| {
        let mut b = Bundle::new(rt);
        b.spec["linux"]["sysctl"] =
            json!({ "net.ipv4.ip_forward": "1", "kernel.shmmax": "4096000" });
        assert_eq!(
            b.run_sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax"),
            "1\n4096000\n"
        );
        let host = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap_or_default();
        assert_ne!(host.trim(), "4096000", "host sysctl changed");
    });
}

/// A profile that denies what the runtime itself uses between loading it and execve
/// (close_range, found by the OCI validation suite, whose default profile lacks it):
/// the container still starts, and the denial holds inside it.
#[test]
fn seccomp_profile_denying_close_range() {
    each_runtime("seccomp_profile_denying_close_range", &[], |rt| {
        let mut b = Bundle::new(rt);
        set_seccomp_denying(&mut b.spec, &["close_range"]);
        let out = b.run_sh("grep Seccomp: /proc/self/status; echo started");
        assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
        assert!(out.contains("started"), "{out}");
    });
}

#[test]
fn seccomp_denies_mkdir() {
    each_runtime("seccomp_denies_mkdir", &[], |rt| {
        let mut b = Bundle::new(rt);
        set_seccomp_denying(&mut b.spec, &["mkdir", "mkdirat"]);
        let out = b.run_sh("grep Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; echo rc=$?; touch /tmp/y && echo touched");
        assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
        assert!(
            out.contains("Operation not permitted") && !out.contains("rc=0"),
            "{out}"
        );
        assert!(out.contains("touched"), "{out}");
    });
}

/// A profile denying getcwd (runtime-tools' linux_seccomp): the runtime checks the
/// working directory before loading it, so the container starts, and the denial holds.
#[test]
fn seccomp_profile_denying_getcwd() {
    each_runtime("seccomp_profile_denying_getcwd", &[], |rt| {
        let mut b = Bundle::new(rt);
        set_seccomp_denying(&mut b.spec, &["getcwd"]);
        b.spec["process"]["cwd"] = json!("/tmp");
        let out = b.run_sh("grep Seccomp: /proc/self/status; echo started");
        assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
        assert!(out.contains("started"), "{out}");
    });
}
