//! Which runtime makes a container's processes: berth's own library, in-process (the
//! default), or an external runc-compatible binary (Debian's runc or crun) named by the
//! Create request's runc options (`containerd.runc.v1.Options.binary_name`, read as
//! containerd's runc shim reads it). The choice is written to the container's state
//! directory, so `berth-shim delete` uses the same runtime after the shim died.
//!
//! An external runtime is run as a child of the shim, on a blocking thread (see
//! `service`), spawned through `reaper::spawn_runtime` so that the reaper leaves its
//! exit status to the thread that waits for it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_runtime::{CreateOptions, ExecOptions, ProcessStdio, Runtime};
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use oci_spec::runtime::{LinuxResources, Process};
use protobuf::Message;

use crate::error::{ShimError, ShimResult};

/// The file in a container's state directory naming its external runtime.
const BINARY_FILE: &str = "runtime-binary";

/// An external runc-compatible binary and its state root.
#[derive(Debug, Clone)]
pub struct External {
    pub binary: PathBuf,
    pub root: PathBuf,
    /// The container's shim state directory (pid files, process specs, the log).
    pub dir: PathBuf,
}

/// The runtime of one container.
pub enum Backend<'a> {
    Builtin(&'a Runtime),
    External(&'a External),
}

/// The runtime binary the Create request's options name, if any (options of another
/// type, which other shims define, name none).
pub fn requested_binary(options: Option<&protobuf::well_known_types::any::Any>) -> ShimResult<Option<PathBuf>> {
    let Some(any) = options.filter(|any| !any.value.is_empty()) else { return Ok(None) };
    if !any.type_url.ends_with("containerd.runc.v1.Options") {
        return Ok(None);
    }
    let options = RuncOptions::parse_from_bytes(&any.value).map_err(|e| ShimError::Invalid(format!("runc options: {e}")))?;
    Ok((!options.binary_name.is_empty()).then(|| PathBuf::from(options.binary_name)))
}

impl External {
    /// Records the binary for a new container; `runtime_root` is berth's own root,
    /// next to which each external binary gets one of its own.
    pub fn new(binary: PathBuf, runtime_root: &Path, dir: &Path) -> ShimResult<External> {
        berth_runtime::private_fs::write_private_file(&dir.join(BINARY_FILE), binary.as_os_str().as_encoded_bytes())
            .map_err(|e| ShimError::io(format!("recording the runtime in {}", dir.display()), e))?;
        Ok(External::at(binary, runtime_root, dir))
    }

    /// The external runtime a container was created with, from its state directory.
    pub fn recorded(runtime_root: &Path, dir: &Path) -> Option<External> {
        let binary = std::fs::read_to_string(dir.join(BINARY_FILE)).ok()?;
        Some(External::at(PathBuf::from(binary), runtime_root, dir))
    }

    fn at(binary: PathBuf, runtime_root: &Path, dir: &Path) -> External {
        let name = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "external".into());
        let root = runtime_root.with_file_name(format!("runtime-{name}"));
        External { binary, root, dir: dir.to_path_buf() }
    }

    /// Runs the binary with `args` after the global options; stdio are the process's
    /// own when given, else null. Its errors come from its JSON log.
    fn run(&self, args: &[&str], stdio: Option<ProcessStdio>) -> ShimResult<String> {
        let log = self.dir.join("runtime.log");
        let _ = std::fs::remove_file(&log);
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.root).arg("--log").arg(&log).args(["--log-format", "json"]).args(args);
        match stdio {
            Some(stdio) => {
                command.stdin(Stdio::from(stdio.stdin)).stdout(Stdio::from(stdio.stdout)).stderr(Stdio::from(stdio.stderr));
            }
            None => {
                command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        let what = format!("{} {}", self.binary.display(), args.first().copied().unwrap_or_default());
        let child = crate::reaper::spawn_runtime(&mut command).map_err(|e| ShimError::io(format!("running {what}"), e))?;
        let pid = child.id() as i32;
        let output = child.wait_with_output();
        crate::reaper::runtime_waited(pid);
        let output = output.map_err(|e| ShimError::io(format!("running {what}"), e))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let mut message = last_log_error(&log).unwrap_or_default();
        if message.is_empty() {
            message = String::from_utf8_lossy(&output.stderr).trim().to_string();
        }
        Err(ShimError::External { command: what, message: format!("{message} ({})", output.status) })
    }

    fn pid_from(&self, pid_file: &Path) -> ShimResult<i32> {
        let text = std::fs::read_to_string(pid_file).map_err(|e| ShimError::io(format!("reading {}", pid_file.display()), e))?;
        text.trim().parse().map_err(|_| ShimError::Invalid(format!("{} holds no pid: {text:?}", pid_file.display())))
    }

    fn write_json(&self, name: &str, value: &impl serde::Serialize) -> ShimResult<PathBuf> {
        let path = self.dir.join(name);
        let bytes = serde_json::to_vec(value).map_err(|e| ShimError::Invalid(format!("{name}: {e}")))?;
        berth_runtime::private_fs::write_private_file(&path, &bytes).map_err(|e| ShimError::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }
}

/// The message of the last error-level line of a runc-style JSON log.
fn last_log_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        matches!(entry["level"].as_str(), Some("error") | Some("fatal")).then(|| entry["msg"].as_str().unwrap_or_default().to_string())
    })
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

impl<'a> Backend<'a> {
    /// The external runtime when there is one, else berth's own.
    pub fn of(external: Option<&'a External>, builtin: &'a Runtime) -> Backend<'a> {
        external.map_or(Backend::Builtin(builtin), Backend::External)
    }

    /// The pid of the container's init as the runtime recorded it (0 if unknown).
    pub fn init_pid(&self, id: &str) -> i32 {
        match self {
            Backend::Builtin(runtime) => runtime.state(id).map(|s| s.pid).unwrap_or(0),
            Backend::External(external) => {
                std::fs::read_to_string(external.dir.join("init.pid")).ok().and_then(|p| p.trim().parse().ok()).unwrap_or(0)
            }
        }
    }

    /// Creates the container; returns its init's pid.
    pub fn create(&self, options: CreateOptions) -> ShimResult<i32> {
        let external = match self {
            Backend::Builtin(runtime) => return Ok(runtime.create(&options)?.init_pid),
            Backend::External(external) => external,
        };
        let pid_file = external.dir.join("init.pid");
        let bundle = path_arg(&options.bundle).to_string();
        let mut args = vec!["create", "--bundle", &bundle, "--pid-file", path_arg(&pid_file)];
        let console = options.console_socket.as_deref().map(path_arg).unwrap_or_default().to_string();
        if !console.is_empty() {
            args.extend(["--console-socket", &console]);
        }
        args.push(&options.id);
        external.run(&args, options.stdio.or_else(null_stdio))?;
        external.pid_from(&pid_file)
    }

    pub fn start(&self, id: &str) -> ShimResult<()> {
        match self {
            Backend::Builtin(runtime) => Ok(runtime.start(id)?),
            Backend::External(external) => external.run(&["start", id], None).map(drop),
        }
    }

    /// Starts `process` in the running container; returns its pid.
    pub fn exec(&self, id: &str, process: &Process, options: ExecOptions) -> ShimResult<i32> {
        let external = match self {
            Backend::Builtin(runtime) => return Ok(runtime.exec(id, process, &options)?),
            Backend::External(external) => external,
        };
        let sequence = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let spec = external.write_json(&format!("exec-{sequence}.json"), process)?;
        let pid_file = external.dir.join(format!("exec-{sequence}.pid"));
        let mut args = vec!["exec", "--detach", "--process", path_arg(&spec), "--pid-file", path_arg(&pid_file)];
        let console = options.console_socket.as_deref().map(path_arg).unwrap_or_default().to_string();
        if !console.is_empty() {
            args.extend(["--console-socket", &console]);
        }
        args.push(id);
        let outcome = external.run(&args, options.stdio.or_else(null_stdio)).and_then(|_| external.pid_from(&pid_file));
        let _ = std::fs::remove_file(&spec);
        let _ = std::fs::remove_file(&pid_file);
        outcome
    }

    pub fn kill(&self, id: &str, signal: i32, all: bool) -> ShimResult<()> {
        let external = match self {
            Backend::Builtin(runtime) => return Ok(runtime.kill(id, signal, all)?),
            Backend::External(external) => external,
        };
        let signal = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal.as_str()]);
        external.run(&args, None).map(drop)
    }

    pub fn delete(&self, id: &str) -> ShimResult<()> {
        match self {
            Backend::Builtin(runtime) => Ok(runtime.delete(id, true)?),
            Backend::External(external) => match external.run(&["delete", "--force", id], None) {
                Err(ShimError::External { message, .. }) if message.contains("does not exist") => Ok(()),
                outcome => outcome.map(drop),
            },
        }
    }

    pub fn update(&self, id: &str, resources: &LinuxResources) -> ShimResult<()> {
        let external = match self {
            Backend::Builtin(runtime) => return Ok(runtime.update(id, resources)?),
            Backend::External(external) => external,
        };
        let file = external.write_json("update.json", resources)?;
        let outcome = external.run(&["update", "--resources", path_arg(&file), id], None).map(drop);
        let _ = std::fs::remove_file(&file);
        outcome
    }

    pub fn pause(&self, id: &str) -> ShimResult<()> {
        match self {
            Backend::Builtin(runtime) => Ok(runtime.pause(id)?),
            Backend::External(external) => external.run(&["pause", id], None).map(drop),
        }
    }

    pub fn resume(&self, id: &str) -> ShimResult<()> {
        match self {
            Backend::Builtin(runtime) => Ok(runtime.resume(id)?),
            Backend::External(external) => external.run(&["resume", id], None).map(drop),
        }
    }

    pub fn pids(&self, id: &str) -> ShimResult<Vec<i32>> {
        let external = match self {
            Backend::Builtin(runtime) => return Ok(runtime.pids(id)?),
            Backend::External(external) => external,
        };
        let listed = external.run(&["ps", "--format", "json", id], None)?;
        serde_json::from_str(listed.trim()).map_err(|e| ShimError::Invalid(format!("{} ps: {e}", external.binary.display())))
    }

    pub fn is_paused(&self, id: &str) -> bool {
        match self {
            Backend::Builtin(runtime) => matches!(runtime.state(id), Ok(s) if s.status == berth_runtime::state::Status::Paused),
            Backend::External(external) => external
                .run(&["state", id], None)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .is_some_and(|state| state["status"] == "paused"),
        }
    }
}

/// /dev/null as stdin, stdout and stderr (the runtime must not inherit the shim's).
fn null_stdio() -> Option<ProcessStdio> {
    let open = || -> Option<OwnedFd> {
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").ok().map(OwnedFd::from)
    };
    Some(ProcessStdio { stdin: open()?, stdout: open()?, stderr: open()? })
}
