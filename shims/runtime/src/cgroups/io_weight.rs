//! The block IO weight on cgroup v2, written as runc writes it: to `io.bfq.weight` as is
//! when the BFQ scheduler provides that file, else to `io.weight`, mapped linearly from
//! the OCI range [10, 1000] onto [1, 10000]. libcgroups 0.7 does that mapping in 16-bit
//! arithmetic, which wraps for every weight above 16 (500 became 51), so berth does it.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{write, CgroupError};

/// runc's mapping of a blkio weight onto `io.weight`'s range.
pub fn io_weight_from_blkio(weight: u16) -> u64 {
    1 + u64::from(weight).saturating_sub(10) * 9999 / 990
}

/// Takes a non-zero `blockIO.weight` out of `resources`, for [`apply`] to write.
pub fn take(resources: &mut LinuxResources) -> Option<u16> {
    let block_io = resources.block_io_mut().as_mut()?;
    let weight = block_io.weight().filter(|w| *w > 0);
    block_io.set_weight(None);
    weight
}

/// Writes `weight` in the container's directory `dir`.
pub fn apply(dir: &Path, weight: u16) -> Result<(), CgroupError> {
    let bfq = dir.join("io.bfq.weight");
    if bfq.exists() {
        write(&bfq, &weight.to_string())
    } else {
        write(&dir.join("io.weight"), &io_weight_from_blkio(weight).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_blkio_range_onto_io_weight_as_runc_does() {
        assert_eq!(io_weight_from_blkio(10), 1);
        assert_eq!(io_weight_from_blkio(300), 2930);
        assert_eq!(io_weight_from_blkio(500), 4950);
        assert_eq!(io_weight_from_blkio(1000), 10000);
    }
}
