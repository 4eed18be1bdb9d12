//! `exec`: a new process inside a running container, in all its namespaces and its
//! cgroup, with the container's seccomp profile.

use std::path::PathBuf;

use oci_spec::runtime::Process;

use super::Runtime;
use crate::capabilities::CapabilityPlan;
use crate::error::RuntimeError;
use crate::init::{ChildConfig, ProcessStdio, Role};
use crate::namespaces::NamespacePlan;
use crate::spawn::{spawn, ParentDuties};
use crate::state::Status;

#[derive(Debug, Default)]
pub struct ExecOptions {
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket, used instead of `console_socket`.
    pub console: Option<std::os::fd::OwnedFd>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    /// The process's stdin, stdout and stderr; None inherits the caller's.
    pub stdio: Option<ProcessStdio>,
}

impl Runtime {
    /// Starts `process` in container `id` and returns its host pid once it has
    /// executed. The caller should have blocked signals if it wants to wait for it.
    pub fn exec(&self, id: &str, process: &Process, options: &ExecOptions) -> Result<i32, RuntimeError> {
        let (record, status) = self.load(id)?;
        if !matches!(status, Status::Created | Status::Running) {
            return Err(RuntimeError::WrongStatus { id: id.into(), status, wanted: "exec needs a created or running container" });
        }
        let linux = record.spec.linux().as_ref().ok_or_else(|| RuntimeError::Invalid("config.json: linux is missing".into()))?;
        crate::bundle::validate_process(process)?;
        let namespaces = NamespacePlan::for_exec(record.init_pid, linux.namespaces().as_deref().unwrap_or_default())?;
        let console_socket = crate::console::console_socket_for(
            process.terminal().unwrap_or(false),
            options.console.as_ref(),
            options.console_socket.as_deref(),
        )?;
        let child = ChildConfig {
            role: Role::Joiner,
            spec: &record.spec,
            process,
            namespaces: &namespaces,
            capabilities: CapabilityPlan::from_spec(process.capabilities().as_ref())?,
            seccomp: linux.seccomp().as_ref().map(crate::seccomp::compile_memoized).transpose()?,
            console_socket,
            stdio: options.stdio.as_ref(),
            preserve_fds: options.preserve_fds,
            handoff: None,
        };
        let no_hooks = |_pid: i32| Ok(String::new());
        let cgroup = || -> Result<_, RuntimeError> { Ok(record.cgroup.as_ref()) };
        let oom_score_adj = record.spec.process().as_ref().and_then(|p| p.oom_score_adj());
        let duties = ParentDuties {
            after_clone: &|| {},
            cgroup: &cgroup,
            oom_score_adj,
            uid_mappings: &[],
            gid_mappings: &[],
            run_hooks: &no_hooks,
        };
        let pid = spawn(&child, &duties).map_err(|e| match e {
            RuntimeError::Invalid(message) => RuntimeError::Init { id: id.into(), message },
            other => other,
        })?;
        if let Some(path) = &options.pid_file {
            super::write_pid_file(path, pid)?;
        }
        Ok(pid)
    }
}
