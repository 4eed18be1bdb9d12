//! Who a container process runs as: supplementary groups, gid, uid and umask, switched
//! so that the capability plan survives the change of user.

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::User;
use thiserror::Error;

use crate::capabilities::{CapabilityError, CapabilityPlan};

#[derive(Debug, Error)]
pub enum CredentialError {
    #[error("setting supplementary groups {0:?}: {1}")]
    Groups(Vec<u32>, nix::Error),
    #[error("setting gid {0}: {1}")]
    Gid(u32, nix::Error),
    #[error("setting uid {0}: {1}")]
    Uid(u32, nix::Error),
    #[error("prctl(PR_SET_KEEPCAPS): {0}")]
    KeepCaps(nix::Error),
    #[error("prctl(PR_SET_NO_NEW_PRIVS): {0}")]
    NoNewPrivileges(nix::Error),
    #[error(transparent)]
    Capabilities(#[from] CapabilityError),
}

fn set_keep_capabilities(keep: bool) -> Result<(), CredentialError> {
    nix::sys::prctl::set_keepcaps(keep).map_err(CredentialError::KeepCaps)
}

/// Becomes `user` with exactly the capabilities of `plan`.
pub fn become_user(user: &User, plan: &CapabilityPlan, set_groups: bool) -> Result<(), CredentialError> {
    plan.limit_bounding_set()?;
    set_keep_capabilities(true)?;
    if set_groups {
        let groups: Vec<Gid> = user.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect();
        setgroups(&groups).map_err(|e| {
            CredentialError::Groups(user.additional_gids().clone().unwrap_or_default(), e)
        })?;
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(|e| CredentialError::Gid(user.gid(), e))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(|e| CredentialError::Uid(user.uid(), e))?;
    set_keep_capabilities(false)?;
    plan.apply()?;
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

pub fn forbid_new_privileges() -> Result<(), CredentialError> {
    nix::sys::prctl::set_no_new_privs().map_err(CredentialError::NoNewPrivileges)
}
