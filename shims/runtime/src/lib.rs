//! berth-runtime: berth's OCI runtime (runtime-spec 1.x) as a synchronous library, used
//! directly by the shim and wrapped by the runc-compatible binary `berth-runc`.
//!
//! A container is created by cloning its init with its new namespaces; the init sets up
//! the root filesystem and the process attributes, then blocks on an exec FIFO until
//! `start`. State lives under a root directory, one subdirectory per container.

pub mod apparmor;
pub mod bundle;
pub mod capabilities;
pub mod cgroups;
mod channel;
pub mod console;
pub mod container;
pub mod credentials;
pub mod error;
pub mod features;
pub mod handoff;
pub mod hooks;
mod init;
pub mod mount_api;
mod procfs;
pub mod private_fs;
pub mod namespaces;
mod rlimits;
pub mod rootfs;
pub mod sealed_exe;
pub mod seccomp;
pub mod signals;
mod spawn;
pub mod state;
#[doc(hidden)]
pub mod timeline;
pub mod wait;

pub use container::{CreateOptions, ExecOptions, Runtime};
pub use error::RuntimeError;
pub use init::ProcessStdio;
