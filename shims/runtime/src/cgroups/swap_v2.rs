//! `memory.swap.max` of 0 on cgroup v2, when the spec's swap limit (memory plus swap, as
//! on v1) equals its memory limit: no swap at all. libcgroups 0.7 treats a computed 0 as
//! "leave the file as it is", which keeps the old swap limit after an update and
//! unlimited swap at create, so berth writes it.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{write, CgroupError};

/// Whether the resources ask for a memory limit with no swap beside it.
pub fn wants_no_swap(resources: &LinuxResources) -> bool {
    let Some(memory) = resources.memory() else { return false };
    matches!((memory.limit(), memory.swap()), (Some(limit), Some(swap)) if limit > 0 && swap == limit)
}

/// Writes the zero swap limit in the container's directory `dir` (a kernel without swap
/// accounting has no such file, and no swap to limit).
pub fn apply(dir: &Path) -> Result<(), CgroupError> {
    let file = dir.join("memory.swap.max");
    if !file.exists() {
        return Ok(());
    }
    write(&file, "0")
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};

    use super::*;

    fn resources(limit: i64, swap: Option<i64>) -> LinuxResources {
        let mut memory = LinuxMemoryBuilder::default().limit(limit);
        if let Some(swap) = swap {
            memory = memory.swap(swap);
        }
        LinuxResourcesBuilder::default().memory(memory.build().expect("memory")).build().expect("resources")
    }

    #[test]
    fn only_a_swap_equal_to_the_limit_means_no_swap() {
        assert!(wants_no_swap(&resources(64 << 20, Some(64 << 20))));
        assert!(!wants_no_swap(&resources(64 << 20, Some(96 << 20))));
        assert!(!wants_no_swap(&resources(64 << 20, None)));
        assert!(!wants_no_swap(&resources(-1, Some(-1))));
    }
}
