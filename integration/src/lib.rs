//! Shared harness for berth's integration tests and benchmarks: locating the built
//! binaries, building bundles from busybox-static, and cleaning up after each test.
