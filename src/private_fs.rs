//! Files and directories only root may reach: the runtime library's helpers, which the
//! shim shares (see `berth_runtime::private_fs`).
pub use berth_runtime::private_fs::*;
