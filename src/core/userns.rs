//! Pods with a user namespace of their own. The kernel lets only a single-threaded
//! process make a user namespace, so a forked child unshares it together with the pod's
//! network, IPC and UTS namespaces (which the new user namespace then owns), sets them
//! up, and waits while the daemon writes its id maps and pins its namespaces; then the
//! daemon kills it. (A pipe's end of file could not tell it so: any process forked
//! meanwhile, by another thread, holds the pipe's write end as well.)
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};

use super::pin::{bind_namespace_file, set_up_namespaces, PinError, PinPlan};
use super::UserNamespaceSpec;

/// The steps the child reports, by number (it may not allocate to describe them).
const STEPS: [&str; 4] = ["done", "unshare", "sethostname", "bringing lo up"];

/// Creates the plan's namespaces under a new user namespace and pins all of them.
pub fn pin_in_user_namespace(plan: &PinPlan) -> Result<(), PinError> {
    let Some((_, maps)) = &plan.user else {
        return Err(PinError::Io { step: "pinning a user namespace".into(), source: std::io::Error::other("the plan has none") });
    };
    let (status_read, status_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("creating a pipe"))?;
    // SAFETY: the child makes system calls only (see `child`), until it is killed.
    match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        ForkResult::Child => child(plan, status_write),
        ForkResult::Parent { child } => {
            drop(status_write);
            let outcome = finish(plan, maps, child, &status_read);
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            outcome
        }
    }
}

/// In the forked child: unshare, set up, report, and wait to be killed.
fn child(plan: &PinPlan, status: OwnedFd) -> ! {
    let report = match nix::sched::unshare(CloneFlags::CLONE_NEWUSER | plan.clone_flags()) {
        Err(errno) => (1u8, errno as i32),
        Ok(()) => match set_up_namespaces(plan) {
            Ok(()) => (0, 0),
            Err((step, errno)) => (STEPS.iter().position(|s| *s == step).unwrap_or(1) as u8, errno as i32),
        },
    };
    let mut message = [0u8; 5];
    message[0] = report.0;
    message[1..].copy_from_slice(&report.1.to_ne_bytes());
    let _ = nix::unistd::write(&status, &message);
    drop(status);
    loop {
        nix::unistd::pause();
    }
}

/// In the parent: read the child's report, write its maps, pin its namespaces.
fn finish(plan: &PinPlan, maps: &UserNamespaceSpec, child: Pid, status: &OwnedFd) -> Result<(), PinError> {
    let mut message = [0u8; 5];
    let read = nix::unistd::read(status.as_raw_fd(), &mut message).map_err(sys("reading the child's report"))?;
    if read != message.len() {
        return Err(PinError::Io { step: "reading the child's report".into(), source: std::io::Error::other("the child died") });
    }
    if message[0] != 0 {
        let errno = i32::from_ne_bytes([message[1], message[2], message[3], message[4]]);
        let step = STEPS.get(message[0] as usize).copied().unwrap_or("unshare");
        return Err(PinError::Sys { step: format!("in the pod's user namespace: {step}"), source: nix::Error::from_raw(errno) });
    }
    write_map(child, "uid_map", &UserNamespaceSpec::map_file(&maps.uids))?;
    write_map(child, "gid_map", &UserNamespaceSpec::map_file(&maps.gids))?;
    for (kind, target) in plan.pinned() {
        bind_namespace_file(&format!("/proc/{child}/ns/{kind}"), target)?;
    }
    Ok(())
}

fn write_map(child: Pid, file: &str, text: &str) -> Result<(), PinError> {
    let path = format!("/proc/{child}/{file}");
    std::fs::write(&path, text).map_err(|source| PinError::Io { step: format!("writing {path}"), source })
}

fn sys(step: &str) -> impl FnOnce(nix::Error) -> PinError + '_ {
    move |source| PinError::Sys { step: step.to_string(), source }
}
