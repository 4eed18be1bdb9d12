//! berth: the daemon's library. Front doors (CRI, Docker) on top, the core services
//! (images, containers, sandboxes, networks) below, one module per concern, as
//! `DESIGN.md` lays out. The container runtime itself lives in `shims/runtime`.
#[macro_use]
pub mod crash;
pub mod core;
pub mod cri;
pub mod daemon;
pub mod docker;
pub mod spec;
pub mod store;
pub mod streaming;
pub mod task;
pub mod content;
pub mod image;
pub mod snapshot;
pub mod network;
pub mod private_fs;
