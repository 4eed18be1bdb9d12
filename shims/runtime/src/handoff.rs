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
/// namespace, no user namespace and no idmapped mount (whose trees it would inherit).
pub fn allowed_for(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_deref()).unwrap_or_default();
    let has = |typ: LinuxNamespaceType| namespaces.iter().find(|ns| ns.typ() == typ);
    has(LinuxNamespaceType::Pid).is_some_and(|ns| ns.path().is_none())
        && has(LinuxNamespaceType::User).is_none()
        && !crate::rootfs::idmap::any_requested(spec)
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
    /// request's descriptors open across `execve`; on failure, reports it on `channel`
    /// and exits. Allocates nothing: the runtime may have another thread (making the
    /// cgroup) whose allocator lock the child's copy of memory would hold forever.
    pub fn exec_in_child(&self, channel: &Channel) -> ! {
        let inherited = [Some(channel.as_raw_fd()), Some(self.request.state_dir), self.request.console_socket];
        for fd in inherited.into_iter().flatten() {
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                fail_without_allocating(channel, "keeping a descriptor for the sealed init");
            }
        }
        let argv = [c"berth-runc".as_ptr(), c"init".as_ptr(), std::ptr::null()];
        let mut variable = StackText::<64>::new();
        variable.push(CHANNEL_VARIABLE.as_bytes());
        variable.push(b"=");
        variable.push_decimal(channel.as_raw_fd() as u64);
        let envp = [variable.as_c_ptr(), std::ptr::null()];
        unsafe {
            libc::syscall(libc::SYS_execveat, self.sealed.as_raw_fd(), c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH);
        }
        fail_without_allocating(channel, "re-executing the sealed runtime for the init")
    }
}

/// Sends `Message::Error("<what>: errno N")` as the channel encodes it, built on the
/// stack, then exits.
fn fail_without_allocating(channel: &Channel, what: &str) -> ! {
    let packet = error_packet(what, nix::Error::last() as i32);
    let bytes = packet.as_bytes();
    unsafe {
        libc::send(channel.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL);
        libc::_exit(1)
    }
}

/// `what` (plain text: no quote or backslash) and the errno, encoded as the channel
/// encodes `Message::Error`.
fn error_packet(what: &str, errno: i32) -> StackText<160> {
    let mut packet = StackText::new();
    packet.push(b"{\"Error\":\"");
    packet.push(what.as_bytes());
    packet.push(b": errno ");
    packet.push_decimal(errno.unsigned_abs() as u64);
    packet.push(b"\"}");
    packet
}

/// A NUL-terminated text in a fixed buffer; what does not fit is cut off.
struct StackText<const N: usize> {
    bytes: [u8; N],
    length: usize,
}

impl<const N: usize> StackText<N> {
    fn new() -> Self {
        StackText { bytes: [0; N], length: 0 }
    }

    fn push(&mut self, text: &[u8]) {
        for &byte in text {
            if self.length + 1 < N {
                self.bytes[self.length] = byte;
                self.length += 1;
            }
        }
    }

    fn push_decimal(&mut self, mut value: u64) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.push(&digits[start..]);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }

    /// The text, NUL-terminated (the byte after it is always 0).
    fn as_c_ptr(&self) -> *const libc::c_char {
        self.bytes.as_ptr().cast()
    }
}

/// The entry point of `berth-runc`: when this process is a handed-over init, becomes
/// the container's init and never returns; otherwise returns at once.
pub fn run_if_handed_over() {
    let Some(fd) = std::env::var(CHANNEL_VARIABLE).ok().and_then(|v| v.parse::<RawFd>().ok()) else { return };
    crate::mark!("init main");
    std::env::remove_var(CHANNEL_VARIABLE);
    let channel = Channel::from(adopt(fd));
    let request = match channel.receive() {
        Ok(Some(Message::Init(request))) => request,
        other => fail(&channel, InitError::Protocol(format!("expected the init request, got {other:?}"))),
    };
    crate::mark!("request received");
    let spec: Spec = serde_json::from_str(&request.spec)
        .unwrap_or_else(|e| fail(&channel, InitError::Protocol(format!("the init request's spec: {e}"))));
    crate::mark!("spec parsed");
    let state_dir = adopt(request.state_dir);
    let console_socket = request.console_socket.map(adopt);
    let (namespaces, capabilities, seccomp) = prepare(&spec).unwrap_or_else(|e| fail(&channel, e));
    crate::mark!("prepared");
    let Some(process) = spec.process().as_ref() else {
        fail(&channel, InitError::Protocol("the init request's spec has no process".into()))
    };
    let rootfs = RootfsConfig {
        spec: &spec,
        rootfs: request.rootfs.clone(),
        no_pivot: request.no_pivot,
        in_user_namespace: namespaces.in_user_namespace(),
        in_cgroup_namespace: namespaces.new_cgroup,
        cgroup_hierarchies: Default::default(),
        idmapped: Default::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_built_on_the_stack_reads_back_as_a_channel_message() {
        let packet = error_packet("re-executing the sealed runtime for the init", 13);
        let message: Message = serde_json::from_slice(packet.as_bytes()).unwrap();
        assert_eq!(message, Message::Error("re-executing the sealed runtime for the init: errno 13".into()));
    }

    #[test]
    fn stack_text_is_cut_off_and_stays_nul_terminated() {
        let mut text = StackText::<8>::new();
        text.push(b"_X=");
        text.push_decimal(1234567);
        assert_eq!(text.as_bytes(), b"_X=1234");
        let c_text = unsafe { std::ffi::CStr::from_ptr(text.as_c_ptr()) };
        assert_eq!(c_text.to_bytes(), b"_X=1234");
        let mut zero = StackText::<8>::new();
        zero.push_decimal(0);
        assert_eq!(zero.as_bytes(), b"0");
    }
}
