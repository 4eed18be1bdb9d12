//! The two commands containerd runs: `start` (find or fork the shim daemon for this
//! container's group, print its address) and `delete` (clean up after a shim that
//! died: kill and delete the container, answer with a DeleteResponse on stdout).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use berth_runtime::Runtime;

use crate::backend::{Backend, External};
use containerd_shim_protos::api::DeleteResponse;
use nix::unistd::{fork, ForkResult};
use protobuf::{Message, MessageField};

use crate::error::{ShimError, ShimResult};
use crate::flags::Flags;
use crate::paths::{group_of, Layout};
use crate::process::{read_exit, Exit};
use crate::{daemon, mounts, timefmt};

fn bundle_of(flags: &Flags) -> ShimResult<PathBuf> {
    if !flags.bundle.is_empty() {
        return Ok(PathBuf::from(&flags.bundle));
    }
    std::env::current_dir().map_err(|e| ShimError::io("the current directory", e))
}

/// The id and namespace name directories: they must be one plain path component each.
fn require_id(flags: &Flags) -> ShimResult<()> {
    if flags.id.is_empty() {
        return Err(ShimError::Usage("-id is required".into()));
    }
    crate::paths::validate_id("namespace", &flags.namespace)?;
    crate::paths::validate_id("container", &flags.id)
}

pub fn start(flags: &Flags) -> ShimResult<()> {
    require_id(flags)?;
    let bundle = bundle_of(flags)?;
    let layout = Layout::new(&flags.namespace);
    let socket = layout.socket(&flags.address, &group_of(&bundle, &flags.id));
    let address = format!("unix://{}", socket.display());
    if UnixStream::connect(&socket).is_ok() {
        return announce(&bundle, &address, None);
    }
    // The daemon clones container inits: it must run from a read-only view of its own
    // binary so no container can write to it through /proc (CVE-2019-5736). This
    // re-executes `start` once, before the socket exists.
    berth_runtime::sealed_exe::ensure_sealed_executable()?;
    // Two starts for one group at once: the second waits here, then finds the first's
    // socket listening, instead of unlinking it and orphaning the first shim.
    let lock = lock_group(&socket)?;
    if UnixStream::connect(&socket).is_ok() {
        return announce(&bundle, &address, None);
    }
    let listener = bind(&socket)?;
    // Released before the fork, so that the daemon does not hold it.
    drop(lock);
    // Single-threaded here: forking is safe.
    match unsafe { fork() }.map_err(|e| ShimError::io("fork", e))? {
        ForkResult::Child => daemon::run(listener, socket, flags),
        ForkResult::Parent { child } => announce(&bundle, &address, Some(child.as_raw())),
    }
}

/// An exclusive lock on `<socket>.lock`, held while a start checks for and binds the
/// group's socket. A shim that exits (and `delete`) unlinks the lock file: a lock taken
/// on an unlinked file guards nothing, so it is taken again on the file now there.
fn lock_group(socket: &Path) -> ShimResult<nix::fcntl::Flock<std::fs::File>> {
    use std::os::unix::fs::MetadataExt;
    if let Some(dir) = socket.parent() {
        berth_runtime::private_fs::create_private_dir(dir).map_err(|e| ShimError::io(format!("creating {}", dir.display()), e))?;
    }
    let path = socket.with_extension("lock");
    loop {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).mode(berth_runtime::private_fs::PRIVATE_FILE).open(&path);
        let file = file.map_err(|e| ShimError::io(format!("opening {}", path.display()), e))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| ShimError::io(format!("locking {}", path.display()), errno))?;
        let held = lock.metadata().map_err(|e| ShimError::io(format!("stat {}", path.display()), e))?;
        if std::fs::metadata(&path).is_ok_and(|now| (now.dev(), now.ino()) == (held.dev(), held.ino())) {
            return Ok(lock);
        }
    }
}

/// Binds the shim's socket, 0600 in a 0700 directory.
fn bind(socket: &Path) -> ShimResult<UnixListener> {
    if let Some(dir) = socket.parent() {
        berth_runtime::private_fs::create_private_dir(dir).map_err(|e| ShimError::io(format!("creating {}", dir.display()), e))?;
    }
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(|e| ShimError::io(format!("binding {}", socket.display()), e))?;
    berth_runtime::private_fs::set_mode(socket, berth_runtime::private_fs::PRIVATE_FILE).map_err(|e| ShimError::io(format!("chmod {}", socket.display()), e))?;
    Ok(listener)
}

/// Writes `address` (and the shim's pid) into the bundle, and prints the address.
fn announce(bundle: &Path, address: &str, pid: Option<i32>) -> ShimResult<()> {
    let _ = berth_runtime::private_fs::write_private_file(&bundle.join("address"), address.as_bytes());
    if let Some(pid) = pid {
        let _ = berth_runtime::private_fs::write_private_file(&bundle.join("shim.pid"), pid.to_string().as_bytes());
    }
    let mut stdout = std::io::stdout();
    stdout.write_all(address.as_bytes()).and_then(|_| stdout.flush()).map_err(|e| ShimError::io("writing the address", e))
}

pub fn delete(flags: &Flags) -> ShimResult<()> {
    require_id(flags)?;
    let bundle = bundle_of(flags)?;
    let layout = Layout::new(&flags.namespace);
    let runtime = Runtime::new(&layout.runtime_root());
    let dir = layout.container_dir(&flags.id);
    let external = External::recorded(&layout.runtime_root(), &dir);
    let backend = Backend::of(external.as_ref(), &runtime);
    let pid = backend.init_pid(&flags.id);
    // Recorded by the shim if the init exited before the shim died; otherwise the
    // container is killed now.
    let exit = read_exit(&dir, "init").unwrap_or(Exit { status: 128 + libc::SIGKILL as u32, at_nanos: timefmt::now_nanos() });
    backend.delete(&flags.id)?;
    mounts::unmount_rootfs(&bundle.join("rootfs"));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = layout.socket(&flags.address, &group_of(&bundle, &flags.id));
    if UnixStream::connect(&socket).is_err() {
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(socket.with_extension("lock"));
    }
    let response = DeleteResponse {
        pid: pid.max(0) as u32,
        exit_status: exit.status,
        exited_at: MessageField::some(timefmt::timestamp(exit.at_nanos)),
        ..Default::default()
    };
    let bytes = response.write_to_bytes().map_err(|e| ShimError::Invalid(e.to_string()))?;
    std::io::stdout().write_all(&bytes).map_err(|e| ShimError::io("writing the delete response", e))
}
