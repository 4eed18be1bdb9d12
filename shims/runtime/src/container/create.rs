//! `create`: from a bundle to a container whose init waits for `start`.

use std::cell::{OnceCell, RefCell};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{overlap, Runtime};
use crate::bundle::Bundle;
use crate::capabilities::CapabilityPlan;
use crate::cgroups::ContainerCgroup;
use crate::error::RuntimeError;
use crate::handoff::{self, Handoff, InitRequest};
use crate::init::{ChildConfig, ProcessStdio, Role};
use crate::namespaces::NamespacePlan;
use crate::rootfs::RootfsConfig;
use crate::spawn::{spawn, ParentDuties};
use crate::state::{self, ContainerRecord, Status};

#[derive(Debug, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket, used instead of `console_socket`.
    pub console: Option<OwnedFd>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// The init's stdin, stdout and stderr; None inherits the caller's.
    pub stdio: Option<ProcessStdio>,
    /// The caller runs from a writable binary: the init re-executes a sealed copy of it
    /// (see [`crate::handoff`]). Containers whose init cannot fail with
    /// [`RuntimeError::SealRequired`], before anything is made.
    pub sealed_init: bool,
}

impl Runtime {
    /// Creates the container. On any failure nothing is left behind: no state
    /// directory, cgroup or process.
    pub fn create(&self, options: &CreateOptions) -> Result<ContainerRecord, RuntimeError> {
        self.create_from(Bundle::load(&options.bundle)?, options)
    }

    /// `create` for a bundle the caller already loaded (`options.bundle` is not read).
    pub fn create_from(&self, bundle: Bundle, options: &CreateOptions) -> Result<ContainerRecord, RuntimeError> {
        if options.sealed_init && (!handoff::allowed_for(&bundle.spec) || options.stdio.is_some()) {
            return Err(RuntimeError::SealRequired(options.id.clone()));
        }
        let dir = self.state.reserve(&options.id)?;
        crate::mark!("state reserved");
        let previous_mask = super::block_signals()?;
        let mut record = new_record(&options.id, bundle);
        let result = self.create_in(&mut record, options, &dir);
        super::restore_signals(&previous_mask);
        if let Err(error) = result {
            if let Some(cgroup) = &record.cgroup {
                let _ = cgroup.destroy();
            }
            if !crate::rootfs::has_mount_namespace(&record.spec) {
                let _ = crate::rootfs::unmount_container_mounts(&record.rootfs);
            }
            let _ = self.state.remove(&options.id);
            return Err(error);
        }
        Ok(record)
    }

    fn create_in(&self, record: &mut ContainerRecord, options: &CreateOptions, dir: &Path) -> Result<(), RuntimeError> {
        let cgroup = OnceCell::new();
        let spawned = self.spawn_init(record, options, dir, &cgroup);
        record.cgroup = cgroup.into_inner();
        let pid = spawned.map_err(|e| init_error(&record.id, e))?;
        record.init_pid = pid;
        record.init_start_time = state::process_start_time(pid)
            .ok_or_else(|| RuntimeError::Init { id: record.id.clone(), message: "the init exited during setup".into() })?;
        crate::mark!("saving record");
        self.state.save(record)?;
        if let Some(path) = &options.pid_file {
            super::write_pid_file(path, pid)?;
        }
        Ok(())
    }

    /// Clones the init and creates the cgroup (kept in `cgroup`, also on failure) and
    /// the first record; returns the init's pid.
    ///
    /// The cgroup is made, limited and recorded by a second thread from the start,
    /// alongside `clone` (whose new network namespace alone takes half a millisecond),
    /// so that the init does not wait to be placed. A handed-over init needs nothing of
    /// its parent's memory; an init that runs the runtime's own code is cloned only
    /// while that thread makes system calls (see [`overlap`]).
    fn spawn_init(&self, record: &ContainerRecord, options: &CreateOptions, dir: &Path, cgroup: &OnceCell<ContainerCgroup>) -> Result<i32, RuntimeError> {
        let (runtime_side, thread_side) = match options.sealed_init {
            true => (None, None),
            false => {
                let (ours, theirs) = overlap::handshake().map_err(|e| RuntimeError::system("pipe2", e))?;
                (Some(ours), Some(theirs))
            }
        };
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || self.new_limited_cgroup(record, thread_side.as_ref()));
            let early = RefCell::new(Some(thread));
            let spawned = self.spawn_init_with(record, options, dir, cgroup, &early, runtime_side.as_ref());
            drop(runtime_side);
            // Whatever happened, the cgroup is known before returning, for cleanup.
            let settled = settle_early_cgroup(&early, cgroup);
            spawned.and_then(|pid| settled.map(|()| pid))
        })
    }

    fn spawn_init_with(
        &self,
        record: &ContainerRecord,
        options: &CreateOptions,
        dir: &Path,
        cgroup: &OnceCell<ContainerCgroup>,
        early: &EarlyCgroup,
        overlap: Option<&overlap::RuntimeSide>,
    ) -> Result<i32, RuntimeError> {
        let spec = &record.spec;
        let (linux, process) = match (spec.linux(), spec.process()) {
            (Some(linux), Some(process)) => (linux, process),
            _ => return Err(RuntimeError::Invalid("config.json: linux and process are required".into())),
        };
        let namespaces = NamespacePlan::for_container(linux.namespaces().as_deref().unwrap_or_default())?;
        // A handed-over init works out its capabilities and seccomp program itself,
        // while the runtime makes the cgroup.
        let (capabilities, seccomp) = match options.sealed_init {
            true => (CapabilityPlan::default(), None),
            false => (
                CapabilityPlan::from_spec(process.capabilities().as_ref())?,
                linux.seccomp().as_ref().map(crate::seccomp::compile_memoized).transpose()?,
            ),
        };
        let console_socket = crate::console::console_socket_for(
            process.terminal().unwrap_or(false),
            options.console.as_ref(),
            options.console_socket.as_deref(),
        )?;
        let state_dir = make_exec_fifo(dir)?;
        crate::mark!("fifo made");
        let rootfs = RootfsConfig {
            spec,
            rootfs: record.rootfs.clone(),
            no_pivot: options.no_pivot,
            in_user_namespace: namespaces.in_user_namespace(),
            in_cgroup_namespace: namespaces.new_cgroup,
            cgroup_hierarchies: Default::default(),
            idmapped: crate::rootfs::idmap::prepare(spec, &record.bundle, &record.rootfs)?,
        };
        let handoff = match options.sealed_init {
            true => Some(handoff_for(record, options, &state_dir, console_socket.as_ref())?),
            false => None,
        };
        crate::mark!("sealed opened");
        let child = ChildConfig {
            role: Role::ContainerInit { rootfs, bundle: &record.bundle, state_dir },
            spec,
            process,
            namespaces: &namespaces,
            capabilities,
            seccomp,
            console_socket,
            stdio: options.stdio.as_ref(),
            preserve_fds: options.preserve_fds,
            handoff: handoff.as_ref(),
        };
        let run_hooks = |pid: i32| self.runtime_hooks(record, pid);
        let made_cgroup = || {
            settle_early_cgroup(early, cgroup)?;
            Ok(cgroup.get())
        };
        let release_thread = || overlap.map_or((), overlap::RuntimeSide::release_thread);
        let duties = ParentDuties {
            after_clone: &release_thread,
            cgroup: &made_cgroup,
            oom_score_adj: process.oom_score_adj(),
            uid_mappings: linux.uid_mappings().as_deref().unwrap_or_default(),
            gid_mappings: linux.gid_mappings().as_deref().unwrap_or_default(),
            run_hooks: &run_hooks,
        };
        if let Some(overlap) = overlap {
            if !overlap.thread_is_making_dirs() {
                settle_early_cgroup(early, cgroup)?;
            }
        }
        let spawned = spawn(&child, &duties);
        if let Some(handoff) = handoff {
            crate::sealed_exe::hold(handoff.into_sealed());
        }
        spawned
    }

    fn new_cgroup(&self, record: &ContainerRecord, overlap: Option<&overlap::ThreadSide>) -> Result<ContainerCgroup, RuntimeError> {
        let linux = record.spec.linux().as_ref();
        let created = ContainerCgroup::create_announcing_dirs(
            linux.and_then(|l| l.cgroups_path().as_deref()),
            &record.id,
            linux.and_then(|l| l.resources().as_ref()),
            || overlap.map_or((), overlap::ThreadSide::making_dirs),
            || overlap.map_or((), overlap::ThreadSide::dirs_made),
        )?;
        crate::mark!("cgroup made");
        Ok(created)
    }

    /// The cgroup made, limited and recorded in one go (by the second thread of
    /// [`Self::spawn_init`]); a cgroup that exists is returned even if a later step failed.
    fn new_limited_cgroup(&self, record: &ContainerRecord, overlap: Option<&overlap::ThreadSide>) -> EarlyOutcome {
        match self.new_cgroup(record, overlap) {
            Ok(cgroup) => {
                let limited = self.limit_and_record(record, &cgroup);
                (Some(cgroup), limited)
            }
            Err(error) => (None, Err(error)),
        }
    }

    /// Applies the spec's resources to a new cgroup and writes the first record (status
    /// creating, naming the cgroup for `delete` to remove).
    fn limit_and_record(&self, record: &ContainerRecord, cgroup: &ContainerCgroup) -> Result<(), RuntimeError> {
        let resources = record.spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        cgroup.apply_initial_limits(resources)?;
        crate::mark!("limits written");
        let mut first = record.clone();
        first.cgroup = Some(cgroup.clone());
        self.state.save(&first)?;
        Ok(())
    }

    /// prestart and createRuntime hooks, in the runtime's namespaces, once the
    /// container's namespaces and mounts exist. prestart hooks see the status
    /// `created`, as runtime-tools' hooks_stdin expects and crun reports (the
    /// environment they run in is complete); createRuntime hooks see `creating`.
    fn runtime_hooks(&self, record: &ContainerRecord, pid: i32) -> Result<String, RuntimeError> {
        let mut snapshot = record.clone();
        snapshot.init_pid = pid;
        self.run_hooks("prestart", &snapshot, Status::Created)?;
        self.run_hooks("createRuntime", &snapshot, Status::Creating)
    }
}

/// What the second thread of `Runtime::spawn_init` made, and how it went.
type EarlyOutcome = (Option<ContainerCgroup>, Result<(), RuntimeError>);

/// A cgroup being made by that thread.
type EarlyCgroup<'scope> = RefCell<Option<std::thread::ScopedJoinHandle<'scope, EarlyOutcome>>>;

/// Waits for the second thread, once, and keeps what it made in `slot`.
fn settle_early_cgroup(early: &EarlyCgroup, slot: &OnceCell<ContainerCgroup>) -> Result<(), RuntimeError> {
    let Some(handle) = early.borrow_mut().take() else { return Ok(()) };
    let (made, result) = handle.join().map_err(|_| RuntimeError::Invalid("the thread making the cgroup panicked".into()))?;
    if let Some(cgroup) = made {
        let _ = slot.set(cgroup);
    }
    result
}

/// The sealed binary and the request for an init that is handed over.
fn handoff_for<'a>(record: &'a ContainerRecord, options: &CreateOptions, state_dir: &OwnedFd, console: Option<&OwnedFd>) -> Result<Handoff<'a>, RuntimeError> {
    let request = InitRequest {
        spec: String::new(),
        rootfs: record.rootfs.clone(),
        bundle: record.bundle.clone(),
        no_pivot: options.no_pivot,
        preserve_fds: options.preserve_fds,
        state_dir: state_dir.as_raw_fd(),
        console_socket: console.map(AsRawFd::as_raw_fd),
    };
    Ok(Handoff::new(&record.spec, request)?)
}

fn init_error(id: &str, error: RuntimeError) -> RuntimeError {
    match error {
        RuntimeError::Invalid(message) => RuntimeError::Init { id: id.to_string(), message },
        other => other,
    }
}

fn new_record(id: &str, bundle: Bundle) -> ContainerRecord {
    ContainerRecord {
        id: id.to_string(),
        bundle: bundle.dir,
        rootfs: bundle.rootfs,
        init_pid: 0,
        init_start_time: 0,
        created: state::now_rfc3339(),
        owner: String::new(),
        cgroup: None,
        spec: bundle.spec,
    }
}

/// Makes the FIFO the init blocks on until `start`, and returns an O_PATH descriptor of
/// the state directory through which the init opens it after leaving the host's root.
fn make_exec_fifo(dir: &Path) -> Result<OwnedFd, RuntimeError> {
    let fifo = dir.join(state::EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622))
        .map_err(|e| RuntimeError::system(format!("mkfifo {}", fifo.display()), e))?;
    // mkfifo is subject to the umask; any container user must be able to open it.
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| RuntimeError::system(format!("chmod {}", fifo.display()), e))?;
    let fd = nix::fcntl::open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| RuntimeError::system(format!("opening {}", dir.display()), e))?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
