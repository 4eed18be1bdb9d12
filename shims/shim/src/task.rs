//! The shim's containers and their processes, and what each Task RPC does to them.
//! berth's own runtime runs on the one thread of the shim: its calls (which clone the
//! container's processes) block it for a few milliseconds and are never concurrent.
//! A container of an external runtime is handled on blocking threads (see `service`),
//! so that the runtime's processes do not stall the shim; exits that beat the
//! recording of their pid are kept by `early_exits`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_runtime::{CreateOptions, ExecOptions, Runtime};
use crate::backend::{self, Backend, External};
use containerd_shim_protos::api::CreateTaskRequest;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskStart,
};
use protobuf::MessageField;
use tokio::sync::Notify;

use crate::crilog::{self, CriLog};
use crate::error::{ShimError, ShimResult};
use crate::events::Publisher;
use crate::paths::Layout;
use crate::process::{self, Exit, Proc, StdioPaths};
use crate::{mounts, stats, stdio, timefmt};


/// How long an exit waits for the process's output to be copied before it is reported.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// The longest path a unix socket address holds (sun_path less its NUL).
const SOCKET_PATH_MAX: usize = 107;

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub dir: PathBuf,
    pub rootfs_mounted: bool,
    pub init: Proc,
    pub execs: HashMap<String, Proc>,
    pub log: Option<Arc<CriLog>>,
    pub memory_cgroup: Option<PathBuf>,
    /// The runc-compatible binary that runs this container, when not berth's own.
    pub external: Option<External>,
}

impl Container {
    pub fn process(&self, exec_id: &str) -> ShimResult<&Proc> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs.get(exec_id).ok_or_else(|| ShimError::NoProcess { id: self.id.clone(), exec_id: exec_id.into() })
    }

    fn process_mut(&mut self, exec_id: &str) -> ShimResult<&mut Proc> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        let id = &self.id;
        self.execs.get_mut(exec_id).ok_or_else(|| ShimError::NoProcess { id: id.clone(), exec_id: exec_id.into() })
    }
}

pub struct Shim {
    pub runtime: Runtime,
    pub layout: Layout,
    pub publisher: Publisher,
    pub containers: Mutex<HashMap<String, Container>>,
    pub shutdown: Arc<Notify>,
    /// Signalled after work that runs through the runtime library (see `idle`).
    pub activity: Arc<Notify>,
    consoles: AtomicU32,
    pub early_exits: crate::early_exits::EarlyExits,
}

impl Shim {
    pub fn new(layout: Layout, publisher: Publisher) -> Shim {
        Shim {
            runtime: Runtime::new(&layout.runtime_root()),
            layout,
            publisher,
            containers: Mutex::new(HashMap::new()),
            shutdown: Arc::new(Notify::new()),
            activity: Arc::new(Notify::new()),
            consoles: AtomicU32::new(0),
            early_exits: Default::default(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.containers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn with<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> ShimResult<T>) -> ShimResult<T> {
        let mut containers = self.lock();
        let container = containers.get_mut(id).ok_or_else(|| ShimError::NoContainer(id.into()))?;
        f(container)
    }

    /// Runs `f` with the runtime of container `id` (looked up without holding the lock).
    pub fn with_backend<T>(&self, id: &str, f: impl FnOnce(Backend) -> ShimResult<T>) -> ShimResult<T> {
        let external = self.with(id, |c| Ok(c.external.clone()))?;
        f(Backend::of(external.as_ref(), &self.runtime))
    }

    /// After create, start, exec and delete: once the shim is quiet, `idle` gives back
    /// the heap freed by the runtime's allocations and the code pages it ran through.
    fn settle(&self) {
        self.activity.notify_one();
    }

    /// Where a console socket goes: in the container's directory, or in the temporary
    /// directory (as containerd's shim does) when that path is too long for a socket
    /// address (a deep `--state`).
    fn console_path(&self, dir: &std::path::Path) -> PathBuf {
        let number = self.consoles.fetch_add(1, Ordering::Relaxed);
        let beside = dir.join(format!("c{number}.sock"));
        if beside.as_os_str().len() < SOCKET_PATH_MAX {
            return beside;
        }
        std::env::temp_dir().join(format!("berth-console-{}-{number}.sock", std::process::id()))
    }

    pub fn create(&self, request: &CreateTaskRequest) -> ShimResult<u32> {
        let id = request.id.clone();
        if self.lock().contains_key(&id) {
            return Err(ShimError::Exists(format!("container {id}")));
        }
        let bundle = PathBuf::from(&request.bundle);
        crate::paths::validate_id("container", &id)?;
        let dir = self.layout.container_dir(&id);
        berth_runtime::private_fs::create_private_dir(&dir).map_err(|e| ShimError::io(format!("creating {}", dir.display()), e))?;
        let rootfs = bundle.join("rootfs");
        let result = mounts::mount_rootfs(&request.rootfs, &rootfs).and_then(|mounted| {
            self.create_mounted(request, &bundle, &dir, mounted).inspect_err(|_| {
                if mounted {
                    mounts::unmount_rootfs(&rootfs);
                }
            })
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        self.settle();
        result
    }

    fn create_mounted(&self, request: &CreateTaskRequest, bundle: &std::path::Path, dir: &std::path::Path, mounted: bool) -> ShimResult<u32> {
        let paths = StdioPaths {
            stdin: request.stdin.clone(),
            stdout: request.stdout.clone(),
            stderr: request.stderr.clone(),
            terminal: request.terminal,
        };
        let log = match log_target(bundle)? {
            Some((target, rotate_at)) => Some(Arc::new(CriLog::open(target)?.rotating_at(rotate_at))),
            None => None,
        };
        let external = match backend::requested_binary(request.options.as_ref())? {
            Some(binary) => Some(External::new(binary, &self.layout.runtime_root(), dir)?),
            None => None,
        };
        let mut prepared = stdio::prepare(&paths, &self.console_path(dir), log.clone())?;
        let options = CreateOptions {
            id: request.id.clone(),
            bundle: bundle.to_path_buf(),
            console_socket: prepared.console_socket.clone(),
            stdio: prepared.stdio.take(),
            ..CreateOptions::default()
        };
        let init_pid = Backend::of(external.as_ref(), &self.runtime).create(options)?;
        let mut init = Proc::new("", paths.clone());
        init.pid = init_pid;
        prepared.spawn(&mut init.io);
        let pid = init.pid as u32;
        let container = Container {
            id: request.id.clone(),
            bundle: bundle.to_path_buf(),
            dir: dir.to_path_buf(),
            rootfs_mounted: mounted,
            init,
            execs: HashMap::new(),
            log,
            memory_cgroup: stats::memory_dir(pid as i32),
            external,
        };
        self.lock().insert(request.id.clone(), container);
        self.publisher.publish(&TaskCreate {
            container_id: request.id.clone(),
            bundle: request.bundle.clone(),
            rootfs: request.rootfs.clone(),
            io: MessageField::some(TaskIO { stdin: paths.stdin, stdout: paths.stdout, stderr: paths.stderr, terminal: paths.terminal, ..Default::default() }),
            pid,
            ..Default::default()
        });
        Ok(pid)
    }

    pub fn start(&self, id: &str, exec_id: &str) -> ShimResult<u32> {
        if !exec_id.is_empty() {
            return self.start_exec(id, exec_id);
        }
        let pid = self.with(id, |c| {
            if c.init.started {
                return Err(ShimError::Precondition(format!("container {id} is already started")));
            }
            Ok(c.init.pid)
        })?;
        let started = self.with_backend(id, |backend| backend.start(id));
        self.settle();
        started?;
        self.with(id, |c| {
            c.init.started = true;
            Ok(())
        })?;
        self.publisher.publish(&TaskStart { container_id: id.into(), pid: pid as u32, ..Default::default() });
        Ok(pid as u32)
    }

    pub fn add_exec(&self, id: &str, exec_id: &str, paths: StdioPaths, spec: oci_spec::runtime::Process) -> ShimResult<()> {
        crate::paths::validate_id("exec", exec_id)?;
        self.with(id, |c| {
            if c.execs.contains_key(exec_id) || exec_id.is_empty() {
                return Err(ShimError::Exists(format!("exec {exec_id:?} in container {id}")));
            }
            if c.init.exited().is_some() {
                return Err(ShimError::Precondition(format!("container {id} has stopped")));
            }
            let mut proc = Proc::new(exec_id, paths);
            proc.spec = Some(spec);
            c.execs.insert(exec_id.to_string(), proc);
            Ok(())
        })?;
        self.publisher.publish(&TaskExecAdded { container_id: id.into(), exec_id: exec_id.into(), ..Default::default() });
        Ok(())
    }

    fn start_exec(&self, id: &str, exec_id: &str) -> ShimResult<u32> {
        let (spec, paths, dir) = self.with(id, |c| {
            let dir = c.dir.clone();
            let proc = c.process_mut(exec_id)?;
            let spec = proc.spec.take().ok_or_else(|| ShimError::Precondition(format!("exec {exec_id} is already started")))?;
            Ok((spec, proc.stdio.clone(), dir))
        })?;
        let result = self.spawn_exec(id, &spec, &paths, &dir);
        let pid = self.with(id, |c| {
            let proc = c.process_mut(exec_id)?;
            match result {
                Ok((pid, prepared)) => {
                    proc.pid = pid;
                    proc.started = true;
                    prepared.spawn(&mut proc.io);
                    Ok(pid as u32)
                }
                Err(error) => {
                    proc.spec = Some(spec);
                    Err(error)
                }
            }
        })?;
        self.publisher.publish(&TaskExecStarted { container_id: id.into(), exec_id: exec_id.into(), pid, ..Default::default() });
        self.settle();
        Ok(pid)
    }

    fn spawn_exec(&self, id: &str, spec: &oci_spec::runtime::Process, paths: &StdioPaths, dir: &std::path::Path) -> ShimResult<(i32, stdio::Prepared)> {
        let mut prepared = stdio::prepare(paths, &self.console_path(dir), None)?;
        let options = ExecOptions { console_socket: prepared.console_socket.clone(), stdio: prepared.stdio.take(), ..ExecOptions::default() };
        let pid = self.with_backend(id, |backend| backend.exec(id, spec, options))?;
        Ok((pid, prepared))
    }

    /// Reaps every exited child and marks the known ones finished, all under the lock
    /// (see `reaper`); then records and publishes each exit.
    pub fn reap(self: &Arc<Self>) {
        let mut containers = self.lock();
        let mut reaped = crate::reaper::reap_all();
        reaped.extend(self.early_exits.take_all());
        let exits: Vec<ReapedExit> = reaped
            .into_iter()
            .filter_map(|(pid, status)| {
                let known = mark_reaped(&mut containers, pid, status);
                if known.is_none() {
                    self.early_exits.keep(pid, status);
                }
                known
            })
            .collect();
        drop(containers);
        for exit in exits {
            self.on_exit(exit);
        }
    }

    /// The exit of a child: recorded to disk first, then (once its output is
    /// copied) made visible to Wait/State and published.
    fn on_exit(self: &Arc<Self>, reaped: ReapedExit) {
        let ReapedExit { id, exec_id, pid, exit } = reaped;
        let found = self.with(&id, |container| {
            let dir = container.dir.clone();
            let external = container.external.clone();
            let oom = exec_id.is_empty() && container.memory_cgroup.as_deref().map(stats::oom_kills).unwrap_or(0) > 0;
            let proc = container.process_mut(&exec_id)?;
            if let Err(error) = process::record_exit(&dir, proc.name(), exit) {
                eprintln!("berth-shim: recording the exit of {pid}: {error}");
            }
            Ok((proc.io.output_done.take(), external, oom))
        });
        let Ok((output_done, external, oom)) = found else { return };
        if exec_id.is_empty() {
            if oom {
                self.publisher.publish(&TaskOOM { container_id: id.clone(), ..Default::default() });
            }
            match external {
                None => {
                    let _ = Backend::Builtin(&self.runtime).kill(&id, libc::SIGKILL, true);
                }
                Some(external) => {
                    let id = id.clone();
                    drop(tokio::task::spawn_blocking(move || Backend::External(&external).kill(&id, libc::SIGKILL, true)));
                }
            }
        }
        let shim = self.clone();
        tokio::spawn(async move {
            if let Some(mut done) = output_done {
                let _ = tokio::time::timeout(OUTPUT_DRAIN, done.recv()).await;
            }
            shim.publish_exit(&id, &exec_id, pid, exit);
        });
    }

    fn publish_exit(&self, id: &str, exec_id: &str, pid: i32, exit: Exit) {
        let known = self.with(id, |c| {
            let proc = c.process_mut(exec_id)?;
            proc.exit.send_replace(Some(exit));
            Ok(())
        });
        if known.is_ok() {
            self.publisher.publish(&TaskExit {
                container_id: id.into(),
                id: if exec_id.is_empty() { id.into() } else { exec_id.into() },
                pid: pid as u32,
                exit_status: exit.status,
                exited_at: MessageField::some(timefmt::timestamp(exit.at_nanos)),
                ..Default::default()
            });
        }
    }

    /// Deletes a process; for the init, the whole container. Returns (pid, exit).
    pub fn delete(&self, id: &str, exec_id: &str) -> ShimResult<(u32, Exit)> {
        if !exec_id.is_empty() {
            return self.with(id, |c| {
                let proc = c.process(exec_id)?;
                if proc.started && proc.exited().is_none() {
                    return Err(ShimError::Precondition(format!("exec {exec_id} of {id} is still running")));
                }
                let answer = (proc.pid as u32, proc.exited().unwrap_or(Exit { status: 0, at_nanos: timefmt::now_nanos() }));
                c.execs.remove(exec_id);
                Ok(answer)
            });
        }
        let container = self.with(id, |c| {
            if c.init.started && c.init.exited().is_none() {
                return Err(ShimError::Precondition(format!("container {id} is still running")));
            }
            Ok(())
        });
        container?;
        self.with_backend(id, |backend| backend.delete(id))?;
        let container = self.lock().remove(id).ok_or_else(|| ShimError::NoContainer(id.into()))?;
        let exit = container.init.exited().unwrap_or(Exit { status: 137, at_nanos: timefmt::now_nanos() });
        if container.rootfs_mounted {
            mounts::unmount_rootfs(&container.bundle.join("rootfs"));
        }
        let _ = std::fs::remove_dir_all(&container.dir);
        let pid = container.init.pid as u32;
        self.publisher.publish(&TaskDelete {
            container_id: id.into(),
            id: id.into(),
            pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timefmt::timestamp(exit.at_nanos)),
            ..Default::default()
        });
        self.settle();
        Ok((pid, exit))
    }

    /// Signals a process. The signal is sent with the lock held, after checking that
    /// the reaper has not freed the pid (see `reaper`); an external runtime, which runs
    /// as a process of its own, is asked after the check.
    pub fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> ShimResult<()> {
        let mut containers = self.lock();
        let container = containers.get_mut(id).ok_or_else(|| ShimError::NoContainer(id.into()))?;
        let proc = container.process(exec_id)?;
        if proc.finished().is_some() || self.early_exits.has(proc.pid) {
            return Err(ShimError::NoProcess { id: id.into(), exec_id: format!("{} (already finished)", proc.name()) });
        }
        if proc.pid == 0 {
            return Err(ShimError::Precondition(format!("exec {exec_id} of {id} is not started")));
        }
        if exec_id.is_empty() {
            let external = container.external.clone();
            if external.is_some() {
                drop(containers);
            }
            return Backend::of(external.as_ref(), &self.runtime).kill(id, signal as i32, all);
        }
        let target = proc.pid;
        let signal = nix::sys::signal::Signal::try_from(signal as i32).map_err(|_| ShimError::Invalid(format!("invalid signal {signal}")))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(target), signal).map_err(|e| ShimError::io(format!("kill {target}"), e))
    }

    pub fn update(&self, id: &str, resources: Option<&[u8]>, annotations: &HashMap<String, String>) -> ShimResult<()> {
        if annotations.contains_key(crilog::REOPEN_ANNOTATION) {
            let log = self.with(id, |c| Ok(c.log.clone()))?;
            log.ok_or_else(|| ShimError::Precondition(format!("container {id} has no CRI log")))?.reopen()?;
        }
        if let Some(json) = resources.filter(|r| !r.is_empty()) {
            let resources: oci_spec::runtime::LinuxResources =
                serde_json::from_slice(json).map_err(|e| ShimError::Invalid(format!("update resources: {e}")))?;
            self.with_backend(id, |backend| backend.update(id, &resources))?;
        }
        Ok(())
    }
}

/// A known process's exit, taken by the reaper.
struct ReapedExit {
    id: String,
    exec_id: String,
    pid: i32,
    exit: Exit,
}

/// Marks the process with `pid`, if it is one of the shim's, reaped (under the lock).
fn mark_reaped(containers: &mut HashMap<String, Container>, pid: i32, status: u32) -> Option<ReapedExit> {
    let exit = Exit { status, at_nanos: timefmt::now_nanos() };
    let container = containers.values_mut().find(|c| c.init.pid == pid || c.execs.values().any(|p| p.pid == pid))?;
    let exec_id = match container.init.pid == pid {
        true => String::new(),
        false => container.execs.iter().find(|(_, p)| p.pid == pid).map(|(k, _)| k.clone())?,
    };
    let proc = container.process_mut(&exec_id).ok()?;
    proc.reaped = Some(exit);
    Some(ReapedExit { id: container.id.clone(), exec_id, pid, exit })
}

/// The CRI log from the bundle's annotations, if any: its path beneath its directory,
/// and the size at which the shim rotates it (zero: never).
fn log_target(bundle: &std::path::Path) -> ShimResult<Option<(crilog::LogTarget, u64)>> {
    let config = std::fs::read(bundle.join("config.json")).unwrap_or_default();
    let spec: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
    let annotation = |key: &str| spec.get("annotations").and_then(|a| a.get(key)).and_then(|v| v.as_str()).filter(|v| !v.is_empty()).map(PathBuf::from);
    let Some(path) = annotation(crilog::LOG_PATH_ANNOTATION) else { return Ok(None) };
    let directory = annotation(crilog::LOG_DIRECTORY_ANNOTATION);
    let rotate_at = annotation(crilog::ROTATE_BYTES_ANNOTATION).and_then(|bytes| bytes.to_str()?.parse().ok()).unwrap_or(0);
    crilog::LogTarget::new(&path, directory.as_deref()).map(|target| Some((target, rotate_at)))
}

impl Shim {
    /// Resizes a process's terminal. Before an exec'd process starts (ctr resizes
    /// then), the size goes into its spec, for the runtime to set on the new pty.
    pub fn resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> ShimResult<()> {
        let console = self.with(id, |c| {
            let proc = c.process_mut(exec_id)?;
            if let Some(spec) = proc.spec.as_mut() {
                let size: oci_spec::runtime::Box = serde_json::from_value(serde_json::json!({ "height": height, "width": width }))
                    .map_err(|e| ShimError::Invalid(format!("console size: {e}")))?;
                spec.set_console_size(Some(size));
                return Ok(None);
            }
            Ok(Some(proc.io.console.clone()))
        })?;
        let Some(console) = console else { return Ok(()) };
        let master = console.lock().ok().and_then(|slot| slot.clone());
        let master = master.ok_or_else(|| ShimError::Precondition(format!("process {exec_id:?} of {id} has no terminal")))?;
        stdio::resize(&master, width, height).map_err(|e| ShimError::io("TIOCSWINSZ", e))
    }

    /// The task state of one process of container `id`.
    pub fn state(&self, id: &str, exec_id: &str) -> ShimResult<containerd_shim_protos::api::StateResponse> {
        let paused = self.with_backend(id, |backend| Ok(backend.is_paused(id))).unwrap_or(false);
        self.with(id, |c| {
            let proc = c.process(exec_id)?;
            let exit = proc.exited();
            Ok(containerd_shim_protos::api::StateResponse {
                id: if exec_id.is_empty() { id.into() } else { exec_id.into() },
                bundle: c.bundle.display().to_string(),
                pid: proc.pid as u32,
                status: protobuf::EnumOrUnknown::new(proc.status(paused)),
                stdin: proc.stdio.stdin.clone(),
                stdout: proc.stdio.stdout.clone(),
                stderr: proc.stdio.stderr.clone(),
                terminal: proc.stdio.terminal,
                exit_status: exit.map(|e| e.status).unwrap_or(0),
                exited_at: exit.map(|e| timefmt::timestamp(e.at_nanos)).into(),
                exec_id: exec_id.into(),
                ..Default::default()
            })
        })
    }
}
