//! The container's cgroup (v1 and v2): resolves `linux.cgroupsPath` like runc's cgroupfs
//! driver, creates the directories (remembering which ones it made), applies
//! `linux.resources` through youki's `libcgroups`, moves processes in, freezes, reports
//! statistics and removes exactly what it created.

mod io_weight;
mod path;
mod shared_parent;
mod stats;
mod swap_v2;
mod v1_managers;

pub use shared_parent::SharedParent;

use std::ffi::CString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use libcgroups::common::{CgroupManager, ControllerOpt, FreezerState};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use serde::{Deserialize, Serialize};

pub use path::{clean_path, expand_slice, resolve, Requested};
pub use stats::CgroupStats;

/// Where cgroup filesystems are mounted on every supported host.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Errors of the container cgroup; each names the path, field or controller involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid linux.cgroupsPath {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("no usable cgroup hierarchy: {0}")]
    NoHierarchy(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("creating cgroup directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("removing cgroup directory {path}: {source}")]
    RemoveDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "linux.resources.{field} needs the {controller} cgroup controller, which this host lacks"
    )]
    ControllerMissing {
        controller: &'static str,
        field: &'static str,
    },
    #[error("linux.resources.unified is only supported on cgroup v2 (cgroup {0})")]
    UnifiedOnV1(PathBuf),
    #[error("{op} on cgroup {path}: {message}")]
    Library {
        op: &'static str,
        path: PathBuf,
        message: String,
    },
}

/// cgroup v1 (one directory per hierarchy) or v2 (one directory in the unified tree).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// One hierarchy the container has a directory in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// Controllers bound to it (`name=systemd` for the named one, empty for cgroup2).
    pub controllers: Vec<String>,
    /// The hierarchy's mount point.
    pub mount: PathBuf,
    /// The container's directory in it.
    pub dir: PathBuf,
}

/// A mounted cgroup v1 hierarchy of the host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct V1Hierarchy {
    /// The mount point, e.g. /sys/fs/cgroup/cpu.
    pub mount_point: PathBuf,
    /// Its controllers as mount options, e.g. "cpu" or "name=systemd".
    pub controllers: String,
}

/// See [`ContainerCgroup::self_placement`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SelfPlacement {
    pub files: Vec<PathBuf>,
    pub v1_hierarchies: Vec<V1Hierarchy>,
}

/// The container's cgroup, recorded in its state.json.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ContainerCgroup {
    path: PathBuf,
    version: CgroupVersion,
    hierarchies: Vec<Hierarchy>,
    /// Directories this container created, parents before children.
    created: Vec<PathBuf>,
    /// The device rules given at create: on v2 (eBPF) an update must re-send them.
    #[serde(default)]
    devices: Vec<LinuxDeviceCgroup>,
}

fn read(path: &Path) -> Result<String, CgroupError> {
    crate::procfs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.into(),
        source,
    })
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.into(),
        value: value.into(),
        source,
    })
}

fn library(op: &'static str, path: &Path, e: impl std::fmt::Display) -> CgroupError {
    CgroupError::Library {
        op,
        path: path.into(),
        message: e.to_string(),
    }
}

/// A cgroup file taking one value per write, such as devices.allow.
struct RuleFile {
    path: PathBuf,
    file: fs::File,
}

impl RuleFile {
    fn open(path: PathBuf) -> Result<Self, CgroupError> {
        match fs::OpenOptions::new().write(true).open(&path) {
            Ok(file) => Ok(RuleFile { path, file }),
            Err(source) => Err(CgroupError::Write { path, value: String::new(), source }),
        }
    }

    fn write(&self, value: &str) -> Result<(), CgroupError> {
        use std::io::Write;
        (&self.file).write_all(value.as_bytes()).map_err(|source| CgroupError::Write {
            path: self.path.clone(),
            value: value.into(),
            source,
        })
    }
}

/// A mounted hierarchy and the caller's own cgroup in it.
#[derive(Debug, Clone)]
struct Mounted {
    controllers: Vec<String>,
    mount: PathBuf,
    own: PathBuf,
}

const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "perf_event",
    "net_cls",
    "net_prio",
    "rdma",
    "misc",
    "name=systemd",
];

/// A v1 hierarchy in mountinfo: controllers, mount point, root of the mount.
type V1Mount = (Vec<String>, PathBuf, PathBuf);

/// The cgroup mounts, found once per process (runc does the same): they do not change
/// while a runtime or shim runs, and mountinfo grows with every container's mounts, so
/// one scan per container made each start on a busy node slower than the last.
static MOUNTS: OnceLock<(Vec<V1Mount>, Option<PathBuf>)> = OnceLock::new();

/// (v1 hierarchies, cgroup2 mount point), from [`MOUNTS`].
fn mounts() -> Result<(Vec<V1Mount>, Option<PathBuf>), CgroupError> {
    if let Some(found) = MOUNTS.get() {
        return Ok(found.clone());
    }
    let found = scan_mounts()?;
    Ok(MOUNTS.get_or_init(|| found).clone())
}

/// Parses /proc/self/mountinfo: (v1 hierarchies, cgroup2 mount point).
fn scan_mounts() -> Result<(Vec<V1Mount>, Option<PathBuf>), CgroupError> {
    let info = read(Path::new("/proc/self/mountinfo"))?;
    let (mut v1, mut v2) = (Vec::new(), None);
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let (root, point) = (PathBuf::from(l[3]), PathBuf::from(l[4]));
        match r[0] {
            "cgroup2" if v2.is_none() => v2 = Some(point),
            "cgroup" => {
                let ctrls: Vec<String> = r[2]
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o))
                    .map(String::from)
                    .collect();
                let seen = v1.iter().any(|(c, _, _): &V1Mount| *c == ctrls);
                if !ctrls.is_empty() && !seen {
                    v1.push((ctrls, point, root));
                }
            }
            _ => {}
        }
    }
    Ok((v1, v2))
}

/// The caller's own cgroup in the hierarchy with `controllers` (empty: cgroup2), made
/// relative to that hierarchy's mount root.
fn own_cgroup(proc_cgroup: &str, controllers: &[String], mount_root: &Path) -> PathBuf {
    let own = proc_cgroup.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        let set: Vec<&str> = ctrls.split(',').filter(|c| !c.is_empty()).collect();
        let same =
            set.len() == controllers.len() && controllers.iter().all(|c| set.contains(&c.as_str()));
        same.then(|| PathBuf::from(path))
    });
    let own = own.unwrap_or_else(|| PathBuf::from("/"));
    match own.strip_prefix(mount_root) {
        Ok(rest) if mount_root != Path::new("/") => Path::new("/").join(rest),
        _ => own,
    }
}

/// Finds the hierarchies to use: the unified tree on v2; on v1 every controller
/// hierarchy, `name=systemd` and (hybrid) the controller-less cgroup2 tree. The last two
/// control nothing, but systemd tracks units through them: a container left in the
/// caller's `name=systemd`/unified cgroup counts as part of the caller's unit and is
/// killed when that unit stops, so, like runc, the container gets its own directory.
fn discover() -> Result<(CgroupVersion, Vec<Mounted>), CgroupError> {
    let (v1, v2) = mounts()?;
    let proc_cgroup = read(Path::new("/proc/self/cgroup"))?;
    if v2.as_deref() == Some(Path::new(CGROUP_ROOT)) || (v1.is_empty() && v2.is_some()) {
        let mount = v2.unwrap_or_else(|| PathBuf::from(CGROUP_ROOT));
        let own = own_cgroup(&proc_cgroup, &[], Path::new("/"));
        return Ok((
            CgroupVersion::V2,
            vec![Mounted {
                controllers: vec![],
                mount,
                own,
            }],
        ));
    }
    if v1.is_empty() {
        return Err(CgroupError::NoHierarchy(
            "no cgroup or cgroup2 mount in /proc/self/mountinfo".into(),
        ));
    }
    let mut found: Vec<Mounted> = v1
        .into_iter()
        .map(|(controllers, mount, root)| {
            let own = own_cgroup(&proc_cgroup, &controllers, &root);
            Mounted {
                controllers,
                mount,
                own,
            }
        })
        .collect();
    if let Some(mount) = v2 {
        let own = own_cgroup(&proc_cgroup, &[], Path::new("/"));
        found.push(Mounted {
            controllers: vec![],
            mount,
            own,
        });
    }
    Ok((CgroupVersion::V1, found))
}

/// The v1 hierarchy whose own cgroup anchors relative paths (libcgroups uses one path
/// for every hierarchy): cpu's, else the first controller hierarchy's.
fn anchor(found: &[Mounted]) -> PathBuf {
    let has = |m: &&Mounted, c: &str| m.controllers.iter().any(|x| x == c);
    found
        .iter()
        .find(|m| has(m, "cpu"))
        .or_else(|| found.first())
        .map(|m| m.own.clone())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Resolves `cgroupsPath` as runc's cgroupfs driver does and places it in every
/// hierarchy (nothing is made): the version, the resolved path and the hierarchies.
fn locate(cgroups_path: Option<&Path>, container_id: &str) -> Result<(CgroupVersion, PathBuf, Vec<Hierarchy>), CgroupError> {
    let requested = path::resolve(cgroups_path, container_id)?;
    let (version, found) = discover()?;
    let own = match version {
        CgroupVersion::V1 => anchor(&found),
        CgroupVersion::V2 => found.first().and_then(|m| m.own.parent()).map(Path::to_path_buf).unwrap_or_default(),
    };
    let resolved = path::place(&requested, &own);
    if resolved == Path::new("/") {
        let path = cgroups_path.map(|p| p.display().to_string()).unwrap_or_default();
        return Err(CgroupError::InvalidPath { path, reason: "resolves to the hierarchy root".into() });
    }
    let hierarchies = found
        .into_iter()
        .map(|m| {
            let dir = m.mount.join(resolved.strip_prefix("/").unwrap_or(&resolved));
            Hierarchy { controllers: m.controllers, mount: m.mount, dir }
        })
        .collect();
    Ok((version, resolved, hierarchies))
}

impl ContainerCgroup {
    /// Resolves `cgroupsPath` as runc's cgroupfs driver does (absolute; relative to the
    /// caller's cgroup on v1 or its parent on v2; empty -> the container id; systemd
    /// `slice:prefix:name` -> the scope's path), creates the directories in every
    /// hierarchy and applies `resources`. On failure, removes what it created.
    pub fn create(
        cgroups_path: Option<&Path>,
        container_id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Self, CgroupError> {
        let cg = Self::create_without_limits(cgroups_path, container_id, resources)?;
        if let Err(e) = cg.apply_initial_limits(resources) {
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
    }

    /// [`Self::create`] up to the point where processes can be moved in (cpuset v1
    /// cgroups get their parent's cpus and mems); `resources` are only checked. Apply
    /// them with [`Self::apply_initial_limits`].
    pub fn create_without_limits(
        cgroups_path: Option<&Path>,
        container_id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Self, CgroupError> {
        Self::create_announcing_dirs(cgroups_path, container_id, resources, || {}, || {})
    }

    /// [`Self::create_without_limits`], calling `making_dirs` just before the
    /// directories are made and `dirs_made` right after: in between, the calling
    /// thread makes system calls only (no allocation, no lock), so another thread may
    /// meanwhile fork a child that runs Rust code (`dirs_made` can wait for that).
    pub fn create_announcing_dirs(
        cgroups_path: Option<&Path>,
        container_id: &str,
        resources: Option<&LinuxResources>,
        making_dirs: impl FnOnce(),
        dirs_made: impl FnOnce(),
    ) -> Result<Self, CgroupError> {
        let (version, resolved, hierarchies) = locate(cgroups_path, container_id)?;
        let devices = resources
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        let mut cg = ContainerCgroup {
            path: resolved,
            version,
            hierarchies,
            created: Vec::new(),
            devices,
        };
        if let Err(e) = cg.build(resources, making_dirs, dirs_made) {
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
    }

    /// Applies the container's resources to the cgroup just made (on failure the caller
    /// removes it, once the processes it moved in are gone).
    pub fn apply_initial_limits(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        let empty = LinuxResources::default();
        self.apply(resources.unwrap_or(&empty), true)
    }

    fn build(&mut self, resources: Option<&LinuxResources>, making_dirs: impl FnOnce(), dirs_made: impl FnOnce()) -> Result<(), CgroupError> {
        let empty = LinuxResources::default();
        self.check_support(resources.unwrap_or(&empty))?;
        self.make_dirs(making_dirs, dirs_made)?;
        match self.version {
            CgroupVersion::V1 => self.init_cpuset(),
            CgroupVersion::V2 => self.enable_controllers(),
        }
    }

    /// Creates each hierarchy's directory one level at a time, recording new ones. The
    /// paths are prepared first; between `making_dirs` and `dirs_made` nothing
    /// allocates (see [`Self::create_announcing_dirs`]).
    fn make_dirs(&mut self, making_dirs: impl FnOnce(), dirs_made: impl FnOnce()) -> Result<(), CgroupError> {
        let rel = self
            .path
            .strip_prefix("/")
            .unwrap_or(&self.path)
            .to_path_buf();
        let mut paths = Vec::new();
        for h in &self.hierarchies {
            let mut cur = h.mount.clone();
            for comp in rel.components() {
                cur.push(comp);
                paths.push(cur.clone());
            }
        }
        let c_paths: Vec<CString> = paths
            .iter()
            .map(|p| CString::new(p.as_os_str().as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| CgroupError::InvalidPath { path: self.path.display().to_string(), reason: "contains a NUL byte".into() })?;
        // 0 made, else the errno; NOT_TRIED after a failure.
        const NOT_TRIED: i32 = -1;
        let mut outcomes = vec![NOT_TRIED; c_paths.len()];
        making_dirs();
        for (c_path, outcome) in c_paths.iter().zip(outcomes.iter_mut()) {
            *outcome = match unsafe { libc::mkdir(c_path.as_ptr(), 0o755) } {
                0 => 0,
                _ => nix::errno::Errno::last_raw(),
            };
            if *outcome != 0 && *outcome != libc::EEXIST {
                break;
            }
        }
        dirs_made();
        for (path, outcome) in paths.into_iter().zip(outcomes) {
            match outcome {
                0 => self.created.push(path),
                libc::EEXIST | NOT_TRIED => {}
                errno => return Err(CgroupError::CreateDir { path, source: std::io::Error::from_raw_os_error(errno) }),
            }
        }
        Ok(())
    }

    fn hierarchy(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }

    fn has_controller(&self, controller: &str) -> bool {
        match self.version {
            CgroupVersion::V1 => self.hierarchy(controller).is_some(),
            CgroupVersion::V2 => {
                let Ok(h) = self.first() else { return false };
                read(&h.mount.join("cgroup.controllers"))
                    .map(|s| s.split_whitespace().any(|c| c == controller))
                    .unwrap_or(false)
            }
        }
    }

    /// Refuses limits the host cannot enforce, before anything is created.
    fn check_support(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let hugetlb = r.hugepage_limits().as_ref().is_some_and(|l| !l.is_empty());
        if hugetlb && !self.has_controller("hugetlb") {
            return Err(CgroupError::ControllerMissing {
                controller: "hugetlb",
                field: "hugepageLimits",
            });
        }
        let unified = r.unified().as_ref().is_some_and(|u| !u.is_empty());
        if unified && self.version == CgroupVersion::V1 {
            return Err(CgroupError::UnifiedOnV1(self.path.clone()));
        }
        Ok(())
    }

    /// v1 cpuset: an empty `cpuset.cpus`/`cpuset.mems` refuses tasks, so fill each
    /// level below the mount from its parent (top-down).
    fn init_cpuset(&self) -> Result<(), CgroupError> {
        let Some(h) = self.hierarchy("cpuset") else {
            return Ok(());
        };
        let rel = h.dir.strip_prefix(&h.mount).unwrap_or(Path::new(""));
        let mut cur = h.mount.clone();
        for comp in rel.components() {
            let parent = cur.clone();
            cur.push(comp);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if read(&cur.join(file))?.trim().is_empty() {
                    write(&cur.join(file), read(&parent.join(file))?.trim())?;
                }
            }
        }
        Ok(())
    }

    /// v2: enable every available controller in each ancestor's subtree_control
    /// (root down to the leaf's parent), skipping writes that change nothing.
    fn enable_controllers(&self) -> Result<(), CgroupError> {
        let h = self.first()?;
        let rel = h.dir.strip_prefix(&h.mount).unwrap_or(Path::new(""));
        let mut cur = h.mount.clone();
        for comp in rel.components() {
            let available = read(&cur.join("cgroup.controllers"))?;
            let enabled = read(&cur.join("cgroup.subtree_control"))?;
            let missing: Vec<String> = available
                .split_whitespace()
                .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
                .map(|c| format!("+{c}"))
                .collect();
            if !missing.is_empty() {
                write(&cur.join("cgroup.subtree_control"), &missing.join(" "))?;
            }
            cur.push(comp);
        }
        Ok(())
    }

    /// Moves `pid` into the container's directory of every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for h in &self.hierarchies {
            write(&h.dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// What the container's init needs to move itself in: the files it writes 0 to
    /// (`tasks` on v1, where moving the calling thread skips the global lock that
    /// moving a process by pid takes, whose first use after a quiet moment waits for an
    /// RCU grace period, 5 to 20 ms; `cgroup.procs` on v2), and the host's v1
    /// hierarchies under /sys/fs/cgroup, for its `cgroup` mounts.
    pub fn self_placement(&self) -> SelfPlacement {
        let file = |h: &Hierarchy| if h.controllers.is_empty() { "cgroup.procs" } else { "tasks" };
        let v1_hierarchies = self
            .hierarchies
            .iter()
            .filter(|h| !h.controllers.is_empty() && h.mount.starts_with(CGROUP_ROOT))
            .map(|h| V1Hierarchy { mount_point: h.mount.clone(), controllers: h.controllers.join(",") })
            .collect();
        SelfPlacement { files: self.hierarchies.iter().map(|h| h.dir.join(file(h))).collect(), v1_hierarchies }
    }

    /// Applies new resource limits (`runc update`).
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.check_support(resources)?;
        self.apply(resources, false)
    }

    fn apply(&self, r: &LinuxResources, fresh: bool) -> Result<(), CgroupError> {
        match self.version {
            CgroupVersion::V1 => self.apply_v1(r, fresh),
            CgroupVersion::V2 => self.apply_v2(r, fresh),
        }
    }

    fn controller_opt(r: &LinuxResources) -> ControllerOpt<'_> {
        let disable_oom_killer = r
            .memory()
            .as_ref()
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false);
        ControllerOpt {
            resources: r,
            disable_oom_killer,
            oom_score_adj: None,
            freezer_state: None,
        }
    }

    fn apply_v1(&self, r: &LinuxResources, fresh: bool) -> Result<(), CgroupError> {
        if fresh || r.devices().is_some() {
            self.apply_v1_devices(r.devices().as_deref().unwrap_or(&[]))?;
        }
        let mut rest = r.clone();
        rest.set_devices(None);
        self.strip_unsupported_kmem(&mut rest);
        if rest == LinuxResources::default() {
            return Ok(());
        }
        let mgr = libcgroups::v1::manager::Manager::new(&self.path)
            .map_err(|e| library("opening v1 cgroup", &self.path, e))?;
        mgr.apply(&Self::controller_opt(&rest))
            .map_err(|e| library("applying linux.resources", &self.path, e))
    }

    /// Kernel memory limits are gone from recent kernels; like runc 1.1, ignore the
    /// request when the file is absent.
    fn strip_unsupported_kmem(&self, r: &mut LinuxResources) {
        let Some(dir) = self.hierarchy("memory").map(|h| h.dir.clone()) else {
            return;
        };
        if let Some(m) = r.memory_mut() {
            if m.kernel().is_some() && !dir.join("memory.kmem.limit_in_bytes").exists() {
                m.set_kernel(None);
            }
            if m.kernel_tcp().is_some() && !dir.join("memory.kmem.tcp.limit_in_bytes").exists() {
                m.set_kernel_tcp(None);
            }
        }
    }

    /// v1 devices, as runc: deny everything, then the spec's rules in order, then the
    /// devices every container gets (null, zero, full, tty, random, urandom, console,
    /// ptmx, pts, tun, and mknod of any device).
    fn apply_v1_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
        let Some(h) = self.hierarchy("devices") else {
            return Ok(());
        };
        // One rule per write(2), each file opened once.
        let allow = RuleFile::open(h.dir.join("devices.allow"))?;
        let deny = RuleFile::open(h.dir.join("devices.deny"))?;
        deny.write("a")?;
        for rule in rules {
            let file = if rule.allow() { &allow } else { &deny };
            file.write(&rule.to_string())?;
        }
        for rule in DEFAULT_ALLOWED_DEVICES {
            allow.write(rule)?;
        }
        Ok(())
    }

    /// v2 devices need an eBPF program: with the `cgroupsv2-devices` feature libcgroups
    /// attaches one (deny all, the spec's rules, the defaults) on every create; without
    /// it device rules are not enforced on v2.
    fn apply_v2(&self, r: &LinuxResources, fresh: bool) -> Result<(), CgroupError> {
        if !fresh && r == &LinuxResources::default() {
            return Ok(());
        }
        let mut rest = r.clone();
        if cfg!(feature = "cgroupsv2-devices") {
            // libcgroups replaces the whole program on every apply: keep the rules.
            if rest.devices().is_none() {
                rest.set_devices(Some(self.devices.clone()));
            }
        } else {
            rest.set_devices(None);
            if rest == LinuxResources::default() {
                return Ok(());
            }
        }
        let weight = io_weight::take(&mut rest);
        let no_swap = swap_v2::wants_no_swap(&rest);
        self.v2_manager()?
            .apply(&Self::controller_opt(&rest))
            .map_err(|e| library("applying linux.resources", &self.path, e))?;
        if no_swap {
            swap_v2::apply(&self.first()?.dir)?;
        }
        match weight {
            Some(weight) => io_weight::apply(&self.first()?.dir, weight),
            None => Ok(()),
        }
    }

    fn v2_manager(&self) -> Result<libcgroups::v2::manager::Manager, CgroupError> {
        let mount = self.first()?.mount.clone();
        libcgroups::v2::manager::Manager::new(mount, self.path.clone())
            .map_err(|e| library("opening v2 cgroup", &self.path, e))
    }

    fn set_freezer(&self, state: FreezerState, op: &'static str) -> Result<(), CgroupError> {
        if self.version == CgroupVersion::V1 && self.hierarchy("freezer").is_none() {
            return Err(CgroupError::ControllerMissing {
                controller: "freezer",
                field: "(pause/resume)",
            });
        }
        match self.version {
            CgroupVersion::V1 => v1_managers::get(&self.path)?.freeze(state).map_err(|e| library(op, &self.path, e)),
            CgroupVersion::V2 => self.v2_manager()?.freeze(state).map_err(|e| library(op, &self.path, e)),
        }
    }

    /// Freezes every process of the container (`pause`).
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_freezer(FreezerState::Frozen, "freezing")
    }

    /// Thaws the container (`resume`).
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_freezer(FreezerState::Thawed, "thawing")
    }

    /// Whether the container is frozen (v1 `freezer.state`, v2 `cgroup.freeze`).
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.version {
            CgroupVersion::V1 => match self.hierarchy("freezer") {
                Some(h) => Ok(read(&h.dir.join("freezer.state"))?.trim() == "FROZEN"),
                None => Ok(false),
            },
            CgroupVersion::V2 => Ok(read(&self.first()?.dir.join("cgroup.freeze"))?.trim() == "1"),
        }
    }

    /// The first hierarchy: on v2 the only one.
    fn first(&self) -> Result<&Hierarchy, CgroupError> {
        self.hierarchies.first().ok_or_else(|| {
            CgroupError::NoHierarchy(format!("none recorded for {}", self.path.display()))
        })
    }

    /// The directory that lists the container's processes.
    fn main_dir(&self) -> Result<&Path, CgroupError> {
        let h = self.hierarchy("pids").or_else(|| self.hierarchy("devices"));
        Ok(&h.map_or_else(|| self.first(), Ok)?.dir)
    }

    /// Every process in the container's cgroup, sub-cgroups included.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = self.main_dir()?;
        let pids =
            libcgroups::common::get_all_pids(dir).map_err(|e| library("listing pids", dir, e))?;
        Ok(pids.into_iter().map(Pid::as_raw).collect())
    }

    /// Statistics shaped as runc's `events --stats` "data".
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let s = match self.version {
            CgroupVersion::V1 => v1_managers::get(&self.path)?.stats().map_err(|e| library("reading stats", &self.path, e))?,
            CgroupVersion::V2 => self.v2_manager()?.stats().map_err(|e| library("reading stats", &self.path, e))?,
        };
        Ok(CgroupStats::from(&s))
    }

    /// Removes the directories this container created, deepest first; retries while
    /// the last tasks exit (EBUSY). A directory already gone is fine, and so is a parent
    /// that now holds other containers' cgroups (a pod's, made by its first container):
    /// it is left to the last of them.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        v1_managers::forget(&self.path);
        let mut first_err = None;
        for dir in self.created.iter().rev() {
            if let Err(e) = remove_with_retry(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The resolved cgroupsPath (relative to each hierarchy's root).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    /// Directories this container created (and `destroy` removes), parents first.
    pub fn created(&self) -> &[PathBuf] {
        &self.created
    }
}

/// Rules every v1 container gets after the spec's own (as runc's defaults).
const DEFAULT_ALLOWED_DEVICES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// Whether a cgroup directory has cgroups below it (sub-directories).
fn has_child_cgroups(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| entries.flatten().any(|e| e.file_type().is_ok_and(|t| t.is_dir())))
}

/// Removes a cgroup directory, retrying while its last processes finish exiting. One
/// that still has cgroups below it (a pod's parent that other containers use) is left.
fn remove_with_retry(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(1);
    for attempt in 0.. {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && has_child_cgroups(dir) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 12 => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.into(),
                    source,
                })
            }
        }
    }
    Ok(())
}
