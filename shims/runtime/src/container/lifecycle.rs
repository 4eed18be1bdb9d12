//! The operations on an existing container: start, state, kill, delete, list, pids,
//! pause, resume and update.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::Runtime;
use crate::error::RuntimeError;
use crate::state::{ContainerRecord, OciState, Status, EXEC_FIFO};

fn wrong_status(record: &ContainerRecord, status: Status, wanted: &'static str) -> RuntimeError {
    RuntimeError::WrongStatus { id: record.id.clone(), status, wanted }
}

impl Runtime {
    pub fn state(&self, id: &str) -> Result<OciState, RuntimeError> {
        let (record, status) = self.load(id)?;
        Ok(record.oci_state(status))
    }

    /// Every container under this root; ones whose state cannot be read are skipped.
    pub fn list(&self) -> Result<Vec<OciState>, RuntimeError> {
        let ids = self.state.ids()?;
        Ok(ids.iter().filter_map(|id| self.state(id).ok()).collect())
    }

    /// Lets the created init execute the container's process.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let (record, status) = self.load(id)?;
        if status != Status::Created {
            return Err(wrong_status(&record, status, "only a created container can be started"));
        }
        self.start_created(&record)
    }

    /// `start` for the record `create` just returned (`run`): not read back.
    pub fn start_created(&self, record: &ContainerRecord) -> Result<(), RuntimeError> {
        let id = record.id.as_str();
        let fifo = self.state.container_dir(id).join(EXEC_FIFO);
        let reader = nix::fcntl::open(&fifo, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| RuntimeError::system(format!("opening {}", fifo.display()), e))?;
        let reader = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(reader) };
        let result = await_init_start(record, &reader);
        let _ = std::fs::remove_file(&fifo);
        result?;
        if let Err(error) = self.run_hooks("poststart", record, Status::Running) {
            eprintln!("warning: container {id}: {error}");
        }
        Ok(())
    }

    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let (record, status) = self.load(id)?;
        if matches!(status, Status::Stopped | Status::Creating) {
            return Err(wrong_status(&record, status, "container not running"));
        }
        let signal = Signal::try_from(signal).map_err(|_| RuntimeError::Invalid(format!("invalid signal {signal}")))?;
        let targets = if all { self.pids_of(&record)? } else { vec![record.init_pid] };
        for pid in targets {
            match kill(Pid::from_raw(pid), signal) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(e) => return Err(RuntimeError::system(format!("kill {pid}"), e)),
            }
        }
        if status == Status::Paused && signal == Signal::SIGKILL {
            if let Some(cgroup) = &record.cgroup {
                cgroup.thaw()?;
            }
        }
        Ok(())
    }

    /// Deletes a stopped (or, with `force`, any) container: its processes, cgroup and
    /// state. With `force`, a container that does not exist is not an error.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let (record, status) = match self.load(id) {
            Ok(loaded) => loaded,
            Err(RuntimeError::State(crate::state::StateError::NotFound(_))) => {
                // A create that died before writing its state leaves only a directory.
                self.state.remove(id)?;
                return if force { Ok(()) } else { Err(crate::state::StateError::NotFound(id.into()).into()) };
            }
            Err(other) => return Err(other),
        };
        let deletable = matches!(status, Status::Stopped | Status::Created) || force;
        if !deletable {
            return Err(wrong_status(&record, status, "cannot delete a container that is not stopped (use --force)"));
        }
        self.destroy(&record, status)
    }

    /// `delete --force` for the record of a container whose init the caller has reaped
    /// (`run`): not read back.
    pub fn delete_exited(&self, record: &ContainerRecord) -> Result<(), RuntimeError> {
        let status = record.status(&self.state.container_dir(&record.id));
        self.destroy(record, status)
    }

    fn destroy(&self, record: &ContainerRecord, status: Status) -> Result<(), RuntimeError> {
        if status != Status::Stopped {
            self.kill_all_and_wait(record)?;
        }
        if let Some(cgroup) = &record.cgroup {
            cgroup.destroy()?;
        }
        crate::mark!("cgroup destroyed");
        if !crate::rootfs::has_mount_namespace(&record.spec) {
            crate::rootfs::unmount_container_mounts(&record.rootfs)?;
        }
        if let Err(error) = self.run_hooks("poststop", record, Status::Stopped) {
            eprintln!("warning: container {}: {error}", record.id);
        }
        self.state.remove(&record.id)?;
        Ok(())
    }

    fn kill_all_and_wait(&self, record: &ContainerRecord) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut alive = self.pids_of(record).unwrap_or_default();
            if record.init_alive() {
                alive.push(record.init_pid);
            }
            if alive.is_empty() {
                return Ok(());
            }
            for pid in &alive {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            if let Some(cgroup) = &record.cgroup {
                let _ = cgroup.thaw();
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::Invalid(format!("container {}: processes {alive:?} survive SIGKILL", record.id)));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn pids_of(&self, record: &ContainerRecord) -> Result<Vec<i32>, RuntimeError> {
        match &record.cgroup {
            Some(cgroup) => Ok(cgroup.pids()?),
            None => Ok(vec![record.init_pid]),
        }
    }

    /// The host pids of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, RuntimeError> {
        let (record, status) = self.load(id)?;
        if status == Status::Stopped {
            return Ok(Vec::new());
        }
        self.pids_of(&record)
    }

    pub fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        let (record, status) = self.load(id)?;
        if !matches!(status, Status::Running | Status::Created) {
            return Err(wrong_status(&record, status, "only a running or created container can be paused"));
        }
        Ok(cgroup_of(&record)?.freeze()?)
    }

    pub fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        let (record, status) = self.load(id)?;
        if status != Status::Paused {
            return Err(wrong_status(&record, status, "only a paused container can be resumed"));
        }
        Ok(cgroup_of(&record)?.thaw()?)
    }

    /// Applies new resource limits and records them.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), RuntimeError> {
        let (mut record, status) = self.load(id)?;
        if status == Status::Stopped {
            return Err(wrong_status(&record, status, "cannot update a stopped container"));
        }
        cgroup_of(&record)?.update(resources)?;
        let merged = merge_resources(&record, resources)?;
        if let Some(linux) = record.spec.linux_mut() {
            linux.set_resources(Some(merged));
        }
        Ok(self.state.save(&record)?)
    }
}

fn cgroup_of(record: &ContainerRecord) -> Result<&crate::cgroups::ContainerCgroup, RuntimeError> {
    record.cgroup.as_ref().ok_or_else(|| RuntimeError::Invalid(format!("container {} has no cgroup", record.id)))
}

/// The recorded resources with every field the update sets replaced.
fn merge_resources(record: &ContainerRecord, update: &LinuxResources) -> Result<LinuxResources, RuntimeError> {
    let encode = |r: &LinuxResources| serde_json::to_value(r).map_err(|e| RuntimeError::Invalid(e.to_string()));
    let current = record.spec.linux().as_ref().and_then(|l| l.resources().clone()).unwrap_or_default();
    let mut merged = encode(&current)?;
    merge_json(&mut merged, encode(update)?);
    serde_json::from_value(merged).map_err(|e| RuntimeError::Invalid(e.to_string()))
}

fn merge_json(base: &mut serde_json::Value, update: serde_json::Value) {
    match (base, update) {
        (serde_json::Value::Object(base), serde_json::Value::Object(update)) => {
            for (key, value) in update {
                merge_json(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (_, serde_json::Value::Null) => {}
        (slot, value) => *slot = value,
    }
}

/// Waits until the init has opened the FIFO and written to it, or has died.
fn await_init_start(record: &ContainerRecord, reader: &std::os::fd::OwnedFd) -> Result<(), RuntimeError> {
    loop {
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::Error::EINTR) => {}
            Ok(_) => {
                let mut byte = [0u8; 1];
                return match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(reader), &mut byte) {
                    Ok(1) => Ok(()),
                    _ => Err(RuntimeError::Init { id: record.id.clone(), message: "the init exited before starting".into() }),
                };
            }
            Err(e) => return Err(RuntimeError::system("poll on the exec fifo", e)),
        }
        if !record.init_alive() {
            return Err(RuntimeError::Init { id: record.id.clone(), message: "the init is no longer running".into() });
        }
    }
}
