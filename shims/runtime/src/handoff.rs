//! Handing a new container's init over to a sealed copy of the runtime binary.
//!
//! A process that runs inside a container before `execve` must not have a writable host
//! file as its `/proc/<pid>/exe` (see [`crate::sealed_exe`]). A runtime started from a
//! writable binary could re-execute itself sealed before cloning (one more program start
//! on the critical path); instead, the init re-executes the sealed binary right after
//! `clone`, while the runtime creates the cgroup, and reads what it is to become from the
//! sync channel. Only for an init born in a new pid namespace, where no other process can
//! see it before it re-executes, and without a new user namespace (whose capabilities
//! `execve` would drop before the id maps exist).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use crate::capabilities::CapabilityPlan;
use crate::channel::{Channel, Message};
use crate::error::{InitError, RuntimeError};
use crate::init::{child_main, ChildConfig, Role};
use crate::namespaces::NamespacePlan;
use crate::rootfs::RootfsConfig;
use crate::sealed_exe::SealError;
use crate::seccomp::SeccompProgram;

/// Names, in the handed-over init's environment, its end of the sync channel.
const CHANNEL_VARIABLE: &str = "_BERTH_INIT_CHANNEL";

/// What the handed-over init is to become; sent by the runtime after `clone`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InitRequest {
    /// The validated spec, as JSON (filled in after `clone`, off the critical path).
    pub spec: String,
    pub rootfs: PathBuf,
    pub bundle: PathBuf,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// Inherited descriptors, by number.
    pub state_dir: RawFd,
    pub console_socket: Option<RawFd>,
}

/// Whether a container init with this spec can be handed over: it gets a new pid
/// namespace and no user namespace.
pub fn allowed_for(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_deref()).unwrap_or_default();
    let has = |typ: LinuxNamespaceType| namespaces.iter().find(|ns| ns.typ() == typ);
    has(LinuxNamespaceType::Pid).is_some_and(|ns| ns.path().is_none()) && has(LinuxNamespaceType::User).is_none()
}

/// The sealed binary to hand over to, and the request for the init.
pub struct Handoff<'a> {
    sealed: OwnedFd,
    request: InitRequest,
    spec: &'a Spec,
}

impl<'a> Handoff<'a> {
    /// Makes the read-only detached copy of the running binary; the runtime keeps it
    /// open until the init has run the container's process (see
    /// [`crate::sealed_exe::release`]).
    pub fn new(spec: &'a Spec, request: InitRequest) -> Result<Self, SealError> {
        let sealed = crate::sealed_exe::read_only_clone_of_self()?;
        // execveat of an ELF file works through a close-on-exec descriptor.
        unsafe { libc::fcntl(sealed.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        Ok(Handoff { sealed, request, spec })
    }

    /// The request, with the spec encoded now (the runtime sends it after `clone`).
    pub fn message(&self) -> Result<Message, RuntimeError> {
        let spec = serde_json::to_string(self.spec).map_err(|e| RuntimeError::Invalid(format!("encoding the spec: {e}")))?;
        Ok(Message::Init(InitRequest { spec, ..self.request.clone() }))
    }

    /// The runtime's copy of the sealed binary's descriptor, kept until released.
    pub fn into_sealed(self) -> OwnedFd {
        self.sealed
    }

    /// In the cloned child: re-executes the sealed binary, keeping `channel` and the
    /// request's descriptors open across `execve`. Returns only on failure.
    pub fn exec_in_child(&self, channel: &Channel) -> InitError {
        let mut inherited = vec![channel.as_raw_fd(), self.request.state_dir];
        inherited.extend(self.request.console_socket);
        for fd in inherited {
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                return InitError::System("keeping a descriptor for the sealed init", nix::Error::last());
            }
        }
        let argv = [c"berth-runc".as_ptr(), c"init".as_ptr(), std::ptr::null()];
        let variable = CString::new(format!("{CHANNEL_VARIABLE}={}", channel.as_raw_fd())).unwrap_or_default();
        let envp = [variable.as_ptr(), std::ptr::null()];
        unsafe {
            libc::syscall(libc::SYS_execveat, self.sealed.as_raw_fd(), c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH);
        }
        InitError::System("re-executing the sealed runtime for the init", nix::Error::last())
    }
}

/// The entry point of `berth-runc`: when this process is a handed-over init, becomes
/// the container's init and never returns; otherwise returns at once.
pub fn run_if_handed_over() {
    let Some(fd) = std::env::var(CHANNEL_VARIABLE).ok().and_then(|v| v.parse::<RawFd>().ok()) else { return };
    std::env::remove_var(CHANNEL_VARIABLE);
    let channel = Channel::from(adopt(fd));
    let request = match channel.receive() {
        Ok(Some(Message::Init(request))) => request,
        other => fail(&channel, InitError::Protocol(format!("expected the init request, got {other:?}"))),
    };
    let spec: Spec = serde_json::from_str(&request.spec)
        .unwrap_or_else(|e| fail(&channel, InitError::Protocol(format!("the init request's spec: {e}"))));
    let state_dir = adopt(request.state_dir);
    let console_socket = request.console_socket.map(adopt);
    let (namespaces, capabilities, seccomp) = prepare(&spec).unwrap_or_else(|e| fail(&channel, e));
    let Some(process) = spec.process().as_ref() else {
        fail(&channel, InitError::Protocol("the init request's spec has no process".into()))
    };
    let rootfs = RootfsConfig {
        spec: &spec,
        rootfs: request.rootfs.clone(),
        no_pivot: request.no_pivot,
        in_user_namespace: namespaces.creates_user_namespace(),
        in_cgroup_namespace: namespaces.new_cgroup,
    };
    let config = ChildConfig {
        role: Role::ContainerInit { rootfs, bundle: &request.bundle, state_dir },
        spec: &spec,
        process,
        namespaces: &namespaces,
        capabilities,
        seccomp,
        console_socket,
        stdio: None,
        preserve_fds: request.preserve_fds,
        handoff: None,
    };
    child_main(&config, channel)
}

/// Takes an inherited descriptor, closed again when the container's process executes.
fn adopt(fd: RawFd) -> OwnedFd {
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        OwnedFd::from_raw_fd(fd)
    }
}

fn fail(channel: &Channel, error: InitError) -> ! {
    let _ = channel.send(&Message::Error(error.to_string()));
    unsafe { libc::_exit(1) }
}

/// What the runtime computes before `clone` in the direct case, computed here instead.
fn prepare(spec: &Spec) -> Result<(NamespacePlan, CapabilityPlan, Option<SeccompProgram>), InitError> {
    let linux = spec.linux().as_ref();
    let namespaces = NamespacePlan::for_container(linux.and_then(|l| l.namespaces().as_deref()).unwrap_or_default())?;
    let process = spec.process().as_ref();
    let capabilities = CapabilityPlan::from_spec(process.and_then(|p| p.capabilities().as_ref()))?;
    let seccomp = linux.and_then(|l| l.seccomp().as_ref()).map(crate::seccomp::compile).transpose()?;
    Ok((namespaces, capabilities, seccomp))
}
