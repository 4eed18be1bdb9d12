//! exec: args, --process file, --env, --cwd, --user, --tty, --detach, --pid-file; the
//! exec'd process shares every namespace and the cgroup of the container; and it cannot
//! reach the runtime binary or host files through /proc.

use std::time::Duration;

use berth_integration::leak::pid_gone;
use berth_integration::spec::set_namespace;
use berth_integration::{each_runtime, Bundle, ConsoleSocket, Runtime};
use serde_json::json;

/// A running `sleep` container (with a cgroup namespace too).
fn running(rt: &Runtime) -> Bundle<'_> {
    let mut b = Bundle::new(rt);
    set_namespace(&mut b.spec, "cgroup", None);
    b.create_start();
    b
}

fn finish(b: &Bundle) {
    b.delete_force().ok();
    b.assert_no_leaks();
}

#[test]
fn exec_args_env_cwd_user() {
    each_runtime("exec_args_env_cwd_user", &[], |rt| {
        let b = running(rt);
        assert_eq!(b.exec(&[], &["echo", "a  b", "c"]).ok().stdout, "a  b c\n");
        let flags = [
            "--env",
            "PATH=/bin",
            "--env",
            "FOO=bar",
            "--cwd",
            "/tmp",
            "--user",
            "1000:1001",
        ];
        let out = b
            .exec(&flags, &["sh", "-c", "echo $FOO; pwd; id -u; id -g"])
            .ok();
        assert_eq!(out.stdout, "bar\n/tmp\n1000\n1001\n");
        let failed = b.exec(&[], &["sh", "-c", "exit 7"]);
        assert_eq!(failed.code, 7, "{failed}");
        finish(&b);
    });
}

#[test]
fn exec_env_adds_to_process_env() {
    let known = &[(
        "crun",
        "crun 1.8 exec --env replaces the process env (PATH gone, `sh` not found)",
    )];
    each_runtime("exec_env_adds_to_process_env", known, |rt| {
        let b = running(rt);
        let out = b
            .exec(&["--env", "FOO=bar"], &["sh", "-c", "echo $FOO $PATH"])
            .ok();
        assert_eq!(
            out.stdout,
            "bar /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        );
        finish(&b);
    });
}

#[test]
fn exec_process_file() {
    each_runtime("exec_process_file", &[], |rt| {
        let b = running(rt);
        let process = json!({ "terminal": false, "user": { "uid": 0, "gid": 0 }, "cwd": "/tmp",
            "args": ["sh", "-c", "echo $P; pwd"], "env": ["PATH=/bin", "P=from-file"] });
        let file = b.dir().join("process.json");
        std::fs::write(&file, process.to_string()).expect("write process.json");
        let out = b
            .rt_cmd(&["exec", "--process", &file.to_string_lossy(), b.id()])
            .ok();
        assert_eq!(out.stdout, "from-file\n/tmp\n");
        finish(&b);
    });
}

#[test]
fn exec_tty_over_console_socket() {
    each_runtime("exec_tty_over_console_socket", &[], |rt| {
        let b = running(rt);
        let console = ConsoleSocket::new(b.dir());
        b.exec(
            &["--tty", "--detach", "--console-socket", &console.path_str()],
            &["sh", "-c", "tty; echo exec-tty"],
        )
        .ok();
        let out = console.output(Duration::from_secs(10));
        assert!(
            out.contains("/dev/pts/") && out.contains("exec-tty"),
            "{out:?}"
        );
        finish(&b);
    });
}

/// `/proc/<pid>/ns/*` links that must match between init and exec'd processes.
const NS: [&str; 6] = ["ipc", "mnt", "net", "pid", "uts", "cgroup"];

#[test]
fn exec_detached_joins_namespaces_and_cgroup() {
    each_runtime("exec_detached_joins_namespaces_and_cgroup", &[], |rt| {
        let b = running(rt);
        let init = b.pid();
        let pid_file = b.dir().join("exec.pid");
        let started = std::time::Instant::now();
        b.exec(
            &["--detach", "--pid-file", &pid_file.to_string_lossy()],
            &["sleep", "30"],
        )
        .ok();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "--detach returned at once"
        );
        let text = std::fs::read_to_string(&pid_file).expect("exec pid file");
        let pid: i32 = text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("pid file {text:?}"));
        assert!(!pid_gone(pid) && pid != init);
        for ns in NS {
            let a = std::fs::read_link(format!("/proc/{init}/ns/{ns}")).expect("init ns");
            let e = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).expect("exec ns");
            assert_eq!(a, e, "{ns} namespace differs");
        }
        let cg = |p: i32| std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
        assert_eq!(cg(init), cg(pid), "cgroups differ");
        assert!(b.ps_pids().contains(&pid), "ps lists the exec'd process");
        finish(&b);
        assert!(pid_gone(pid), "exec'd process killed with the container");
    });
}

#[test]
fn exec_cannot_reach_runtime_through_proc() {
    each_runtime("exec_cannot_reach_runtime_through_proc", &[], |rt| {
        let b = running(rt);
        let script = "readlink /proc/1/exe; readlink /proc/self/exe; \
            for f in /proc/self/fd/*; do l=$(readlink $f) && [ \"${f##*/}\" -gt 2 ] && echo fd ${f##*/} $l; done; true";
        let out = b.exec(&[], &["sh", "-c", script]).ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines[..2], ["/bin/busybox", "/bin/busybox"], "{out}");
        assert_eq!(lines.len(), 2, "unexpected open fds beyond stdio:\n{out}");
        let exe = b
            .exec(
                &[],
                &["sh", "-c", "cat /proc/1/exe | head -c 4 | od -c | head -1"],
            )
            .ok();
        assert!(exe.stdout.contains("E   L   F"), "{exe}");
        finish(&b);
    });
}

/// CVE-2019-5736: a created init waits inside the container's namespaces, so a process
/// of the container could keep a descriptor of its `/proc/<pid>/exe` and reopen it for
/// writing once the runtime is gone. The file behind it must refuse that (a read-only
/// mount or a sealed memfd), never be the runtime's host binary. Only opened, never
/// written: nothing is modified even if the check fails.
#[test]
fn created_init_exe_cannot_be_reopened_for_writing() {
    each_runtime("created_init_exe_cannot_be_reopened_for_writing", &[], |rt| {
        let b = Bundle::new(rt);
        b.create(&[]).ok();
        let exe = format!("/proc/{}/exe", b.pid());
        let held = std::fs::File::open(&exe).unwrap_or_else(|e| panic!("opening {exe}: {e}"));
        b.delete_force().ok();
        let reopened = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
        let writable = std::fs::OpenOptions::new().write(true).open(&reopened);
        assert!(writable.is_err(), "{}: the init's executable could be reopened for writing", rt.name());
        b.assert_no_leaks();
    });
}
