//! The child side of process creation: what a new container init, or a process
//! joining a running container, does between `clone` and `execve`. Each step is a
//! short function; errors go back to the runtime over the sync channel.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{fork, ForkResult, Gid, Uid};
use oci_spec::runtime::{Process, Spec};

use crate::capabilities::CapabilityPlan;
use crate::channel::{Channel, Message};
use crate::error::InitError;
use crate::namespaces::{unshare_flags, NamespacePlan};
use crate::rootfs::RootfsConfig;
use crate::seccomp::SeccompProgram;
use crate::{console, credentials, hooks, rootfs, state};

/// What the new process becomes.
pub enum Role<'a> {
    /// A container's init: sets up the rootfs, then waits for `start` on the exec FIFO.
    ContainerInit { rootfs: RootfsConfig<'a>, bundle: &'a Path, state_dir: OwnedFd },
    /// A process joining a running container (`exec`).
    Joiner,
}

/// Everything the child needs, prepared by the runtime before `clone`.
pub struct ChildConfig<'a> {
    pub role: Role<'a>,
    pub spec: &'a Spec,
    pub process: &'a Process,
    pub namespaces: &'a NamespacePlan,
    pub capabilities: CapabilityPlan,
    pub seccomp: Option<SeccompProgram>,
    pub console_socket: Option<OwnedFd>,
    /// Descriptors to become the process's stdin, stdout and stderr; None inherits.
    pub stdio: Option<&'a ProcessStdio>,
    pub preserve_fds: i32,
    /// Re-execute a sealed copy of the runtime right after `clone` (a container init
    /// only; see [`crate::handoff`]).
    pub handoff: Option<&'a crate::handoff::Handoff<'a>>,
}

/// The standard streams of a new process, as descriptors in the runtime.
#[derive(Debug)]
pub struct ProcessStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl ProcessStdio {
    /// Installs the descriptors as 0, 1 and 2 of the calling process.
    fn install(&self) -> Result<(), InitError> {
        for (fd, target) in [(&self.stdin, 0), (&self.stdout, 1), (&self.stderr, 2)] {
            nix::unistd::dup2(fd.as_raw_fd(), target).map_err(|e| InitError::System("dup2 of stdio", e))?;
        }
        Ok(())
    }
}

/// Entry point of the cloned child. Never returns.
pub fn child_main(config: &ChildConfig, channel: Channel) -> ! {
    crate::sealed_exe::close_in_child();
    let error = match become_process(config, &channel) {
        Ok(never) => match never {},
        Err(error) => error,
    };
    let _ = channel.send(&Message::Error(error.to_string()));
    unsafe { libc::_exit(1) }
}

fn become_process(config: &ChildConfig, channel: &Channel) -> Result<Infallible, InitError> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| InitError::System("prctl(PR_SET_DUMPABLE)", e))?;
    channel.expect_go().map_err(InitError::Channel)?;
    crate::mark!("got go");
    if let Some(stdio) = config.stdio {
        stdio.install()?;
    }
    let plan = config.namespaces;
    plan.join_all()?;
    if plan.joins_user_namespace() {
        become_joined_namespace_root()?;
    }
    let placement = Placement::new(channel, plan.new_cgroup);
    if plan.needs_intermediate() {
        placement.wait()?;
        create_namespaces_then_fork(config, channel)?;
    } else if plan.creates_user_namespace() {
        become_namespace_root(config.spec)?;
    }
    match &config.role {
        Role::ContainerInit { rootfs, bundle, state_dir } => {
            // Relative bind mount sources are relative to the bundle.
            nix::unistd::chdir(*bundle).map_err(|e| InitError::Cwd(bundle.to_path_buf(), e))?;
            init_container(config, channel, &placement, rootfs, state_dir)
        }
        Role::Joiner => {
            placement.wait()?;
            join_container(config, channel)
        }
    }
}

/// Waiting, once, for the runtime to have moved this process into its cgroup, then
/// creating the cgroup namespace (whose root is the cgroup the process is in).
struct Placement<'a> {
    channel: &'a Channel,
    new_cgroup_namespace: bool,
    done: std::cell::Cell<bool>,
    /// The host's v1 hierarchies, when the runtime sent them with the placement,
    /// until the rootfs takes them.
    hierarchies: std::cell::Cell<Option<Vec<crate::cgroups::V1Hierarchy>>>,
}

impl<'a> Placement<'a> {
    fn new(channel: &'a Channel, new_cgroup_namespace: bool) -> Self {
        let (done, hierarchies) = Default::default();
        Placement { channel, new_cgroup_namespace, done, hierarchies }
    }

    fn wait(&self) -> Result<(), InitError> {
        if self.done.replace(true) {
            return Ok(());
        }
        match self.channel.receive().map_err(InitError::Channel)? {
            Some(Message::Placed) => {}
            Some(Message::PlaceYourself(placement)) => {
                place_self(&placement.files)?;
                self.hierarchies.set(Some(placement.v1_hierarchies));
            }
            other => return Err(InitError::Protocol(format!("expected Placed, got {other:?}"))),
        }
        crate::mark!("placed");
        if self.new_cgroup_namespace {
            unshare_flags(CloneFlags::CLONE_NEWCGROUP)?;
        }
        Ok(())
    }
}

/// Moves the calling (single-threaded) process into its cgroup: 0 written to a cgroup
/// file means the writer itself.
fn place_self(files: &[PathBuf]) -> Result<(), InitError> {
    for file in files {
        std::fs::write(file, "0").map_err(|e| InitError::Placement(file.clone(), e))?;
    }
    Ok(())
}

/// In the intermediate process: creates the namespaces that must follow the joins,
/// forks the real process (which lands in the new or joined pid namespace) and exits.
fn create_namespaces_then_fork(config: &ChildConfig, channel: &Channel) -> Result<(), InitError> {
    let plan = config.namespaces;
    if plan.creates_user_namespace() {
        unshare_flags(CloneFlags::CLONE_NEWUSER)?;
        channel.send(&Message::MapRequest).map_err(InitError::Channel)?;
        channel.expect_go().map_err(InitError::Channel)?;
        become_namespace_root(config.spec)?;
    }
    unshare_flags(plan.new - CloneFlags::CLONE_NEWUSER)?;
    match unsafe { fork() }.map_err(|e| InitError::System("fork", e))? {
        ForkResult::Child => Ok(()),
        ForkResult::Parent { child } => {
            let _ = channel.send(&Message::ChildPid(child.as_raw()));
            unsafe { libc::_exit(0) }
        }
    }
}

/// In a joined user namespace (whose maps the spec does not carry), become its root when
/// it maps 0: files the setup makes (mount points in the new /dev, say) need an owner
/// the namespace can name. A namespace without a root keeps the unmapped ids.
fn become_joined_namespace_root() -> Result<(), InitError> {
    let root_gid = Gid::from_raw(0);
    match nix::unistd::setresgid(root_gid, root_gid, root_gid) {
        Ok(()) => {
            let _ = nix::unistd::setgroups(&[]);
        }
        Err(nix::Error::EINVAL) => {}
        Err(e) => return Err(InitError::System("setresgid(0) in the joined user namespace", e)),
    }
    let root_uid = Uid::from_raw(0);
    match nix::unistd::setresuid(root_uid, root_uid, root_uid) {
        Ok(()) | Err(nix::Error::EINVAL) => Ok(()),
        Err(e) => Err(InitError::System("setresuid(0) in the joined user namespace", e)),
    }
}

/// In a new user namespace, become its root when the mappings include 0, so that files
/// the setup creates get a mapped owner.
fn become_namespace_root(spec: &Spec) -> Result<(), InitError> {
    let linux = spec.linux().as_ref();
    let maps_zero = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.into_iter().flatten().any(|m| m.container_id() == 0)
    };
    if maps_zero(linux.and_then(|l| l.gid_mappings().as_ref())) {
        let root = Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root).map_err(|e| InitError::System("setresgid(0)", e))?;
    }
    if maps_zero(linux.and_then(|l| l.uid_mappings().as_ref())) {
        let root = Uid::from_raw(0);
        nix::unistd::setresuid(root, root, root).map_err(|e| InitError::System("setresuid(0)", e))?;
    }
    Ok(())
}

fn has_hooks(spec: &Spec) -> bool {
    spec.hooks().as_ref().is_some_and(|h| {
        [h.prestart(), h.create_runtime(), h.create_container(), h.start_container()]
            .iter()
            .any(|list| list.as_ref().is_some_and(|l| !l.is_empty()))
    })
}

/// Asks the runtime to run its hooks; returns the state document for ours.
fn runtime_hooks(channel: &Channel) -> Result<Vec<u8>, InitError> {
    channel.send(&Message::RunHooks).map_err(InitError::Channel)?;
    match channel.receive().map_err(InitError::Channel)? {
        Some(Message::HooksDone(state)) => Ok(state.into_bytes()),
        Some(Message::Error(message)) => Err(InitError::Aborted(message)),
        other => Err(InitError::Protocol(format!("expected HooksDone, got {other:?}"))),
    }
}

fn init_container(
    config: &ChildConfig,
    channel: &Channel,
    placement: &Placement,
    rootfs_config: &RootfsConfig,
    state_dir: &OwnedFd,
) -> Result<Infallible, InitError> {
    let spec = config.spec;
    let mut await_cgroup = || {
        placement.wait().map_err(|e| rootfs::RootfsError::Waiting(e.to_string()))?;
        if let Some(known) = placement.hierarchies.take() {
            let _ = rootfs_config.cgroup_hierarchies.set(known);
        }
        Ok(())
    };
    rootfs::prepare(rootfs_config, &mut await_cgroup)?;
    crate::mark!("rootfs prepared");
    placement.wait()?;
    let hook_state = if has_hooks(spec) { runtime_hooks(channel)? } else { Vec::new() };
    let all_hooks = spec.hooks().as_ref();
    hooks::run_hooks("createContainer", all_hooks.and_then(|h| h.create_container().as_ref()), &hook_state)?;
    rootfs::enter(rootfs_config)?;
    crate::mark!("entered");
    write_sysctls(spec)?;
    if let Some(socket) = &config.console_socket {
        console::setup(socket, console_size(config.process), true)?;
    }
    rootfs::finish(rootfs_config)?;
    set_host_names(spec)?;
    let executable = prepare_process(config)?;
    crate::mark!("process prepared");
    channel.send(&Message::Ready).map_err(InitError::Channel)?;
    // While `start` is on its way (every signal stays blocked until execve).
    reset_signal_dispositions();
    wait_for_start(state_dir)?;
    crate::mark!("start seen");
    hooks::run_hooks("startContainer", all_hooks.and_then(|h| h.start_container().as_ref()), &hook_state)?;
    execute(config, &executable)
}

fn join_container(config: &ChildConfig, _channel: &Channel) -> Result<Infallible, InitError> {
    if let Some(socket) = &config.console_socket {
        console::setup(socket, console_size(config.process), false)?;
    }
    let executable = prepare_process(config)?;
    execute(config, &executable)
}

fn console_size(process: &Process) -> Option<(u16, u16)> {
    process.console_size().map(|b| (b.height() as u16, b.width() as u16))
}

/// Descriptors marked close-on-exec, rlimits, the AppArmor profile, seccomp (before the user change when
/// privileges may still grow), user and capabilities, no_new_privs, working directory,
/// and the executable's path.
fn prepare_process(config: &ChildConfig) -> Result<CString, InitError> {
    let process = config.process;
    // Before any seccomp filter: a profile need not allow close_range.
    close_inherited_descriptors(config.preserve_fds)?;
    set_rlimits(process)?;
    // While still privileged and unfiltered, as runc does; it takes effect at execve.
    crate::apparmor::change_on_exec(process.apparmor_profile().as_deref().unwrap_or(""))?;
    // Before any seccomp filter: a profile may deny getcwd (runtime-tools' linux_seccomp).
    verify_working_directory(process.cwd())?;
    let no_new_privileges = process.no_new_privileges().unwrap_or(false);
    if !no_new_privileges {
        load_seccomp(config)?;
    }
    let set_groups = !config.namespaces.creates_user_namespace() || setgroups_allowed();
    credentials::become_user(process.user(), &config.capabilities, set_groups)?;
    if no_new_privileges {
        credentials::forbid_new_privileges()?;
    }
    // Again as the user, whose permissions decide whether it may enter.
    nix::unistd::chdir(process.cwd()).map_err(|e| InitError::Cwd(process.cwd().into(), e))?;
    find_executable(process)
}

fn load_seccomp(config: &ChildConfig) -> Result<(), InitError> {
    if let Some(program) = &config.seccomp {
        program.load()?;
    }
    Ok(())
}

fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow")
}

fn set_rlimits(process: &Process) -> Result<(), InitError> {
    for limit in process.rlimits().iter().flatten() {
        let resource = crate::rlimits::resource_number(limit.typ());
        let value = libc::rlimit { rlim_cur: limit.soft(), rlim_max: limit.hard() };
        if unsafe { libc::setrlimit(resource as _, &value) } != 0 {
            return Err(InitError::Rlimit(format!("{:?}", limit.typ()), std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn write_sysctls(spec: &Spec) -> Result<(), InitError> {
    let sysctls = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref());
    for (key, value) in sysctls.into_iter().flatten() {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| InitError::Sysctl(key.clone(), e))?;
    }
    Ok(())
}

fn set_host_names(spec: &Spec) -> Result<(), InitError> {
    if let Some(name) = spec.hostname().as_ref().filter(|n| !n.is_empty()) {
        nix::unistd::sethostname(name).map_err(|e| InitError::System("sethostname", e))?;
    }
    if let Some(name) = spec.domainname().as_ref().filter(|n| !n.is_empty()) {
        if unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) } != 0 {
            return Err(InitError::System("setdomainname", nix::Error::last()));
        }
    }
    Ok(())
}

/// Enters the working directory and checks it is inside the container: a directory
/// reached through a leaked host descriptor would show as "(unreachable)".
fn verify_working_directory(cwd: &Path) -> Result<(), InitError> {
    nix::unistd::chdir(cwd).map_err(|e| InitError::Cwd(cwd.into(), e))?;
    match nix::unistd::getcwd() {
        Ok(actual) if actual.is_absolute() => Ok(()),
        _ => Err(InitError::Cwd(cwd.into(), nix::Error::ENOENT)),
    }
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Resolves args[0] as execvp would, with the container's own PATH.
fn find_executable(process: &Process) -> Result<CString, InitError> {
    let name = process.args().as_ref().and_then(|a| a.first()).cloned().unwrap_or_default();
    let executable = |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file();
    let found = if name.contains('/') {
        executable(Path::new(&name)).then(|| PathBuf::from(&name))
    } else {
        let env_path = process.env().iter().flatten().find_map(|e| e.strip_prefix("PATH="));
        env_path.unwrap_or(DEFAULT_PATH).split(':').map(|dir| Path::new(dir).join(&name)).find(|p| executable(p))
    };
    let path = found.ok_or_else(|| InitError::Executable(name.clone()))?;
    CString::new(path.into_os_string().into_encoded_bytes()).map_err(|_| InitError::Executable(name))
}

/// Blocks until `start` opens the exec FIFO for reading.
fn wait_for_start(state_dir: &OwnedFd) -> Result<(), InitError> {
    let fifo = nix::fcntl::openat(
        Some(state_dir.as_raw_fd()),
        state::EXEC_FIFO,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| InitError::System("opening the exec fifo", e))?;
    let written = nix::unistd::write(unsafe { std::os::fd::BorrowedFd::borrow_raw(fifo) }, b"0");
    let _ = nix::unistd::close(fifo);
    written.map(|_| ()).map_err(|e| InitError::System("writing the exec fifo", e))
}

/// Last steps: seccomp under no_new_privs, signals, then execve.
fn execute(config: &ChildConfig, executable: &CString) -> Result<Infallible, InitError> {
    if config.process.no_new_privileges().unwrap_or(false) {
        load_seccomp(config)?;
    }
    if matches!(config.role, Role::Joiner) {
        reset_signal_dispositions();
    }
    restore_sigpipe();
    unblock_signals();
    let to_cstrings = |items: Option<&Vec<String>>| -> Vec<CString> {
        items.into_iter().flatten().filter_map(|s| CString::new(s.as_bytes()).ok()).collect()
    };
    let args = to_cstrings(config.process.args().as_ref());
    let env = to_cstrings(config.process.env().as_ref());
    crate::mark!("execve");
    let error = nix::unistd::execve(executable, &args, &env).unwrap_err();
    Err(InitError::Exec(executable.to_string_lossy().into_owned(), error))
}

/// Every descriptor above stdio and the preserved ones is closed on exec.
fn close_inherited_descriptors(preserve_fds: i32) -> Result<(), InitError> {
    let first = 3 + preserve_fds.max(0) as u32;
    let result = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if result != 0 {
        return Err(InitError::System("close_range", nix::Error::last()));
    }
    for fd in 3..first as i32 {
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()));
    }
    Ok(())
}

/// Restores the default disposition of every signal but SIGPIPE (the runtime's caller
/// may have ignored some): the container starts with a clean slate. SIGPIPE stays
/// ignored while hooks may still be written to ([`restore_sigpipe`]).
fn reset_signal_dispositions() {
    for signal in Signal::iterator() {
        if !matches!(signal, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGPIPE) {
            unsafe {
                let _ = nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl);
            }
        }
    }
}

/// SIGPIPE back to its default, dropping one that a hook's closed stdin left pending
/// (setting a pending signal to ignored discards it).
fn restore_sigpipe() {
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn);
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
}

/// Unblocks every signal (they were blocked from before the process existed).
fn unblock_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
