//! Seccomp profiles for the OCI spec: `RuntimeDefault`, an allow-list with the structure
//! and rules of Docker's and containerd's default profiles (written here from the
//! syscall table and the capabilities), and `Localhost` profiles read from a JSON file in
//! Docker's or the OCI's format.
//!
//! `RuntimeDefault` answers EPERM to every syscall it does not list, so a syscall that a
//! newer kernel adds stays refused until it is reviewed. The syscalls a capability
//! guards are allowed only with that capability. `clone` may not make namespaces without
//! CAP_SYS_ADMIN (its flags are masked), and `clone3`, whose flags sit in memory where a
//! filter cannot see them, answers ENOSYS so that the C library falls back to `clone`.
//! `personality` takes only its harmless personas, and `socket` refuses AF_VSOCK.
use serde_json::{json, Value};

use crate::core::SeccompProfile;

/// Allowed to every container: the syscalls that need no capability, or that the
/// kernel guards itself (it checks the capability where one is needed).
const ALLOWED: &[&str] = &[
    // files and directories
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range", "creat",
    "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64",
    "fdatasync", "flock", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futimesat", "getcwd", "getdents", "getdents64", "lchown", "lchown32", "link",
    "linkat", "_llseek", "lseek", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat",
    "newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "rename", "renameat",
    "renameat2", "rmdir", "sendfile", "sendfile64", "splice", "stat", "stat64", "statfs", "statfs64",
    "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate",
    "truncate64", "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
    "vmsplice", "write", "writev", "cachestat",
    // extended attributes
    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "lgetxattr", "listxattr",
    "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "setxattr",
    // waiting and events
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "fanotify_mark", "_newselect", "pause", "poll", "ppoll",
    "ppoll_time64", "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
    // asynchronous I/O (io_uring is not here: it is guarded below)
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup",
    "io_submit", "ioctl", "pipe", "pipe2",
    // memory
    "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore",
    "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock",
    "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
    // processes, threads, credentials
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "futex", "futex_requeue",
    "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "getcpu", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getpgid", "getpgrp",
    "getpid", "getppid", "getpriority", "getresgid", "getresgid32", "getresuid", "getresuid32",
    "getrlimit", "get_robust_list", "getrusage", "getsid", "get_thread_area", "gettid", "getuid",
    "getuid32", "ioprio_get", "ioprio_set", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64",
    "process_mrelease", "restart_syscall", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setpgid", "setpriority", "setregid",
    "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "set_robust_list", "setsid", "set_thread_area", "set_tid_address", "setuid",
    "setuid32", "sigaltstack", "sigprocmask", "sigreturn", "tgkill", "tkill", "ugetrlimit", "vfork",
    "wait4", "waitid", "waitpid",
    // time and system information
    "adjtimex", "alarm", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "getitimer",
    "getrandom", "gettimeofday", "nanosleep", "setitimer", "sysinfo", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "times", "uname",
    // sockets (socket itself is below: AF_VSOCK is refused)
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
    "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg",
    "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
    // System V and POSIX IPC (the container's own IPC namespace)
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
    // architecture-specific (names another architecture lacks are skipped there)
    "arch_prctl", "modify_ldt", "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
    "breakpoint", "cacheflush", "set_tls",
];

/// Syscalls allowed only to a container holding one of the capabilities.
const BY_CAPABILITY: &[(&[&str], &[&str])] = &[
    (
        &["CAP_SYS_ADMIN"],
        &[
            "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie", "mount",
            "mount_setattr", "move_mount", "name_to_handle_at", "open_tree", "quotactl", "quotactl_fd",
            "setdomainname", "sethostname", "setns", "umount", "umount2", "unshare",
            // the keyrings are not namespaced, and io_uring is a surface of its own
            "add_key", "keyctl", "request_key", "io_uring_enter", "io_uring_register", "io_uring_setup",
        ],
    ),
    (&["CAP_SYS_ADMIN", "CAP_BPF"], &["bpf"]),
    (&["CAP_SYS_ADMIN", "CAP_PERFMON"], &["perf_event_open"]),
    (&["CAP_SYS_ADMIN", "CAP_SYSLOG"], &["syslog"]),
    (&["CAP_SYS_BOOT"], &["reboot"]),
    (&["CAP_SYS_CHROOT"], &["chroot"]),
    (&["CAP_SYS_MODULE"], &["delete_module", "finit_module", "init_module"]),
    (&["CAP_SYS_PACCT"], &["acct"]),
    (&["CAP_SYS_PTRACE"], &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
    (&["CAP_SYS_RAWIO"], &["ioperm", "iopl"]),
    (&["CAP_SYS_TIME"], &["clock_settime", "clock_settime64", "settimeofday", "stime"]),
    (&["CAP_SYS_TTY_CONFIG"], &["vhangup"]),
    (&["CAP_SYS_NICE"], &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    (&["CAP_DAC_READ_SEARCH"], &["open_by_handle_at"]),
];

/// The clone flags that make namespaces: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID and NEWNET.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// The personas a container may switch to: PER_LINUX, PER_LINUX32, UNAME26 (alone and
/// with PER_LINUX32), and the query (0xffffffff).
const PERSONAS: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The address family `socket` refuses (AF_VSOCK reaches the host's hypervisor).
const AF_VSOCK: u64 = libc::AF_VSOCK as u64;

const ARCHITECTURES: &[&str] = &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"];

#[derive(Debug, thiserror::Error)]
pub enum SeccompProfileError {
    #[error("seccomp profile {path}: {message}")]
    Unreadable { path: String, message: String },
}

/// The `linux.seccomp` object for `profile`, or `None` when unconfined.
pub fn seccomp_for(profile: &SeccompProfile, capabilities: &[String]) -> Result<Option<Value>, SeccompProfileError> {
    match profile {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => Ok(Some(runtime_default(capabilities))),
        SeccompProfile::Localhost(path) => localhost(path).map(Some),
    }
}

fn runtime_default(capabilities: &[String]) -> Value {
    let holds = |needed: &[&str]| needed.iter().any(|cap| capabilities.iter().any(|held| held == cap));
    let mut allowed: Vec<&str> = ALLOWED.to_vec();
    for (needed, names) in BY_CAPABILITY {
        if holds(needed) {
            allowed.extend_from_slice(names);
        }
    }
    let mut rules = vec![json!({ "names": allowed, "action": "SCMP_ACT_ALLOW" })];
    if holds(&["CAP_SYS_ADMIN"]) {
        rules.push(json!({ "names": ["clone"], "action": "SCMP_ACT_ALLOW" }));
    } else {
        rules.push(json!({ "names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" }] }));
        rules.push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS }));
    }
    for persona in PERSONAS {
        rules.push(json!({ "names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": persona, "op": "SCMP_CMP_EQ" }] }));
    }
    rules.push(json!({ "names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE" }] }));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": ARCHITECTURES,
        "syscalls": rules,
    })
}

fn localhost(path: &str) -> Result<Value, SeccompProfileError> {
    let unreadable = |message: String| SeccompProfileError::Unreadable { path: path.to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|error| unreadable(error.to_string()))?;
    let profile: Value = serde_json::from_str(&text).map_err(|error| unreadable(error.to_string()))?;
    let default_action = profile
        .get("defaultAction")
        .and_then(Value::as_str)
        .ok_or_else(|| unreadable("it has no defaultAction".into()))?;
    let mut oci = json!({ "defaultAction": default_action, "syscalls": [] });
    if let Some(errno) = profile.get("defaultErrnoRet") {
        oci["defaultErrnoRet"] = errno.clone();
    }
    oci["architectures"] = architectures_of(&profile);
    let rules = profile.get("syscalls").and_then(Value::as_array).cloned().unwrap_or_default();
    oci["syscalls"] = Value::Array(rules.iter().map(oci_rule).collect());
    Ok(oci)
}

/// Docker profiles list `archMap` entries; OCI ones list `architectures`.
fn architectures_of(profile: &Value) -> Value {
    if let Some(list) = profile.get("architectures") {
        return list.clone();
    }
    let from_map: Vec<Value> = profile
        .get("archMap")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("architecture").cloned())
        .collect();
    Value::Array(from_map)
}

fn oci_rule(rule: &Value) -> Value {
    let mut names = rule.get("names").cloned().unwrap_or_else(|| json!([]));
    if let Some(name) = rule.get("name") {
        names = json!([name]);
    }
    let mut oci = json!({ "names": names, "action": rule.get("action").cloned().unwrap_or(json!("SCMP_ACT_ALLOW")) });
    for key in ["errnoRet", "args"] {
        if let Some(value) = rule.get(key).filter(|value| !value.is_null()) {
            oci[key] = value.clone();
        }
    }
    oci
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names a rule with `action` (and no argument conditions) allows.
    fn plain_names(profile: &Value) -> Vec<String> {
        let rules = profile["syscalls"].as_array().expect("rules");
        let plain = rules.iter().filter(|rule| rule["action"] == "SCMP_ACT_ALLOW" && rule.get("args").is_none());
        plain.flat_map(|rule| rule["names"].as_array().expect("names").iter().map(|n| n.as_str().expect("name").to_string())).collect()
    }

    #[test]
    fn runtime_default_is_an_allow_list_with_capability_gates() {
        let plain = runtime_default(&[]);
        assert_eq!(plain["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(plain["defaultErrnoRet"], libc::EPERM);
        let names = plain_names(&plain);
        assert!(names.iter().any(|n| n == "read") && names.iter().any(|n| n == "execve"));
        for guarded in ["mount", "ptrace", "bpf", "perf_event_open", "keyctl", "add_key", "io_uring_setup", "unshare", "clone", "clone3", "socket", "personality"] {
            assert!(!names.iter().any(|n| n == guarded), "{guarded} is allowed outright");
        }
        let admin = plain_names(&runtime_default(&["CAP_SYS_ADMIN".into()]));
        for name in ["mount", "unshare", "clone", "clone3", "keyctl", "bpf", "perf_event_open", "io_uring_setup"] {
            assert!(admin.iter().any(|n| n == name), "{name} with CAP_SYS_ADMIN");
        }
        let bpf = plain_names(&runtime_default(&["CAP_BPF".into()]));
        assert!(bpf.iter().any(|n| n == "bpf") && !bpf.iter().any(|n| n == "mount"));
    }

    #[test]
    fn clone_is_masked_and_clone3_answers_enosys_without_sys_admin() {
        let plain = runtime_default(&[]);
        let rules = plain["syscalls"].as_array().expect("rules");
        let clone = rules.iter().find(|r| r["names"] == json!(["clone"])).expect("clone rule");
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], 0x7E02_0000u64);
        let clone3 = rules.iter().find(|r| r["names"] == json!(["clone3"])).expect("clone3 rule");
        assert_eq!((clone3["action"].as_str(), clone3["errnoRet"].as_i64()), (Some("SCMP_ACT_ERRNO"), Some(i64::from(libc::ENOSYS))));
        let socket = rules.iter().find(|r| r["names"] == json!(["socket"])).expect("socket rule");
        assert_eq!((socket["args"][0]["op"].as_str(), socket["args"][0]["value"].as_u64()), (Some("SCMP_CMP_NE"), Some(40)));
        let personas = rules.iter().filter(|r| r["names"] == json!(["personality"])).count();
        assert_eq!(personas, PERSONAS.len());
    }

    #[test]
    fn no_syscall_is_listed_twice() {
        let mut all: Vec<&str> = ALLOWED.to_vec();
        all.extend(BY_CAPABILITY.iter().flat_map(|(_, names)| names.iter().copied()));
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
    }

    #[test]
    fn docker_profiles_convert() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        let docker = r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":[]}],
            "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW","args":[],"comment":"x"}]}"#;
        std::fs::write(&path, docker).expect("write");
        let oci = localhost(path.to_str().expect("utf-8")).expect("convert");
        assert_eq!(oci["architectures"], json!(["SCMP_ARCH_X86_64"]));
        assert_eq!(oci["syscalls"][0]["names"], json!(["read", "write"]));
        assert!(oci["syscalls"][0].get("comment").is_none());
        assert!(localhost("/nonexistent/profile.json").is_err());
    }
}
