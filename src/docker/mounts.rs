//! A container's mounts from Docker's create request: `HostConfig.Binds` (`-v`),
//! `HostConfig.Mounts` (`--mount`), and the anonymous volumes of `Config.Volumes` and of
//! the image's `VOLUME`s, checked and split into host binds, volume mounts and the
//! tmpfs mounts of `--mount type=tmpfs` (made as `--tmpfs` ones are).
use std::collections::BTreeSet;

use serde::Deserialize;

use super::error::{DockerError, DockerResult};
use super::volume_store::{invalid_name, valid_name};
use super::volumes::VolumeMount;
use crate::core::{MountSpec, TmpfsMount};

/// One entry of `HostConfig.Mounts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountRequest {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub bind_options: Option<BindOptions>,
    pub volume_options: Option<VolumeOptions>,
    pub tmpfs_options: Option<TmpfsOptions>,
}

/// `--mount type=tmpfs,tmpfs-size=...,tmpfs-mode=...`: the size in bytes, the mode as
/// the octal number the CLI parsed, and (API 1.46) raw options as `[name, value]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    pub size_bytes: i64,
    pub mode: u32,
    pub options: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    pub propagation: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    pub no_copy: bool,
}

#[derive(Default)]
pub struct MountPlan {
    pub binds: Vec<MountSpec>,
    pub volumes: Vec<VolumeMount>,
    pub tmpfs: Vec<TmpfsMount>,
}

impl MountPlan {
    /// As dockerd does for `-v` (not for `--mount`): a missing host directory is made.
    pub fn make_missing_bind_sources(&self, requested: &[String]) -> DockerResult<()> {
        for bind in self.binds.iter().filter(|b| requested.iter().any(|r| r.starts_with(&format!("{}:", b.host_path)))) {
            let source = std::path::Path::new(&bind.host_path);
            if std::fs::symlink_metadata(source).is_err() {
                std::fs::create_dir_all(source)
                    .map_err(|error| DockerError::bad_request(format!("error while creating mount source path '{}': {error}", bind.host_path)))?;
            }
        }
        Ok(())
    }
}

const PROPAGATIONS: [&str; 6] = ["shared", "rshared", "slave", "rslave", "private", "rprivate"];

fn invalid_spec(bind: &str, why: &str) -> DockerError {
    DockerError::bad_request(format!("invalid volume specification: '{bind}'{why}"))
}

fn host_bind(source: &str, target: &str, readonly: bool, propagation: &str) -> MountSpec {
    let propagation = if propagation.is_empty() { "private" } else { propagation.trim_start_matches('r') };
    MountSpec { container_path: target.into(), host_path: source.into(), readonly, propagation: propagation.into(), recursive_read_only: false }
}

/// One `-v SOURCE:TARGET[:OPTIONS]`: a host path when SOURCE is absolute, else a volume.
fn parse_bind(bind: &str, plan: &mut MountPlan) -> DockerResult<()> {
    let parts: Vec<&str> = bind.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => return Err(invalid_spec(bind, "")),
    };
    if !target.starts_with('/') {
        return Err(invalid_spec(bind, &format!(": invalid mount config: invalid mount path: '{target}' mount path must be absolute")));
    }
    let options: Vec<&str> = options.split(',').filter(|o| !o.is_empty()).collect();
    if let Some(unknown) = options.iter().find(|o| !["ro", "rw", "z", "Z", "nocopy"].contains(o) && !PROPAGATIONS.contains(o)) {
        return Err(invalid_spec(bind, &format!(": invalid mode: {unknown}")));
    }
    let readonly = options.contains(&"ro");
    if source.starts_with('/') {
        let propagation = options.iter().find(|o| PROPAGATIONS.contains(o)).copied().unwrap_or("");
        plan.binds.push(host_bind(source, target, readonly, propagation));
    } else {
        if !valid_name(source) {
            return Err(invalid_name(source));
        }
        plan.volumes.push(VolumeMount { name: source.into(), container_path: target.into(), readonly, no_copy: options.contains(&"nocopy"), anonymous: false });
    }
    Ok(())
}

fn parse_mount(request: &MountRequest, plan: &mut MountPlan) -> DockerResult<()> {
    let target = request.target.as_str();
    if !target.starts_with('/') {
        return Err(DockerError::bad_request(format!("invalid mount config for type \"{}\": invalid mount path: '{target}' mount path must be absolute", request.kind)));
    }
    match request.kind.as_str() {
        "bind" => {
            if !std::path::Path::new(&request.source).exists() {
                return Err(DockerError::bad_request(format!("invalid mount config for type \"bind\": bind source path does not exist: {}", request.source)));
            }
            let propagation = request.bind_options.as_ref().map(|o| o.propagation.as_str()).unwrap_or("");
            plan.binds.push(host_bind(&request.source, target, request.read_only, propagation));
        }
        "volume" => {
            let anonymous = request.source.is_empty();
            if !anonymous && !valid_name(&request.source) {
                return Err(invalid_name(&request.source));
            }
            let no_copy = request.volume_options.as_ref().is_some_and(|o| o.no_copy);
            let name = if anonymous { crate::core::ids::new_id()? } else { request.source.clone() };
            plan.volumes.push(VolumeMount { name, container_path: target.into(), readonly: request.read_only, no_copy, anonymous });
        }
        "tmpfs" => plan.tmpfs.push(tmpfs_mount(request)?),
        other => return Err(DockerError::bad_request(format!("mount type {other:?} is not supported in --mount by berthd (bind, volume and tmpfs are)"))),
    }
    Ok(())
}

/// A tmpfs of `--mount`, with dockerd's mount options: size with the largest unit that
/// divides it, mode in octal, `ro`, then the raw options.
fn tmpfs_mount(request: &MountRequest) -> DockerResult<TmpfsMount> {
    if !request.source.is_empty() {
        return Err(DockerError::bad_request("invalid mount config for type \"tmpfs\": field Source must not be specified"));
    }
    let given = request.tmpfs_options.clone().unwrap_or_default();
    if given.size_bytes < 0 {
        return Err(DockerError::bad_request(format!("invalid mount config for type \"tmpfs\": invalid tmpfs size {}", given.size_bytes)));
    }
    let mut options = Vec::new();
    if given.size_bytes > 0 {
        let (size, unit) = [(1 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")].into_iter().find(|(unit, _)| given.size_bytes % unit == 0).map(|(unit, name)| (given.size_bytes / unit, name)).unwrap_or((given.size_bytes, ""));
        options.push(format!("size={size}{unit}"));
    }
    if given.mode != 0 {
        options.push(format!("mode={:o}", given.mode & 0o7777));
    }
    if request.read_only {
        options.push("ro".into());
    }
    options.extend(given.options.iter().filter(|o| !o.is_empty()).map(|o| o.join("=")));
    Ok(TmpfsMount { container_path: request.target.clone(), options })
}

/// The whole plan: binds and mounts as asked, then an anonymous volume for each of
/// `anonymous_paths` (the request's and the image's `Volumes`) that nothing covers.
pub fn plan(binds: &[String], mounts: &[MountRequest], anonymous_paths: &[String]) -> DockerResult<MountPlan> {
    let mut plan = MountPlan::default();
    for bind in binds {
        parse_bind(bind, &mut plan)?;
    }
    for mount in mounts {
        parse_mount(mount, &mut plan)?;
    }
    let mut targets = BTreeSet::new();
    let all_targets = plan.binds.iter().map(|b| b.container_path.as_str()).chain(plan.volumes.iter().map(|v| v.container_path.as_str())).chain(plan.tmpfs.iter().map(|t| t.container_path.as_str()));
    for target in all_targets {
        if !targets.insert(target.trim_end_matches('/').to_string()) {
            return Err(DockerError::bad_request(format!("Duplicate mount point: {target}")));
        }
    }
    for path in anonymous_paths {
        if path.starts_with('/') && targets.insert(path.trim_end_matches('/').to_string()) {
            let name = crate::core::ids::new_id()?;
            plan.volumes.push(VolumeMount { name, container_path: path.clone(), readonly: false, no_copy: false, anonymous: true });
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binds(list: &[&str]) -> DockerResult<MountPlan> {
        plan(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &[], &[])
    }

    #[test]
    fn host_paths_and_volumes() {
        let plan = binds(&["/srv:/data:ro", "cache:/cache", "logs:/logs:nocopy,rw"]).ok().unwrap_or_default();
        assert_eq!(plan.binds.len(), 1);
        assert!(plan.binds[0].readonly);
        assert_eq!(plan.volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["cache", "logs"]);
        assert!(plan.volumes[1].no_copy);
    }

    #[test]
    fn refusals() {
        assert!(binds(&["/srv:data"]).is_err());
        assert!(binds(&["x:/data"]).is_err());
        assert!(binds(&["../etc:/data"]).is_err());
        assert!(binds(&["/a:/data", "b1:/data"]).is_err());
        assert!(binds(&["/a:/data:bogus"]).is_err());
    }

    #[test]
    fn anonymous_only_where_nothing_is_mounted() {
        let plan = plan(&["named:/data".to_string()], &[], &["/data".to_string(), "/other".to_string()]).ok().unwrap_or_default();
        assert_eq!(plan.volumes.len(), 2);
        assert!(plan.volumes[1].anonymous && plan.volumes[1].container_path == "/other");
    }

    #[test]
    fn tmpfs_options_are_dockerds() {
        let tmpfs = |size_bytes, mode, read_only| MountRequest {
            kind: "tmpfs".into(),
            target: "/data".into(),
            read_only,
            tmpfs_options: Some(TmpfsOptions { size_bytes, mode, options: vec![vec!["exec".into()]] }),
            ..MountRequest::default()
        };
        let made = |request: MountRequest| tmpfs_mount(&request).map(|m| m.options).unwrap_or_default();
        assert_eq!(made(tmpfs(4 << 20, 0o1770, true)), ["size=4m", "mode=1770", "ro", "exec"]);
        assert_eq!(made(tmpfs(1536, 0, false)), ["size=1536", "exec"]);
        assert!(tmpfs_mount(&MountRequest { source: "x".into(), ..tmpfs(0, 0, false) }).is_err());
        assert!(tmpfs_mount(&tmpfs(-1, 0, false)).is_err());
    }
}
