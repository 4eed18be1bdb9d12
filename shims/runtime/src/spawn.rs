//! The runtime side of process creation: clone the child with its new namespaces, put it
//! in its cgroup, write its id maps, run the runtime's hooks when it asks, and learn its
//! final pid, until it is ready (a container init) or has executed (a joining process).

use std::io::Write;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxIdMapping;

use crate::channel::{self, Channel, Message};
use crate::cgroups::ContainerCgroup;
use crate::error::RuntimeError;
use crate::init::{child_main, ChildConfig, Role};

/// The cgroup to move the child into, with its limits applied (a container's is made
/// by a second thread while the init starts, and waited for on first call); None for
/// no cgroup.
pub type CgroupSource<'a> = dyn Fn() -> Result<Option<&'a ContainerCgroup>, RuntimeError> + 'a;

/// What the runtime does for the child while it sets up.
pub struct ParentDuties<'a> {
    /// Called in the runtime right after `clone` returns (whether it worked or not).
    pub after_clone: &'a dyn Fn(),
    pub cgroup: &'a CgroupSource<'a>,
    pub oom_score_adj: Option<i32>,
    pub uid_mappings: &'a [LinuxIdMapping],
    pub gid_mappings: &'a [LinuxIdMapping],
    /// Runs prestart and createRuntime hooks for the given pid; returns the state JSON.
    pub run_hooks: &'a dyn Fn(i32) -> Result<String, RuntimeError>,
}

/// Creates the process and returns its pid once it is ready or has executed.
pub fn spawn(config: &ChildConfig, duties: &ParentDuties) -> Result<i32, RuntimeError> {
    let (ours, theirs) = channel::pair().map_err(|e| RuntimeError::system("socketpair", e))?;
    let intermediate = config.namespaces.needs_intermediate();
    if intermediate {
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| RuntimeError::system("prctl(PR_SET_CHILD_SUBREAPER)", e))?;
    }
    let flags = if intermediate { CloneFlags::empty() } else { config.namespaces.new };
    let own_pid_namespace = config.namespaces.enter_pid_for_children()?;
    crate::mark!("cloning");
    let cloned = match config.handoff {
        Some(handoff) => clone_to_hand_over(flags, handoff, &theirs),
        None => clone_process(flags),
    };
    if matches!(cloned, Ok(0)) {
        drop((ours, own_pid_namespace));
        child_main(config, theirs);
    }
    (duties.after_clone)();
    crate::mark!("cloned");
    drop(theirs);
    let restored = own_pid_namespace.map_or(Ok(()), crate::namespaces::leave_pid_for_children);
    let first = cloned.map_err(|e| RuntimeError::system("clone", e))?;
    if let Err(error) = restored {
        Progress { first, last: first, intermediate }.abort();
        return Err(error.into());
    }
    let mut progress = Progress { first, last: first, intermediate };
    crate::mark!("request encoding");
    let sent = match config.handoff {
        Some(handoff) => handoff.message().and_then(|message| send(&ours, message)),
        None => Ok(()),
    };
    match sent.and_then(|()| progress.drive(config, duties, &ours)) {
        Ok(()) => Ok(progress.last),
        Err(error) => {
            progress.abort();
            Err(error)
        }
    }
}

fn clone_process(flags: CloneFlags) -> std::io::Result<i32> {
    let flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // With no new stack the child continues on a copy of ours, like fork(2). The runtime
    // is single-threaded here, so this is safe.
    let result = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(result as i32)
}

/// A child that only re-executes the sealed binary (see [`crate::handoff`]) shares the
/// runtime's memory until it does, like `posix_spawn`'s: the runtime's memory is not
/// copied for it (nor torn down again by its `execve`), and the runtime resumes once
/// the child has executed or failed.
fn clone_to_hand_over(flags: CloneFlags, handoff: &crate::handoff::Handoff, channel: &Channel) -> std::io::Result<i32> {
    struct Task<'a> {
        handoff: &'a crate::handoff::Handoff<'a>,
        channel: &'a Channel,
    }
    extern "C" fn hand_over(task: *mut libc::c_void) -> libc::c_int {
        // Only what exec_in_child does: descriptor flags, execveat, or a report and _exit.
        let task = unsafe { &*(task as *const Task) };
        task.handoff.exec_in_child(task.channel)
    }
    const STACK_SIZE: usize = 256 * 1024;
    let stack = unsafe {
        libc::mmap(std::ptr::null_mut(), STACK_SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK, -1, 0)
    };
    if stack == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let mut task = Task { handoff, channel };
    let flags = flags.bits() | libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    let top = unsafe { stack.cast::<u8>().add(STACK_SIZE) };
    let pid = unsafe { libc::clone(hand_over, top.cast(), flags, (&mut task as *mut Task).cast()) };
    let result = if pid < 0 { Err(std::io::Error::last_os_error()) } else { Ok(pid) };
    // With CLONE_VFORK the child no longer runs on that stack.
    unsafe { libc::munmap(stack, STACK_SIZE) };
    result
}

struct Progress {
    first: i32,
    last: i32,
    intermediate: bool,
}

impl Progress {
    /// Serves the child until it is ready (or, for `exec`, has executed). A child that
    /// failed and exited while the runtime was sending to it left its error behind.
    fn drive(&mut self, config: &ChildConfig, duties: &ParentDuties, channel: &Channel) -> Result<(), RuntimeError> {
        self.serve(config, duties, channel).map_err(|error| match &error {
            RuntimeError::System(_, io) if io.raw_os_error() == Some(libc::EPIPE) => match channel.receive() {
                Ok(Some(Message::Error(message))) => RuntimeError::Invalid(message),
                _ => error,
            },
            _ => error,
        })
    }

    fn serve(&mut self, config: &ChildConfig, duties: &ParentDuties, channel: &Channel) -> Result<(), RuntimeError> {
        let is_init = matches!(config.role, Role::ContainerInit { .. });
        // A container init sets up its rootfs while it is moved into its cgroup (the
        // first v1 migration by pid can take milliseconds).
        let overlap = is_init && !self.intermediate;
        // An init outside a new user namespace moves itself (writing the host's cgroup
        // files needs the host's root): see ContainerCgroup::self_placement.
        let self_placing = overlap && !config.namespaces.creates_user_namespace();
        if !overlap {
            self.place(duties)?;
        }
        if let Some(score) = duties.oom_score_adj {
            write_oom_score_adj(self.first, score)?;
        }
        if config.namespaces.creates_user_namespace() && !self.intermediate {
            write_id_maps(self.first, duties)?;
        }
        send(channel, Message::Go)?;
        crate::mark!("go sent");
        if self_placing {
            let placement = (duties.cgroup)()?.map(|c| c.self_placement()).unwrap_or_default();
            send(channel, Message::PlaceYourself(placement))?;
            crate::mark!("place sent");
        } else {
            if overlap {
                self.place(duties)?;
            }
            send(channel, Message::Placed)?;
        }
        loop {
            let message = channel.receive().map_err(|e| RuntimeError::system("sync channel", e))?;
            match message {
                Some(Message::MapRequest) => {
                    write_id_maps(self.first, duties)?;
                    send(channel, Message::Go)?;
                }
                Some(Message::ChildPid(pid)) => {
                    let _ = waitpid(Pid::from_raw(self.first), None);
                    self.last = pid;
                }
                Some(Message::RunHooks) => {
                    let state = (duties.run_hooks)(self.last)?;
                    send(channel, Message::HooksDone(state))?;
                }
                Some(Message::Ready) if is_init => return Ok(()),
                None if !is_init => return Ok(()),
                Some(Message::Error(message)) => return Err(RuntimeError::Invalid(message)),
                None => return Err(RuntimeError::Invalid("the container's init exited during setup".into())),
                Some(other) => return Err(RuntimeError::Invalid(format!("sync protocol: unexpected {other:?}"))),
            }
        }
    }

    /// Moves the child into its cgroup by pid.
    fn place(&self, duties: &ParentDuties) -> Result<(), RuntimeError> {
        match (duties.cgroup)()? {
            Some(cgroup) => Ok(cgroup.add_process(self.first)?),
            None => Ok(()),
        }
    }

    /// Kills and reaps what was started.
    fn abort(&self) {
        for pid in [self.last, self.first] {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
    }
}

fn send(channel: &Channel, message: Message) -> Result<(), RuntimeError> {
    channel.send(&message).map_err(|e| RuntimeError::system("sync channel", e))
}

fn write_oom_score_adj(pid: i32, score: i32) -> Result<(), RuntimeError> {
    let path = format!("/proc/{pid}/oom_score_adj");
    std::fs::write(&path, score.to_string())
        .map_err(|e| RuntimeError::system(format!("process.oomScoreAdj {score}: writing {path}"), e))
}

fn write_id_maps(pid: i32, duties: &ParentDuties) -> Result<(), RuntimeError> {
    write_map(pid, "uid_map", duties.uid_mappings)?;
    write_map(pid, "gid_map", duties.gid_mappings)
}

fn write_map(pid: i32, file: &str, mappings: &[LinuxIdMapping]) -> Result<(), RuntimeError> {
    let text = crate::rootfs::idmap::map_text(mappings);
    let path = format!("/proc/{pid}/{file}");
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| RuntimeError::system(format!("opening {path}"), e))?;
    handle
        .write_all(text.as_bytes())
        .map_err(|e| RuntimeError::system(format!("writing {path} ({})", text.trim().replace('\n', ", ")), e))
}
