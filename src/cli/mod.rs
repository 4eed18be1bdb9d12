//! berthctl: a crictl-like client for people, on berthd's CRI socket.
pub mod client;
pub mod containers;
pub mod output;
pub mod pods;
pub mod stream;
pub mod system;
