//! `berth-pod-init ROOT [USERNS]`: the first process of a pod's shared PID namespace, what a
//! pause container is elsewhere. berthd starts it only for pods whose containers share
//! one PID namespace (every other namespace of a pod is pinned without a process).
//!
//! It creates the PID namespace, forks its init and prints that init's pid (as the
//! host sees it) once the init is ready, then exits; the init is left to the host's
//! reaper. The init lives in an empty, read-only tmpfs root of its own mount namespace
//! (mounted on ROOT, a directory berthd made), holds no capability, is not dumpable,
//! reaps the orphans of the pod's containers and exits on SIGTERM or SIGINT, which ends
//! the namespace. Runs from a sealed read-only view of its binary, so the pod's
//! containers cannot write to it through `/proc/1/exe`. For a pod with a user namespace
//! of its own (pinned at USERNS), it joins that first, as its root, so that the PID
//! namespace belongs to the pod's user namespace like the pod's other namespaces.
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

fn main() -> ExitCode {
    if let Err(error) = berth_runtime::sealed_exe::ensure_sealed_executable() {
        eprintln!("berth-pod-init: {error}");
        return ExitCode::FAILURE;
    }
    let Some(root) = std::env::args_os().nth(1) else {
        eprintln!("usage: berth-pod-init ROOT (an empty directory for the init's root)");
        return ExitCode::from(2);
    };
    if let Some(userns) = std::env::args_os().nth(2) {
        if let Err(message) = join_user_namespace(Path::new(&userns)) {
            eprintln!("berth-pod-init: {message}");
            return ExitCode::FAILURE;
        }
    }
    match start(Path::new(&root)) {
        Ok(pid) => {
            println!("{pid}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("berth-pod-init: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Enters the pod's user namespace as its root (id 0 inside).
fn join_user_namespace(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWUSER).map_err(|e| format!("joining the user namespace {}: {e}", path.display()))?;
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups in the user namespace: {e}"))?;
    let root_gid = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(|e| format!("becoming gid 0 in the user namespace: {e}"))?;
    let root_uid = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(|e| format!("becoming uid 0 in the user namespace: {e}"))
}

/// Forks the namespace's init and waits for its word that it is ready.
fn start(root: &Path) -> Result<Pid, String> {
    unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("creating the pid namespace: {e}"))?;
    let (read_end, write_end) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: this process has a single thread, so the child may run any code.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(read_end);
            let code = match become_init(root) {
                Ok(ready) => run_init(ready, write_end),
                Err(message) => {
                    let mut pipe = std::fs::File::from(write_end);
                    let _ = pipe.write_all(message.as_bytes());
                    1
                }
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut report = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut report);
            match report.as_str() {
                "ready" => Ok(child),
                "" => Err("the init exited before it was ready".into()),
                failure => Err(failure.to_string()),
            }
        }
    }
}

/// Signals the init waits for (all of them blocked, taken with sigwait).
struct Ready {
    signals: SigSet,
}

/// Detaches the init from the host: session, stdio, root, capabilities.
fn become_init(root: &Path) -> Result<Ready, String> {
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    for target in 0..=2 {
        nix::unistd::dup2(null.as_raw_fd(), target).map_err(|e| format!("dup2: {e}"))?;
    }
    empty_root(root)?;
    drop_privileges()?;
    let signals = SigSet::all();
    signals.thread_block().map_err(|e| format!("blocking signals: {e}"))?;
    Ok(Ready { signals })
}

/// A private mount namespace whose root is an empty read-only tmpfs on `root`.
fn empty_root(root: &Path) -> Result<(), String> {
    fn fail(step: &'static str) -> impl Fn(nix::Error) -> String {
        move |e| format!("{step}: {e}")
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(fail("creating a mount namespace"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(fail("making / private"))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("berth-pod-init"), root, Some("tmpfs"), flags, Some("size=4k,mode=0555")).map_err(fail("mounting the init's root"))?;
    nix::unistd::chdir(root).map_err(fail("entering the init's root"))?;
    nix::unistd::pivot_root(".", ".").map_err(fail("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("detaching the host's root"))?;
    nix::unistd::chdir("/").map_err(fail("chdir /"))?;
    let read_only = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags;
    mount(None::<&str>, "/", None::<&str>, read_only, None::<&str>).map_err(fail("making the root read-only"))
}

/// No capability in any set, no new privileges, not dumpable.
fn drop_privileges() -> Result<(), String> {
    use caps::CapSet;
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))?;
    for set in [CapSet::Ambient, CapSet::Bounding, CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::clear(None, set).map_err(|e| format!("clearing the {set:?} capabilities: {e}"))?;
    }
    Ok(())
}

/// Tells the parent it is ready, then reaps children until SIGTERM or SIGINT.
fn run_init(ready: Ready, status_pipe: OwnedFd) -> i32 {
    let mut pipe = std::fs::File::from(status_pipe);
    if pipe.write_all(b"ready").is_err() {
        return 1;
    }
    drop(pipe);
    loop {
        match ready.signals.wait() {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => return 0,
            Ok(Signal::SIGCHLD) => reap_all(),
            _ => {}
        }
    }
}

fn reap_all() {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
