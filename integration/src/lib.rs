//! Shared harness for berth's integration tests and benchmarks: locating the built
//! binaries, building bundles from busybox-static, driving the shim, and cleaning up
//! after each test.

pub mod bins;
pub mod cgroups;
pub mod containerd;
pub mod rootfs;
pub mod shim;
pub mod spec;
pub mod tempdir;
