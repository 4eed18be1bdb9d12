//! The container settings that only Docker has: `--tmpfs` (and `--mount type=tmpfs`),
//! `--ulimit` and `--init`
//! (a static init from the host, `docker-init` on the PATH or Debian's
//! `tini-static`, run as the container's first process).
use std::path::{Path, PathBuf};

use super::create::{HostConfig, Ulimit};
use super::{DockerError, DockerResult};
use crate::core::{ContainerExtras, ProcessRlimit, TmpfsMount};

/// The limits `docker run --ulimit` knows, by Docker's names.
const ULIMIT_NAMES: [&str; 15] = ["core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"];

/// Where an init for `--init` is looked for, after `docker-init` on the PATH.
const INIT_CANDIDATES: [&str; 2] = ["/usr/bin/tini-static", "/usr/bin/docker-init"];

/// The extras of `host`, with `mounted`: the tmpfs mounts of `--mount type=tmpfs`.
pub fn extras_of(host: &HostConfig, mounted: &[TmpfsMount]) -> DockerResult<ContainerExtras> {
    let mut tmpfs: Vec<TmpfsMount> = host.tmpfs.clone().unwrap_or_default().into_iter().map(|(path, options)| tmpfs_mount(&path, &options)).collect::<DockerResult<_>>()?;
    if let Some(both) = mounted.iter().find(|m| tmpfs.iter().any(|t| t.container_path.trim_end_matches('/') == m.container_path.trim_end_matches('/'))) {
        return Err(DockerError::bad_request(format!("Duplicate mount point: {}", both.container_path)));
    }
    tmpfs.extend(mounted.iter().cloned());
    let rlimits = host.ulimits.clone().unwrap_or_default().iter().map(rlimit).collect::<DockerResult<_>>()?;
    let init_binary = match host.init {
        Some(true) => Some(find_init()?.display().to_string()),
        _ => None,
    };
    Ok(ContainerExtras { tmpfs, rlimits, init_binary })
}

fn tmpfs_mount(path: &str, options: &str) -> DockerResult<TmpfsMount> {
    if !path.starts_with('/') {
        return Err(DockerError::bad_request(format!("invalid mount config for type \"tmpfs\": invalid mount path: '{path}' mount path must be absolute")));
    }
    let options = options.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_string).collect();
    Ok(TmpfsMount { container_path: path.to_string(), options })
}

fn rlimit(limit: &Ulimit) -> DockerResult<ProcessRlimit> {
    let name = limit.name.to_ascii_lowercase();
    if !ULIMIT_NAMES.contains(&name.as_str()) {
        return Err(DockerError::bad_request(format!("invalid ulimit type: {}", limit.name)));
    }
    if limit.soft < 0 || limit.hard < 0 {
        return Err(DockerError::bad_request(format!("invalid ulimit {}: limits must not be negative", limit.name)));
    }
    if limit.soft > limit.hard {
        return Err(DockerError::bad_request(format!("ulimit soft limit must be less than or equal to hard limit: {} > {}", limit.soft, limit.hard)));
    }
    Ok(ProcessRlimit { kind: format!("RLIMIT_{}", name.to_ascii_uppercase()), soft: limit.soft as u64, hard: limit.hard as u64 })
}

fn find_init() -> DockerResult<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).map(|dir| dir.join("docker-init"));
    on_path
        .chain(INIT_CANDIDATES.iter().map(PathBuf::from))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| DockerError::internal("exec: \"docker-init\": executable file not found in $PATH (install tini for tini-static)"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_are_checked_and_named_as_the_spec_wants() {
        let nofile = Ulimit { name: "nofile".into(), soft: 100, hard: 200 };
        assert_eq!(rlimit(&nofile).expect("nofile"), ProcessRlimit { kind: "RLIMIT_NOFILE".into(), soft: 100, hard: 200 });
        assert!(rlimit(&Ulimit { name: "bogus".into(), soft: 1, hard: 1 }).is_err());
        assert!(rlimit(&Ulimit { name: "nproc".into(), soft: 5, hard: 1 }).is_err());
        assert!(tmpfs_mount("relative", "").is_err());
        assert_eq!(tmpfs_mount("/run", "size=1m, mode=1777").expect("tmpfs").options, ["size=1m", "mode=1777"]);
    }
}
