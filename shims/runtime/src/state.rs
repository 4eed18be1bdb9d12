//! The container's record under `--root`: `<root>/<id>/state.json`, written atomically,
//! and the status derived from it and from the kernel (is the init alive, is the exec
//! FIFO still there, is the cgroup frozen).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cgroups::ContainerCgroup;

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Error)]
pub enum StateError {
    #[error("container id {0:?} is invalid: use letters, digits, '_', '-', '.' and '+'")]
    InvalidId(String),
    #[error("container with id {0} already exists")]
    Exists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: corrupt state: {1}")]
    Corrupt(PathBuf, serde_json::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(text)
    }
}

/// What berth remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// 0 until the init exists.
    pub init_pid: i32,
    /// Field 22 of `/proc/<pid>/stat`, to tell the init from a later process reusing its pid.
    pub init_start_time: u64,
    pub created: String,
    pub owner: String,
    pub cgroup: Option<ContainerCgroup>,
    pub spec: Spec,
}

/// The state directory of every container under one `--root`.
pub struct StateRoot {
    root: PathBuf,
}

pub fn validate_id(id: &str) -> Result<(), StateError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || "_-.+".contains(c);
    if id.is_empty() || id.len() > 1024 || id.starts_with('.') || !id.chars().all(valid_char) {
        return Err(StateError::InvalidId(id.to_string()));
    }
    Ok(())
}

impl StateRoot {
    pub fn new(root: &Path) -> Self {
        StateRoot { root: root.to_path_buf() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Reserves `id`: its directory is created, or the id is taken.
    pub fn reserve(&self, id: &str) -> Result<PathBuf, StateError> {
        validate_id(id)?;
        std::fs::create_dir_all(&self.root).map_err(|e| StateError::Io(self.root.clone(), e))?;
        let dir = self.container_dir(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StateError::Exists(id.into())),
            Err(e) => Err(StateError::Io(dir, e)),
        }
    }

    pub fn save(&self, record: &ContainerRecord) -> Result<(), StateError> {
        let dir = self.container_dir(&record.id);
        let bytes = serde_json::to_vec(record).map_err(|e| StateError::Corrupt(dir.clone(), e))?;
        write_atomically(&dir.join(STATE_FILE), &bytes)
    }

    pub fn load(&self, id: &str) -> Result<ContainerRecord, StateError> {
        validate_id(id)?;
        let path = self.container_dir(id).join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StateError::NotFound(id.into()),
            _ => StateError::Io(path.clone(), e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt(path, e))
    }

    /// Ids of every container directory, sorted.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::Io(self.root.clone(), e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| validate_id(name).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        let dir = self.container_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io(dir, e)),
            _ => Ok(()),
        }
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let temp = path.with_extension("tmp");
    let io = |e| StateError::Io(path.to_path_buf(), e);
    let mut file = std::fs::File::create(&temp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    drop(file);
    std::fs::rename(&temp, path).map_err(io)
}

/// The start time of a live process, or None if it is gone or a zombie.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = crate::procfs::read_to_string(Path::new(&format!("/proc/{pid}/stat"))).ok()?;
    // The command name may contain spaces and parentheses: parse after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split(' ');
    if fields.next()? == "Z" {
        return None;
    }
    // after_name starts at field 3 (state); field 22 is starttime.
    fields.nth(18)?.parse().ok()
}

impl ContainerRecord {
    pub fn init_alive(&self) -> bool {
        self.init_pid > 0 && process_start_time(self.init_pid) == Some(self.init_start_time)
    }

    /// The container's status as the kernel sees it now.
    pub fn status(&self, dir: &Path) -> Status {
        if self.init_pid == 0 {
            return Status::Creating;
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        if dir.join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        match &self.cgroup {
            Some(cgroup) if cgroup.is_frozen().unwrap_or(false) => Status::Paused,
            _ => Status::Running,
        }
    }

    /// The OCI state document (`runc state` output and the hooks' stdin).
    pub fn oci_state(&self, status: Status) -> OciState {
        OciState {
            oci_version: self.spec.version().clone(),
            id: self.id.clone(),
            status,
            pid: if status == Status::Stopped { 0 } else { self.init_pid },
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.spec.annotations().clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

/// The current time as RFC 3339 with nanoseconds, in UTC.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600, rem % 3600 / 60, rem % 60, now.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for id in ["abc", "a-b_c.d+1", "0123"] {
            validate_id(id).expect(id);
        }
        for id in ["", "../x", "a/b", ".hidden", "sp ace"] {
            assert!(validate_id(id).is_err(), "{id}");
        }
    }

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(process_start_time(std::process::id() as i32).is_some());
    }
}
