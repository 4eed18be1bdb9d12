//! Which namespaces a process gets: new ones to create, existing ones to join by path,
//! and the order that makes joining and creating work together (user first, mount last;
//! a pid namespace to join is entered by the runtime for the child's birth).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NamespaceError {
    #[error("opening {typ} namespace {path}: {source}")]
    Open { typ: &'static str, path: PathBuf, source: std::io::Error },
    #[error("joining {typ} namespace {path}: {source}")]
    Join { typ: &'static str, path: PathBuf, source: nix::Error },
    #[error("creating namespaces {flags:?}: {source}")]
    Unshare { flags: CloneFlags, source: nix::Error },
}

/// An existing namespace to enter.
pub struct Join {
    pub flag: CloneFlags,
    pub path: PathBuf,
    fd: OwnedFd,
}

/// The namespaces of one process to be created.
pub struct NamespacePlan {
    /// Namespaces to create, except the cgroup namespace.
    pub new: CloneFlags,
    /// A cgroup namespace is created once the process is in its cgroup.
    pub new_cgroup: bool,
    /// Namespaces to join, user first and mount last.
    pub joins: Vec<Join>,
}

/// Namespace kinds in the order they are joined.
const JOIN_ORDER: [(LinuxNamespaceType, CloneFlags, &str); 7] = [
    (LinuxNamespaceType::User, CloneFlags::CLONE_NEWUSER, "user"),
    (LinuxNamespaceType::Ipc, CloneFlags::CLONE_NEWIPC, "ipc"),
    (LinuxNamespaceType::Uts, CloneFlags::CLONE_NEWUTS, "uts"),
    (LinuxNamespaceType::Network, CloneFlags::CLONE_NEWNET, "net"),
    (LinuxNamespaceType::Pid, CloneFlags::CLONE_NEWPID, "pid"),
    (LinuxNamespaceType::Cgroup, CloneFlags::CLONE_NEWCGROUP, "cgroup"),
    (LinuxNamespaceType::Mount, CloneFlags::CLONE_NEWNS, "mnt"),
];

fn open_namespace(typ: &'static str, path: PathBuf, flag: CloneFlags) -> Result<Join, NamespaceError> {
    match File::open(&path) {
        Ok(file) => Ok(Join { flag, path, fd: file.into() }),
        Err(source) => Err(NamespaceError::Open { typ, path, source }),
    }
}

impl Default for NamespacePlan {
    fn default() -> Self {
        NamespacePlan { new: CloneFlags::empty(), new_cgroup: false, joins: Vec::new() }
    }
}

impl NamespacePlan {
    /// The plan for a container's init, from the spec's `linux.namespaces`. Paths to
    /// join are opened now, in the runtime's own mount namespace.
    pub fn for_container(namespaces: &[LinuxNamespace]) -> Result<Self, NamespaceError> {
        let mut plan = NamespacePlan::default();
        for (typ, flag, name) in JOIN_ORDER {
            let Some(ns) = namespaces.iter().find(|ns| ns.typ() == typ) else { continue };
            match ns.path() {
                Some(path) => plan.joins.push(open_namespace(name, path.clone(), flag)?),
                None if flag == CloneFlags::CLONE_NEWCGROUP => plan.new_cgroup = true,
                None => plan.new |= flag,
            }
        }
        Ok(plan)
    }

    /// The plan for a process joining a running container: every namespace of the
    /// container's init that differs from the runtime's own.
    pub fn for_exec(init_pid: i32, namespaces: &[LinuxNamespace]) -> Result<Self, NamespaceError> {
        let mut plan = NamespacePlan::default();
        for (typ, flag, name) in JOIN_ORDER {
            if !namespaces.iter().any(|ns| ns.typ() == typ) {
                continue;
            }
            let theirs = PathBuf::from(format!("/proc/{init_pid}/ns/{name}"));
            let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
            let inode = |p: &PathBuf| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
            let their_inode = inode(&theirs)
                .map_err(|source| NamespaceError::Open { typ: name, path: theirs.clone(), source })?;
            if inode(&ours).ok() != Some(their_inode) {
                plan.joins.push(open_namespace(name, theirs, flag)?);
            }
        }
        Ok(plan)
    }

    fn joins(&self, flag: CloneFlags) -> bool {
        self.joins.iter().any(|j| j.flag == flag)
    }

    /// Whether the process must be created in two steps: an intermediate process joins
    /// and creates namespaces, then forks the real one (needed to enter a pid namespace,
    /// or to order user namespace creation after joins).
    pub fn needs_intermediate(&self) -> bool {
        self.joins(CloneFlags::CLONE_NEWUSER)
            || (self.joins(CloneFlags::CLONE_NEWPID) && !self.parent_enters_pid())
            || (self.new.contains(CloneFlags::CLONE_NEWUSER) && !self.joins.is_empty())
    }

    /// Whether the runtime enters the pid namespace to join itself, for its children
    /// only, around `clone`: the process is then born in it, with no intermediate
    /// process. Not with user namespaces, which must be joined or created first.
    pub fn parent_enters_pid(&self) -> bool {
        self.joins(CloneFlags::CLONE_NEWPID) && !self.joins(CloneFlags::CLONE_NEWUSER) && !self.creates_user_namespace()
    }

    /// When [`Self::parent_enters_pid`]: makes the pid namespace to join the one of the
    /// caller's next children, and returns the caller's own for [`leave_pid_for_children`].
    pub fn enter_pid_for_children(&self) -> Result<Option<OwnedFd>, NamespaceError> {
        let join = self.joins.iter().find(|j| j.flag == CloneFlags::CLONE_NEWPID);
        let Some(join) = join.filter(|_| self.parent_enters_pid()) else { return Ok(None) };
        let own = open_namespace("pid", PathBuf::from(OWN_PID_NAMESPACE), CloneFlags::CLONE_NEWPID)?;
        setns(join.fd.as_fd(), CloneFlags::CLONE_NEWPID)
            .map_err(|source| NamespaceError::Join { typ: "pid", path: join.path.clone(), source })?;
        Ok(Some(own.fd))
    }

    pub fn creates_user_namespace(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER)
    }

    pub fn joins_user_namespace(&self) -> bool {
        self.joins(CloneFlags::CLONE_NEWUSER)
    }

    /// Whether the container runs in a user namespace other than the runtime's, made
    /// or joined (where device nodes cannot be made, only bound).
    pub fn in_user_namespace(&self) -> bool {
        self.creates_user_namespace() || self.joins(CloneFlags::CLONE_NEWUSER)
    }

    /// Enters every namespace to join, in order.
    pub fn join_all(&self) -> Result<(), NamespaceError> {
        let born_in_pid = self.parent_enters_pid();
        for join in self.joins.iter().filter(|j| !(born_in_pid && j.flag == CloneFlags::CLONE_NEWPID)) {
            setns(join.fd.as_fd(), join.flag).map_err(|source| NamespaceError::Join {
                typ: flag_name(join.flag),
                path: join.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

const OWN_PID_NAMESPACE: &str = "/proc/self/ns/pid";

/// Makes the caller's children born in its own pid namespace again.
pub fn leave_pid_for_children(own: OwnedFd) -> Result<(), NamespaceError> {
    setns(own.as_fd(), CloneFlags::CLONE_NEWPID)
        .map_err(|source| NamespaceError::Join { typ: "pid", path: PathBuf::from(OWN_PID_NAMESPACE), source })
}

/// Creates namespaces in the calling process (children enter a new pid namespace).
pub fn unshare_flags(flags: CloneFlags) -> Result<(), NamespaceError> {
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).map_err(|source| NamespaceError::Unshare { flags, source })
}

fn flag_name(flag: CloneFlags) -> &'static str {
    JOIN_ORDER.iter().find(|(_, f, _)| *f == flag).map_or("unknown", |(_, _, name)| name)
}
