//! berth: the daemon's library. The front doors (CRI, Docker) and the core services
//! (images, containers, sandboxes, networks) will live here, one module per concern,
//! as `DESIGN.md` lays out. Today the container runtime lives in `shims/runtime`.
