//! The five capability sets of a container process. Where the spec asks for a
//! capability the runtime itself does not hold in its bounding set (on some machines
//! even root lacks CAP_SYS_RESOURCE), the capability is left out rather than failing.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CapabilityError {
    #[error("unknown capability {0}")]
    Unknown(String),
    #[error("capset: {0}")]
    Set(std::io::Error),
    #[error("{what}: {source}")]
    Apply { what: &'static str, source: caps::errors::CapsError },
}

/// The capability sets to give a process, already limited to what the runtime holds.
#[derive(Debug, Clone, Default)]
pub struct CapabilityPlan {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

fn convert(
    set: &Option<oci_spec::runtime::Capabilities>,
    held: &CapsHashSet,
) -> Result<CapsHashSet, CapabilityError> {
    let mut result = CapsHashSet::new();
    for cap in set.iter().flatten() {
        let name = format!("CAP_{cap}");
        let cap = Capability::from_str(&name).map_err(|_| CapabilityError::Unknown(name))?;
        if held.contains(&cap) {
            result.insert(cap);
        }
    }
    Ok(result)
}

impl CapabilityPlan {
    /// Built in the runtime before the process exists. No `capabilities` in the spec
    /// means an empty set everywhere.
    pub fn from_spec(spec: Option<&LinuxCapabilities>) -> Result<Self, CapabilityError> {
        let held = caps::read(None, CapSet::Bounding)
            .map_err(|source| CapabilityError::Apply { what: "reading the bounding set", source })?;
        let Some(spec) = spec else { return Ok(CapabilityPlan::default()) };
        Ok(CapabilityPlan {
            bounding: convert(spec.bounding(), &held)?,
            effective: convert(spec.effective(), &held)?,
            permitted: convert(spec.permitted(), &held)?,
            inheritable: convert(spec.inheritable(), &held)?,
            ambient: convert(spec.ambient(), &held)?,
        })
    }

    /// Drops from the bounding set what the process may never regain. Call before
    /// changing user, while CAP_SETPCAP is still held.
    pub fn limit_bounding_set(&self) -> Result<(), CapabilityError> {
        // Every capability outside the plan is dropped without reading the set first:
        // dropping one not held succeeds, and one the kernel does not know is EINVAL.
        // (A new user namespace's bounding set is full, whatever the runtime held.)
        for cap in caps::all().difference(&self.bounding) {
            match caps::drop(None, CapSet::Bounding, *cap) {
                Ok(()) => {}
                Err(_) if cap.index() > last_capability() => {}
                Err(source) => return Err(CapabilityError::Apply { what: "dropping from the bounding set", source }),
            }
        }
        Ok(())
    }

    /// Sets effective, permitted and inheritable in one capset(2), then ambient. Call
    /// after changing user (with PR_SET_KEEPCAPS set across the change).
    pub fn apply(&self) -> Result<(), CapabilityError> {
        capset(&self.effective, &self.permitted, &self.inheritable)?;
        caps::clear(None, CapSet::Ambient)
            .map_err(|source| CapabilityError::Apply { what: "clearing the ambient set", source })?;
        for cap in &self.ambient {
            // The kernel refuses an ambient capability not both permitted and inheritable;
            // runc ignores those, so do we.
            let _ = caps::raise(None, CapSet::Ambient, *cap);
        }
        Ok(())
    }
}

/// The highest capability number the running kernel knows.
fn last_capability() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(u8::MAX)
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn bits(set: &CapsHashSet) -> u64 {
    set.iter().fold(0u64, |acc, cap| acc | cap.bitmask())
}

/// The three sets at once: setting them one by one can pass through states the kernel
/// refuses (an effective set larger than the permitted one).
fn capset(effective: &CapsHashSet, permitted: &CapsHashSet, inheritable: &CapsHashSet) -> Result<(), CapabilityError> {
    let (e, p, i) = (bits(effective), bits(permitted), bits(inheritable));
    let mut data = [CapData::default(); 2];
    for (word, slot) in data.iter_mut().enumerate() {
        let shift = 32 * word;
        *slot = CapData { effective: (e >> shift) as u32, permitted: (p >> shift) as u32, inheritable: (i >> shift) as u32 };
    }
    let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) } != 0 {
        return Err(CapabilityError::Set(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unheld_capabilities_are_left_out() {
        let json = r#"{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE"],"effective":["CAP_CHOWN"]}"#;
        let spec: LinuxCapabilities = serde_json::from_str(json).unwrap();
        let held: CapsHashSet = [Capability::CAP_CHOWN].into_iter().collect();
        let bounding = convert(spec.bounding(), &held).unwrap();
        assert_eq!(bounding, held);
        assert!(convert(spec.inheritable(), &held).unwrap().is_empty());
    }
}
