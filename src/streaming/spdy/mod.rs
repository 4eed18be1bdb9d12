//! SPDY/3.1 (draft 3.1 of the SPDY protocol), as Kubernetes streams use it: frames,
//! header compression, and a connection of streams with flow control.
pub mod dictionary;
pub mod frame;
pub mod session;
