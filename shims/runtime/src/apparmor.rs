//! AppArmor: the profile (`process.apparmorProfile`) that confines a process from its
//! `execve` on. The kernel is asked to change profiles on exec through the process's
//! own attribute file, as the last step before the executable is resolved.
use std::io::Write;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum AppArmorError {
    #[error("apparmor profile {0:?} was requested but AppArmor is not enabled on this host")]
    NotEnabled(String),
    #[error("apparmor profile {0:?}: {1} (is it loaded? see /sys/kernel/security/apparmor/profiles)")]
    Change(String, std::io::Error),
}

/// Whether the kernel runs AppArmor.
pub fn enabled() -> bool {
    std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.first() == Some(&b'Y'))
}

/// Makes `profile` confine this process once it executes; an empty profile changes nothing.
pub fn change_on_exec(profile: &str) -> Result<(), AppArmorError> {
    if profile.is_empty() {
        return Ok(());
    }
    if !enabled() {
        return Err(AppArmorError::NotEnabled(profile.to_string()));
    }
    let request = format!("exec {profile}");
    // The AppArmor-specific attribute (kernels that stack LSMs), else the shared one.
    let attribute = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/attr/apparmor/exec")
        .or_else(|_| std::fs::OpenOptions::new().write(true).open("/proc/self/attr/exec"))
        .map_err(|e| AppArmorError::Change(profile.to_string(), e))?;
    (&attribute).write_all(request.as_bytes()).map_err(|e| AppArmorError::Change(profile.to_string(), e))
}
