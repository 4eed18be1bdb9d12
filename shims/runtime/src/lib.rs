//! berth-runtime: berth's OCI runtime (runtime-spec 1.x) as a synchronous library, used
//! directly by the shim and wrapped by the runc-compatible binary `berth-runc`.
pub mod cgroups;
