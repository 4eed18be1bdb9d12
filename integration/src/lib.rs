//! Shared harness for berth's integration tests and benchmarks: locating the built
//! binaries, building bundles from busybox-static, driving runc-compatible runtimes
//! (berth-runc, runc, crun), driving berth-shim and a private containerd, and checking
//! that nothing was left behind.

pub mod berthd;
pub mod bins;
pub mod bundle;
pub mod cgroups;
pub mod containerd;
pub mod containerd_cri;
pub mod cri;
pub mod dns_responder;
pub mod docker;
pub mod dockerd;
pub mod command;
pub mod compose;
pub mod console;
pub mod fake_registry;
pub mod images;
pub mod kernel_view;
pub mod leak;
pub mod matrix;
pub mod netns;
pub mod networld;
pub mod pod_bench;
pub mod proc_memory;
pub mod pypi;
pub mod ops;
pub mod registry;
pub mod rootfs;
pub mod runtime;
pub mod shim;
pub mod spec;
pub mod streaming;
pub mod tempdir;
pub mod token_server;

pub use bundle::Bundle;
pub use command::CmdOutput;
pub use console::ConsoleSocket;
pub use matrix::{each_runtime, Expect};
pub use runtime::{runtimes, Runtime};
