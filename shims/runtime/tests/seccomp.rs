//! Loads compiled seccomp filters in forked children (needs root, or falls back to
//! no_new_privs) and checks the effect on syscalls and `/proc/self/status`.

use berth_runtime::seccomp::{compile, SeccompProgram};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

/// Forks, loads `prog` in the child, runs `check` there; the child's exit code is 0 when
/// `check` returns true.
fn in_child(prog: &SeccompProgram, check: impl Fn() -> bool) -> i32 {
    // SAFETY: the child only makes syscalls and small allocations, then _exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let ok = (nix::unistd::geteuid().is_root()
                || unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0)
                && prog.load().is_ok()
                && check();
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
            WaitStatus::Exited(_, code) => code,
            other => panic!("child ended with {other:?}"),
        },
    }
}

fn seccomp_mode() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status
        .lines()
        .find(|l| l.starts_with("Seccomp:"))
        .unwrap_or_default();
    line.trim_start_matches("Seccomp:").trim().to_string()
}

fn errno_of(rc: libc::c_int) -> i32 {
    if rc == -1 {
        nix::errno::Errno::last_raw()
    } else {
        0
    }
}

#[test]
fn mkdir_denied_with_eperm_only_in_child() {
    let p: LinuxSeccomp = serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}]}))
        .expect("profile");
    let prog = compile(&p).expect("compile");
    let dir = std::env::temp_dir().join(format!("berth-seccomp-{}", std::process::id()));
    let path = std::ffi::CString::new(dir.to_string_lossy().as_bytes()).expect("path");
    let code = in_child(&prog, || {
        let rc = unsafe { libc::mkdir(path.as_ptr(), 0o700) };
        errno_of(rc) == libc::EPERM && seccomp_mode() == "2"
    });
    assert_eq!(
        code, 0,
        "child: mkdir must fail with EPERM and Seccomp must be 2"
    );
    assert!(!dir.exists());
    assert_eq!(seccomp_mode(), "0", "parent must not be filtered");
    std::fs::create_dir(&dir).expect("parent mkdir works");
    std::fs::remove_dir(&dir).expect("cleanup");
}

#[test]
fn personality_denied_only_for_one_argument() {
    const QUERY: libc::c_ulong = 0xffff_ffff;
    let p: LinuxSeccomp = serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
            "args": [{"index": 0, "value": 0x0040_0000u64, "op": "SCMP_CMP_EQ"}]}]}))
        .expect("profile");
    let prog = compile(&p).expect("compile");
    let code = in_child(&prog, || {
        let denied = unsafe { libc::personality(0x0040_0000) };
        let query = unsafe { libc::personality(QUERY) };
        denied == -1 && nix::errno::Errno::last_raw() == libc::EACCES && query != -1
    });
    assert_eq!(
        code, 0,
        "personality(0x400000) must fail with EACCES, the query must pass"
    );
}

#[test]
fn masked_eq_and_multiple_conditions_on_one_index() {
    // Deny personality when (arg0 & 0xff) == 0x08, or arg0 == 0x0040_0000 (two EQ on index 0).
    let p: LinuxSeccomp = serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
             "args": [{"index": 0, "value": 0xff, "valueTwo": 0x08, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EINVAL,
             "args": [{"index": 0, "value": 0x0040_0000u64, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 0x0100_0000u64, "op": "SCMP_CMP_EQ"}]}]}))
    .expect("profile");
    let prog = compile(&p).expect("compile");
    let code = in_child(&prog, || {
        let masked = errno_of(unsafe { libc::personality(0x0108) });
        let first = errno_of(unsafe { libc::personality(0x0040_0000) });
        let second = errno_of(unsafe { libc::personality(0x0100_0000) });
        let query = unsafe { libc::personality(0xffff_ffff) };
        masked == libc::EPERM && first == libc::EINVAL && second == libc::EINVAL && query != -1
    });
    assert_eq!(code, 0);
}

#[test]
fn notify_returns_a_listener_fd() {
    let p: LinuxSeccomp = serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}))
    .expect("profile");
    let prog = compile(&p).expect("compile");
    // in_child loaded it once; a second, stacked load must also hand back a listener fd.
    let code = in_child(&prog, || {
        matches!(prog.load(), Ok(Some(_))) && seccomp_mode() == "2"
    });
    assert_eq!(code, 0);
}
