//! Docker's named volumes on disk, for the `local` driver: `<root>/volumes/<name>/` holds
//! `volume.json` (labels, options, creation time) and `_data`, the directory containers
//! mount. A volume is made in a temporary directory and renamed into place, so a crash
//! never leaves a half-made one; its driver options (`type=tmpfs`, or `type=none` with
//! `o=bind` and a `device`) are mounted on `_data` when it is made and after a reboot.
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use super::error::{DockerError, DockerResult};
use crate::private_fs;

const METADATA: &str = "volume.json";
const DATA: &str = "_data";
/// The label Docker puts on the volumes it makes for an image's `VOLUME`s.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct VolumeRecord {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub created_nanos: i64,
}

impl VolumeRecord {
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// How the local driver's options mount `_data`.
#[derive(Debug, PartialEq)]
enum LocalMount {
    None,
    Tmpfs { options: String },
    Bind { device: PathBuf },
}

fn local_mount(options: &BTreeMap<String, String>) -> DockerResult<LocalMount> {
    if let Some(key) = options.keys().find(|k| !["type", "o", "device"].contains(&k.as_str())) {
        return Err(DockerError::bad_request(format!("invalid option key: {key:?}")));
    }
    let kind = options.get("type").map(String::as_str).unwrap_or("");
    let flags = options.get("o").cloned().unwrap_or_default();
    let device = options.get("device").cloned().unwrap_or_default();
    match kind {
        "" if flags.is_empty() && device.is_empty() => Ok(LocalMount::None),
        "tmpfs" => Ok(LocalMount::Tmpfs { options: flags }),
        "none" if flags.split(',').any(|f| f == "bind" || f == "rbind") && device.starts_with('/') => Ok(LocalMount::Bind { device: device.into() }),
        "none" => Err(DockerError::bad_request("the local driver's type=none needs o=bind and an absolute device")),
        "" => Err(DockerError::bad_request("missing required option: \"type\"")),
        other => Err(DockerError::bad_request(format!("the local volume driver of berthd mounts type tmpfs or a bind (type=none, o=bind), not {other:?}"))),
    }
}

/// Docker's rule for local volume names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2 && chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub fn invalid_name(name: &str) -> DockerError {
    if name.len() < 2 {
        return DockerError::bad_request(format!("volume name is too short, names should be at least two alphanumeric characters: {name:?}"));
    }
    DockerError::bad_request(format!(
        "{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    ))
}

pub fn no_such_volume(name: &str) -> DockerError {
    DockerError::not_found(format!("get {name}: no such volume"))
}

pub struct VolumeStore {
    dir: PathBuf,
}

fn io_failure(what: String) -> impl FnOnce(std::io::Error) -> DockerError {
    move |error| DockerError::internal(format!("{what}: {error}"))
}

impl VolumeStore {
    pub fn new(root: &Path) -> VolumeStore {
        VolumeStore { dir: root.join("volumes") }
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(DATA)
    }

    /// The volume whose `_data` is `path`, if it is one of ours.
    pub fn name_of(&self, path: &Path) -> Option<String> {
        let name = path.strip_prefix(&self.dir).ok()?.parent()?;
        (path.file_name()? == DATA && name.components().count() == 1).then(|| name.to_string_lossy().into_owned())
    }

    pub fn get(&self, name: &str) -> DockerResult<VolumeRecord> {
        if !valid_name(name) {
            return Err(no_such_volume(name));
        }
        let text = match std::fs::read(self.dir.join(name).join(METADATA)) {
            Ok(text) => text,
            Err(error) if error.kind() == ErrorKind::NotFound => return Err(no_such_volume(name)),
            Err(error) => return Err(DockerError::internal(format!("reading volume {name}: {error}"))),
        };
        serde_json::from_slice(&text).map_err(|error| DockerError::internal(format!("volume {name} has a malformed {METADATA}: {error}")))
    }

    pub fn list(&self) -> DockerResult<Vec<VolumeRecord>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(DockerError::internal(format!("listing volumes: {error}"))),
        };
        let names = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| valid_name(n));
        let mut volumes = Vec::new();
        for name in names {
            match self.get(&name) {
                Ok(volume) => volumes.push(volume),
                Err(error) => tracing::warn!(volume = %name, error = %error.message, "skipping an unreadable volume"),
            }
        }
        Ok(volumes)
    }

    /// Makes the volume, or returns the existing one of that name (`false`: not new).
    pub fn create(&self, record: VolumeRecord) -> DockerResult<(VolumeRecord, bool)> {
        if !valid_name(&record.name) {
            return Err(invalid_name(&record.name));
        }
        if let Ok(existing) = self.get(&record.name) {
            return Ok((existing, false));
        }
        let mount = local_mount(&record.options)?;
        private_fs::create_private_dir(&self.dir).map_err(io_failure(format!("creating {}", self.dir.display())))?;
        let staging = self.dir.join(format!(".new-{}", crate::core::ids::new_id().map_err(DockerError::from)?));
        let made = self.stage(&staging, &record).and_then(|()| self.commit(&staging, &record, &mount));
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        made?;
        match self.get(&record.name) {
            Ok(volume) if volume.created_nanos == record.created_nanos => Ok((volume, true)),
            other => other.map(|volume| (volume, false)),
        }
    }

    fn stage(&self, staging: &Path, record: &VolumeRecord) -> DockerResult<()> {
        private_fs::create_private_dir(staging).map_err(io_failure(format!("creating {}", staging.display())))?;
        std::fs::create_dir(staging.join(DATA)).map_err(io_failure("creating the volume's _data".into()))?;
        private_fs::set_mode(&staging.join(DATA), 0o755).map_err(io_failure("setting the mode of _data".into()))?;
        let text = serde_json::to_vec(record).map_err(|e| DockerError::internal(e.to_string()))?;
        private_fs::write_private_file(&staging.join(METADATA), &text).map_err(io_failure("writing the volume's metadata".into()))
    }

    /// Renames the staged volume into place (losing a race to another create of the same
    /// name is fine), then mounts what its options say.
    fn commit(&self, staging: &Path, record: &VolumeRecord, mount: &LocalMount) -> DockerResult<()> {
        let target = self.dir.join(&record.name);
        match std::fs::rename(staging, &target) {
            Ok(()) => {}
            Err(error) if matches!(error.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => return Ok(()),
            Err(error) => return Err(DockerError::internal(format!("creating volume {}: {error}", record.name))),
        }
        if let Err(error) = mount_local(mount, &target.join(DATA)) {
            let _ = std::fs::remove_dir_all(&target);
            return Err(error);
        }
        Ok(())
    }

    /// Removes the volume: its mount, its data and its record.
    pub fn remove(&self, name: &str) -> DockerResult<()> {
        let volume = self.get(name)?;
        let dir = self.dir.join(&volume.name);
        unmount_if_mounted(&dir.join(DATA))?;
        // Rename first, so that a crash mid-removal leaves no half-volume under its name.
        let doomed = self.dir.join(format!(".gone-{}", crate::core::ids::new_id().map_err(DockerError::from)?));
        std::fs::rename(&dir, &doomed).map_err(io_failure(format!("removing volume {name}")))?;
        std::fs::remove_dir_all(&doomed).map_err(io_failure(format!("removing volume {name}")))
    }

    /// After a start: mounts again what a reboot took off, and finishes what a crash
    /// left half-done (staged or half-removed volumes).
    pub fn recover(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".new-") || name.starts_with(".gone-") {
                let _ = std::fs::remove_dir_all(entry.path());
                continue;
            }
            let Ok(volume) = self.get(&name) else { continue };
            let data = self.data_dir(&name);
            let remount = local_mount(&volume.options).and_then(|mount| if is_mount_point(&data) { Ok(()) } else { mount_local(&mount, &data) });
            if let Err(error) = remount {
                tracing::warn!(volume = %name, error = %error.message, "mounting a volume again");
            }
        }
    }

    /// Bytes used under the volume's data (for `system df` and prune).
    pub fn size(&self, name: &str) -> u64 {
        fn walk(path: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(path) else { return 0 };
            entries
                .flatten()
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => walk(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.data_dir(name))
    }
}

fn mount_local(mount_kind: &LocalMount, data: &Path) -> DockerResult<()> {
    let result = match mount_kind {
        LocalMount::None => return Ok(()),
        LocalMount::Tmpfs { options } => {
            let options = (!options.is_empty()).then_some(options.as_str());
            mount(Some("tmpfs"), data, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, options)
        }
        LocalMount::Bind { device } => mount(Some(device.as_path()), data, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>),
    };
    result.map_err(|errno| DockerError::internal(format!("error while mounting volume '{}': {errno}", data.display())))
}

fn is_mount_point(path: &Path) -> bool {
    let wanted = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| text.lines().any(|line| line.split(' ').nth(4).is_some_and(|point| unescape(point) == wanted)))
        .unwrap_or(false)
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out + rest
}

fn unmount_if_mounted(data: &Path) -> DockerResult<()> {
    while is_mount_point(data) {
        umount2(data, MntFlags::MNT_DETACH).map_err(|errno| DockerError::internal(format!("unmounting {}: {errno}", data.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("data"));
        assert!(valid_name("a1_b.c-d"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-data"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn local_driver_options() {
        let options = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        assert_eq!(local_mount(&options(&[])).ok(), Some(LocalMount::None));
        assert_eq!(local_mount(&options(&[("type", "tmpfs"), ("o", "size=1m")])).ok(), Some(LocalMount::Tmpfs { options: "size=1m".into() }));
        assert!(local_mount(&options(&[("type", "none"), ("o", "bind"), ("device", "/srv")])).is_ok());
        assert!(local_mount(&options(&[("type", "none"), ("o", "bind"), ("device", "srv")])).is_err());
        assert!(local_mount(&options(&[("colour", "red")])).is_err());
        assert!(local_mount(&options(&[("type", "nfs"), ("o", "addr=1.2.3.4")])).is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
