//! The runtime's errors: `InitError` for what happens inside a new process before it
//! executes, `RuntimeError` for the operations callers see. Each names what failed.

use std::path::PathBuf;

use thiserror::Error;

use crate::apparmor::AppArmorError;
use crate::bundle::BundleError;
use crate::capabilities::CapabilityError;
use crate::cgroups::CgroupError;
use crate::console::ConsoleError;
use crate::credentials::CredentialError;
use crate::hooks::HookError;
use crate::namespaces::NamespaceError;
use crate::rootfs::RootfsError;
use crate::seccomp::SeccompError;
use crate::signals::UnknownSignal;
use crate::state::StateError;

/// A failure inside the new process, reported back over the sync channel.
#[derive(Debug, Error)]
pub enum InitError {
    #[error("sync channel: {0}")]
    Channel(std::io::Error),
    #[error("sync protocol: {0}")]
    Protocol(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}: {1}")]
    System(&'static str, nix::Error),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    #[error(transparent)]
    AppArmor(#[from] AppArmorError),
    #[error("setting rlimit {0}: {1}")]
    Rlimit(String, std::io::Error),
    #[error("setting sysctl {0}: {1}")]
    Sysctl(String, std::io::Error),
    #[error("moving into the cgroup through {0}: {1}")]
    Placement(PathBuf, std::io::Error),
    #[error("process.cwd {0}: {1}")]
    Cwd(PathBuf, nix::Error),
    #[error("exec: {0:?}: executable file not found in $PATH")]
    Executable(String),
    #[error("exec {0}: {1}")]
    Exec(String, nix::Error),
}

/// A failed runtime operation.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Signal(#[from] UnknownSignal),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("container {id}: {message}")]
    Init { id: String, message: String },
    #[error("container {id} is {status}: {wanted}")]
    WrongStatus { id: String, status: crate::state::Status, wanted: &'static str },
    #[error("{0}: {1}")]
    System(String, std::io::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("container {0}: its init joins a pid namespace or uses a user namespace, so the runtime must itself run from a sealed binary")]
    SealRequired(String),
    #[error(transparent)]
    Seal(#[from] crate::sealed_exe::SealError),
}

impl RuntimeError {
    pub fn system(what: impl Into<String>, error: impl Into<std::io::Error>) -> Self {
        RuntimeError::System(what.into(), error.into())
    }
}
