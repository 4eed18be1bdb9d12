//! Seccomp: compiles an OCI `linux.seccomp` profile into a classic BPF program with
//! libseccomp (in the runtime, before the container init is cloned), loads that program
//! with the `seccomp(2)` system call in the container init, and hands a user-notification
//! fd to a seccomp agent listening on `listenerPath`.
//!
//! Compilation follows runc's rules: syscall names unknown to libseccomp are skipped,
//! rules whose action equals the default action are skipped, a rule with two conditions
//! on the same argument index is split into one rule per condition (libseccomp cannot AND
//! two comparisons of one argument), `SCMP_ACT_NOTIFY` is refused as the default action
//! and for `write`, and `errnoRet` defaults to `EPERM`.
//!
//! [`compile_memoized`] keeps the last profile compiled in this process with its
//! program: a shim compiles its container's profile at create and again for every
//! exec, the profile never changes, and compiling Docker's default profile costs tens
//! of milliseconds (most of an exec's time in the shim, measured with strace).
//!
//! The child only issues one `seccomp(SECCOMP_SET_MODE_FILTER)` call: no allocation and
//! no libseccomp state is needed after the fork. Filter flags are passed to the kernel
//! directly, so a flag is usable whenever the running kernel knows it.

// The kernel flag constants are c_ulong, which is only u64 on 64-bit targets.
#![allow(clippy::unnecessary_cast)]

use std::io::{IoSlice, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use libseccomp::error::SeccompError as ScmpError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Most arguments a system call takes (and a condition may name).
const SYSCALL_MAX_ARGS: usize = 6;
/// Kernel limit on the length of a classic BPF program (`BPF_MAXINSNS`).
const BPF_MAX_INSNS: usize = 4096;
/// Rule count above which libseccomp's binary-tree optimisation is switched on.
const OPTIMIZE_THRESHOLD: usize = 32;
/// Name of the seccomp notify fd in the state sent to the agent (runtime-spec).
const SECCOMP_FD_NAME: &str = "seccompFd";

/// Errors of compiling, loading or handing over a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action")]
    NotifyAsDefault,
    #[error("linux.seccomp.syscalls: SCMP_ACT_NOTIFY cannot be used for the write syscall")]
    NotifyOnWrite,
    #[error(
        "linux.seccomp.syscalls: SCMP_ACT_NOTIFY needs libseccomp API level 6 \
         (libseccomp >= 2.5.0, Linux >= 5.7), have level {0}"
    )]
    NotifyUnsupported(u32),
    #[error("linux.seccomp.{field}: {value} does not fit the 16-bit seccomp return data")]
    ReturnValue { field: String, value: u32 },
    #[error("linux.seccomp.syscalls: empty syscall name")]
    EmptySyscallName,
    #[error("linux.seccomp.syscalls[{syscall}].args: index {index} is out of range (0-5)")]
    ArgIndex { syscall: String, index: usize },
    #[error(
        "linux.seccomp.architectures: {arch} is not supported by libseccomp {version}: {source}"
    )]
    Arch {
        arch: String,
        version: String,
        source: ScmpError,
    },
    #[error("linux.seccomp.flags: {flag} is not supported: {reason}")]
    Flag { flag: String, reason: String },
    #[error("linux.seccomp.defaultAction: cannot create the filter: {0}")]
    Create(ScmpError),
    #[error("linux.seccomp.syscalls: cannot add the rule for syscall {syscall}: {source}")]
    Rule { syscall: String, source: ScmpError },
    #[error("seccomp: cannot export the BPF program: {0}")]
    Export(String),
    #[error("seccomp: the compiled filter has {0} instructions, the kernel accepts at most 4096")]
    TooLong(usize),
    #[error(
        "seccomp: loading the filter (flags {flags:#x}) failed: {errno}{hint}",
        hint = if *errno == nix::errno::Errno::EACCES {
            " (needs no_new_privs or CAP_SYS_ADMIN)"
        } else { "" }
    )]
    Load {
        flags: u64,
        errno: nix::errno::Errno,
    },
    #[error("seccomp: SECCOMP_FILTER_FLAG_TSYNC failed: thread {0} cannot be synchronised")]
    Tsync(i64),
    #[error("linux.seccomp.listenerPath {path}: {reason}")]
    Listener { path: PathBuf, reason: String },
}

/// A compiled filter: the BPF program and the kernel flags to load it with.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    insns: Vec<libc::sock_filter>,
    flags: u64,
    notify: bool,
    skipped: Vec<String>,
}

/// The last profile [`compile_memoized`] compiled, and its program.
static LAST_COMPILED: std::sync::Mutex<Option<(LinuxSeccomp, SeccompProgram)>> = std::sync::Mutex::new(None);

/// [`compile`], or the program of the last profile compiled in this process when
/// `profile` equals it.
pub fn compile_memoized(profile: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    if let Ok(last) = LAST_COMPILED.lock() {
        if let Some((_, program)) = last.as_ref().filter(|(known, _)| known == profile) {
            return Ok(program.clone());
        }
    }
    let program = compile(profile)?;
    if let Ok(mut last) = LAST_COMPILED.lock() {
        *last = Some((profile.clone(), program.clone()));
    }
    Ok(program)
}

/// Compiles the whole OCI profile. Runs in the runtime before the container init is
/// cloned, so that the child only has to load the result.
pub fn compile(profile: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    let syscalls: &[LinuxSyscall] = profile.syscalls().as_deref().unwrap_or_default();
    let notify = check_notify(profile, syscalls)?;
    let default = scmp_action(
        profile.default_action(),
        profile.default_errno_ret(),
        "defaultErrnoRet",
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(SeccompError::Create)?;
    add_architectures(
        &mut ctx,
        profile.architectures().as_deref().unwrap_or_default(),
    )?;
    let flags = kernel_flags(profile.flags().as_deref().unwrap_or_default(), notify)?;
    if syscalls.len() > OPTIMIZE_THRESHOLD {
        // Binary-tree dispatch; an old libseccomp without it still builds a valid filter.
        let _ = ctx.set_ctl_optimize(2);
    }
    let mut skipped = Vec::new();
    for rule in syscalls {
        add_rule(&mut ctx, rule, default, &mut skipped)?;
    }
    let insns = export(&ctx)?;
    Ok(SeccompProgram {
        insns,
        flags,
        notify,
        skipped,
    })
}

/// Refuses the uses of `SCMP_ACT_NOTIFY` that would hang the init; true when used at all.
fn check_notify(profile: &LinuxSeccomp, syscalls: &[LinuxSyscall]) -> Result<bool, SeccompError> {
    if profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyAsDefault);
    }
    let mut used = false;
    for rule in syscalls
        .iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
    {
        if rule.names().iter().any(|n| n == "write") {
            return Err(SeccompError::NotifyOnWrite);
        }
        used = true;
    }
    if used {
        let level = libseccomp::get_api();
        if level < 6 {
            return Err(SeccompError::NotifyUnsupported(level));
        }
    }
    Ok(used)
}

/// Maps an OCI action (and its errnoRet, EPERM when absent) to libseccomp's.
fn scmp_action(
    action: LinuxSeccompAction,
    ret: Option<u32>,
    field: &str,
) -> Result<ScmpAction, SeccompError> {
    let data = match ret {
        None => libc::EPERM as u32,
        Some(v) if v <= libc::SECCOMP_RET_DATA => v,
        Some(v) => {
            return Err(SeccompError::ReturnValue {
                field: field.to_string(),
                value: v,
            })
        }
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(data as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(data as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

/// libseccomp's token for an OCI architecture name.
fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Adds the extra architectures (the native one is always present).
fn add_architectures(ctx: &mut ScmpFilterContext, archs: &[Arch]) -> Result<(), SeccompError> {
    for &arch in archs {
        ctx.add_arch(scmp_arch(arch))
            .map_err(|source| SeccompError::Arch {
                arch: arch.to_string(),
                version: library_version(),
                source,
            })?;
    }
    Ok(())
}

/// The linked libseccomp's version as "major.minor.micro".
fn library_version() -> String {
    match libseccomp::ScmpVersion::current() {
        Ok(v) => format!("{}.{}.{}", v.major, v.minor, v.micro),
        Err(_) => "(unknown version)".to_string(),
    }
}

/// The `seccomp(2)` flag for an OCI filter flag.
fn flag_bit(flag: LinuxSeccompFilterFlag) -> u64 {
    let bit = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        }
    };
    bit as u64
}

/// Turns the profile's flags into the kernel flags, checking each against the kernel.
/// WAIT_KILLABLE_RECV only means something with a listener, so it is dropped without one.
fn kernel_flags(flags: &[LinuxSeccompFilterFlag], notify: bool) -> Result<u64, SeccompError> {
    let mut bits = if notify {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u64
    } else {
        0
    };
    for &flag in flags {
        let bit = flag_bit(flag);
        if let Err(reason) = probe_flag(bit) {
            return Err(SeccompError::Flag {
                flag: flag.to_string(),
                reason,
            });
        }
        if bit == libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u64 && !notify {
            continue;
        }
        bits |= bit;
    }
    let tsync = libc::SECCOMP_FILTER_FLAG_TSYNC as u64;
    if bits & tsync != 0 && notify {
        // The kernel refuses TSYNC with NEW_LISTENER unless failures are reported as ESRCH.
        bits |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH as u64;
    }
    Ok(bits)
}

/// Asks the kernel whether it knows a filter flag: it validates flags before reading the
/// program, so a NULL program gives EFAULT for a known flag and EINVAL for an unknown one.
fn probe_flag(bit: u64) -> Result<(), String> {
    let mut flags = bit;
    if bit == libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u64 {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u64;
    }
    // SAFETY: a NULL program is never dereferenced by a successful call; the kernel fails
    // with EFAULT (or EINVAL) before installing anything.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::null::<u8>(),
        )
    };
    match (rc, nix::errno::Errno::last()) {
        (-1, nix::errno::Errno::EFAULT) => Ok(()),
        (-1, nix::errno::Errno::EINVAL) => Err("the running kernel does not know it".to_string()),
        (-1, errno) => Err(format!("probing the kernel failed: {errno}")),
        (_, _) => Err("unexpected success probing the kernel".to_string()),
    }
}

/// Adds one OCI syscall rule (all its names) to the filter.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    rule: &LinuxSyscall,
    default: ScmpAction,
    skipped: &mut Vec<String>,
) -> Result<(), SeccompError> {
    let field = format!("syscalls[{}].errnoRet", rule.names().join(","));
    let action = scmp_action(rule.action(), rule.errno_ret(), &field)?;
    let args: &[LinuxSeccompArg] = rule.args().as_deref().unwrap_or_default();
    for name in rule.names() {
        if name.is_empty() {
            return Err(SeccompError::EmptySyscallName);
        }
        let conditions = conditions(name, args)?;
        if action == default {
            continue; // redundant, and libseccomp refuses it
        }
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            skipped.push(name.clone()); // unknown to libseccomp: skipped as runc does
            continue;
        };
        add_conditional(ctx, name, syscall, action, &conditions)?;
    }
    Ok(())
}

/// A condition with the argument index it tests.
type Condition = (usize, ScmpArgCompare);

/// Builds libseccomp conditions; `value` is the mask and `valueTwo` the datum for
/// SCMP_CMP_MASKED_EQ, as in libseccomp's C API.
fn conditions(name: &str, args: &[LinuxSeccompArg]) -> Result<Vec<Condition>, SeccompError> {
    args.iter()
        .map(|arg| {
            if arg.index() >= SYSCALL_MAX_ARGS {
                return Err(SeccompError::ArgIndex {
                    syscall: name.to_string(),
                    index: arg.index(),
                });
            }
            let op = match arg.op() {
                LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
                LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
                LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
                LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
                LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
                LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                    let mask = arg.value();
                    let datum = arg.value_two().unwrap_or(0);
                    let cmp = ScmpArgCompare::new(
                        arg.index() as u32,
                        ScmpCompareOp::MaskedEqual(mask),
                        datum,
                    );
                    return Ok((arg.index(), cmp));
                }
            };
            Ok((
                arg.index(),
                ScmpArgCompare::new(arg.index() as u32, op, arg.value()),
            ))
        })
        .collect()
}

/// Adds the rule with all conditions ANDed, or, when one argument index carries several
/// conditions (which libseccomp cannot AND), as one rule per condition like runc.
fn add_conditional(
    ctx: &mut ScmpFilterContext,
    name: &str,
    syscall: ScmpSyscall,
    action: ScmpAction,
    conditions: &[Condition],
) -> Result<(), SeccompError> {
    let err = |source| SeccompError::Rule {
        syscall: name.to_string(),
        source,
    };
    if conditions.is_empty() {
        ctx.add_rule(action, syscall).map_err(err)?;
        return Ok(());
    }
    let mut per_index = [0usize; SYSCALL_MAX_ARGS];
    for (index, _) in conditions {
        per_index[*index] += 1;
    }
    let cmps: Vec<ScmpArgCompare> = conditions.iter().map(|(_, c)| *c).collect();
    if per_index.iter().any(|&n| n > 1) {
        for cmp in &cmps {
            ctx.add_rule_conditional(action, syscall, std::slice::from_ref(cmp))
                .map_err(err)?;
        }
    } else {
        ctx.add_rule_conditional(action, syscall, &cmps)
            .map_err(err)?;
    }
    Ok(())
}

/// Exports the filter's BPF program (through a memfd: libseccomp 2.5 can only write to an fd).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let fail = |what: &str, e: &dyn std::fmt::Display| SeccompError::Export(format!("{what}: {e}"));
    let fd = memfd_create(c"berth-seccomp", MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(|e| fail("memfd_create", &e))?;
    ctx.export_bpf(&fd)
        .map_err(|e| fail("seccomp_export_bpf", &e))?;
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| fail("reading the memfd", &e))?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.len() % size != 0 {
        return Err(fail("program size", &bytes.len()));
    }
    let insns: Vec<libc::sock_filter> = bytes
        .chunks_exact(size)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    if insns.len() > BPF_MAX_INSNS {
        return Err(SeccompError::TooLong(insns.len()));
    }
    Ok(insns)
}

impl SeccompProgram {
    /// Loads the filter into the calling thread (the container init). Needs no_new_privs
    /// or CAP_SYS_ADMIN. Returns the notify fd when the profile uses SCMP_ACT_NOTIFY.
    /// Performs a single system call and no allocation, so it is safe after fork.
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let prog = libc::sock_fprog {
            len: self.insns.len() as u16, // bounded by BPF_MAX_INSNS in compile
            filter: self.insns.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points to `len` valid instructions that outlive the call; the
        // kernel copies the program.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog,
            )
        };
        if rc < 0 {
            return Err(SeccompError::Load {
                flags: self.flags,
                errno: nix::errno::Errno::last(),
            });
        }
        if self.notify {
            // SAFETY: with NEW_LISTENER the kernel returns a new fd that we now own.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as i32) }));
        }
        if rc > 0 {
            return Err(SeccompError::Tsync(rc));
        }
        Ok(None)
    }

    /// Number of BPF instructions in the compiled program.
    pub fn instructions(&self) -> usize {
        self.insns.len()
    }

    /// The `seccomp(2)` flags the filter is loaded with.
    pub fn flags(&self) -> u64 {
        self.flags
    }

    /// Whether the profile uses SCMP_ACT_NOTIFY (so `load` returns a listener fd).
    pub fn uses_notify(&self) -> bool {
        self.notify
    }

    /// Syscall names skipped because libseccomp does not know them (for a debug log).
    pub fn skipped_syscalls(&self) -> &[String] {
        &self.skipped
    }
}

/// Sends the notify fd to the seccomp agent at `listener_path` as runc does: one message on
/// the unix stream socket whose payload is the container process state JSON (runtime-spec
/// `ContainerProcessState`, with "fds": ["seccompFd"]) and whose SCM_RIGHTS carry the fd.
/// Runs in the runtime (the parent), after the init passed the fd up.
pub fn send_to_listener(
    listener_path: &Path,
    notify_fd: &OwnedFd,
    process_state: &oci_spec::runtime::ContainerProcessState,
) -> Result<(), SeccompError> {
    let fail = |reason: String| SeccompError::Listener {
        path: listener_path.to_path_buf(),
        reason,
    };
    let mut state = process_state.clone();
    state.set_fds(vec![SECCOMP_FD_NAME.to_string()]);
    let payload =
        serde_json::to_vec(&state).map_err(|e| fail(format!("encoding the state: {e}")))?;
    let stream = UnixStream::connect(listener_path).map_err(|e| fail(format!("connect: {e}")))?;
    let fds = [notify_fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(&payload)];
    let sent = sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| fail(format!("sendmsg: {e}")))?;
    // A stream socket may take a large state in pieces: the fd went with the first one.
    let rest = payload.get(sent..).unwrap_or_default();
    (&stream)
        .write_all(rest)
        .map_err(|e| fail(format!("write: {e}")))?;
    Ok(())
}

/// Every OCI seccomp action.
const ACTIONS: [LinuxSeccompAction; 9] = [
    LinuxSeccompAction::ScmpActAllow,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActNotify,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActTrap,
];

/// Every OCI argument operator.
const OPERATORS: [LinuxSeccompOperator; 7] = [
    LinuxSeccompOperator::ScmpCmpEq,
    LinuxSeccompOperator::ScmpCmpGe,
    LinuxSeccompOperator::ScmpCmpGt,
    LinuxSeccompOperator::ScmpCmpLe,
    LinuxSeccompOperator::ScmpCmpLt,
    LinuxSeccompOperator::ScmpCmpMaskedEq,
    LinuxSeccompOperator::ScmpCmpNe,
];

/// Every OCI filter flag this module knows.
const FLAGS: [LinuxSeccompFilterFlag; 4] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

/// Every OCI architecture name (filtered by what libseccomp supports in the features).
const ARCHS: [Arch; 23] = [
    Arch::ScmpArchAarch64,
    Arch::ScmpArchArm,
    Arch::ScmpArchLoongarch64,
    Arch::ScmpArchM68k,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchParisc,
    Arch::ScmpArchParisc64,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchRiscv64,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchSh,
    Arch::ScmpArchSheb,
    Arch::ScmpArchX32,
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
];

/// The "seccomp" section of `berth-runc features` (runtime-spec features.md): actions and
/// operators this module maps, the architectures the linked libseccomp accepts, the flags
/// it knows and those the running kernel accepts.
pub fn supported_features() -> oci_spec::runtime::Seccomp {
    let mut features = oci_spec::runtime::Seccomp::default();
    features.set_enabled(Some(true));
    features.set_actions(Some(ACTIONS.to_vec()));
    features.set_operators(Some(OPERATORS.iter().map(ToString::to_string).collect()));
    features.set_archs(Some(supported_archs()));
    features.set_known_flags(Some(FLAGS.iter().map(ToString::to_string).collect()));
    let supported = FLAGS.iter().filter(|&&f| probe_flag(flag_bit(f)).is_ok());
    features.set_supported_flags(Some(supported.map(ToString::to_string).collect()));
    features
}

/// The architectures the linked libseccomp can add to a filter.
fn supported_archs() -> Vec<Arch> {
    let Ok(mut ctx) = ScmpFilterContext::new(ScmpAction::Allow) else {
        return Vec::new();
    };
    ARCHS
        .iter()
        .copied()
        .filter(|&a| ctx.add_arch(scmp_arch(a)).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile(value: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(value).expect("valid profile JSON")
    }

    fn deny_mkdir() -> serde_json::Value {
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]})
    }

    #[test]
    fn a_memoized_program_is_the_profile_s_own() {
        let mkdir = profile(deny_mkdir());
        let mut chmod_json = deny_mkdir();
        chmod_json["syscalls"][0]["names"] = json!(["chmod", "fchmod", "fchmodat", "mkdir"]);
        let chmod = profile(chmod_json);
        let fresh = |p: &LinuxSeccomp| compile(p).expect("compiles").insns.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect::<Vec<_>>();
        let memo = |p: &LinuxSeccomp| compile_memoized(p).expect("compiles").insns.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect::<Vec<_>>();
        assert_ne!(fresh(&mkdir), fresh(&chmod), "the two profiles compile apart");
        for p in [&mkdir, &mkdir, &chmod, &chmod, &mkdir] {
            assert_eq!(memo(p), fresh(p));
        }
    }

    #[test]
    fn compiles_a_simple_profile() {
        let prog = compile(&profile(deny_mkdir())).expect("compiles");
        assert!(prog.instructions() > 3);
        assert_eq!(prog.flags(), 0);
        assert!(!prog.uses_notify());
        assert!(prog.skipped_syscalls().is_empty());
    }

    #[test]
    fn unknown_syscalls_are_skipped() {
        let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"}]}));
        let prog = compile(&p).expect("compiles");
        assert_eq!(prog.skipped_syscalls(), ["no_such_syscall_xyz".to_string()]);
    }

    #[test]
    fn every_action_and_operator_compiles() {
        for (i, action) in ACTIONS.iter().enumerate() {
            let name = [
                "getpid", "getppid", "getuid", "getgid", "geteuid", "getegid", "gettid", "sync",
                "pause",
            ][i];
            let mut rules = vec![json!({"names": [name], "action": action, "errnoRet": 5})];
            for (j, op) in OPERATORS.iter().enumerate() {
                rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": j, "valueTwo": j, "op": op}]}));
            }
            let p = profile(json!({"defaultAction": "SCMP_ACT_LOG", "syscalls": rules}));
            compile(&p).unwrap_or_else(|e| panic!("{action}: {e}"));
        }
    }

    #[test]
    fn errno_ret_must_fit_sixteen_bits() {
        let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}));
        let err = compile(&p).expect_err("out of range");
        assert!(
            matches!(err, SeccompError::ReturnValue { value: 70000, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("syscalls[mkdir].errnoRet"),
            "{err}"
        );
        let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536}));
        let err = compile(&p).expect_err("out of range");
        assert!(err.to_string().contains("defaultErrnoRet"), "{err}");
    }

    #[test]
    fn argument_index_is_checked() {
        let p = profile(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["personality"],
            "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
        );
        let err = compile(&p).expect_err("bad index");
        assert!(
            matches!(err, SeccompError::ArgIndex { index: 6, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("personality"), "{err}");
    }

    #[test]
    fn several_conditions_on_one_argument_compile() {
        let p = profile(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["personality"],
            "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 3, "op": "SCMP_CMP_GT"}]}]}),
        );
        compile(&p).expect("split into single-condition rules");
    }

    #[test]
    fn notify_rules() {
        let p = profile(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(matches!(compile(&p), Err(SeccompError::NotifyAsDefault)));
        let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}));
        assert!(matches!(compile(&p), Err(SeccompError::NotifyOnWrite)));
        let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
        let prog = compile(&p).expect("notify on mkdir");
        assert!(prog.uses_notify());
        let want = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
            | libc::SECCOMP_FILTER_FLAG_TSYNC
            | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
            | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        assert_eq!(prog.flags(), want as u64);
    }

    #[test]
    fn flags_map_to_kernel_bits() {
        let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}));
        let prog = compile(&p).expect("flags known to kernel 4.17+");
        let want = libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
        assert_eq!(prog.flags(), want as u64);
    }

    #[test]
    fn unknown_action_or_arch_is_rejected() {
        let bad = json!({"defaultAction": "SCMP_ACT_FOO"});
        assert!(serde_json::from_value::<LinuxSeccomp>(bad).is_err());
        let bad = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]});
        assert!(serde_json::from_value::<LinuxSeccomp>(bad).is_err());
        // Known to the spec, maybe not to the linked libseccomp: the error names the arch.
        let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_LOONGARCH64"]}));
        if let Err(err) = compile(&p) {
            assert!(err.to_string().contains("SCMP_ARCH_LOONGARCH64"), "{err}");
        }
    }

    #[test]
    fn features_have_runc_shape() {
        let v = serde_json::to_value(supported_features()).expect("serialises");
        assert_eq!(v["enabled"], json!(true));
        assert!(v["actions"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("SCMP_ACT_NOTIFY"))));
        assert!(v["operators"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("SCMP_CMP_MASKED_EQ"))));
        assert!(v["archs"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("SCMP_ARCH_X86_64"))));
        assert_eq!(v["knownFlags"].as_array().map(Vec::len), Some(4));
        assert!(v["supportedFlags"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("SECCOMP_FILTER_FLAG_LOG"))));
    }

    /// A Docker-default-sized profile (~350 syscall names, a few argument rules, 3 archs).
    #[test]
    fn large_profile_compiles() {
        let names: Vec<String> = (0..450)
            .filter_map(|n| ScmpSyscall::from(n).get_name_by_arch(ScmpArch::Native).ok())
            .filter(|n| n != "personality" && n != "clone")
            .take(350)
            .collect();
        let p = profile(
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": names, "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]}),
        );
        let start = std::time::Instant::now();
        let prog = compile(&p).expect("compiles");
        let took = start.elapsed();
        eprintln!(
            "compile of {} names: {took:?}, {} instructions",
            names.len(),
            prog.instructions()
        );
        // How long it takes is measured by integration/src/bin/bench_seccomp.rs, not
        // asserted here.
        assert!(prog.instructions() > names.len());
    }

    #[test]
    fn listener_gets_state_and_fd() {
        use nix::sys::socket::{recvmsg, ControlMessageOwned};
        let dir =
            std::env::temp_dir().join(format!("berth-seccomp-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let fd: OwnedFd = std::fs::File::open("/dev/null").expect("open").into();
        let mut state = oci_spec::runtime::ContainerProcessState::default();
        state.set_pid(42);
        state.set_metadata(Some("meta".to_string()));
        send_to_listener(&path, &fd, &state).expect("send");
        let (conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 65536];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .expect("recvmsg");
        let got_fd = msg
            .cmsgs()
            .expect("cmsgs")
            .any(|c| matches!(c, ControlMessageOwned::ScmRights(f) if f.len() == 1));
        let len = msg.bytes;
        assert!(got_fd);
        let v: serde_json::Value = serde_json::from_slice(&buf[..len]).expect("json");
        assert_eq!(v["fds"], json!(["seccompFd"]));
        assert_eq!(v["pid"], json!(42));
        assert_eq!(v["metadata"], json!("meta"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
