//! A named network namespace (`ip netns add berth-test-...`) for join-by-path tests,
//! deleted on drop.

use crate::command::sh;
use crate::tempdir::unique_name;

pub struct NetNs {
    name: String,
}

impl NetNs {
    #[track_caller]
    pub fn new() -> NetNs {
        let name = unique_name("netns");
        sh(&format!("ip netns add {name}")).ok();
        NetNs { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// /var/run/netns/<name>.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// The `net:[inode]` link text of this namespace.
    pub fn link(&self) -> String {
        let out = sh(&format!("stat -L -c %i {}", self.path())).ok();
        format!("net:[{}]", out.stdout.trim())
    }
}

impl Default for NetNs {
    fn default() -> Self {
        NetNs::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = sh(&format!("ip netns delete {}", self.name));
    }
}
