//! A test bundle: a temporary directory with a busybox `rootfs/` and a `config.json`
//! generated from a modifiable spec, plus the unique container id and cgroupsPath it
//! uses. On drop it force-deletes every container it created and removes its files.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::rootfs::build_rootfs;
use crate::runtime::Runtime;
use crate::spec::default_spec;
use crate::tempdir::{unique_name, TempDir};

pub struct Bundle<'a> {
    rt: &'a Runtime,
    dir: TempDir,
    id: String,
    cgroup_name: String,
    /// The spec written to config.json before each create/run.
    pub spec: Value,
    /// Every id used with this bundle (deleted on drop, checked by the leak check).
    pub(crate) ids: RefCell<Vec<String>>,
}

impl<'a> Bundle<'a> {
    /// A bundle running `sleep 100` by default (tests set their own args).
    pub fn new(rt: &'a Runtime) -> Bundle<'a> {
        let dir = TempDir::new("bundle");
        build_rootfs(&dir.path().join("rootfs"));
        let id = unique_name(rt.name());
        let cgroup_name = unique_name("cg");
        let spec = default_spec(&["sleep", "100"], &format!("/{cgroup_name}"));
        rt.track_id(&id);
        rt.track_cgroup(&cgroup_name);
        Bundle {
            rt,
            dir,
            ids: RefCell::new(vec![id.clone()]),
            id,
            cgroup_name,
            spec,
        }
    }

    /// A bundle whose container runs `args`.
    pub fn with_args(rt: &'a Runtime, args: &[&str]) -> Bundle<'a> {
        let mut b = Bundle::new(rt);
        b.set_args(args);
        b
    }

    pub fn runtime(&self) -> &Runtime {
        self.rt
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir().join("rootfs")
    }

    /// The main container id (contains `berth-test`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The last path element of the cgroupsPath (`berth-test-cg-...`).
    pub fn cgroup_name(&self) -> &str {
        &self.cgroup_name
    }

    /// A fresh unique id, remembered for cleanup.
    pub fn new_id(&self) -> String {
        let id = unique_name(self.rt.name());
        self.ids.borrow_mut().push(id.clone());
        self.rt.track_id(&id);
        id
    }

    pub fn set_args(&mut self, args: &[&str]) {
        self.spec["process"]["args"] = serde_json::json!(args);
    }

    /// Runs `script` with `sh -c`.
    pub fn set_sh(&mut self, script: &str) {
        self.set_args(&["sh", "-c", script]);
    }

    /// Writes `self.spec` to config.json.
    pub fn write_config(&self) {
        let text = serde_json::to_string_pretty(&self.spec).expect("serialize spec");
        self.write_raw_config(&text);
    }

    /// Writes `text` to config.json as is (for bad-input tests).
    pub fn write_raw_config(&self, text: &str) {
        let path = self.dir().join("config.json");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Bundle<'_> {
    /// Fails the test if this bundle's containers left a state entry, a cgroup dir or
    /// a process behind.
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        let found = crate::leak::leaks(
            self.rt.root(),
            &self.ids.borrow(),
            std::slice::from_ref(&self.cgroup_name),
        );
        assert!(found.is_empty(), "left behind: {found:#?}");
    }
}

impl Drop for Bundle<'_> {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let mut cmd = self.rt.command(&["delete", "--force", id.as_str()]);
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let _ = cmd.status();
        }
    }
}
