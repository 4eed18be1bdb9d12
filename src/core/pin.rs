//! Pod namespaces without a pause process: a short-lived thread unshares the network,
//! IPC and UTS namespaces, sets the pod's hostname and brings `lo` up, and each namespace
//! is kept alive by a bind mount of `/proc/thread-self/ns/<kind>` onto a file. Containers
//! join them by path; removing the pod unmounts the files.
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("pinning the pod's namespaces: {step}: {source}")]
    Sys {
        step: String,
        #[source]
        source: nix::Error,
    },
    #[error("pinning the pod's namespaces: {step}: {source}")]
    Io {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pinning the pod's namespaces: the worker thread died")]
    Thread,
}

fn sys(step: impl Into<String>) -> impl FnOnce(nix::Error) -> PinError {
    let step = step.into();
    move |source| PinError::Sys { step, source }
}

/// Which namespaces a pod gets of its own, and where they are pinned.
#[derive(Debug, Clone, Default)]
pub struct PinPlan {
    pub network: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub hostname: String,
    /// A user namespace of the pod's own, pinned there, owning the others.
    pub user: Option<(PathBuf, crate::core::UserNamespaceSpec)>,
}

impl PinPlan {
    pub(crate) fn pinned(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        let user = self.user.as_ref().map(|(path, _)| path);
        [("net", self.network.as_ref()), ("ipc", self.ipc.as_ref()), ("uts", self.uts.as_ref()), ("user", user)]
            .into_iter()
            .filter_map(|(kind, path)| path.map(|path| (kind, path)))
    }

    pub(crate) fn clone_flags(&self) -> CloneFlags {
        let mut flags = CloneFlags::empty();
        flags.set(CloneFlags::CLONE_NEWNET, self.network.is_some());
        flags.set(CloneFlags::CLONE_NEWIPC, self.ipc.is_some());
        flags.set(CloneFlags::CLONE_NEWUTS, self.uts.is_some());
        flags
    }
}

/// Creates and pins the namespaces of `plan`. On error nothing stays pinned.
pub fn pin(plan: &PinPlan) -> Result<(), PinError> {
    if plan.user.is_some() {
        let outcome = super::userns::pin_in_user_namespace(plan);
        if outcome.is_err() {
            unpin(plan);
        }
        return outcome;
    }
    let plan_for_thread = plan.clone();
    let outcome = std::thread::spawn(move || pin_on_this_thread(&plan_for_thread))
        .join()
        .map_err(|_| PinError::Thread)?;
    if outcome.is_err() {
        unpin(plan);
    }
    outcome
}

/// Runs on a thread of its own, which exits afterwards (its namespaces are not reused).
fn pin_on_this_thread(plan: &PinPlan) -> Result<(), PinError> {
    unshare(plan.clone_flags()).map_err(sys("unshare"))?;
    set_up_namespaces(plan).map_err(|(step, source)| PinError::Sys { step: step.into(), source })?;
    for (kind, target) in plan.pinned() {
        bind_namespace(kind, target)?;
    }
    Ok(())
}

/// Inside the new namespaces: the hostname and `lo`. Only system calls (it also runs in a
/// forked child), so errors are a static step and an errno.
pub(crate) fn set_up_namespaces(plan: &PinPlan) -> Result<(), (&'static str, nix::Error)> {
    if plan.uts.is_some() && !plan.hostname.is_empty() {
        nix::unistd::sethostname(&plan.hostname).map_err(|e| ("sethostname", e))?;
    }
    if plan.network.is_some() {
        loopback_up().map_err(|e| ("bringing lo up", e))?;
    }
    Ok(())
}

fn bind_namespace(kind: &str, target: &Path) -> Result<(), PinError> {
    bind_namespace_file(&format!("/proc/thread-self/ns/{kind}"), target)
}

/// Pins the namespace `kind` of the process `pid` on `target`.
pub fn bind_namespace_of(pid: u32, kind: &str, target: &Path) -> Result<(), PinError> {
    bind_namespace_file(&format!("/proc/{pid}/ns/{kind}"), target)
}

pub(crate) fn bind_namespace_file(source: &str, target: &Path) -> Result<(), PinError> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|source| PinError::Io {
            step: format!("creating {}", parent.display()),
            source,
        })?;
    }
    std::fs::File::create(target).map_err(|source| PinError::Io {
        step: format!("creating {}", target.display()),
        source,
    })?;
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(sys(format!("bind-mounting {source} on {}", target.display())))
}

/// Sets IFF_UP on `lo` through a socket of this thread's network namespace.
fn loopback_up() -> Result<(), nix::Error> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    let socket = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    // SAFETY: ifreq is plain data; the name is NUL-terminated within its 16 bytes.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: the ioctls read and write only `request`, which outlives them.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(nix::Error::last());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(nix::Error::last());
        }
    }
    Ok(())
}

/// Unmounts and removes every pin of `plan`; missing ones are fine (idempotent).
pub fn unpin(plan: &PinPlan) {
    for (_, target) in plan.pinned() {
        unpin_path(target);
    }
}

pub fn unpin_path(target: &Path) {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(error) => tracing::warn!(path = %target.display(), %error, "unmounting a pinned namespace"),
    }
    let _ = std::fs::remove_file(target);
}

/// Mounts a tmpfs for the pod's shared `/dev/shm`.
pub fn mount_shm(target: &Path, size_bytes: u64) -> Result<(), PinError> {
    std::fs::create_dir_all(target).map_err(|source| PinError::Io {
        step: format!("creating {}", target.display()),
        source,
    })?;
    let options = format!("mode=1777,size={size_bytes}");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("shm"), target, Some("tmpfs"), flags, Some(options.as_str()))
        .map_err(sys(format!("mounting the pod's shm on {}", target.display())))
}

pub fn unmount_shm(target: &Path) {
    let _ = umount2(target, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(target);
}
